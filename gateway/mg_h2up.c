#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "mg_buf.h"
#include "mg_dns.h"
#include "mg_h1.h"
#include "mg_h2.h"
#include "mg_h2up.h"
#include "mg_io.h"
#include "mg_log.h"
#include "mg_metrics.h"
#include "mg_proxy.h"
#include "mg_snapshot.h"
#include "mg_str.h"

/* A stream's window: what an upstream may send ahead of a slow client. */
#define H2UP_STREAM_WINDOW (256 * 1024)
#define H2UP_CONN_WINDOW   (16 * 1024 * 1024)
/* u->in holds the window's data plus chunk framing, which a peer sending
 * tiny DATA frames inflates; past this the stream is reset. */
#define H2UP_IN_MAX        (4 * 1024 * 1024)
#define H2UP_TRAILERS_MAX  16384
#define H2UP_MAX_HEAD_LIST 65536
#define H2UP_MAX_NV        (MG_H1_MAX_HEADERS + 8)
#define H2UP_STREAMS_CAP   1000   /* per connection, whatever the peer says */

struct mg_h2up_s {
    mg_io_t io;
    ev_io rev;
    ev_io wev;
    ev_timer timer;               /* connect timeout, then the tick */
    mg_ctx_t *ctx;
    const mg_endpoint_conf_t *ep;
    mg_dns_peer_t peer;           /* the address it went to */
    const char *name;             /* for logs: ep->address, or |name_buf|:
                                   * "host:port (address)" */
    char name_buf[MG_DNS_LOG_NAME_LEN];
    nghttp2_session *session;
    mg_h2up_t *next;              /* the endpoint's list */
    mg_h2up_t *prev;
    mg_h2up_t *dnext;             /* connections with output to flush */
    mg_h2up_t *dprev;
    mg_h2up_t *anext;             /* every connection of the worker */
    mg_h2up_t *aprev;
    mg_uconn_t *streams;          /* open streams, linked by u->next */
    unsigned nstreams;
    uint64_t served;              /* streams ever opened on it */
    mg_buf_t *out;
    const uint8_t *pending;       /* session output not yet copied out */
    size_t npending;
    ev_tstamp last_read;
    ev_tstamp idle_since;
    ev_tstamp ping_at;
    int32_t goaway_last_id;       /* from the peer's GOAWAY, or -1 */
    unsigned connecting:1;
    unsigned handshaking:1;
    unsigned ready:1;             /* connected, TLS done, h2 agreed */
    unsigned goaway:1;            /* takes no new streams */
    unsigned in_session:1;        /* inside mem_recv/mem_send */
    unsigned dirty:1;
    unsigned dead:1;              /* failed: freed once out of the session */
    unsigned ping_out:1;          /* a PING awaits its ACK */
    unsigned linked:1;            /* on the endpoint's list */
    unsigned settings_seen:1;     /* the peer's SETTINGS arrived */
};

static nghttp2_session_callbacks *h2up_callbacks;
static nghttp2_option *h2up_option;
static mg_h2up_t *h2up_dirty;
static mg_h2up_t *h2up_all;       /* retired ones too, for the final close */
static ev_prepare h2up_prepare;

static void h2up_flush(mg_h2up_t *h);
static void h2up_fail(mg_h2up_t *h, unsigned how, int err, const char *why);

/* ------------------------------------------------------------------ */
/* Lists                                                               */

static void
h2up_unlink(mg_h2up_t *h)
{
    mg_upstream_pool_t *pool = &h->ctx->pools[h->ep->pool];

    if (!h->linked) {
        return;
    }
    if (h->prev != NULL) {
        h->prev->next = h->next;
    } else {
        pool->h2 = h->next;
    }
    if (h->next != NULL) {
        h->next->prev = h->prev;
    }
    h->next = h->prev = NULL;
    h->linked = 0;
    pool->nh2--;
}

static void
h2up_dirty_unlink(mg_h2up_t *h)
{
    if (!h->dirty) {
        return;
    }
    if (h->dprev != NULL) {
        h->dprev->dnext = h->dnext;
    } else {
        h2up_dirty = h->dnext;
    }
    if (h->dnext != NULL) {
        h->dnext->dprev = h->dprev;
    }
    h->dnext = h->dprev = NULL;
    h->dirty = 0;
}

static void
h2up_stream_unlink(mg_uconn_t *u)
{
    mg_h2up_t *h = u->h2;

    if (u->prev != NULL) {
        u->prev->next = u->next;
    } else {
        h->streams = u->next;
    }
    if (u->next != NULL) {
        u->next->prev = u->prev;
    }
    u->next = u->prev = NULL;
    u->h2 = NULL;
    h->nstreams--;
    if (h->nstreams == 0) {
        h->idle_since = ev_now(h->ctx->loop);
    }
}

