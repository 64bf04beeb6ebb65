#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "mg_dns.h"
#include "mg_health.h"
#include "mg_io.h"
#include "mg_log.h"
#include "mg_metrics.h"
#include "mg_pool.h"
#include "mg_shm.h"
#include "mg_snapshot.h"
#include "mg_upstream.h"

/* Response bytes a check reads before it gives up: the verdict needs only
 * the status, so anything this long is not a health endpoint. */
#define HEALTH_READ_MAX   65536
#define HEALTH_STATUS_LEN 13      /* "HTTP/1.1 200 " or "HTTP/1.1 200\r" */
#define HEALTH_WHY_LEN    192
#define HEALTH_DNS_WAIT   0.1     /* for a host name's first answer */
#define HEALTH_USER_AGENT "meshgate-health-check"
/* One request per connection: the check reads the status and closes. */
#define HEALTH_H1_REQUEST                                                    \
    "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: " HEALTH_USER_AGENT          \
    "\r\nConnection: close\r\n\r\n"

enum {
    HEALTH_IDLE = 0,              /* waiting for the next check */
    HEALTH_CONNECTING,
    HEALTH_HANDSHAKE,             /* TLS */
    HEALTH_EXCHANGE               /* request out, response status in */
};

typedef struct health_target_s {
    mg_health_t *h;
    const mg_endpoint_conf_t *ep; /* the first endpoint on this slot */
    const mg_health_check_conf_t *hc;
    const char *host;             /* Host / :authority */
    char *req;                    /* the HTTP/1.1 request, built once */
    size_t req_len;
    size_t sent;                  /* bytes of |req| written */
    mg_io_t io;                   /* fd -1 between checks */
    mg_dns_peer_t peer;           /* where this check went: an endpoint by
                                   * host name is checked at each of its
                                   * addresses in turn */
    ev_io w;
    ev_timer timer;               /* the next check, then its timeout */
    ev_tstamp next;               /* when the next check starts */
    unsigned state;               /* HEALTH_* */
    unsigned health;              /* the verdict without shared memory */
    unsigned passes;              /* consecutive, capped at the threshold */
    unsigned failures;

    /* HTTP/1.1: the status line is parsed from its first bytes; the head
     * of an interim (1xx) response is skipped up to its empty line. */
    size_t nread;                 /* response bytes of this check */
    char line[HEALTH_STATUS_LEN];
    unsigned nline;
    unsigned skip_match;          /* bytes of "\r\n\r\n" seen while skipping */
    unsigned skipping:1;

    /* HTTP/2 */
    nghttp2_session *session;
    const uint8_t *pending;       /* session output not written yet */
    size_t npending;
    int32_t stream_id;
    unsigned stream_closed:1;     /* closed before a final status */
    uint32_t stream_error;

    unsigned status;              /* final response status, 0 = none yet */
    char why[HEALTH_WHY_LEN];     /* why the check failed */
} health_target_t;

struct mg_health_s {
    struct ev_loop *loop;
    mg_pool_t *pool;              /* the targets and their requests */
    health_target_t *targets;
    unsigned ntargets;
    uint64_t rand;                /* xorshift state for the jitter */
    nghttp2_session_callbacks *h2_callbacks;
};

static void health_watch(health_target_t *t);

/* Its entry in the health table, or MG_SHM_SLOTS for none. */
static unsigned
health_slot(const mg_endpoint_conf_t *ep)
{
    return ep->health_check != NULL ? ep->health_slot : MG_SHM_SLOTS;
}

unsigned
mg_health_count(const mg_snapshot_t *snap)
{
    uint64_t seen[MG_SHM_SLOTS / 64];
    mg_endpoint_walk_t w = { 0, 0, 0 };
    unsigned n = 0;

    memset(seen, 0, sizeof(seen));
    while (mg_snapshot_next_slot(snap, &w, seen, MG_SHM_SLOTS,
                                 health_slot) != NULL) {
        n++;
    }
    return n;
}

