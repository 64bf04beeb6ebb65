#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "mg_eds.h"
#include "mg_io.h"
#include "mg_log.h"
#include "mg_snapshot.h"
#include "mg_xds.h"
#include "mg_xds_proto.h"

#define XDS_BACKOFF_MIN   0.5
#define XDS_BACKOFF_MAX   30.0
#define XDS_CONNECT_TIMEOUT 5.0

struct mg_xds_s {
    struct ev_loop *loop;
    const mg_snapshot_t *snap;
    const mg_xds_conf_t *xc;
    const char **names;           /* every eds_name, once */
    unsigned nnames;
    const char *type_url;
    const char *path;

    mg_io_t io;
    ev_io rev;
    ev_io wev;
    ev_timer timer;               /* connect timeout, then the backoff */
    nghttp2_session *session;
    int32_t stream_id;
    unsigned connecting:1;        /* TCP connect or TLS handshake */
    unsigned up:1;                /* the stream is open */
    unsigned node_sent:1;         /* the stream's first request went */
    unsigned logged_down:1;       /* "cannot reach" said once per outage */
    double backoff;

    uint8_t *out;                 /* requests nghttp2 has not taken yet */
    size_t out_len;
    size_t out_pos;
    uint8_t *in;                  /* a gRPC message being received */
    size_t in_len;
    size_t in_cap;

    char version[MG_XDS_NAME_LEN]; /* last accepted version_info */
    char grpc_message[160];       /* from the server's trailers */
};

static void xds_connect(mg_xds_t *x);
static void xds_flush(mg_xds_t *x);
static void xds_on_read(struct ev_loop *loop, ev_io *w, int revents);
static void xds_on_write(struct ev_loop *loop, ev_io *w, int revents);

/* ------------------------------------------------------------------ */
/* The connection                                                      */

static void
xds_close(mg_xds_t *x)
{
    ev_io_stop(x->loop, &x->rev);
    ev_io_stop(x->loop, &x->wev);
    ev_timer_stop(x->loop, &x->timer);
    if (x->session != NULL) {
        nghttp2_session_del(x->session);
        x->session = NULL;
    }
    if (x->io.fd != -1) {
        mg_io_close(&x->io);
    }
    x->io.fd = -1;
    x->connecting = x->up = x->node_sent = 0;
    x->stream_id = -1;
    free(x->out);
    x->out = NULL;
    x->out_len = x->out_pos = 0;
    x->in_len = 0;
    mg_eds_set_connected(0);
}

static void
xds_on_backoff(struct ev_loop *loop, ev_timer *w, int revents)
{
    xds_connect(w->data);
}

/* The stream or the connection is gone: try again after the backoff,
 * doubled each time, with jitter so that a fleet does not come back at
 * once. The last endpoints stay in use meanwhile. */
static void
xds_retry(mg_xds_t *x, int err, const char *why)
{
    double delay;

    if (!x->logged_down) {
        mg_log_error(MG_LOG_WARN, &mg_log, err, "xds: %s (%s): keeping the "
                     "last endpoints, retrying", why, x->xc->address);
        x->logged_down = 1;
    } else {
        mg_log_error(MG_LOG_INFO, &mg_log, err, "xds: %s (%s)", why,
                     x->xc->address);
    }
    xds_close(x);
    delay = x->backoff * (0.5 + 0.5 * (double)(random() % 1000) / 1000.0);
    x->backoff = mg_min(x->backoff * 2, XDS_BACKOFF_MAX);
    ev_timer_init(&x->timer, xds_on_backoff, delay, 0.);
    x->timer.data = x;
    ev_timer_start(x->loop, &x->timer);
}

static void
xds_on_connect_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    xds_retry(w->data, ETIMEDOUT, "connecting timed out");
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */

/* Queues a DiscoveryRequest: the first of a stream carries the node; an
 * answer to a response carries its nonce, and an error for a NACK. */