static void
h2up_free(mg_h2up_t *h)
{
    struct ev_loop *loop = h->ctx->loop;

    h2up_unlink(h);
    h2up_dirty_unlink(h);
    if (h->ctx->conns[h->ep->index] > 0) {
        h->ctx->conns[h->ep->index]--;
        mg_met_dec(h->ep->met + MG_MET_E_CX_ACTIVE);
    }
    if (h->aprev != NULL) {
        h->aprev->anext = h->anext;
    } else {
        h2up_all = h->anext;
    }
    if (h->anext != NULL) {
        h->anext->aprev = h->aprev;
    }
    ev_io_stop(loop, &h->rev);
    ev_io_stop(loop, &h->wev);
    ev_timer_stop(loop, &h->timer);
    mg_io_close(&h->io);
    nghttp2_session_del(h->session);
    mg_buf_put(&h->ctx->bufs, h->out);
    free(h);
}

/* Stops taking streams: the connection goes once the last one is done. */
static void
h2up_retire(mg_h2up_t *h)
{
    h->goaway = 1;
    h2up_unlink(h);
}

static void
h2up_on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    mg_h2up_t *h;

    while ((h = h2up_dirty) != NULL) {
        h2up_dirty_unlink(h);
        h2up_flush(h);
    }
    ev_prepare_stop(loop, w);
}

/* Output is flushed once per loop iteration, before it sleeps: requests
 * and window updates made in one pass leave in one write. */
static void
h2up_schedule(mg_h2up_t *h)
{
    if (h->dirty || h->dead || !h->ready) {
        return;
    }
    h->dirty = 1;
    h->dprev = NULL;
    h->dnext = h2up_dirty;
    if (h2up_dirty != NULL) {
        h2up_dirty->dprev = h;
    }
    h2up_dirty = h;
    if (!ev_is_active(&h2up_prepare)) {
        ev_prepare_init(&h2up_prepare, h2up_on_prepare);
        ev_prepare_start(h->ctx->loop, &h2up_prepare);
    }
}

/* ------------------------------------------------------------------ */
/* Response bytes into u->in                                           */

static int
h2up_append(mg_uconn_t *u, const void *data, size_t len)
{
    mg_buf_t *nb;
    size_t size, pending;

    if (u->in == NULL) {
        u->in = len <= MG_BUF_SIZE ? mg_buf_get(&u->ctx->bufs)
                                   : mg_buf_get_large(len);
        if (u->in == NULL) {
            return MG_ERROR;
        }
    }
    if (mg_buf_room(u->in) < len) {
        mg_buf_compact(u->in);
    }
    if (mg_buf_room(u->in) < len) {
        pending = mg_buf_pending(u->in);
        size = (size_t)(u->in->end - u->in->start) * 2;
        while (size < pending + len) {
            size *= 2;
        }
        if (size > H2UP_IN_MAX) {
            return MG_ERROR;
        }
        nb = mg_buf_get_large(size);
        if (nb == NULL) {
            return MG_ERROR;
        }
        memcpy(nb->last, u->in->pos, pending);
        nb->last += pending;
        mg_buf_put(&u->ctx->bufs, u->in);
        u->in = nb;
    }
    memcpy(u->in->last, data, len);
    u->in->last += len;
    return MG_OK;
}

#define h2up_append_lit(u, s) h2up_append((u), (s), sizeof(s) - 1)

static int
h2up_append_field(mg_uconn_t *u, const uint8_t *name, size_t namelen,
                  const uint8_t *value, size_t valuelen)
{
    if (h2up_append(u, name, namelen) != MG_OK
        || h2up_append_lit(u, ": ") != MG_OK
        || h2up_append(u, value, valuelen) != MG_OK) {
        return MG_ERROR;
    }
    return h2up_append_lit(u, "\r\n");
}

/* The response is complete: end the chunked framing, with trailers. */
static int
h2up_end(mg_uconn_t *u)
{
    u->end_stream = 1;
    if (!u->chunked) {
        return MG_OK;
    }
    if (h2up_append_lit(u, "0\r\n") != MG_OK
        || (u->trailers != NULL
            && h2up_append(u, u->trailers->pos, mg_buf_pending(u->trailers))
                   != MG_OK)) {
        return MG_ERROR;
    }
    return h2up_append_lit(u, "\r\n");
}

static void
h2up_notify(mg_uconn_t *u)
{
    if (u->owner != NULL) {
        mg_proxy__up_input(u->owner);
    }
}

/* ------------------------------------------------------------------ */
/* nghttp2 callbacks                                                   */