static double
health_rand01(mg_health_t *h)
{
    uint64_t x = h->rand;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    h->rand = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static const char *
health_name(int health)
{
    return health == MG_HEALTH_HEALTHY ? "healthy" : "unhealthy";
}

static unsigned
health_current(const health_target_t *t)
{
    if (mg_shm == NULL) {
        return t->health;
    }
    /* The shared value, not a copy: another control process (the one of
     * the generation before, on its way out) may have moved it. */
    return atomic_load_explicit(&mg_shm->slots[t->ep->health_slot].health,
                                memory_order_acquire);
}

/* Ends the connection of the check in progress, if any. */
static void
health_close(health_target_t *t)
{
    ev_io_stop(t->h->loop, &t->w);
    if (t->session != NULL) {
        nghttp2_session_del(t->session);
        t->session = NULL;
    }
    mg_io_close(&t->io);
    t->state = HEALTH_IDLE;
}

/* One check is over: counts it, records a verdict that reached its
 * threshold, and schedules the next check. */
static void
health_done(health_target_t *t, int ok)
{
    mg_health_t *h = t->h;
    const mg_endpoint_conf_t *ep = t->ep;
    const mg_health_check_conf_t *hc = t->hc;
    char name[MG_DNS_LOG_NAME_LEN];
    const char *ep_name = mg_dns_log_name(ep, &t->peer, name, sizeof(name));
    unsigned now_is = 0;
    ev_tstamp delay;

    health_close(t);
    if (ok) {
        t->failures = 0;
        t->passes = mg_min(t->passes + 1, hc->healthy_threshold);
        if (t->passes >= hc->healthy_threshold
            && health_current(t) != MG_HEALTH_HEALTHY) {
            now_is = MG_HEALTH_HEALTHY;
        }
    } else {
        t->passes = 0;
        t->failures = mg_min(t->failures + 1, hc->unhealthy_threshold);
        if (t->failures >= hc->unhealthy_threshold
            && health_current(t) != MG_HEALTH_UNHEALTHY) {
            now_is = MG_HEALTH_UNHEALTHY;
        }
    }
    if (now_is != 0) {
        t->health = now_is;
        mg_shm_set_health(ep->health_slot, now_is);
        mg_met_inc(ep->met_health + (now_is == MG_HEALTH_HEALTHY
                                     ? MG_MET_H_HEALTHY : MG_MET_H_UNHEALTHY));
        if (ep->region != NULL) {
            mg_log_error(MG_LOG_NOTICE, &mg_log, 0,
                         "health check: region %s front proxy %s is now "
                         "%s%s%s%s", ep->region->name, ep_name,
                         health_name((int)now_is), ok ? "" : " (",
                         ok ? "" : t->why, ok ? "" : ")");
        } else {
            mg_log_error(MG_LOG_NOTICE, &mg_log, 0,
                         "health check: endpoint %s of cluster %s is now "
                         "%s%s%s%s", ep_name, ep->cluster->name,
                         health_name((int)now_is), ok ? "" : " (",
                         ok ? "" : t->why, ok ? "" : ")");
        }
    } else if (!ok) {
        mg_log_error(MG_LOG_DEBUG, &mg_log, 0,
                     "health check of %s failed: %s", ep_name, t->why);
    }
    ev_timer_stop(h->loop, &t->timer);
    delay = t->next - ev_now(h->loop);
    ev_timer_set(&t->timer, delay > 0 ? delay : 0., 0.);
    ev_timer_start(h->loop, &t->timer);
}

static void health_fail(health_target_t *t, int err, const char *fmt, ...)
    MG_PRINTF(3, 4);

/* A failed check, with the reason for the log (plus strerror(|err|)). */
static void
health_fail(health_target_t *t, int err, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(t->why, sizeof(t->why), fmt, ap);
    va_end(ap);
    if (err != 0 && n >= 0 && (size_t)n < sizeof(t->why)) {
        snprintf(t->why + n, sizeof(t->why) - (size_t)n, ": %s",
                 strerror(err));
    }
    health_done(t, 0);
}

static void
health_status(health_target_t *t, unsigned status)
{
    const uint64_t *ok = t->hc->statuses;

    /* HTTP/1.x allows any three digits; the set only holds 100..599. */
    if (status < 64 * mg_countof(t->hc->statuses)
        && (ok[status / 64] & ((uint64_t)1 << (status % 64)))) {
        health_done(t, 1);
        return;
    }
    health_fail(t, 0, "status %u", status);
}

/* ------------------------------------------------------------------ */
/* HTTP/1.1                                                            */

/* Feeds response bytes to the status-line parser. Returns the final
 * status, 0 when more bytes are needed, or -1 when it is not HTTP/1.x. */
static int
health_h1_parse(health_target_t *t, const char *buf, size_t n)
{
    const char *l = t->line;
    size_t i;
    int status;
    char c;

    for (i = 0; i < n; i++) {
        c = buf[i];
        if (t->skipping) {
            if (c == "\r\n\r\n"[t->skip_match]) {
                t->skip_match++;
            } else {
                t->skip_match = c == '\r';
            }
            if (t->skip_match == 4) {
                t->skipping = 0;
                t->nline = 0;
            }
            continue;
        }
        t->line[t->nline++] = c;
        if (t->nline < HEALTH_STATUS_LEN) {
            continue;
        }
        /* RFC 9112 §4: HTTP-version SP 3DIGIT SP; some servers end the
         * line right after the code. */
        if (memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1')
            || l[8] != ' ' || l[9] < '1' || l[9] > '9' || l[10] < '0'
            || l[10] > '9' || l[11] < '0' || l[11] > '9'
            || (l[12] != ' ' && l[12] != '\r' && l[12] != '\n')) {
            return -1;
        }
        status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
        if (status >= 200 || status == 101) {
            return status;
        }
        /* An interim response: the final one follows its head. */
        t->skipping = 1;
        t->skip_match = l[12] == '\r';
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* HTTP/2                                                              */

static int
health_h2_on_header(nghttp2_session *session, const nghttp2_frame *frame,
                    const uint8_t *name, size_t namelen,
                    const uint8_t *value, size_t valuelen, uint8_t flags,
                    void *user_data)
{
    health_target_t *t = user_data;
    unsigned status = 0;
    size_t i;

    if (frame->hd.type != NGHTTP2_HEADERS
        || frame->hd.stream_id != t->stream_id || t->status != 0
        || namelen != 7 || memcmp(name, ":status", 7) != 0) {
        return 0;
    }
    if (valuelen != 3) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    for (i = 0; i < 3; i++) {
        if (value[i] < '0' || value[i] > '9') {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        status = status * 10 + (unsigned)(value[i] - '0');
    }
    /* 1xx heads are interim: the final status comes later. */
    if (status >= 200) {
        t->status = status;
    }
    return 0;
}

static int
health_h2_on_stream_close(nghttp2_session *session, int32_t stream_id,
                          uint32_t error_code, void *user_data)
{
    health_target_t *t = user_data;

    if (stream_id == t->stream_id && t->status == 0) {
        t->stream_closed = 1;
        t->stream_error = error_code;
    }
    return 0;
}

static int
health_h2_setup(mg_health_t *h)
{
    nghttp2_session_callbacks *cb;

    if (nghttp2_session_callbacks_new(&cb) != 0) {
        return MG_ERROR;
    }
    nghttp2_session_callbacks_set_on_header_callback(cb, health_h2_on_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, health_h2_on_stream_close);
    h->h2_callbacks = cb;
    return MG_OK;
}

/* The session and its one stream: GET path. */
static int
health_h2_start(health_target_t *t)
{
    const char *scheme = t->ep->tls != NULL ? "https" : "http";
    nghttp2_settings_entry iv[1];
    nghttp2_nv nv[5];

#define HEALTH_NV(i, n, v)                                                   \
    nv[i].name = (uint8_t *)(n);                                             \
    nv[i].namelen = strlen(n);                                               \
    nv[i].value = (uint8_t *)(v);                                            \
    nv[i].valuelen = strlen(v);                                              \
    nv[i].flags = NGHTTP2_NV_FLAG_NONE

    HEALTH_NV(0, ":method", "GET");
    HEALTH_NV(1, ":scheme", scheme);
    HEALTH_NV(2, ":authority", t->host);
    HEALTH_NV(3, ":path", t->hc->path);
    HEALTH_NV(4, "user-agent", HEALTH_USER_AGENT);
#undef HEALTH_NV

    if (nghttp2_session_client_new(&t->session, t->h->h2_callbacks, t) != 0) {
        t->session = NULL;
        return MG_ERROR;
    }
    iv[0].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH;
    iv[0].value = 0;
    if (nghttp2_submit_settings(t->session, NGHTTP2_FLAG_NONE, iv, 1) != 0) {
        return MG_ERROR;
    }
    t->stream_id = nghttp2_submit_request(t->session, NULL, nv, 5, NULL, t);
    return t->stream_id < 0 ? MG_ERROR : MG_OK;
}

/* ------------------------------------------------------------------ */
/* The exchange                                                        */

/* Writes what the request still has to send, until the socket is full.
 * MG_OK, or MG_DONE when the check failed. */
static int
health_send(health_target_t *t)
{
    struct iovec iov;
    ssize_t n, got;

    for (;;) {
        if (t->session != NULL) {
            if (t->npending == 0) {
                got = nghttp2_session_mem_send(t->session, &t->pending);
                if (got < 0) {
                    health_fail(t, 0, "HTTP/2: %s",
                                nghttp2_strerror((int)got));
                    return MG_DONE;
                }
                if (got == 0) {
                    return MG_OK;
                }
                t->npending = (size_t)got;
            }
            iov.iov_base = (void *)t->pending;
            iov.iov_len = t->npending;
        } else {
            if (t->sent == t->req_len) {
                return MG_OK;
            }
            iov.iov_base = t->req + t->sent;
            iov.iov_len = t->req_len - t->sent;
        }
        n = mg_io_sendv(&t->io, &iov, 1);
        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR) {
                return MG_OK;
            }
            health_fail(t, errno, "write failed");
            return MG_DONE;
        }
        if (t->session != NULL) {
            t->pending += n;
            t->npending -= (size_t)n;
        } else {
            t->sent += (size_t)n;
        }
    }
}

/* Reads the response until the socket is empty or the status is known.
 * MG_OK (wait for more), or MG_DONE when the check is over. */
static int
health_recv(health_target_t *t)
{
    char buf[4096];
    ssize_t n, rv;
    int status;

    for (;;) {
        n = mg_io_recv(&t->io, buf, sizeof(buf));
        if (n == 0) {
            health_fail(t, 0, "connection closed before the response");
            return MG_DONE;
        }
        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR) {
                return MG_OK;
            }
            health_fail(t, errno, "read failed");
            return MG_DONE;
        }
        t->nread += (size_t)n;
        if (t->session == NULL) {
            status = health_h1_parse(t, buf, (size_t)n);
            if (status < 0) {
                health_fail(t, 0, "not an HTTP/1.x response");
                return MG_DONE;
            }
            if (status > 0) {
                health_status(t, (unsigned)status);
                return MG_DONE;
            }
        } else {
            rv = nghttp2_session_mem_recv(t->session, (const uint8_t *)buf,
                                          (size_t)n);
            if (rv < 0) {
                health_fail(t, 0, "HTTP/2: %s", nghttp2_strerror((int)rv));
                return MG_DONE;
            }
            if (t->status != 0) {
                health_status(t, t->status);
                return MG_DONE;
            }
            if (t->stream_closed) {
                health_fail(t, 0, "HTTP/2 stream closed without a response "
                            "(%s)", nghttp2_http2_strerror(t->stream_error));
                return MG_DONE;
            }
            if (!nghttp2_session_want_read(t->session)
                && !nghttp2_session_want_write(t->session)) {
                health_fail(t, 0, "HTTP/2 session ended before the "
                            "response");
                return MG_DONE;
            }
        }
        if (t->nread > HEALTH_READ_MAX) {
            health_fail(t, 0, "no status in the first %d bytes",
                        HEALTH_READ_MAX);
            return MG_DONE;
        }
    }
}