static int
xds_queue_request(mg_xds_t *x, const char *nonce, const char *error)
{
    mg_xds_request_t r;
    uint8_t *msg, *out;
    size_t len;

    memset(&r, 0, sizeof(r));
    r.version_info = x->version;
    r.response_nonce = nonce ? nonce : "";
    r.type_url = x->type_url;
    r.resource_names = x->names;
    r.nresource_names = x->nnames;
    if (!x->node_sent) {
        r.node_id = x->xc->node_id;
        r.node_cluster = x->xc->node_cluster;
        r.region = x->snap->gateway.region;
        r.zone = x->snap->gateway.zone;
        r.user_agent_version = PACKAGE_VERSION;
    }
    if (error != NULL) {
        r.error_code = MG_XDS_GRPC_INVALID_ARGUMENT;
        r.error_message = error;
    }
    msg = mg_xds_request_encode(&r, &len);
    if (msg == NULL) {
        return MG_ERROR;
    }
    out = realloc(x->out, x->out_len - x->out_pos + len);
    if (out == NULL) {
        free(msg);
        return MG_ERROR;
    }
    memmove(out, out + x->out_pos, x->out_len - x->out_pos);
    x->out = out;
    x->out_len -= x->out_pos;
    x->out_pos = 0;
    memcpy(x->out + x->out_len, msg, len);
    x->out_len += len;
    free(msg);
    x->node_sent = 1;
    if (x->session != NULL && x->stream_id > 0) {
        (void)nghttp2_session_resume_data(x->session, x->stream_id);
    }
    return MG_OK;
}

static ssize_t
xds_read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
              size_t length, uint32_t *data_flags, nghttp2_data_source *src,
              void *user_data)
{
    mg_xds_t *x = user_data;
    size_t n = x->out_len - x->out_pos;

    if (n == 0) {
        return NGHTTP2_ERR_DEFERRED;   /* the stream stays open */
    }
    n = mg_min(n, length);
    memcpy(buf, x->out + x->out_pos, n);
    x->out_pos += n;
    return (ssize_t)n;
}

/* ------------------------------------------------------------------ */
/* Responses                                                           */

static int
xds_parse_ip(const mg_xds_endpoint_t *e, mg_eds_endpoint_t *out)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;

    memset(&out->addr, 0, sizeof(out->addr));
    if (inet_pton(AF_INET, e->address, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)e->port);
        out->addrlen = sizeof(*sin);
        snprintf(out->text, sizeof(out->text), "%.46s:%u", e->address, e->port);
        return MG_OK;
    }
    if (inet_pton(AF_INET6, e->address, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)e->port);
        out->addrlen = sizeof(*sin6);
        snprintf(out->text, sizeof(out->text), "[%.46s]:%u", e->address,
                 e->port);
        return MG_OK;
    }
    return MG_ERROR;
}

/*
 * The endpoints of |a| that this gateway uses, into |*out|: those of its
 * own region (or none given), at their locality's priority. Traffic to
 * other regions goes through their front proxies, never to their
 * endpoints. MG_OK, or MG_ERROR with the reason in |err|.
 */
static int
xds_convert(mg_xds_t *x, const mg_xds_assignment_t *a,
            const mg_cluster_conf_t *cl, mg_eds_endpoint_t **out,
            unsigned *n, char *err, size_t errlen)
{
    const mg_xds_endpoint_t *e;
    mg_eds_endpoint_t *eps;
    unsigned i, k = 0;

    eps = calloc(a->nendpoints ? a->nendpoints : 1, sizeof(*eps));
    if (eps == NULL) {
        snprintf(err, errlen, "out of memory");
        return MG_ERROR;
    }
    for (i = 0; i < a->nendpoints; i++) {
        e = &a->endpoints[i];
        if (e->region[0] != '\0'
            && strcmp(e->region, x->snap->gateway.region) != 0) {
            continue;
        }
        if (xds_parse_ip(e, &eps[k]) != MG_OK) {
            snprintf(err, errlen, "cluster %.60s: endpoint %.60s:%u is not an "
                     "IP address (host names are not resolved)",
                     a->cluster_name, e->address, e->port);
            free(eps);
            return MG_ERROR;
        }
        if (k == cl->max_endpoints) {
            snprintf(err, errlen, "cluster %.60s: more than max_endpoints "
                     "(%u) endpoints", a->cluster_name, cl->max_endpoints);
            free(eps);
            return MG_ERROR;
        }
        snprintf(eps[k].zone, sizeof(eps[k].zone), "%s", e->zone);
        eps[k].weight = e->weight;
        eps[k].priority = e->priority;
        eps[k].health = e->health;
        k++;
    }
    *out = eps;
    *n = k;
    return MG_OK;
}