static int
h2up_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
                      void *user_data)
{
    mg_uconn_t *u = nghttp2_session_get_stream_user_data(session,
                                                         frame->hd.stream_id);

    if (u != NULL && u->head_seen && u->trailers == NULL) {
        u->trailers = mg_buf_get(&u->ctx->bufs);
        if (u->trailers == NULL) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return 0;
}

static int
h2up_on_header(nghttp2_session *session, const nghttp2_frame *frame,
               const uint8_t *name, size_t namelen, const uint8_t *value,
               size_t valuelen, uint8_t flags, void *user_data)
{
    mg_uconn_t *u = nghttp2_session_get_stream_user_data(session,
                                                         frame->hd.stream_id);
    mg_buf_t *t;
    char line[96];
    unsigned status;
    int n;

    if (u == NULL) {
        return 0;
    }
    if (u->head_seen) {
        /* Trailers: kept apart, and framed at the end of a chunked body. */
        t = u->trailers;
        if (t == NULL || namelen + valuelen + 4 > mg_buf_room(t)) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        memcpy(t->last, name, namelen);
        t->last += namelen;
        *t->last++ = ':';
        *t->last++ = ' ';
        memcpy(t->last, value, valuelen);
        t->last += valuelen;
        *t->last++ = '\r';
        *t->last++ = '\n';
        return 0;
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        /* nghttp2 has checked it is three digits and comes first. */
        status = (unsigned)(value[0] - '0') * 100 + (unsigned)(value[1] - '0')
                 * 10 + (unsigned)(value[2] - '0');
        u->status = status;
        n = snprintf(line, sizeof(line), "HTTP/1.1 %u %s\r\n", status,
                     mg_proxy__reason(status));
        return h2up_append(u, line, (size_t)n) == MG_OK
                   ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (name[0] == ':') {
        return 0;
    }
    if (namelen == 14 && memcmp(name, "content-length", 14) == 0) {
        u->has_length = 1;
    }
    return h2up_append_field(u, name, namelen, value, valuelen) == MG_OK
               ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* A complete response head (or an interim one) arrived. */
static int
h2up_on_head(mg_uconn_t *u, int end_stream)
{
    if (u->status < 200) {
        /* Interim: the request path skips 1xx heads. */
        return h2up_append_lit(u, "\r\n");
    }
    u->head_seen = 1;
    if (end_stream) {
        if (!u->has_length && !u->head_req && u->status != 204
            && u->status != 304
            && h2up_append_lit(u, "content-length: 0\r\n") != MG_OK) {
            return MG_ERROR;
        }
    } else if (!u->has_length && !u->head_req && u->status != 204
               && u->status != 304) {
        u->chunked = 1;
        if (h2up_append_lit(u, "transfer-encoding: chunked\r\n") != MG_OK) {
            return MG_ERROR;
        }
    }
    if (h2up_append_lit(u, "\r\n") != MG_OK) {
        return MG_ERROR;
    }
    return end_stream ? h2up_end(u) : MG_OK;
}

static int
h2up_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                   void *user_data)
{
    mg_h2up_t *h = user_data;
    mg_uconn_t *u;
    int end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        u = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (u == NULL) {
            return 0;
        }
        if (frame->hd.type == NGHTTP2_HEADERS && !u->head_seen) {
            if (h2up_on_head(u, end_stream) != MG_OK) {
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
            if (u->status < 200) {
                return 0;
            }
        } else if (end_stream && h2up_end(u) != MG_OK) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        h2up_notify(u);
        return 0;
    case NGHTTP2_GOAWAY:
        /* nghttp2 closes the streams past last_stream_id as refused. */
        h->goaway_last_id = frame->goaway.last_stream_id;
        mg_log_error(frame->goaway.error_code == NGHTTP2_NO_ERROR
                         ? MG_LOG_INFO : MG_LOG_WARN, &mg_log, 0,
                     "upstream %s sent GOAWAY (%s), cluster: %s",
                     h->name,
                     nghttp2_http2_strerror(frame->goaway.error_code),
                     h->ep->cluster->name);
        h2up_retire(h);
        return 0;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
            h->ping_out = 0;
        }
        return 0;
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
            h->settings_seen = 1;
            /* Remembered for the next connection to this endpoint, which
             * must guess until its own SETTINGS arrive. */
            h->ctx->pools[h->ep->pool].h2_max_streams =
                nghttp2_session_get_remote_settings(
                    session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        }
        return 0;
    }
    return 0;
}

static int
h2up_on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                   const uint8_t *data, size_t len, void *user_data)
{
    mg_uconn_t *u = nghttp2_session_get_stream_user_data(session, stream_id);
    char hdr[24];
    int n;

    if (u == NULL) {
        nghttp2_session_consume(session, stream_id, len);
        return 0;
    }
    u->unconsumed += len;
    if (u->chunked) {
        n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
        if (h2up_append(u, hdr, (size_t)n) != MG_OK
            || h2up_append(u, data, len) != MG_OK
            || h2up_append_lit(u, "\r\n") != MG_OK) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    } else if (h2up_append(u, data, len) != MG_OK) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static int
h2up_on_stream_close(nghttp2_session *session, int32_t stream_id,
                     uint32_t error_code, void *user_data)
{
    mg_h2up_t *h = user_data;
    mg_uconn_t *u = nghttp2_session_get_stream_user_data(session, stream_id);

    if (u == NULL) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    if (u->unconsumed > 0) {
        nghttp2_session_consume_connection(session, u->unconsumed);
        u->unconsumed = 0;
    }
    h2up_stream_unlink(u);
    if (u->end_stream) {
        return 0;   /* the client reads the rest from u->in */
    }
    if (error_code != NGHTTP2_REFUSED_STREAM) {
        mg_log_error(MG_LOG_INFO, &mg_log, 0,
                     "upstream %s reset stream %d (%s), cluster: %s",
                     h->name, stream_id,
                     nghttp2_http2_strerror(error_code), h->ep->cluster->name);
    }
    if (u->owner != NULL) {
        mg_proxy__up_failed(u->owner, error_code == NGHTTP2_REFUSED_STREAM
                                          ? MG_UP_REFUSED : MG_UP_RESET, 0);
    }
    return 0;
}

/* Pulls request body bytes from the client side. */
static ssize_t
h2up_read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
               size_t length, uint32_t *data_flags,
               nghttp2_data_source *source, void *user_data)
{
    mg_uconn_t *u = nghttp2_session_get_stream_user_data(session, stream_id);
    ssize_t n;
    int eof = 0;

    if (u == NULL || u->owner == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    n = mg_proxy__up_body_read(u->owner, (char *)buf, length, &eof);
    if (n < 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (n > 0) {
        u->sent = 1;
    }
    if (eof) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return n;
    }
    return n > 0 ? n : NGHTTP2_ERR_DEFERRED;
}

static int
h2up_setup(void)
{
    nghttp2_session_callbacks *cb;

    if (h2up_callbacks != NULL) {
        return MG_OK;
    }
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        return MG_ERROR;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(
        cb, h2up_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2up_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb,
                                                         h2up_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, h2up_on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, h2up_on_stream_close);
    if (nghttp2_option_new(&h2up_option) != 0) {
        nghttp2_session_callbacks_del(cb);
        return MG_ERROR;
    }
    /* Windows open only as the client takes the body. */
    nghttp2_option_set_no_auto_window_update(h2up_option, 1);
    nghttp2_option_set_max_continuations(h2up_option, 8);
    nghttp2_option_set_max_settings(h2up_option, 32);
    h2up_callbacks = cb;
    return MG_OK;
}

/* ------------------------------------------------------------------ */
/* Connection                                                          */

static void
h2up_tick_start(mg_h2up_t *h)
{
    const mg_cluster_conf_t *cl = h->ep->cluster;
    double tick = mg_min(1.0, cl->keepalive_timeout);

    if (cl->keepalive_interval > 0) {
        tick = mg_min(tick, cl->keepalive_interval);
    }
    tick = mg_min(tick, cl->idle_timeout);
    ev_timer_stop(h->ctx->loop, &h->timer);
    ev_timer_set(&h->timer, tick, tick);
    ev_timer_start(h->ctx->loop, &h->timer);
}

static void
h2up_ready(mg_h2up_t *h)
{
    struct ev_loop *loop = h->ctx->loop;

    h->ready = 1;
    h->handshaking = 0;
    h->last_read = ev_now(loop);
    ev_io_stop(loop, &h->wev);
    ev_io_start(loop, &h->rev);
    h2up_tick_start(h);
    h2up_flush(h);
}

static void
h2up_handshake(mg_h2up_t *h)
{
    struct ev_loop *loop = h->ctx->loop;
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    long vr;
    const char *why;
    int rc = mg_io_handshake(&h->io);

    if (rc == MG_AGAIN) {
        if (h->io.want_write) {
            ev_io_start(loop, &h->wev);
            ev_io_stop(loop, &h->rev);
        } else {
            ev_io_start(loop, &h->rev);
            ev_io_stop(loop, &h->wev);
        }
        return;
    }
    if (rc != MG_OK) {
        vr = SSL_get_verify_result(h->io.ssl);
        why = mg_io_ssl_error();
        mg_log_error(MG_LOG_ERROR, &mg_log, 0,
                     "TLS handshake with upstream %s failed: %s%s%s, "
                     "cluster: %s", h->name,
                     why[0] ? why : "connection closed",
                     vr != X509_V_OK ? ": certificate verify failed: " : "",
                     vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "",
                     h->ep->cluster->name);
        h2up_fail(h, MG_UP_CONNECT, EPROTO, NULL);
        return;
    }
    SSL_get0_alpn_selected(h->io.ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        mg_log_error(MG_LOG_ERROR, &mg_log, 0,
                     "upstream %s did not agree to HTTP/2 (ALPN \"%.*s\"), "
                     "cluster: %s", h->name, (int)alpn_len,
                     alpn ? (const char *)alpn : "", h->ep->cluster->name);
        h2up_fail(h, MG_UP_CONNECT, EPROTO, NULL);
        return;
    }
    h2up_ready(h);
}

static void
h2up_connected(mg_h2up_t *h)
{
    h->connecting = 0;
    mg_met_inc(h->ep->met + MG_MET_E_CX_TOTAL);
    if (h->ep->tls == NULL) {
        h2up_ready(h);
        return;
    }
    if (mg_upstream_tls_start(&h->io, h->ep) != MG_OK) {
        mg_log_error(MG_LOG_ERROR, &mg_log, 0, "cannot start TLS to %s: %s",
                     h->name, mg_io_ssl_error());
        h2up_fail(h, MG_UP_CONNECT, EPROTO, NULL);
        return;
    }
    h->handshaking = 1;
    h2up_handshake(h);
}

/* Moves session output to the socket until it would block. */
static void
h2up_flush(mg_h2up_t *h)
{
    mg_ctx_t *ctx = h->ctx;
    ssize_t err;
    int rc, sock_err;

    if (h->dead || !h->ready || h->in_session) {
        return;
    }
    h->in_session = 1;
    rc = mg_h2_send(h->session, &h->io, &ctx->bufs, &h->out, &h->pending,
                    &h->npending, &err);
    sock_err = errno;
    h->in_session = 0;
    if (h->dead) {
        h2up_free(h);
        return;
    }
    if (rc == MG_AGAIN) {
        ev_io_start(ctx->loop, &h->wev);
        return;
    }
    if (rc != MG_OK) {
        if (err < 0) {
            h2up_fail(h, MG_UP_LOST, 0, nghttp2_strerror((int)err));
        } else {
            h2up_fail(h, MG_UP_LOST, sock_err, sock_err == ENOMEM
                                                   ? "out of memory"
                                                   : "reset the connection");
        }
        return;
    }
    ev_io_stop(ctx->loop, &h->wev);
    if (h->goaway && h->nstreams == 0) {
        h2up_free(h);
        return;
    }
    if (!nghttp2_session_want_read(h->session)
        && !nghttp2_session_want_write(h->session)) {
        h2up_fail(h, MG_UP_LOST, 0, "ended the session");
    }
}

/*
 * The connection failed: every stream on it learns how (never sent,
 * refused, or lost), then it is freed, later if a session call is under
 * way. |why| NULL: already logged.
 */
static void
h2up_fail(mg_h2up_t *h, unsigned how, int err, const char *why)
{
    mg_uconn_t *u;
    unsigned stream_how;

    if (h->dead) {
        return;
    }
    h->dead = 1;
    h2up_retire(h);
    if (why != NULL) {
        mg_log_error(h->nstreams > 0 ? MG_LOG_ERROR : MG_LOG_INFO, &mg_log,
                     err, "HTTP/2 connection to upstream %s: %s, cluster: %s, "
                     "streams: %u", h->name, why, h->ep->cluster->name,
                     h->nstreams);
    }
    while ((u = h->streams) != NULL) {
        if (u->submitted) {
            nghttp2_session_set_stream_user_data(h->session, u->stream_id,
                                                 NULL);
        }
        u->unconsumed = 0;
        h2up_stream_unlink(u);
        stream_how = how;
        if (!h->ready) {
            stream_how = MG_UP_CONNECT;
        } else if (h->goaway_last_id >= 0 && u->stream_id > h->goaway_last_id) {
            stream_how = MG_UP_REFUSED;
        }
        if (u->end_stream) {
            continue;   /* complete: the client still reads u->in */
        }
        if (u->owner != NULL) {
            mg_proxy__up_failed(u->owner, stream_how, err);
        }
    }
    if (!h->in_session) {
        h2up_free(h);
    }
}

static void
h2up_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    static uint8_t buf[MG_BUF_SIZE];
    mg_h2up_t *h = w->data;
    ssize_t n, rv;

    if (h->handshaking) {
        h2up_handshake(h);
        return;
    }
    for (;;) {
        n = mg_io_recv(&h->io, (char *)buf, sizeof(buf));
        if (n == 0) {
            h2up_fail(h, MG_UP_LOST, 0, "closed the connection");
            return;
        }
        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }
            h2up_fail(h, MG_UP_LOST, errno, "reset the connection");
            return;
        }
        h->last_read = ev_now(loop);
        h->in_session = 1;
        rv = nghttp2_session_mem_recv(h->session, buf, (size_t)n);
        h->in_session = 0;
        if (h->dead) {
            h2up_free(h);
            return;
        }
        if (rv < 0) {
            h2up_fail(h, MG_UP_LOST, 0, nghttp2_strerror((int)rv));
            return;
        }
    }
    h2up_schedule(h);
}