static void
health_exchange(health_target_t *t)
{
    unsigned want_write;

    /* mg_io leaves want_write set after a blocked call: start clean so a
     * writable socket does not wake us while only reading is left. */
    t->io.want_write = 0;
    if (health_send(t) != MG_OK) {
        return;
    }
    want_write = t->io.want_write;
    t->io.want_write = 0;
    if (health_recv(t) != MG_OK) {
        return;
    }
    /* What the session answers to the peer's frames (SETTINGS ACK). */
    if (t->session != NULL) {
        want_write |= t->io.want_write;
        t->io.want_write = 0;
        if (health_send(t) != MG_OK) {
            return;
        }
    }
    t->io.want_write |= want_write;
    health_watch(t);
}

/* Waits for whatever the check needs next. */
static void
health_watch(health_target_t *t)
{
    int events = EV_READ;

    if (t->state == HEALTH_CONNECTING) {
        events = EV_WRITE;
    } else if (t->state == HEALTH_HANDSHAKE) {
        events = t->io.want_write ? EV_WRITE : EV_READ;
    } else if (t->io.want_write || t->npending > 0
               || (t->session == NULL && t->sent < t->req_len)) {
        events |= EV_WRITE;
    }
    if (ev_is_active(&t->w) && (t->w.events & (EV_READ | EV_WRITE))
                                   == events) {
        return;
    }
    ev_io_stop(t->h->loop, &t->w);
    ev_io_set(&t->w, t->io.fd, events);
    ev_io_start(t->h->loop, &t->w);
}