/* Applies one DiscoveryResponse whole, or refuses it whole. */
static void
xds_on_message(mg_xds_t *x, const uint8_t *msg, size_t len)
{
    mg_xds_response_t resp;
    mg_eds_endpoint_t **sets = NULL;
    unsigned *counts = NULL, i, c, ok = 1;
    const mg_cluster_conf_t *cl;
    char err[MG_EDS_ERR_MAX];

    memset(&resp, 0, sizeof(resp));
    err[0] = '\0';
    if (mg_xds_response_decode(msg, len, x->type_url, &resp, err,
                               sizeof(err)) != MG_OK) {
        ok = 0;
    } else {
        sets = calloc(resp.nassignments + 1, sizeof(*sets));
        counts = calloc(resp.nassignments + 1, sizeof(*counts));
        if (sets == NULL || counts == NULL) {
            snprintf(err, sizeof(err), "out of memory");
            ok = 0;
        }
        for (i = 0; ok && i < resp.nassignments; i++) {
            for (c = 0; c < x->snap->nclusters; c++) {
                cl = &x->snap->clusters[c];
                if (cl->eds_name != NULL
                    && strcmp(cl->eds_name, resp.assignments[i].cluster_name)
                           == 0) {
                    break;
                }
            }
            if (c == x->snap->nclusters) {
                continue;   /* not asked for: ignored */
            }
            if (xds_convert(x, &resp.assignments[i], cl, &sets[i],
                            &counts[i], err, sizeof(err)) != MG_OK) {
                ok = 0;
            }
        }
    }
    if (!ok) {
        mg_log_error(MG_LOG_ERROR, &mg_log, 0, "xds: update %s refused, "
                     "keeping version \"%s\": %s", resp.version_info,
                     x->version, err);
        /* Every cluster shows the refusal: which one it was about is in
         * the reason. */
        for (c = 0; c < x->snap->nclusters; c++) {
            if (x->snap->clusters[c].eds_name != NULL) {
                mg_eds_reject(&x->snap->clusters[c], err);
            }
        }
        (void)xds_queue_request(x, resp.nonce, err);
    } else {
        for (i = 0; i < resp.nassignments; i++) {
            for (c = 0; c < x->snap->nclusters; c++) {
                cl = &x->snap->clusters[c];
                if (cl->eds_name != NULL && sets[i] != NULL
                    && strcmp(cl->eds_name,
                              resp.assignments[i].cluster_name) == 0) {
                    mg_eds_publish(cl, sets[i], counts[i],
                                   resp.version_info);
                    mg_log_error(MG_LOG_INFO, &mg_log, 0, "xds: cluster %s: "
                                 "%u endpoints (version %s)", cl->name,
                                 counts[i], resp.version_info);
                }
            }
        }
        snprintf(x->version, sizeof(x->version), "%s", resp.version_info);
        x->backoff = XDS_BACKOFF_MIN;
        (void)xds_queue_request(x, resp.nonce, NULL);
    }
    for (i = 0; sets != NULL && i < resp.nassignments; i++) {
        free(sets[i]);
    }
    free(sets);
    free(counts);
    mg_xds_response_free(&resp);
}

/* DATA of our stream: gRPC messages, each a 5-byte prefix (compressed
 * flag, big-endian length) and the protobuf bytes. */