static void
h2up_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_h2up_t *h = w->data;
    int err = 0;
    socklen_t len = sizeof(err);

    if (h->connecting) {
        if (getsockopt(h->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
            err = errno;
        }
        if (err != 0) {
            mg_log_error(MG_LOG_WARN, &mg_log, err,
                         "connect() to %s failed, cluster: %s",
                         h->name, h->ep->cluster->name);
            h2up_fail(h, MG_UP_CONNECT, err, NULL);
            return;
        }
        ev_io_stop(loop, &h->wev);
        h2up_connected(h);
        return;
    }
    if (h->handshaking) {
        h2up_handshake(h);
        return;
    }
    h2up_flush(h);
}

static void
h2up_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_h2up_t *h = w->data;
    const mg_cluster_conf_t *cl = h->ep->cluster;
    ev_tstamp now = ev_now(loop);

    if (!h->ready) {
        mg_log_error(MG_LOG_WARN, &mg_log, ETIMEDOUT,
                     "connect() to %s failed, cluster: %s", h->name,
                     cl->name);
        h2up_fail(h, MG_UP_CONNECT, ETIMEDOUT, NULL);
        return;
    }
    if (h->ping_out && now - h->ping_at >= cl->keepalive_timeout) {
        h2up_fail(h, MG_UP_LOST, ETIMEDOUT, "no answer to PING");
        return;
    }
    if (h->nstreams == 0 && now - h->idle_since >= cl->idle_timeout) {
        h2up_retire(h);
        nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE, 0,
                              NGHTTP2_NO_ERROR, NULL, 0);
        h2up_flush(h);
        return;
    }
    if (cl->keepalive_interval > 0 && !h->ping_out
        && now - h->last_read >= cl->keepalive_interval) {
        if (nghttp2_submit_ping(h->session, NGHTTP2_FLAG_NONE, NULL) == 0) {
            h->ping_out = 1;
            h->ping_at = now;
            h2up_schedule(h);
        }
    }
}