/* Connected (and TLS done): a TCP check passes, the others ask. */
static void
health_ready(health_target_t *t)
{
    if (t->hc->type == MG_HC_TCP) {
        health_done(t, 1);
        return;
    }
    t->state = HEALTH_EXCHANGE;
    if ((t->ep->protocol == MG_PROTO_H2 || t->ep->protocol == MG_PROTO_H2C)
        && health_h2_start(t) != MG_OK) {
        health_fail(t, 0, "cannot start an HTTP/2 session");
        return;
    }
    health_exchange(t);
}

static void
health_handshake(health_target_t *t)
{
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    const char *err;
    long vr;
    int rc = mg_io_handshake(&t->io);

    if (rc == MG_AGAIN) {
        health_watch(t);
        return;
    }
    if (rc != MG_OK) {
        vr = SSL_get_verify_result(t->io.ssl);
        err = mg_io_ssl_error();
        health_fail(t, 0, "TLS handshake failed: %s%s%s",
                    err[0] ? err : "connection closed",
                    vr != X509_V_OK ? ": certificate verify failed: " : "",
                    vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
        return;
    }
    if (t->ep->protocol == MG_PROTO_H2) {
        SSL_get0_alpn_selected(t->io.ssl, &alpn, &alpn_len);
        if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
            health_fail(t, 0, "no HTTP/2 agreed in TLS (ALPN \"%.*s\")",
                        (int)alpn_len, alpn ? (const char *)alpn : "");
            return;
        }
    }
    health_ready(t);
}