static int
xds_on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id,
            const uint8_t *data, size_t len, void *user_data)
{
    mg_xds_t *x = user_data;
    size_t need, mlen;
    uint8_t *in;

    if (stream_id != x->stream_id) {
        return 0;
    }
    if (x->in_len + len > x->in_cap) {
        need = mg_max(x->in_cap * 2, x->in_len + len);
        if (need > MG_XDS_MAX_MESSAGE + MG_XDS_GRPC_PREFIX + 65536) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        in = realloc(x->in, need);
        if (in == NULL) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        x->in = in;
        x->in_cap = need;
    }
    memcpy(x->in + x->in_len, data, len);
    x->in_len += len;
    while (x->in_len >= MG_XDS_GRPC_PREFIX) {
        mlen = (size_t)x->in[1] << 24 | (size_t)x->in[2] << 16
               | (size_t)x->in[3] << 8 | x->in[4];
        if (x->in[0] != 0 || mlen > MG_XDS_MAX_MESSAGE) {
            mg_log_error(MG_LOG_ERROR, &mg_log, 0, "xds: %s gRPC message "
                         "from the server", x->in[0] != 0 ? "a compressed"
                                                          : "an oversized");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        if (x->in_len < MG_XDS_GRPC_PREFIX + mlen) {
            break;
        }
        xds_on_message(x, x->in + MG_XDS_GRPC_PREFIX, mlen);
        memmove(x->in, x->in + MG_XDS_GRPC_PREFIX + mlen,
                x->in_len - MG_XDS_GRPC_PREFIX - mlen);
        x->in_len -= MG_XDS_GRPC_PREFIX + mlen;
    }
    return 0;
}

static int
xds_on_header(nghttp2_session *session, const nghttp2_frame *frame,
              const uint8_t *name, size_t namelen, const uint8_t *value,
              size_t valuelen, uint8_t flags, void *user_data)
{
    mg_xds_t *x = user_data;

    if (frame->hd.stream_id == x->stream_id && namelen == 12
        && memcmp(name, "grpc-message", 12) == 0) {
        snprintf(x->grpc_message, sizeof(x->grpc_message), "%.*s",
                 (int)mg_min(valuelen, 150), value);
    }
    return 0;
}

static int
xds_on_stream_close(nghttp2_session *session, int32_t stream_id,
                    uint32_t error_code, void *user_data)
{
    mg_xds_t *x = user_data;

    if (stream_id == x->stream_id) {
        x->up = 0;
        x->stream_id = -1;
    }
    return 0;
}

/* The server ended its side (trailers with grpc-status): ours never ends
 * by itself, so reset it, and the stream is over. */
static int
xds_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                  void *user_data)
{
    mg_xds_t *x = user_data;

    if (frame->hd.stream_id == x->stream_id && x->stream_id > 0
        && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        && (frame->hd.type == NGHTTP2_HEADERS
            || frame->hd.type == NGHTTP2_DATA)) {
        (void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE,
                                        x->stream_id, NGHTTP2_NO_ERROR);
        x->up = 0;
        x->stream_id = -1;
    }
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        x->up = 0;
    }
    return 0;
}