static mg_h2up_t *
h2up_connect(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep, int *err)
{
    mg_upstream_pool_t *pool = &ctx->pools[ep->pool];
    nghttp2_settings_entry iv[3];
    mg_dns_peer_t peer;
    mg_h2up_t *h;
    int fd, in_progress = 0;

    if (h2up_setup() != MG_OK) {
        *err = ENOMEM;
        return NULL;
    }
    fd = mg_upstream_socket(ep, &peer, &in_progress, err);
    if (fd == -1) {
        return NULL;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL
        || nghttp2_session_client_new2(&h->session, h2up_callbacks, h,
                                       h2up_option) != 0) {
        *err = ENOMEM;
        free(h);
        close(fd);
        return NULL;
    }
    h->io.fd = fd;
    h->ctx = ctx;
    h->ep = ep;
    h->peer = peer;
    h->name = mg_dns_log_name(ep, &h->peer, h->name_buf,
                              sizeof(h->name_buf));
    h->goaway_last_id = -1;
    h->idle_since = ev_now(ctx->loop);
    ev_io_init(&h->rev, h2up_on_read, fd, EV_READ);
    ev_io_init(&h->wev, h2up_on_write, fd, EV_WRITE);
    ev_init(&h->timer, h2up_on_timer);
    h->rev.data = h->wev.data = h->timer.data = h;
    iv[0].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH;
    iv[0].value = 0;
    iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[1].value = H2UP_STREAM_WINDOW;
    iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
    iv[2].value = H2UP_MAX_HEAD_LIST;
    if (nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, 3) != 0
        || nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE,
                                                 0, H2UP_CONN_WINDOW) != 0) {
        *err = ENOMEM;
        mg_io_close(&h->io);
        nghttp2_session_del(h->session);
        free(h);
        return NULL;
    }
    ctx->conns[ep->index]++;   /* circuit breakers count connections */
    mg_met_inc(ep->met + MG_MET_E_CX_ACTIVE);
    h->anext = h2up_all;
    if (h2up_all != NULL) {
        h2up_all->aprev = h;
    }
    h2up_all = h;
    h->prev = NULL;
    h->next = pool->h2;
    if (pool->h2 != NULL) {
        pool->h2->prev = h;
    }
    pool->h2 = h;
    pool->nh2++;
    h->linked = 1;
    /* Even a connect that finished at once (loopback) is completed from
     * the loop, so that no failure frees |h| under the caller. */
    (void)in_progress;
    h->connecting = 1;
    ev_io_start(ctx->loop, &h->wev);
    ev_timer_set(&h->timer, ep->cluster->connect_timeout, 0.);
    ev_timer_start(ctx->loop, &h->timer);
    return h;
}