static void
health_connected(health_target_t *t)
{
    if (t->ep->tls == NULL) {
        health_ready(t);
        return;
    }
    t->state = HEALTH_HANDSHAKE;
    if (mg_upstream_tls_start(&t->io, t->ep) != MG_OK) {
        health_fail(t, 0, "cannot start TLS: %s", mg_io_ssl_error());
        return;
    }
    health_handshake(t);
}

static void
health_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    health_target_t *t = w->data;
    socklen_t len = sizeof(int);
    int err = 0;

    switch (t->state) {
    case HEALTH_CONNECTING:
        if (getsockopt(t->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
            err = errno;
        }
        if (err == ECONNREFUSED) {
            health_fail(t, 0, "connect refused");
        } else if (err != 0) {
            health_fail(t, err, "connect failed");
        } else {
            health_connected(t);
        }
        break;
    case HEALTH_HANDSHAKE:
        health_handshake(t);
        break;
    case HEALTH_EXCHANGE:
        health_exchange(t);
        break;
    }
}

static void
health_check_start(health_target_t *t)
{
    mg_health_t *h = t->h;
    const mg_health_check_conf_t *hc = t->hc;
    ev_tstamp now = ev_now(h->loop);
    int fd, in_progress, err = 0;

    /* Checks start every interval whatever each one took, which the
     * timeout (<= interval) bounds. */
    t->next = now + hc->interval + hc->jitter * health_rand01(h);
    t->sent = 0;
    t->nread = 0;
    t->nline = 0;
    t->skipping = 0;
    t->skip_match = 0;
    t->pending = NULL;
    t->npending = 0;
    t->stream_id = -1;
    t->stream_closed = 0;
    t->status = 0;
    t->why[0] = '\0';
    t->io.want_write = 0;
    t->io.handshake_done = 0;

    ev_timer_stop(h->loop, &t->timer);
    ev_timer_set(&t->timer, hc->timeout, 0.);
    ev_timer_start(h->loop, &t->timer);

    fd = mg_upstream_socket(t->ep, &t->peer, &in_progress, &err);
    if (fd == -1) {
        if (err == EDESTADDRREQ && mg_dns_pending(t->ep)) {
            /* Its name has not been looked up yet (the control process
             * just started): no verdict, ask again shortly. */
            ev_timer_stop(h->loop, &t->timer);
            ev_timer_set(&t->timer, mg_min(hc->interval, HEALTH_DNS_WAIT),
                         0.);
            ev_timer_start(h->loop, &t->timer);
            return;
        }
        if (err == EDESTADDRREQ && t->ep->host != NULL) {
            health_fail(t, 0, "no address known for %s yet", t->ep->host);
        } else if (err == ECONNREFUSED) {
            health_fail(t, 0, "connect refused");
        } else {
            health_fail(t, err, "connect failed");
        }
        return;
    }
    t->io.fd = fd;
    if (in_progress) {
        t->state = HEALTH_CONNECTING;
        health_watch(t);
        return;
    }
    health_connected(t);
}