static ssize_t
xds_send(nghttp2_session *session, const uint8_t *data, size_t length,
         int flags, void *user_data)
{
    mg_xds_t *x = user_data;
    struct iovec iov = { (void *)data, length };
    ssize_t n = mg_io_sendv(&x->io, &iov, 1);

    if (n < 0) {
        return errno == EAGAIN || errno == EINTR ? NGHTTP2_ERR_WOULDBLOCK
                                                 : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* Connecting                                                          */

static void
xds_open_stream(mg_xds_t *x)
{
    nghttp2_session_callbacks *cb;
    nghttp2_settings_entry iv[1] = { { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 } };
    nghttp2_data_provider body;
    char authority[300];
    nghttp2_nv hdrs[6];
    const char *scheme = x->xc->tls != NULL ? "https" : "http";

#define XDS_NV(i, n, v)                                                       \
    hdrs[i].name = (uint8_t *)(n);                                          \
    hdrs[i].namelen = strlen(n);                                            \
    hdrs[i].value = (uint8_t *)(v);                                         \
    hdrs[i].valuelen = strlen(v);                                           \
    hdrs[i].flags = NGHTTP2_NV_FLAG_NONE

    if (nghttp2_session_callbacks_new(&cb) != 0) {
        xds_retry(x, ENOMEM, "cannot start HTTP/2");
        return;
    }
    nghttp2_session_callbacks_set_send_callback(cb, xds_send);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, xds_on_data);
    nghttp2_session_callbacks_set_on_header_callback(cb, xds_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb,
                                                         xds_on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, xds_on_stream_close);
    if (nghttp2_session_client_new(&x->session, cb, x) != 0) {
        nghttp2_session_callbacks_del(cb);
        xds_retry(x, ENOMEM, "cannot start HTTP/2");
        return;
    }
    nghttp2_session_callbacks_del(cb);
    (void)nghttp2_submit_settings(x->session, NGHTTP2_FLAG_NONE, iv, 1);
    snprintf(authority, sizeof(authority), "%s", x->xc->address);
    XDS_NV(0, ":method", "POST");
    XDS_NV(1, ":scheme", scheme);
    XDS_NV(2, ":path", x->path);
    XDS_NV(3, ":authority", authority);
    XDS_NV(4, "content-type", "application/grpc");
    XDS_NV(5, "te", "trailers");
#undef XDS_NV
    body.source.ptr = NULL;
    body.read_callback = xds_read_body;
    x->node_sent = 0;
    x->grpc_message[0] = '\0';
    if (xds_queue_request(x, "", NULL) != MG_OK) {
        xds_retry(x, ENOMEM, "cannot encode the request");
        return;
    }
    x->stream_id = nghttp2_submit_request(x->session, NULL, hdrs, 6, &body,
                                          NULL);
    if (x->stream_id < 0) {
        xds_retry(x, 0, "cannot open the stream");
        return;
    }
    x->up = 1;
    x->connecting = 0;
    ev_timer_stop(x->loop, &x->timer);
    mg_eds_set_connected(1);
    if (x->logged_down) {
        mg_log_error(MG_LOG_NOTICE, &mg_log, 0, "xds: connected to %s again",
                     x->xc->address);
    } else {
        mg_log_error(MG_LOG_INFO, &mg_log, 0, "xds: connected to %s (%s)",
                     x->xc->address, x->path);
    }
    x->logged_down = 0;
    ev_io_init(&x->rev, xds_on_read, x->io.fd, EV_READ);
    x->rev.data = x;
    ev_io_start(x->loop, &x->rev);
    xds_flush(x);
}

static void
xds_handshake(mg_xds_t *x)
{
    int rc = mg_io_handshake(&x->io);

    if (rc == MG_AGAIN) {
        ev_io_stop(x->loop, &x->wev);
        ev_io_stop(x->loop, &x->rev);
        ev_io_init(&x->wev, xds_on_write, x->io.fd, EV_WRITE);
        ev_io_init(&x->rev, xds_on_read, x->io.fd, EV_READ);
        x->wev.data = x->rev.data = x;
        ev_io_start(x->loop, x->io.want_write ? &x->wev : &x->rev);
        return;
    }
    if (rc != MG_OK) {
        char why[300];

        snprintf(why, sizeof(why), "TLS handshake failed: %s",
                 mg_io_ssl_error());
        xds_retry(x, 0, why);
        return;
    }
    ev_io_stop(x->loop, &x->wev);
    ev_io_stop(x->loop, &x->rev);
    xds_open_stream(x);
}

static void
xds_connected(mg_xds_t *x)
{
    SSL *ssl;

    if (x->xc->tls == NULL) {
        ev_io_stop(x->loop, &x->wev);
        xds_open_stream(x);
        return;
    }
    ssl = SSL_new(x->xc->tls);
    if (ssl == NULL || SSL_set_fd(ssl, x->io.fd) != 1
        || (x->xc->tls_sni != NULL
            && (SSL_set_tlsext_host_name(ssl, x->xc->tls_sni) != 1
                || SSL_set1_host(ssl, x->xc->tls_sni) != 1))) {
        SSL_free(ssl);
        xds_retry(x, 0, "cannot set up TLS");
        return;
    }
    x->io.ssl = ssl;
    SSL_set_connect_state(ssl);
    xds_handshake(x);
}

static void
xds_connect(mg_xds_t *x)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int fd, rc;

    xds_close(x);
    /* Blocking, in the control process only: a discovery server is
     * usually a literal address or a cluster-local name. */
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", x->xc->port);
    rc = getaddrinfo(x->xc->host, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        char why[300];

        snprintf(why, sizeof(why), "cannot resolve %s: %s", x->xc->host,
                 gai_strerror(rc));
        xds_retry(x, 0, why);
        return;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        freeaddrinfo(res);
        xds_retry(x, errno, "socket()");
        return;
    }
    rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc == -1 && errno != EINPROGRESS) {
        close(fd);
        xds_retry(x, errno, "cannot connect");
        return;
    }
    x->io.fd = fd;
    x->io.ssl = NULL;
    x->io.want_write = 0;
    x->io.handshake_done = 0;
    x->connecting = 1;
    ev_io_init(&x->wev, xds_on_write, fd, EV_WRITE);
    x->wev.data = x;
    ev_io_start(x->loop, &x->wev);
    ev_timer_init(&x->timer, xds_on_connect_timeout, XDS_CONNECT_TIMEOUT, 0.);
    x->timer.data = x;
    ev_timer_start(x->loop, &x->timer);
}