/* ------------------------------------------------------------------ */
/* Streams                                                             */

/* Streams |h| may carry. Before the peer's SETTINGS, what its endpoint
 * allowed last time, else 100 (RFC 9113 §6.5.2 recommends no less): a
 * stream past the real limit would only be refused. */
static uint32_t
h2up_room(const mg_h2up_t *h)
{
    uint32_t max;

    if (h->settings_seen) {
        max = nghttp2_session_get_remote_settings(
            h->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    } else {
        max = h->ctx->pools[h->ep->pool].h2_max_streams;
        max = max ? max : 100;
    }
    return mg_min(max, H2UP_STREAMS_CAP);
}

/* |h| goes to an address its host name no longer resolves to: it takes
 * no new stream and goes once its last one is done, so that traffic
 * follows the new answer. As for a drain. */
static void
h2up_retire_moved(mg_h2up_t *h)
{
    mg_log_error(MG_LOG_INFO, &mg_log, 0, "HTTP/2 connection to upstream "
                 "%s: its host name moved, closing once idle, cluster: %s, "
                 "streams: %u", h->name, h->ep->cluster->name, h->nstreams);
    h2up_retire(h);
    if (h->nstreams > 0 || h->in_session || h->dead) {
        return;
    }
    if (h->ready) {
        /* Freed once the GOAWAY is written. */
        nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE, 0,
                              NGHTTP2_NO_ERROR, NULL, 0);
        h2up_flush(h);
    } else {
        h2up_free(h);
    }
}