static void
health_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    health_target_t *t = w->data;

    switch (t->state) {
    case HEALTH_IDLE:
        health_check_start(t);
        break;
    case HEALTH_CONNECTING:
        health_fail(t, 0, "connect timed out");
        break;
    case HEALTH_HANDSHAKE:
        health_fail(t, 0, "TLS handshake timed out");
        break;
    default:
        health_fail(t, 0, "no response within %.3g s", t->hc->timeout);
        break;
    }
}

/* Sets |t| up for |ep| once. The Host of its checks is the configured
 * one, else the cluster's name (for a region's front proxy, that of the
 * first cluster reaching it); the HTTP/1.1 request is built here. */
static int
health_target_init(mg_health_t *h, health_target_t *t,
                   const mg_endpoint_conf_t *ep)
{
    const mg_health_check_conf_t *hc = ep->health_check;
    int n;

    t->h = h;
    t->ep = ep;
    t->hc = hc;
    t->host = hc->host != NULL ? hc->host : ep->cluster->name;
    t->io.fd = -1;
    t->io.ssl = NULL;
    t->health = MG_HEALTH_UNKNOWN;
    if (hc->type == MG_HC_HTTP && ep->protocol == MG_PROTO_HTTP1) {
        n = snprintf(NULL, 0, HEALTH_H1_REQUEST, hc->path, t->host);
        t->req = mg_palloc(h->pool, (size_t)n + 1);
        if (t->req == NULL) {
            return MG_ERROR;
        }
        t->req_len = (size_t)snprintf(t->req, (size_t)n + 1,
                                      HEALTH_H1_REQUEST, hc->path, t->host);
    }
    ev_init(&t->w, health_on_io);
    ev_init(&t->timer, health_on_timer);
    t->w.data = t->timer.data = t;
    return MG_OK;
}

mg_health_t *
mg_health_start(struct ev_loop *loop, const mg_snapshot_t *snap)
{
    uint64_t seen[MG_SHM_SLOTS / 64];
    const mg_endpoint_conf_t *ep;
    health_target_t *t;
    mg_health_t *h;
    mg_pool_t *pool;
    mg_endpoint_walk_t w = { 0, 0, 0 };
    unsigned n = mg_health_count(snap), i;

    pool = mg_pool_create(16384);
    if (pool == NULL) {
        return NULL;
    }
    h = mg_pcalloc(pool, sizeof(*h));
    if (h == NULL) {
        mg_pool_destroy(pool);
        return NULL;
    }
    h->pool = pool;
    h->loop = loop;
    h->rand = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid()
              ^ 0x9E3779B97F4A7C15ULL;
    h->targets = mg_pcalloc(pool, (n ? n : 1) * sizeof(*h->targets));
    if (h->targets == NULL || health_h2_setup(h) != MG_OK) {
        mg_pool_destroy(pool);
        return NULL;
    }
    memset(seen, 0, sizeof(seen));
    while (h->ntargets < n
           && (ep = mg_snapshot_next_slot(snap, &w, seen, MG_SHM_SLOTS,
                                             health_slot)) != NULL) {
        t = &h->targets[h->ntargets];
        if (health_target_init(h, t, ep) != MG_OK) {
            mg_health_stop(h);
            return NULL;
        }
        h->ntargets++;
    }
    for (i = 0; i < h->ntargets; i++) {
        t = &h->targets[i];
        ev_timer_set(&t->timer, t->hc->jitter * health_rand01(h), 0.);
        ev_timer_start(loop, &t->timer);
    }
    return h;
}

void
mg_health_stop(mg_health_t *h)
{
    unsigned i;

    for (i = 0; i < h->ntargets; i++) {
        health_close(&h->targets[i]);
        ev_timer_stop(h->loop, &h->targets[i].timer);
    }
    if (h->h2_callbacks != NULL) {
        nghttp2_session_callbacks_del(h->h2_callbacks);
    }
    mg_pool_destroy(h->pool);
}