/* ------------------------------------------------------------------ */
/* I/O                                                                 */

static void
xds_flush(mg_xds_t *x)
{
    int rc;

    if (x->session == NULL) {
        return;
    }
    rc = nghttp2_session_send(x->session);
    if (rc != 0) {
        xds_retry(x, 0, nghttp2_strerror(rc));
        return;
    }
    if (x->io.want_write || nghttp2_session_want_write(x->session)) {
        ev_io_start(x->loop, &x->wev);
    } else {
        ev_io_stop(x->loop, &x->wev);
    }
    if (!x->up && !nghttp2_session_want_write(x->session)) {
        char why[220];

        snprintf(why, sizeof(why), "the server ended the stream%s%s",
                 x->grpc_message[0] ? ": " : "", x->grpc_message);
        xds_retry(x, 0, why);
    }
}

static void
xds_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_xds_t *x = w->data;
    socklen_t len = sizeof(int);
    int err = 0;

    if (x->connecting && x->session == NULL) {
        if (x->io.ssl != NULL) {
            xds_handshake(x);
            return;
        }
        if (getsockopt(x->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
            err = errno;
        }
        if (err != 0) {
            xds_retry(x, err, "cannot connect");
            return;
        }
        xds_connected(x);
        return;
    }
    xds_flush(x);
}

static void
xds_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_xds_t *x = w->data;
    uint8_t buf[16384];
    ssize_t n, rc;

    if (x->connecting && x->session == NULL) {
        xds_handshake(x);
        return;
    }
    for (;;) {
        n = mg_io_recv(&x->io, (char *)buf, sizeof(buf));
        if (n == 0) {
            xds_retry(x, 0, "the server closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }
            xds_retry(x, errno, "connection lost");
            return;
        }
        rc = nghttp2_session_mem_recv(x->session, buf, (size_t)n);
        if (rc < 0) {
            xds_retry(x, 0, nghttp2_strerror((int)rc));
            return;
        }
        if (x->session == NULL) {
            return;
        }
    }
    xds_flush(x);
}

/* ------------------------------------------------------------------ */

mg_xds_t *
mg_xds_start(struct ev_loop *loop, const mg_snapshot_t *snap)
{
    mg_xds_t *x;
    unsigned i, k;

    if (snap->xds == NULL) {
        return NULL;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return NULL;
    }
    x->names = calloc(snap->nclusters + 1, sizeof(char *));
    if (x->names == NULL) {
        free(x);
        return NULL;
    }
    for (i = 0; i < snap->nclusters; i++) {
        if (snap->clusters[i].eds_name == NULL) {
            continue;
        }
        for (k = 0; k < x->nnames; k++) {
            if (strcmp(x->names[k], snap->clusters[i].eds_name) == 0) {
                break;
            }
        }
        if (k == x->nnames) {
            x->names[x->nnames++] = snap->clusters[i].eds_name;
        }
    }
    x->loop = loop;
    x->snap = snap;
    x->xc = snap->xds;
    x->io.fd = -1;
    x->stream_id = -1;
    x->backoff = XDS_BACKOFF_MIN;
    x->type_url = x->xc->v2 ? MG_XDS_V2_CLA_TYPE_URL : MG_XDS_V3_CLA_TYPE_URL;
    x->path = x->xc->v2 ? (x->xc->ads ? MG_XDS_V2_ADS_PATH
                                      : MG_XDS_V2_EDS_PATH)
                        : (x->xc->ads ? MG_XDS_V3_ADS_PATH
                                      : MG_XDS_V3_EDS_PATH);
    ev_init(&x->timer, xds_on_backoff);
    x->timer.data = x;
    /* Resync: ask again with the version the table holds. */
    for (i = 0; i < snap->nclusters; i++) {
        mg_eds_status_t st;

        if (snap->clusters[i].eds_name != NULL
            && mg_eds_status(&snap->clusters[i], &st) == MG_OK
            && st.version[0] != '\0') {
            snprintf(x->version, sizeof(x->version), "%s", st.version);
            break;
        }
    }
    if (x->nnames > 0) {
        xds_connect(x);
    }
    return x;
}

void
mg_xds_stop(mg_xds_t *x)
{
    if (x == NULL) {
        return;
    }
    xds_close(x);
    free(x->in);
    free(x->names);
    free(x);
}