mg_uconn_t *
mg_h2up_open(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep, void *owner,
             int fresh, int *err)
{
    mg_h2up_t *h, *next;
    mg_uconn_t *u;

    for (h = ctx->pools[ep->pool].h2; h != NULL; h = next) {
        next = h->next;
        if (h->goaway || h->dead) {
            continue;
        }
        if (!mg_dns_peer_valid(h->ep, &h->peer)) {
            h2up_retire_moved(h);
            continue;
        }
        if ((!fresh || h->served == 0) && h->nstreams < h2up_room(h)) {
            break;
        }
    }
    if (h == NULL) {
        if (ctx->draining) {
            *err = ECONNREFUSED;
            return NULL;
        }
        h = h2up_connect(ctx, ep, err);
        if (h == NULL) {
            if (*err == 0) {
                *err = ECONNREFUSED;
            }
            return NULL;
        }
    }
    u = calloc(1, sizeof(*u));
    if (u == NULL) {
        *err = ENOMEM;
        return NULL;
    }
    u->io.fd = -1;
    u->ctx = ctx;
    u->ep = ep;
    u->peer = h->peer;
    u->owner = owner;
    u->is_h2 = 1;
    u->reused = h->served > 0;
    ev_init(&u->timer, NULL);
    u->h2 = h;
    u->next = h->streams;
    if (h->streams != NULL) {
        h->streams->prev = u;
    }
    h->streams = u;
    h->nstreams++;
    h->served++;
    return u;
}

static void
h2up_nv(nghttp2_nv *nv, const char *name, size_t namelen, const char *value,
        size_t valuelen)
{
    nv->name = (uint8_t *)name;
    nv->namelen = namelen;
    nv->value = (uint8_t *)value;
    nv->valuelen = valuelen;
    nv->flags = NGHTTP2_NV_FLAG_NONE;
}

/* Whether a field of our HTTP/1.1 head has no place in HTTP/2
 * (RFC 9113 §8.2.2), or is sent as a pseudo-header instead. */
static int
h2up_skip_field(const char *name, size_t len)
{
    static const char *const skip[] = {
        "connection", "keep-alive", "proxy-connection", "transfer-encoding",
        "upgrade", "host"
    };
    size_t i;

    for (i = 0; i < mg_countof(skip); i++) {
        if (strlen(skip[i]) == len && memcmp(skip[i], name, len) == 0) {
            return 1;
        }
    }
    return 0;
}

int
mg_h2up_submit(mg_uconn_t *u, mg_buf_t *head, int has_body)
{
    mg_h2up_t *h = u->h2;
    nghttp2_nv nv[H2UP_MAX_NV];
    nghttp2_data_provider prd;
    char *p = head->pos, *end = head->last, *sp, *eol, *colon, *v;
    size_t nvlen = 0, authority = 0, k;
    int32_t id;

    if (h == NULL) {
        return MG_ERROR;
    }
    /* The request line: METHOD SP target SP HTTP/1.1 CRLF. */
    eol = memchr(p, '\r', (size_t)(end - p));
    sp = memchr(p, ' ', (size_t)(end - p));
    if (eol == NULL || sp == NULL || sp > eol) {
        return MG_ERROR;
    }
    h2up_nv(&nv[nvlen++], ":method", 7, p, (size_t)(sp - p));
    u->head_req = sp - p == 4 && memcmp(p, "HEAD", 4) == 0;
    h2up_nv(&nv[nvlen++], ":scheme", 7, u->ep->tls ? "https" : "http",
            u->ep->tls ? 5 : 4);
    authority = nvlen++;
    h2up_nv(&nv[authority], ":authority", 10, "", 0);
    v = sp + 1;
    sp = memchr(v, ' ', (size_t)(eol - v));
    if (sp == NULL) {
        return MG_ERROR;
    }
    h2up_nv(&nv[nvlen++], ":path", 5, v, (size_t)(sp - v));
    for (p = eol + 2; p < end && *p != '\r'; p = eol + 2) {
        eol = memchr(p, '\r', (size_t)(end - p));
        colon = memchr(p, ':', (size_t)(end - p));
        if (eol == NULL || colon == NULL || colon > eol) {
            return MG_ERROR;
        }
        /* HTTP/2 field names are lower case; the head is ours to fold. */
        for (k = 0; k < (size_t)(colon - p); k++) {
            p[k] = mg_tolower(p[k]);
        }
        v = colon + 1;
        while (v < eol && *v == ' ') {
            v++;
        }
        if (colon - p == 4 && memcmp(p, "host", 4) == 0) {
            h2up_nv(&nv[authority], ":authority", 10, v, (size_t)(eol - v));
            continue;
        }
        if (h2up_skip_field(p, (size_t)(colon - p))) {
            continue;
        }
        if (nvlen == H2UP_MAX_NV) {
            return MG_ERROR;
        }
        h2up_nv(&nv[nvlen++], p, (size_t)(colon - p), v, (size_t)(eol - v));
    }
    prd.source.ptr = u;
    prd.read_callback = h2up_read_body;
    id = nghttp2_submit_request(h->session, NULL, nv, nvlen,
                                has_body ? &prd : NULL, u);
    if (id < 0) {
        /* Out of stream ids, most likely: the next request gets a new
         * connection. */
        h2up_retire(h);
        return MG_ERROR;
    }
    u->stream_id = id;
    u->submitted = 1;
    h2up_schedule(h);
    return MG_OK;
}

void
mg_h2up_resume_send(mg_uconn_t *u)
{
    if (u->h2 == NULL || !u->submitted) {
        return;
    }
    (void)nghttp2_session_resume_data(u->h2->session, u->stream_id);
    h2up_schedule(u->h2);
}

void
mg_h2up_read_again(mg_uconn_t *u)
{
    if (u->in != NULL && mg_buf_pending(u->in) == 0) {
        u->in->pos = u->in->last = u->in->start;
    }
    if (u->h2 == NULL || u->unconsumed == 0) {
        return;
    }
    (void)nghttp2_session_consume(u->h2->session, u->stream_id, u->unconsumed);
    u->unconsumed = 0;
    h2up_schedule(u->h2);
}

void
mg_h2up_stream_close(mg_uconn_t *u)
{
    mg_h2up_t *h = u->h2;
    nghttp2_session *s;

    ev_timer_stop(u->ctx->loop, &u->timer);
    if (h != NULL) {
        s = h->session;
        h2up_stream_unlink(u);
        if (u->submitted) {
            nghttp2_session_set_stream_user_data(s, u->stream_id, NULL);
            if (u->unconsumed > 0) {
                (void)nghttp2_session_consume(s, u->stream_id, u->unconsumed);
            }
            if (!u->end_stream
                || nghttp2_session_get_stream_local_close(s, u->stream_id)
                       == 0) {
                nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, u->stream_id,
                                          NGHTTP2_CANCEL);
            }
        }
        if (h->ctx->draining && !h->goaway) {
            h2up_retire(h);
        }
        h2up_schedule(h);
    }
    mg_buf_put(&u->ctx->bufs, u->in);
    mg_buf_put(&u->ctx->bufs, u->trailers);
    free(u);
}

void
mg_h2up_drain(mg_ctx_t *ctx)
{
    unsigned i;

    for (i = 0; i < ctx->snap->npools; i++) {
        mg_h2up_retire_pool(ctx, i);
    }
}

void
mg_h2up_retire_pool(mg_ctx_t *ctx, unsigned pool)
{
    mg_h2up_t *h;

    while ((h = ctx->pools[pool].h2) != NULL) {
        h2up_retire(h);
        if (h->nstreams > 0) {
            continue;   /* closes after its last stream */
        }
        if (h->ready && !h->dead) {
            /* Freed once the GOAWAY is written. */
            nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE, 0,
                                  NGHTTP2_NO_ERROR, NULL, 0);
            h2up_flush(h);
        } else if (!h->dead) {
            h2up_free(h);
        }
    }
}

void
mg_h2up_close_all(mg_ctx_t *ctx)
{
    mg_h2up_t *h;

    while ((h = h2up_all) != NULL) {
        while (h->streams != NULL) {
            /* Orphaned: their owners are gone by now. */
            h->streams->owner = NULL;
            h2up_stream_unlink(h->streams);
        }
        h2up_free(h);
    }
    if (ev_is_active(&h2up_prepare)) {
        ev_prepare_stop(ctx->loop, &h2up_prepare);
    }
}
