#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "mg_access_log.h"
#include "mg_eds.h"
#include "mg_metrics.h"
#include "mg_admin.h"
#include "mg_buf.h"
#include "mg_dns.h"
#include "mg_h1.h"
#include "mg_gzip.h"
#include "mg_h2.h"
#include "mg_h2up.h"
#include "mg_io.h"
#include "mg_lb.h"
#include "mg_shm.h"
#include "mg_log.h"
#include "mg_proxy.h"
#include "mg_router.h"
#include "mg_snapshot.h"
#include "mg_trace.h"
#include "mg_upstream.h"

static void client_on_read(struct ev_loop *loop, ev_io *w, int revents);
static void client_on_write(struct ev_loop *loop, ev_io *w, int revents);
static void client_on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void upstream_on_read(struct ev_loop *loop, ev_io *w, int revents);
static void upstream_on_write(struct ev_loop *loop, ev_io *w, int revents);
static void upstream_on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void client_send_direct(mg_client_t *c);
static void proxy_connect(mg_client_t *c);
static void proxy_connect_failed(mg_client_t *c, int err);
static void client_read_head(mg_client_t *c);
static void upstream_handshake(mg_client_t *c);
static int proxy_mark_cross_region(mg_client_t *c,
                                   const mg_endpoint_conf_t *ep);
static void proxy_retry(mg_client_t *c, const char *why);
static double proxy_response_timeout(const mg_client_t *c,
                                     const mg_endpoint_conf_t *ep);
static double proxy_try_timeout(const mg_client_t *c,
                                const mg_endpoint_conf_t *ep);
static void proxy_on_retry_timer(struct ev_loop *loop, ev_timer *w,
                                 int revents);
static void proxy_attach_h2(mg_client_t *c, mg_uconn_t *u,
                            const mg_endpoint_conf_t *ep);
static void proxy_attach(mg_client_t *c, mg_uconn_t *u,
                         const mg_endpoint_conf_t *ep);
static void proxy_send_upstream(mg_client_t *c);
static void proxy_send_upstream_h1(mg_client_t *c);
static void proxy_send_upstream_stream(mg_client_t *c);
static void proxy_upstream_lost(mg_client_t *c, int err, const char *what);
static void proxy_send_client(mg_client_t *c);
static void proxy_send_client_gzip(mg_client_t *c);
static void proxy_finish(mg_client_t *c);
static void proxy_request_end(mg_client_t *c);
static void proxy_count_request(mg_client_t *c);
static void proxy_upstream_parse(mg_client_t *c);
static int proxy_has_token(mg_str_t v, const char *token);
static void proxy_fail(mg_client_t *c, unsigned status, const char *reason);
static void tunnel_pump(mg_client_t *c);

const char *
mg_proxy__reason(unsigned status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ------------------------------------------------------------------ */
/* Connection lifecycle                                                */

static void
client_timer_set(mg_client_t *c, double seconds)
{
    if (c->is_stream) {
        return;   /* the connection's timer covers its streams */
    }
    ev_timer_stop(c->ctx->loop, &c->timer);
    if (seconds > 0) {
        ev_timer_set(&c->timer, seconds, 0.);
        ev_timer_start(c->ctx->loop, &c->timer);
    }
}

/* Whether the request waits for its connection to be made: counted for
 * the max_pending circuit breaker. */
static void
client_set_pending(mg_client_t *c, int pending)
{
    if (c->pending == (unsigned)pending || c->ep == NULL) {
        return;
    }
    c->pending = pending ? 1 : 0;
    if (pending) {
        c->ctx->pending[c->ep->index]++;
        mg_met_inc(c->ep->cluster->met + MG_MET_C_PENDING);
    } else if (c->ctx->pending[c->ep->index] > 0) {
        c->ctx->pending[c->ep->index]--;
        mg_met_dec(c->ep->cluster->met + MG_MET_C_PENDING);
    }
}

static void
client_detach_upstream(mg_client_t *c, int reuse)
{
    mg_uconn_t *u = c->u;

    client_set_pending(c, 0);
    if (u == NULL) {
        return;
    }
    c->u = NULL;
    if (c->ep != NULL && c->ctx->active[c->ep->index] > 0) {
        c->ctx->active[c->ep->index]--;
    }
    if (reuse) {
        mg_upstream_release(u);
    } else {
        mg_upstream_close(u);
    }
}

/* The request is over: it no longer counts against the retry budget, and
 * a pending retry is off. */
static void
client_request_done(mg_client_t *c)
{
    ev_timer_stop(c->ctx->loop, &c->retry_timer);
    if (c->retried) {
        c->retried = 0;
        if (c->route != NULL && c->route->cluster != NULL
            && c->ctx->retrying[c->route->cluster->index] > 0) {
            c->ctx->retrying[c->route->cluster->index]--;
        }
    }
}

static void
client_gzip_end(mg_client_t *c)
{
    mg_gzip_free(c->gz);
    c->gz = NULL;
    mg_buf_put(&c->ctx->bufs, c->gz_out);
    c->gz_out = NULL;
    c->gzip_on = 0;
}

static void
client_close(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;

    if (c->h2 != NULL) {
        mg_h2_free(c);
    }
    client_request_done(c);
    proxy_request_end(c);
    client_detach_upstream(c, 0);
    ev_io_stop(ctx->loop, &c->rev);
    ev_io_stop(ctx->loop, &c->wev);
    ev_timer_stop(ctx->loop, &c->timer);
    mg_io_close(&c->io);
    mg_buf_put(&ctx->bufs, c->in);
    mg_buf_put(&ctx->bufs, c->out);
    mg_buf_put(&ctx->bufs, c->uhead);
    c->in = c->out = c->uhead = NULL;
    client_gzip_end(c);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        ctx->clients = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    ctx->nclients--;
    mg_met_dec(c->lc->met + MG_MET_L_CX_ACTIVE);
    mg_shm_peering_conn(c->lc, ctx->slot, ctx->generation, -1);
    if (ctx->nfree_clients < 1024) {
        c->next = ctx->free_clients;
        ctx->free_clients = c;
        ctx->nfree_clients++;
    } else {
        free(c);
    }
    if (ctx->draining && ctx->nclients == 0 && ctx->on_empty != NULL) {
        ctx->on_empty(ctx);
    }
}

void
mg_proxy_accept(mg_ctx_t *ctx, int fd, const mg_listener_conf_t *lc,
                const struct sockaddr *peer, socklen_t peerlen)
{
    mg_client_t *c = ctx->free_clients;

    if (c != NULL) {
        ctx->free_clients = c->next;
        ctx->nfree_clients--;
    } else {
        c = malloc(sizeof(*c));
        if (c == NULL) {
            mg_log_error(MG_LOG_ERROR, &mg_log, ENOMEM, "accept");
            close(fd);
            return;
        }
    }
    /* Zero only the fixed part; the log copies are filled when used. */
    memset(c, 0, offsetof(mg_client_t, client_ip));
    c->method_len = c->target_len = c->host_len = 0;
    c->h2 = NULL;
    c->parent = NULL;
    c->is_stream = 0;
    c->ctx = ctx;
    c->io.fd = fd;
    c->io.ssl = NULL;
    c->lc = lc;
    c->state = CS_HEAD;
    c->client_ip[0] = '\0';
    if (peer->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr,
                  c->client_ip, sizeof(c->client_ip));
    } else if (peer->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr,
                  c->client_ip, sizeof(c->client_ip));
    }
    (void)peerlen;
    ev_io_init(&c->rev, client_on_read, fd, EV_READ);
    ev_io_init(&c->wev, client_on_write, fd, EV_WRITE);
    ev_init(&c->timer, client_on_timer);
    ev_init(&c->retry_timer, proxy_on_retry_timer);
    c->retry_timer.data = c;
    c->rev.data = c->wev.data = c->timer.data = c;

    c->next = ctx->clients;
    if (ctx->clients != NULL) {
        ctx->clients->prev = c;
    }
    ctx->clients = c;
    ctx->nclients++;
    mg_met_inc(lc->met + MG_MET_L_CX_TOTAL);
    mg_met_inc(lc->met + MG_MET_L_CX_ACTIVE);
    mg_shm_peering_conn(lc, ctx->slot, ctx->generation, 1);

    client_timer_set(c, lc->request_header_timeout);
    if (lc->tls != NULL) {
        c->io.ssl = SSL_new(lc->tls);
        if (c->io.ssl == NULL || SSL_set_fd(c->io.ssl, fd) != 1) {
            mg_log_error(MG_LOG_ERROR, &mg_log, 0, "SSL_new(): %s",
                         mg_io_ssl_error());
            client_close(c);
            return;
        }
        SSL_set_accept_state(c->io.ssl);
        c->state = CS_HANDSHAKE;
    }
    /* Most clients send the request with the handshake's last ACK: try
     * at once instead of waiting a loop iteration for readiness. */
    ev_io_start(ctx->loop, &c->rev);
    client_on_read(ctx->loop, &c->rev, EV_READ);
}

static void
client_handshake(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    int rc = mg_io_handshake(&c->io);
    const unsigned char *alpn;
    unsigned alpn_len;

    if (rc == MG_AGAIN) {
        if (c->io.want_write) {
            ev_io_start(ctx->loop, &c->wev);
            ev_io_stop(ctx->loop, &c->rev);
        } else {
            ev_io_start(ctx->loop, &c->rev);
            ev_io_stop(ctx->loop, &c->wev);
        }
        return;
    }
    if (rc != MG_OK) {
        /* The client's problem, and a cheap one to cause: debug level. */
        const char *why = mg_io_ssl_error();

        mg_log_error(MG_LOG_DEBUG, &mg_log, 0,
                     "TLS handshake failed: %s, client: %s, listener: %s",
                     why[0] ? why : "connection closed", c->client_ip,
                     c->lc->name);
        client_close(c);
        return;
    }
    ev_io_stop(ctx->loop, &c->wev);
    ev_io_start(ctx->loop, &c->rev);
    SSL_get0_alpn_selected(c->io.ssl, &alpn, &alpn_len);
    if (alpn_len == 2 && memcmp(alpn, "h2", 2) == 0) {
        mg_h2_start(c);
        return;
    }
    c->state = CS_HEAD;
    client_read_head(c);
}

/* Starts reading from the client, also when TLS already holds decrypted
 * bytes that no readiness event will announce. */
static void
client_want_read(mg_client_t *c)
{
    ev_io_start(c->ctx->loop, &c->rev);
    if (mg_io_pending(&c->io)) {
        ev_feed_event(c->ctx->loop, &c->rev, EV_READ);
    }
}

static void
upstream_want_read(mg_client_t *c)
{
    if (c->u->is_h2) {
        mg_h2up_read_again(c->u);
        return;
    }
    ev_io_start(c->ctx->loop, &c->u->rev);
    if (mg_io_pending(&c->u->io)) {
        ev_feed_event(c->ctx->loop, &c->u->rev, EV_READ);
    }
}

void
mg_proxy_drain(mg_ctx_t *ctx)
{
    mg_client_t *c, *next;

    ctx->draining = 1;
    mg_upstream_close_idle(ctx);
    for (c = ctx->clients; c != NULL; c = next) {
        next = c->next;   /* a drained HTTP/2 connection may close */
        if (c->h2 != NULL) {
            mg_h2_drain(c);
        }
    }
}

void
mg_proxy_close_all(mg_ctx_t *ctx)
{
    while (ctx->clients != NULL) {
        client_close(ctx->clients);
    }
}

void
mg_proxy_free_cache(mg_ctx_t *ctx)
{
    mg_client_t *c;

    while ((c = ctx->free_clients) != NULL) {
        ctx->free_clients = c->next;
        free(c);
    }
    ctx->nfree_clients = 0;
}

/* ------------------------------------------------------------------ */
/* Logging and request completion                                      */

/* The upstream of the request for logs: "users.internal:8080
 * (10.1.0.5:8080)" for an endpoint by host name, else its address, or
 * "-" before there is one. */
static const char *
proxy_upstream_name(const mg_client_t *c, char *buf, size_t len)
{
    if (c->ep == NULL) {
        return "-";
    }
    if (c->upstream_addr[0] == '\0') {
        return c->ep->address;
    }
    snprintf(buf, len, "%s (%s)", c->ep->address, c->upstream_addr);
    return buf;
}

static void
client_log_request(mg_client_t *c)
{
    mg_access_log_t *al = &c->ctx->access_logs[c->lc->index];
    char name[MG_DNS_LOG_NAME_LEN];
    mg_access_entry_t e;

    if (al->fd == -1) {
        return;
    }
    e.client = c->client_ip[0] ? c->client_ip : "-";
    e.listener = c->lc->name;
    e.method = c->method;
    e.method_len = c->method_len;
    e.path = c->target;
    e.path_len = c->target_len;
    e.protocol = c->is_stream ? "HTTP/2.0"
                 : c->version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    e.status = c->status;
    e.bytes_sent = c->bytes_sent;
    e.duration = ev_now(c->ctx->loop) - c->start;
    e.host = c->host;
    e.host_len = c->host_len;
    e.upstream = c->ep != NULL ? proxy_upstream_name(c, name, sizeof(name))
                               : NULL;
    e.request_id = c->request_id;
    e.upstream_addr = c->ep == NULL ? NULL
                      : c->upstream_addr[0] ? c->upstream_addr
                                            : c->ep->address;
    e.cluster = c->route != NULL && c->route->action == MG_ROUTE_CLUSTER
                    ? c->route->cluster->name
                    : NULL;
    e.table = c->lc->routes != NULL ? c->lc->routes->name : NULL;
    e.route = c->route != NULL ? c->route->path.data : NULL;
    e.route_len = c->route != NULL ? c->route->path.len : 0;
    e.user_agent = c->has_user_agent ? c->user_agent : NULL;
    e.user_agent_len = c->user_agent_len;
    e.referer = c->has_referer ? c->referer : NULL;
    e.referer_len = c->referer_len;
    mg_access_log_write(al, &e);
}

/* Accounts for the end of the current request, once, however it ended:
 * its trace spans, then metrics. */
static void
proxy_request_end(mg_client_t *c)
{
    const mg_listener_conf_t *lc = c->lc;
    unsigned route_met;
    double now;

    if (!c->counted) {
        return;
    }
    c->counted = 0;
    if (c->ctx->snap->tracing != NULL) {
        mg_trace_request_end(c);
    }
    if (mg_met == NULL) {
        return;
    }
    now = ev_time();
    route_met = lc->route_met[c->route != NULL && lc->routes != NULL
                              ? c->route->index
                              : lc->routes != NULL ? lc->routes->nroutes : 0];
    mg_met_dec(lc->met + MG_MET_L_RQ_ACTIVE);
    mg_met_add(lc->met + MG_MET_L_BYTES_OUT, c->bytes_sent);
    mg_met_status(route_met + MG_MET_R_RQ, c->status);
    mg_met_observe(route_met + MG_MET_R_TIME, now - c->start);
    if (c->to_cluster) {
        c->to_cluster = 0;
        mg_met_dec(c->route->cluster->met + MG_MET_C_RQ_ACTIVE);
        if (c->ep != NULL && c->resp_head_done) {
            mg_met_observe(c->ep->cluster->priorities[c->ep->priority].met
                               + MG_MET_P_TIME, now - c->try_start);
        }
    }
}

/* Ends the current request: logs it, then either waits for the next one on
 * this connection or closes it. */
static void
client_finish_request(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;

    client_request_done(c);
    proxy_request_end(c);
    if (c->method_len != 0) {
        client_log_request(c);
    }
    mg_buf_put(&ctx->bufs, c->out);
    mg_buf_put(&ctx->bufs, c->uhead);
    c->out = c->uhead = NULL;
    client_gzip_end(c);
    ev_io_stop(ctx->loop, &c->wev);
    if (!c->keep_alive || ctx->draining) {
        client_close(c);
        return;
    }
    /* Reset the per-request part. */
    c->state = CS_HEAD;
    c->head_scanned = 0;
    c->uhead_scanned = 0;
    c->route = NULL;
    c->ep = NULL;
    c->upstream_addr[0] = '\0';
    c->status = 0;
    c->bytes_sent = 0;
    c->tried = 0;
    c->attempts = 0;
    c->refusals = 0;
    c->last_err = 0;
    c->method_len = 0;
    c->req_body_done = c->req_ck_done = c->replayable = c->no_pool = 0;
    c->upgrade = c->connect = 0;
    c->resp_head_done = c->resp_done = c->resp_decode = 0;
    c->resp_keep_alive = c->resp_eof = c->resp_seen = 0;
    if (c->in != NULL && mg_buf_pending(c->in) != 0) {
        /* A pipelined request is already here: handle it on the next loop
         * pass rather than recursing. */
        c->pipelined = 1;
        client_timer_set(c, c->lc->request_header_timeout);
        ev_io_start(ctx->loop, &c->rev);
        ev_feed_event(ctx->loop, &c->rev, EV_READ);
        return;
    }
    /* Idle keep-alive connections hold no buffer. */
    mg_buf_put(&ctx->bufs, c->in);
    c->in = NULL;
    client_timer_set(c, c->lc->idle_timeout);
    client_want_read(c);
}

/* ------------------------------------------------------------------ */
/* Responses we make ourselves                                         */

/* Skips the request body when it is already buffered whole, so the
 * connection can serve the next request; otherwise it must close. */
static int
client_discard_body(mg_client_t *c)
{
    mg_h1_chunked_t ck;
    size_t consumed = 0;
    int rc;

    if (c->req_body_done || c->req_body_kind == MG_H1_BODY_NONE) {
        return MG_OK;
    }
    if (c->in == NULL) {
        return MG_ERROR;
    }
    if (c->req_body_kind == MG_H1_BODY_LENGTH) {
        if ((int64_t)mg_buf_pending(c->in) >= c->body_left) {
            c->in->pos += c->body_left;
            c->body_left = 0;
            c->req_body_done = 1;
            return MG_OK;
        }
        return MG_ERROR;
    }
    memset(&ck, 0, sizeof(ck));
    rc = mg_h1_chunked_parse(&ck, c->in->pos, mg_buf_pending(c->in),
                             &consumed, NULL, 0, 0);
    if (rc == MG_OK) {
        c->in->pos += consumed;
        c->req_body_done = 1;
        return MG_OK;
    }
    return MG_ERROR;
}

/* Answers the current request with |status| and a body, then finishes it.
 * |extra| is more header lines (each ending in CRLF) or NULL. */
static void
client_respond(mg_client_t *c, unsigned status, const char *ctype,
               const char *body, size_t blen, const char *extra)
{
    mg_ctx_t *ctx = c->ctx;
    size_t need = 512 + blen + (extra ? strlen(extra) : 0);
    mg_buf_t *b;
    int n;

    client_detach_upstream(c, 0);
    mg_buf_put(&ctx->bufs, c->out);
    c->out = NULL;
    c->status = status;
    if (c->is_stream) {
        mg_h2_respond(c, status, ctype, body, blen, extra);
        return;
    }
    c->keep_alive = c->req_keep_alive && !ctx->draining && !c->closing
                    && client_discard_body(c) == MG_OK;
    b = need <= MG_BUF_SIZE ? mg_buf_get(&ctx->bufs) : mg_buf_get_large(need);
    if (b == NULL) {
        client_close(c);
        return;
    }
    n = snprintf(b->last, mg_buf_room(b),
                 "HTTP/1.1 %u %s\r\n"
                 "Content-Type: %s\r\n"
                 "Content-Length: %zu\r\n"
                 "%s%s\r\n",
                 status, mg_proxy__reason(status), ctype, blen,
                 extra ? extra : "",
                 c->keep_alive ? (c->version_minor == 0
                                  ? "Connection: keep-alive\r\n" : "")
                               : "Connection: close\r\n");
    if (n < 0 || (size_t)n >= mg_buf_room(b)) {
        mg_buf_put(&ctx->bufs, b);
        client_close(c);
        return;
    }
    b->last += n;
    if (c->method_id != MG_H1_METHOD_HEAD && blen > 0) {
        memcpy(b->last, body, blen);
        b->last += blen;
    }
    c->out = b;
    c->state = CS_DIRECT;
    client_send_direct(c);
}

/* The gRPC status for an error we answer with (the mapping gRPC gives
 * for HTTP statuses, plus our timeouts and upstream failures). */
static unsigned
grpc_status_for(unsigned status)
{
    switch (status) {
    case 400: return 13;   /* INTERNAL */
    case 401: return 16;   /* UNAUTHENTICATED */
    case 403: return 7;    /* PERMISSION_DENIED */
    case 404: return 12;   /* UNIMPLEMENTED */
    case 408:
    case 504: return 4;    /* DEADLINE_EXCEEDED */
    case 413:
    case 431: return 8;    /* RESOURCE_EXHAUSTED */
    case 429:
    case 502:
    case 503: return 14;   /* UNAVAILABLE */
    default:  return 2;    /* UNKNOWN */
    }
}

/* A gRPC client learns of our errors from grpc-status, in a response with
 * no body ("Trailers-Only"); grpc-message is percent-encoded. */
static void
client_respond_grpc(mg_client_t *c, unsigned status, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    char extra[512];
    size_t n;
    const char *p;

    n = (size_t)snprintf(extra, sizeof(extra),
                         "grpc-status: %u\r\ngrpc-message: ",
                         grpc_status_for(status));
    for (p = text; *p != '\0' && *p != '\n' && n + 8 < sizeof(extra); p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            extra[n++] = *p;
        } else {
            extra[n++] = '%';
            extra[n++] = hex[(unsigned char)*p >> 4];
            extra[n++] = hex[*p & 0xf];
        }
    }
    memcpy(extra + n, "\r\n", 3);
    client_detach_upstream(c, 0);
    mg_h2_respond(c, 200, "application/grpc", "", 0, extra);
    c->status = status;   /* the access log keeps the cause */
}

static void
client_respond_text(mg_client_t *c, unsigned status, const char *text)
{
    if (c->grpc) {
        client_respond_grpc(c, status, text);
        return;
    }
    client_respond(c, status, "text/plain", text, strlen(text), NULL);
}

static void
client_send_direct(mg_client_t *c)
{
    struct iovec iov;
    ssize_t n;

    while (mg_buf_pending(c->out) > 0) {
        iov.iov_base = c->out->pos;
        iov.iov_len = mg_buf_pending(c->out);
        n = mg_io_sendv(&c->io, &iov, 1);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                ev_io_start(c->ctx->loop, &c->wev);
                client_timer_set(c, c->lc->send_timeout);
                return;
            }
            c->keep_alive = 0;
            client_close(c);
            return;
        }
        c->out->pos += n;
        c->bytes_sent += (uint64_t)n;
    }
    client_finish_request(c);
}

/* For a request the parser refused: log what its first line looks like, as
 * far as it can be split, so the log still says which request it was. */
static void
client_log_fields_from_raw(mg_client_t *c)
{
    const char *p, *last, *sp;

    c->start = ev_now(c->ctx->loop);
    c->method_len = 0;
    c->target_len = 0;
    c->host_len = 0;
    memcpy(c->request_id, "-", 2);
    if (c->in != NULL) {
        p = c->in->pos;
        last = c->in->last;
        while (p < last && (*p == '\r' || *p == '\n')) {
            p++;
        }
        sp = memchr(p, ' ', (size_t)mg_min(last - p, 64));
        if (sp != NULL && sp > p) {
            c->method_len = mg_min((size_t)(sp - p), sizeof(c->method) - 1);
            memcpy(c->method, p, c->method_len);
            p = sp + 1;
            sp = p;
            while (sp < last && *sp != ' ' && *sp != '\r' && *sp != '\n') {
                sp++;
            }
            c->target_len = mg_min((size_t)(sp - p), sizeof(c->target) - 1);
            memcpy(c->target, p, c->target_len);
            c->version_minor = last - sp >= 9
                               && memcmp(sp, " HTTP/1.0", 9) == 0 ? 0 : 1;
        }
    }
    if (c->method_len == 0) {
        memcpy(c->method, "-", 2);
        c->method_len = 1;
    }
}

/* Answers a head the parser refused, then closes: after a framing error
 * nothing that follows on the connection can be trusted. */
static void
client_reject(mg_client_t *c, int err)
{
    unsigned status = mg_h1_error_status(err);
    char body[128];

    mg_log_error(MG_LOG_INFO, &mg_log, 0,
                 "client sent an invalid request (%u), client: %s, "
                 "listener: %s", status, c->client_ip, c->lc->name);
    c->closing = 1;
    c->req_keep_alive = 0;
    if (c->method_len == 0) {
        client_log_fields_from_raw(c);
    }
    if (!c->counted) {
        c->route = NULL;
        proxy_count_request(c);
    }
    snprintf(body, sizeof(body), "%s\n", mg_proxy__reason(status));
    client_respond_text(c, status, body);
}

/* ------------------------------------------------------------------ */
/* Admin listener                                                      */

static void
admin_handle(mg_client_t *c, const mg_h1_request_t *r)
{
    mg_admin_reply_t ar;

    if (mg_admin_handle(c->ctx, r->path, r->query, &ar) != MG_OK) {
        client_respond_text(c, 500, "admin page too large or out of "
                            "memory\n");
        return;
    }
    client_respond(c, ar.status, ar.ctype, ar.body, ar.len, NULL);
    mg_admin_reply_free(&ar);
}

/* ------------------------------------------------------------------ */
/* Request heads                                                       */

static void
client_copy_log_fields(mg_client_t *c, const mg_h1_request_t *r)
{
    const mg_h1_header_t *h;
    unsigned i;

    c->method_len = mg_min(r->method.len, sizeof(c->method) - 1);
    memcpy(c->method, r->method.data, c->method_len);
    c->target_len = mg_min(r->target.len, sizeof(c->target) - 1);
    memcpy(c->target, r->target.data, c->target_len);
    c->host_len = mg_min(r->host.len, sizeof(c->host) - 1);
    if (c->host_len) {
        memcpy(c->host, r->host.data, c->host_len);
    }
    c->has_user_agent = 0;
    c->has_referer = 0;
    for (i = 0; i < r->nheaders; i++) {
        h = &r->headers[i];
        if (!c->has_user_agent && mg_str_caseeq_lit(h->name, "user-agent")) {
            c->has_user_agent = 1;
            c->user_agent_len = mg_min(h->value.len, sizeof(c->user_agent));
            memcpy(c->user_agent, h->value.data, c->user_agent_len);
        } else if (!c->has_referer && mg_str_caseeq_lit(h->name, "referer")) {
            c->has_referer = 1;
            c->referer_len = mg_min(h->value.len, sizeof(c->referer));
            memcpy(c->referer, h->value.data, c->referer_len);
        }
    }
}

static void
client_set_request_id(mg_client_t *c, const mg_h1_request_t *r)
{
    unsigned i;

    for (i = 0; i < r->nheaders; i++) {
        if (r->headers[i].id == MG_H1_HDR_X_REQUEST_ID
            && r->headers[i].value.len > 0
            && r->headers[i].value.len < sizeof(c->request_id)) {
            memcpy(c->request_id, r->headers[i].value.data,
                   r->headers[i].value.len);
            c->request_id[r->headers[i].value.len] = '\0';
            return;
        }
    }
    {
        /* The worker's random seed, then the sequence in hex: by hand, as
         * snprintf() showed up in profiles of every request. */
        static const char hex[] = "0123456789abcdef";
        uint64_t seq = ++c->ctx->request_seq;
        char *p = c->request_id + 16;
        int k;

        memcpy(c->request_id, c->ctx->request_id_seed, 16);
        for (k = 15; k >= 0; k--) {
            p[k] = hex[seq & 0xf];
            seq >>= 4;
        }
        p[16] = '\0';
    }
}

static void
client_redirect(mg_client_t *c, const mg_h1_request_t *r)
{
    const mg_route_t *rt = c->route;
    char loc[2048], extra[2100];
    mg_str_t scheme = rt->redirect_scheme.len ? rt->redirect_scheme
                                               : mg_str_lit("http");
    mg_str_t host = rt->redirect_host.len ? rt->redirect_host : r->host;
    mg_str_t path = rt->redirect_path.len ? rt->redirect_path : r->path;
    int n;

    n = snprintf(loc, sizeof(loc), "%.*s://%.*s%.*s%s%.*s",
                 (int)scheme.len, scheme.data, (int)host.len, host.data,
                 (int)path.len, path.data, r->query.len ? "?" : "",
                 (int)r->query.len, r->query.data);
    if (n < 0 || (size_t)n >= sizeof(loc)) {
        client_respond_text(c, 414, "redirect target too long\n");
        return;
    }
    snprintf(extra, sizeof(extra), "Location: %s\r\n", loc);
    client_respond(c, rt->redirect_status, "text/plain", "", 0, extra);
}

/* The connection a request came on: its own, or its HTTP/2 parent's. */
static const mg_io_t *
client_conn_io(const mg_client_t *c)
{
    return c->is_stream ? &c->parent->io : &c->io;
}

/* Appends "name: value\r\n" to |b|. MG_OK, or MG_ERROR when it is full. */
static int
buf_add_header(mg_buf_t *b, mg_str_t name, const char *v1, size_t l1,
               const char *v2, size_t l2)
{
    size_t need = name.len + 2 + l1 + l2 + 2;

    if (mg_buf_room(b) < need) {
        return MG_ERROR;
    }
    memcpy(b->last, name.data, name.len);
    b->last += name.len;
    *b->last++ = ':';
    *b->last++ = ' ';
    if (l1) {
        memcpy(b->last, v1, l1);
        b->last += l1;
    }
    if (l2) {
        memcpy(b->last, v2, l2);
        b->last += l2;
    }
    *b->last++ = '\r';
    *b->last++ = '\n';
    return MG_OK;
}

static int
buf_add_raw(mg_buf_t *b, const char *s, size_t len)
{
    if (mg_buf_room(b) < len) {
        return MG_ERROR;
    }
    memcpy(b->last, s, len);
    b->last += len;
    return MG_OK;
}

#define buf_add_lit(b, s) buf_add_raw((b), (s), sizeof(s) - 1)

/* Writes the request head for the upstream: origin-form target, end-to-end
 * headers only, our forwarding headers. */
static int
proxy_build_upstream_head(mg_client_t *c, const mg_h1_request_t *r)
{
    mg_ctx_t *ctx = c->ctx;
    size_t need = r->head_len + 512 + strlen(c->client_ip)
                  + (c->trace.active ? MG_TRACE_HEADERS_MAX : 0);
    mg_buf_t *b;
    const mg_h1_header_t *h;
    int have_xff = 0, have_via = 0, have_host = 0, have_rid = 0, absolute;
    /* RFC 9110 §7.6.3: the protocol version as we received it. */
    const char *via = c->is_stream ? "2.0 meshgate"
                      : r->version_minor == 0 ? "1.0 meshgate" : "1.1 meshgate";
    unsigned i;
    char num[32];
    int n;

    b = need <= MG_BUF_SIZE ? mg_buf_get(&ctx->bufs) : mg_buf_get_large(need);
    if (b == NULL) {
        return MG_ERROR;
    }
    c->uhead = b;
    if (buf_add_raw(b, r->method.data, r->method.len) != MG_OK
        || buf_add_lit(b, " ") != MG_OK) {
        return MG_ERROR;
    }
    if (c->connect) {
        if (buf_add_raw(b, r->target.data, r->target.len) != MG_OK) {
            return MG_ERROR;
        }
    } else {
        if (buf_add_raw(b, r->path.data, r->path.len) != MG_OK) {
            return MG_ERROR;
        }
        if (r->query.data != NULL
            && (r->query.len > 0 || r->path.data + r->path.len < r->target.data
                                        + r->target.len)) {
            if (buf_add_lit(b, "?") != MG_OK
                || buf_add_raw(b, r->query.data, r->query.len) != MG_OK) {
                return MG_ERROR;
            }
        }
    }
    if (buf_add_lit(b, " HTTP/1.1\r\n") != MG_OK) {
        return MG_ERROR;
    }
    /* RFC 9112 §3.2.2: with an absolute-form target the authority in it
     * replaces the Host header. */
    absolute = r->target.len > 0 && r->target.data[0] != '/';
    for (i = 0; i < r->nheaders; i++) {
        h = &r->headers[i];
        if (h->hop_by_hop || (absolute && h->id == MG_H1_HDR_HOST)) {
            continue;
        }
        if (c->trace.active && mg_trace_is_header(h->name.data, h->name.len)) {
            continue;   /* replaced by ours, below */
        }
        if (h->name.len > 11 && !c->local_only
            && strncasecmp(h->name.data, "x-meshgate-", 11) == 0) {
            /* Ours alone to set: trusted only from another region's front
             * proxy (peering), whose marks the local service may read. */
            continue;
        }
        switch (h->id) {
        case MG_H1_HDR_EXPECT:
        case MG_H1_HDR_X_FORWARDED_PROTO:
        case MG_H1_HDR_CONTENT_LENGTH:
            continue;
        case MG_H1_HDR_X_FORWARDED_FOR:
            /* Several XFF fields join into one list, then ours. */
            if (have_xff) {
                b->last -= 2;
                if (buf_add_lit(b, ", ") != MG_OK
                    || buf_add_raw(b, h->value.data, h->value.len) != MG_OK
                    || buf_add_lit(b, "\r\n") != MG_OK) {
                    return MG_ERROR;
                }
                continue;
            }
            have_xff = 1;
            break;
        case MG_H1_HDR_VIA:
            have_via = 1;
            break;
        case MG_H1_HDR_HOST:
            have_host = 1;
            break;
        case MG_H1_HDR_X_REQUEST_ID:
            have_rid = 1;
            break;
        }
        if (h->id == MG_H1_HDR_X_FORWARDED_FOR || h->id == MG_H1_HDR_VIA) {
            /* Appended to below, after all fields of this name. */
            if (buf_add_header(b, h->name, h->value.data, h->value.len, NULL,
                               0) != MG_OK) {
                return MG_ERROR;
            }
            continue;
        }
        if (buf_add_header(b, h->name, h->value.data, h->value.len, NULL, 0)
            != MG_OK) {
            return MG_ERROR;
        }
    }
    /* Extend the existing lists in place: find them again is cheap enough
     * only when present, which is rare at the edge. */
    if (have_xff || have_via) {
        mg_buf_t *nb = need + 256 <= MG_BUF_SIZE
                           ? mg_buf_get(&ctx->bufs)
                           : mg_buf_get_large(need + 256);
        char *p = b->start, *eol;

        if (nb == NULL) {
            return MG_ERROR;
        }
        /* Copy line by line, appending to the XFF and Via lines. */
        while (p < b->last) {
            eol = memchr(p, '\n', (size_t)(b->last - p));
            eol = eol ? eol + 1 : b->last;
            if ((size_t)(eol - p) > 16
                && strncasecmp(p, "X-Forwarded-For:", 16) == 0) {
                if (buf_add_raw(nb, p, (size_t)(eol - p) - 2) != MG_OK
                    || buf_add_lit(nb, ", ") != MG_OK
                    || buf_add_raw(nb, c->client_ip, strlen(c->client_ip))
                           != MG_OK
                    || buf_add_lit(nb, "\r\n") != MG_OK) {
                    mg_buf_put(&ctx->bufs, nb);
                    return MG_ERROR;
                }
            } else if ((size_t)(eol - p) > 4 && strncasecmp(p, "Via:", 4) == 0) {
                if (buf_add_raw(nb, p, (size_t)(eol - p) - 2) != MG_OK
                    || buf_add_lit(nb, ", ") != MG_OK
                    || buf_add_raw(nb, via, strlen(via)) != MG_OK
                    || buf_add_lit(nb, "\r\n") != MG_OK) {
                    mg_buf_put(&ctx->bufs, nb);
                    return MG_ERROR;
                }
            } else if (buf_add_raw(nb, p, (size_t)(eol - p)) != MG_OK) {
                mg_buf_put(&ctx->bufs, nb);
                return MG_ERROR;
            }
            p = eol;
        }
        mg_buf_put(&ctx->bufs, b);
        c->uhead = b = nb;
    }
    if (!have_host) {
        /* HTTP/1.1 upstreams require Host: an HTTP/1.0 client may have sent
         * none, so name the service. */
        mg_str_t host = r->host.len > 0 ? r->host
                                        : mg_str(c->route->cluster->name);

        if (buf_add_header(b, mg_str_lit("Host"), host.data, host.len, NULL,
                           0) != MG_OK) {
            return MG_ERROR;
        }
    }
    if (!have_xff
        && buf_add_header(b, mg_str_lit("X-Forwarded-For"), c->client_ip,
                          strlen(c->client_ip), NULL, 0) != MG_OK) {
        return MG_ERROR;
    }
    if ((client_conn_io(c)->ssl != NULL
             ? buf_add_lit(b, "X-Forwarded-Proto: https\r\n")
             : buf_add_lit(b, "X-Forwarded-Proto: http\r\n")) != MG_OK) {
        return MG_ERROR;
    }
    if (!have_via
        && buf_add_header(b, mg_str_lit("Via"), via, strlen(via), NULL, 0)
               != MG_OK) {
        return MG_ERROR;
    }
    if (!have_rid
        && buf_add_header(b, mg_str_lit("X-Request-Id"), c->request_id,
                          strlen(c->request_id), NULL, 0) != MG_OK) {
        return MG_ERROR;
    }
    if (c->trace.active
        && mg_trace_add_headers(&c->trace, ctx->snap->tracing, r, b)
               != MG_OK) {
        return MG_ERROR;
    }
    if (c->route->cluster->protocol != MG_PROTO_HTTP1
        || c->route->cluster->npriorities > 1) {
        /* TE is hop-by-hop, but "trailers" is what HTTP/2 lets through
         * (RFC 9113 §8.2.2): gRPC servers want it. */
        for (i = 0; i < r->nheaders; i++) {
            if (r->headers[i].id == MG_H1_HDR_TE
                && proxy_has_token(r->headers[i].value, "trailers")) {
                if (buf_add_lit(b, "TE: trailers\r\n") != MG_OK) {
                    return MG_ERROR;
                }
                break;
            }
        }
    }
    if (c->req_body_kind == MG_H1_BODY_CHUNKED) {
        if (buf_add_lit(b, "Transfer-Encoding: chunked\r\n") != MG_OK) {
            return MG_ERROR;
        }
    } else if (r->content_length >= 0 && !c->connect) {
        n = snprintf(num, sizeof(num), "%lld", (long long)r->content_length);
        if (buf_add_header(b, mg_str_lit("Content-Length"), num, (size_t)n,
                           NULL, 0) != MG_OK) {
            return MG_ERROR;
        }
    }
    if (c->upgrade) {
        if (buf_add_lit(b, "Connection: upgrade\r\n") != MG_OK
            || buf_add_header(b, mg_str_lit("Upgrade"),
                              r->upgrade_protocol.data,
                              r->upgrade_protocol.len, NULL, 0) != MG_OK) {
            return MG_ERROR;
        }
    }
    return buf_add_lit(b, "\r\n");
}

static int
client_has_verified_cert(const mg_client_t *c)
{
    const mg_io_t *io = client_conn_io(c);

    return io->ssl != NULL && SSL_get0_peer_certificate(io->ssl) != NULL
           && SSL_get_verify_result(io->ssl) == X509_V_OK;
}

/* Counts a request in: proxy_request_end() counts it out. */
static void
proxy_count_request(mg_client_t *c)
{
    c->counted = 1;
    c->to_cluster = 0;
    c->replaying = 0;
    mg_met_inc(c->lc->met + MG_MET_L_RQ_ACTIVE);
}

/* Accounts for the start of request |r| (proxy_request_end() ends it). */
static void
proxy_request_start(mg_client_t *c, const mg_h1_request_t *r)
{
    proxy_count_request(c);
    if (c->ctx->snap->tracing != NULL) {
        mg_trace_request_start(c, r);
    }
}

static void
client_handle_request(mg_client_t *c, const mg_h1_request_t *r)
{
    const mg_route_t *rt;
    char msg[160];
    unsigned i;

    /* The clock, not the loop's time: latency histograms resolve tens of
     * microseconds, and a busy loop pass is longer than that. */
    c->start = ev_time();
    c->method_id = r->method_id;
    c->version_minor = r->version_minor;
    c->req_keep_alive = r->keep_alive;
    c->req_body_kind = r->body_kind;
    c->content_length = r->content_length;
    c->body_left = r->body_kind == MG_H1_BODY_LENGTH ? r->content_length : 0;
    c->req_body_done = r->body_kind == MG_H1_BODY_NONE
                       || (r->body_kind == MG_H1_BODY_LENGTH
                           && r->content_length == 0);
    memset(&c->req_ck, 0, sizeof(c->req_ck));
    c->body_scanned = 0;
    client_copy_log_fields(c, r);
    client_set_request_id(c, r);
    proxy_request_start(c, r);
    ev_timer_stop(c->ctx->loop, &c->timer);

    if (c->lc->admin) {
        admin_handle(c, r);
        return;
    }
    /* CONNECT has no path (authority-form): its route is chosen by host,
     * as if for "/". */
    rt = mg_router_match(c->lc->routes, r->host,
                         r->method_id == MG_H1_METHOD_CONNECT ? mg_str_lit("/")
                                                              : r->path);
    if (rt == NULL) {
        snprintf(msg, sizeof(msg), "no route for host \"%.*s\"\n",
                 (int)mg_min(r->host.len, 100), r->host.data);
        client_respond_text(c, 404, msg);
        return;
    }
    c->route = rt;
    c->accept_gzip = 0;
    c->grpc = 0;
    c->body_err = 0;
    c->uhead_mark = 0;
    c->local_only = c->lc->peering;
    if (c->local_only) {
        memcpy(c->origin, "unknown", 8);
    }
    if (rt->internal && c->lc->public) {
        snprintf(msg, sizeof(msg), "no route for host \"%.*s\"\n",
                 (int)mg_min(r->host.len, 100), r->host.data);
        client_respond_text(c, 404, msg);
        return;
    }
    for (i = 0; i < r->nheaders; i++) {
        const mg_h1_header_t *h = &r->headers[i];

        if (c->local_only && mg_str_caseeq_lit(h->name, "x-meshgate-origin")) {
            size_t k, n = mg_min(h->value.len, sizeof(c->origin) - 1);

            for (k = 0; k < n; k++) {
                char ch = h->value.data[k];

                /* A region name: kept printable for logs and bodies. */
                c->origin[k] = (ch >= 'a' && ch <= 'z') || (ch >= 'A'
                               && ch <= 'Z') || (ch >= '0' && ch <= '9')
                               || ch == '-' || ch == '_' || ch == '.'
                                   ? ch : '?';
            }
            c->origin[n] = '\0';
        }
        if (rt->gzip != NULL && mg_str_caseeq_lit(h->name, "accept-encoding")
            && mg_gzip_accepted(h->value)) {
            c->accept_gzip = 1;
        }
        if (c->is_stream && mg_str_caseeq_lit(h->name, "content-type")
            && h->value.len >= 16
            && strncasecmp(h->value.data, "application/grpc", 16) == 0) {
            c->grpc = 1;
        }
    }
    if (rt->require_client_cert && !client_has_verified_cert(c)) {
        client_respond_text(c, 403, "a client certificate is required\n");
        return;
    }
    if (r->method_id == MG_H1_METHOD_CONNECT) {
        if (c->is_stream) {
            client_respond_text(c, 405, "CONNECT over HTTP/2 is not "
                                        "supported\n");
            return;
        }
        if (!rt->allow_connect || rt->action != MG_ROUTE_CLUSTER) {
            client_respond_text(c, 403,
                                "CONNECT is not allowed on this route\n");
            return;
        }
        if (rt->cluster->protocol != MG_PROTO_HTTP1) {
            client_respond_text(c, 501, "CONNECT to an HTTP/2 cluster is not "
                                        "supported\n");
            return;
        }
        c->connect = 1;
        c->req_body_done = 1;
        c->req_keep_alive = 0;
    }
    switch (rt->action) {
    case MG_ROUTE_DIRECT:
        client_respond(c, rt->status, rt->content_type.data, rt->body.data,
                       rt->body.len, NULL);
        return;
    case MG_ROUTE_REDIRECT:
        client_redirect(c, r);
        return;
    }

    /* An HTTP/2 upstream has no Upgrade (RFC 9113 §8.6): the request goes
     * as a plain one. */
    c->upgrade = r->upgrade && rt->allow_upgrade
                 && rt->cluster->protocol == MG_PROTO_HTTP1;
    if (!c->connect && proxy_build_upstream_head(c, r) != MG_OK) {
        client_respond_text(c, 431, "request head too large to forward\n");
        return;
    }
    if (r->expect_continue && !c->req_body_done
        && (c->in == NULL || mg_buf_pending(c->in) == 0)) {
        /* We take the expectation: the body will be streamed anyway. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

        struct iovec iov = { (void *)cont, sizeof(cont) - 1 };

        (void)mg_io_sendv(&c->io, &iov, 1);
    }
    c->body_start = c->in ? c->in->pos : NULL;
    c->replayable = 1;
    c->state = CS_PROXY;
    c->to_cluster = 1;
    mg_met_inc(rt->cluster->met + MG_MET_C_RQ_ACTIVE);
    /* The read watcher stays on: stopping and restarting it costs an
     * epoll_ctl per request. client_on_read() stops it only if the client
     * sends before this response is done. */
    proxy_connect(c);
}

static void
client_read_head(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    const mg_h1_limits_t *lim = &c->lc->limits;
    mg_h1_request_t *r = ctx->req;
    size_t max_head = lim->max_header_size ? lim->max_header_size : 32768;
    size_t max_line = lim->max_request_line ? lim->max_request_line : 8192;
    long hl;
    ssize_t n;
    int rc;
    mg_buf_t *nb;

    for (;;) {
        if (c->in == NULL) {
            c->in = mg_buf_get(&ctx->bufs);
            if (c->in == NULL) {
                client_close(c);
                return;
            }
        }
        if (!c->pipelined || mg_buf_pending(c->in) == 0) {
            size_t before = mg_buf_pending(c->in);

            if (mg_buf_room(c->in) == 0) {
                if (c->in->pos != c->in->start) {
                    mg_buf_compact(c->in);
                } else if ((size_t)(c->in->end - c->in->start) < max_head + 4) {
                    nb = mg_buf_get_large(max_head + 4);
                    if (nb == NULL) {
                        client_close(c);
                        return;
                    }
                    memcpy(nb->last, c->in->pos, mg_buf_pending(c->in));
                    nb->last += mg_buf_pending(c->in);
                    mg_buf_put(&ctx->bufs, c->in);
                    c->in = nb;
                }
            }
            if (mg_buf_room(c->in) == 0) {
                rc = mg_h1_parse_request(r, c->in->pos, mg_buf_pending(c->in),
                                         lim);
                client_reject(c, rc < 0 && rc != MG_AGAIN
                                     ? rc : MG_H1_ERR_HEADERS_TOO_LARGE);
                return;
            }
            n = mg_io_recv(&c->io, c->in->last, mg_buf_room(c->in));
            if (n == 0) {
                client_close(c);
                return;
            }
            if (n > 0) {
                mg_met_add(c->lc->met + MG_MET_L_BYTES_IN, (uint64_t)n);
            }
            if (n == -1) {
                if (errno == EAGAIN || errno == EINTR) {
                    if (mg_buf_pending(c->in) == 0 && c->in->pos == c->in->start
                        && c->method_len == 0) {
                        /* Nothing buffered: give the block back. */
                        mg_buf_put(&ctx->bufs, c->in);
                        c->in = NULL;
                    }
                    return;
                }
                client_close(c);
                return;
            }
            c->in->last += n;
            if (before == 0) {
                /* A new request starts: the idle timer gives way. */
                client_timer_set(c, c->lc->request_header_timeout);
            }
        }
        c->pipelined = 0;

        if (c->lc->h2c && c->method_len == 0 && c->in->pos[0] == 'P') {
            size_t k = mg_min(mg_buf_pending(c->in), MG_H2_PREFACE_LEN);

            if (memcmp(c->in->pos, MG_H2_PREFACE, k) == 0) {
                if (k < MG_H2_PREFACE_LEN) {
                    continue;   /* the rest of the preface is on its way */
                }
                mg_h2_start(c);
                return;
            }
        }

        hl = mg_h1_find_head_end(c->in->pos, mg_buf_pending(c->in),
                                 &c->head_scanned);
        if (hl == MG_AGAIN) {
            size_t pending = mg_buf_pending(c->in);

            if (pending > max_line
                && memchr(c->in->pos, '\n', max_line + 2) == NULL) {
                client_reject(c, MG_H1_ERR_URI_TOO_LONG);
                return;
            }
            if (pending > max_head) {
                rc = mg_h1_parse_request(r, c->in->pos, pending, lim);
                client_reject(c, rc < 0 && rc != MG_AGAIN
                                     ? rc : MG_H1_ERR_HEADERS_TOO_LARGE);
                return;
            }
            continue;
        }
        rc = mg_h1_parse_request(r, c->in->pos, (size_t)hl, lim);
        if (rc < 0) {
            client_reject(c, rc == MG_AGAIN ? MG_H1_ERR_BAD_REQUEST : rc);
            return;
        }
        c->head_scanned = 0;
        c->in->pos += rc;
        client_handle_request(c, r);
        return;
    }
}

/* ------------------------------------------------------------------ */
/* Upstream connection and request forwarding                          */

static void
proxy_attach(mg_client_t *c, mg_uconn_t *u, const mg_endpoint_conf_t *ep)
{
    char name[MG_DNS_LOG_NAME_LEN];
    mg_ctx_t *ctx = c->ctx;
    double timeout;

    c->u = u;
    c->ep = ep;
    memcpy(c->upstream_addr, u->peer.text, sizeof(c->upstream_addr));
    u->owner = c;
    ctx->active[ep->index]++;
    client_set_pending(c, u->connecting
                              || (ep->tls != NULL && !u->io.handshake_done));
    if (!u->connecting && proxy_mark_cross_region(c, ep) != MG_OK) {
        proxy_fail(c, 431, "request head too large to forward\n");
        return;
    }
    ev_set_cb(&u->rev, upstream_on_read);
    ev_set_cb(&u->wev, upstream_on_write);
    ev_set_cb(&u->timer, upstream_on_timer);
    u->rev.data = u->wev.data = u->timer.data = u;
    if (u->in != NULL) {
        u->in->pos = u->in->last = u->in->start;
    }
    c->uhead_scanned = 0;
    if (u->connecting) {
        ev_io_start(ctx->loop, &u->wev);
        ev_timer_set(&u->timer, ep->cluster->connect_timeout, 0.);
        ev_timer_start(ctx->loop, &u->timer);
        return;
    }
    if (ep->tls != NULL && !u->io.handshake_done) {
        if (u->io.ssl == NULL
            && mg_upstream_tls_start(&u->io, ep) != MG_OK) {
            mg_log_error(MG_LOG_ERROR, &mg_log, 0,
                         "cannot start TLS to %s: %s",
                         proxy_upstream_name(c, name, sizeof(name)),
                         mg_io_ssl_error());
            proxy_connect_failed(c, EPROTO);
            return;
        }
        upstream_handshake(c);
        return;
    }
    timeout = proxy_try_timeout(c, ep);
    /* Started once the request is sent; it bounds each silence of the
     * upstream, not the whole response. */
    ev_timer_set(&u->timer, timeout, timeout);
    if (c->connect) {
        static const char est[] = "HTTP/1.1 200 Connection Established\r\n\r\n";

        c->status = 200;
        c->out = mg_buf_get(&ctx->bufs);
        if (c->out == NULL) {
            client_close(c);
            return;
        }
        memcpy(c->out->last, est, sizeof(est) - 1);
        c->out->last += sizeof(est) - 1;
        c->state = CS_TUNNEL;
        tunnel_pump(c);
        return;
    }
    ev_io_start(ctx->loop, &u->rev);
    proxy_send_upstream(c);
}

/* Our cross-region fields go to a region's front proxy and to nothing
 * else; a retry may move a request between the two kinds. MG_OK or
 * MG_ERROR (no room). */
static int
proxy_mark_cross_region(mg_client_t *c, const mg_endpoint_conf_t *ep)
{
    mg_buf_t *b = c->uhead, *nb;
    const char *region = c->ctx->snap->gateway.region;
    size_t need;

    if (b == NULL || (ep->region != NULL) == (c->uhead_mark != 0)) {
        return MG_OK;
    }
    if (ep->region == NULL) {
        b->last = b->start + c->uhead_mark;
        c->uhead_mark = 0;
        return buf_add_lit(b, "\r\n");
    }
    /* A peering request is never forwarded again, so the hop count of
     * anything we send across is 1. */
    need = strlen(region) + 64;
    if (mg_buf_room(b) < need) {
        nb = mg_buf_get_large((size_t)(b->last - b->start) + need
                              + MG_BUF_SIZE);
        if (nb == NULL) {
            return MG_ERROR;
        }
        memcpy(nb->last, b->start, (size_t)(b->last - b->start));
        nb->pos = nb->start + (b->pos - b->start);
        nb->last += b->last - b->start;
        mg_buf_put(&c->ctx->bufs, b);
        c->uhead = b = nb;
    }
    b->last -= 2;   /* the blank line */
    c->uhead_mark = (size_t)(b->last - b->start);
    if (buf_add_header(b, mg_str_lit("x-meshgate-origin"), region,
                       strlen(region), NULL, 0) != MG_OK
        || buf_add_lit(b, "x-meshgate-hops: 1\r\n\r\n") != MG_OK) {
        return MG_ERROR;
    }
    return MG_OK;
}

/* How long the upstream may stay silent: the route's or cluster's timeout,
 * or, until the response head arrives, the shorter per-try timeout when
 * retries may follow. */
static double
proxy_response_timeout(const mg_client_t *c, const mg_endpoint_conf_t *ep)
{
    return c->route->timeout > 0 ? c->route->timeout
                                 : ep->cluster->response_timeout;
}

static double
proxy_try_timeout(const mg_client_t *c, const mg_endpoint_conf_t *ep)
{
    double full = proxy_response_timeout(c, ep);
    double per_try = ep->cluster->retry.per_try_timeout;

    return per_try > 0 && per_try < full ? per_try : full;
}

/* A stream of an HTTP/2 connection (maybe still connecting): the request
 * is handed to the session at once and leaves when it can. */
static void
proxy_attach_h2(mg_client_t *c, mg_uconn_t *u, const mg_endpoint_conf_t *ep)
{
    mg_ctx_t *ctx = c->ctx;
    double timeout = proxy_try_timeout(c, ep);

    c->u = u;
    c->ep = ep;
    memcpy(c->upstream_addr, u->peer.text, sizeof(c->upstream_addr));
    ctx->active[ep->index]++;
    ev_set_cb(&u->timer, upstream_on_timer);
    u->timer.data = u;
    ev_timer_set(&u->timer, timeout, timeout);
    c->uhead_scanned = 0;
    if (proxy_mark_cross_region(c, ep) != MG_OK
        || mg_h2up_submit(u, c->uhead, !c->req_body_done) != MG_OK) {
        proxy_connect_failed(c, EPROTO);
        return;
    }
    if (c->req_body_done) {
        ev_timer_again(ctx->loop, &u->timer);
    }
}

/* Runs the TLS handshake with the upstream; once done, the request goes. */
static void
upstream_handshake(mg_client_t *c)
{
    char name[MG_DNS_LOG_NAME_LEN];
    mg_ctx_t *ctx = c->ctx;
    mg_uconn_t *u = c->u;
    int rc = mg_io_handshake(&u->io);

    if (rc == MG_AGAIN) {
        if (u->io.want_write) {
            ev_io_start(ctx->loop, &u->wev);
            ev_io_stop(ctx->loop, &u->rev);
        } else {
            ev_io_start(ctx->loop, &u->rev);
            ev_io_stop(ctx->loop, &u->wev);
        }
        if (!ev_is_active(&u->timer)) {
            ev_timer_set(&u->timer, u->ep->cluster->connect_timeout, 0.);
            ev_timer_start(ctx->loop, &u->timer);
        }
        return;
    }
    if (rc != MG_OK) {
        long vr = SSL_get_verify_result(u->io.ssl);
        const char *why = mg_io_ssl_error();

        mg_log_error(MG_LOG_ERROR, &mg_log, 0,
                     "TLS handshake with upstream %s failed: %s%s%s, "
                     "cluster: %s",
                     proxy_upstream_name(c, name, sizeof(name)),
                     why[0] ? why : "connection closed",
                     vr != X509_V_OK ? ": certificate verify failed: " : "",
                     vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "",
                     u->ep->cluster->name);
        proxy_connect_failed(c, EPROTO);
        return;
    }
    ev_io_stop(ctx->loop, &u->wev);
    ev_timer_stop(ctx->loop, &u->timer);
    ctx->active[u->ep->index]--;
    proxy_attach(c, u, u->ep);
}

/* This worker's share of an instance-wide limit. */
static unsigned
proxy_share(const mg_ctx_t *ctx, unsigned limit)
{
    unsigned w = ctx->workers ? ctx->workers : 1;

    return (limit + w - 1) / w;
}

/* The circuit breaker |ep|'s level of its cluster would trip for one more
 * request, by name, or NULL. */
static const char *
proxy_breaker_tripped(const mg_client_t *c, const mg_endpoint_conf_t *ep)
{
    const mg_ctx_t *ctx = c->ctx;
    const mg_cluster_conf_t *cl = ep->cluster;
    const mg_breakers_conf_t *b = &cl->breakers;
    const mg_priority_t *pr = &cl->priorities[ep->priority];
    unsigned requests = 0, conns = 0, pending = 0, j;

    for (j = 0; j < pr->nendpoints; j++) {
        requests += ctx->active[pr->eps[j]->index];
        conns += ctx->conns[pr->eps[j]->index];
        pending += ctx->pending[pr->eps[j]->index];
    }
    if (requests >= proxy_share(ctx, b->max_requests)) {
        return "max_requests";
    }
    /* Connections: only when this request would need a new one. */
    if (conns >= proxy_share(ctx, b->max_connections)
        && (ep->protocol != MG_PROTO_HTTP1
                ? ctx->pools[ep->pool].h2 == NULL
                : ctx->pools[ep->pool].idle == NULL || c->no_pool)) {
        return "max_connections";
    }
    if (pending >= proxy_share(ctx, b->max_pending)) {
        return "max_pending";
    }
    return NULL;
}

/* Passive outlier detection: what |ep| just did for a request. |status|
 * is the response status, or 0 for a failed connection, reset or
 * timeout. */
static void
proxy_outlier(mg_client_t *c, const mg_endpoint_conf_t *ep, unsigned status)
{
    mg_ctx_t *ctx = c->ctx;
    const mg_outlier_conf_t *oc = ep->cluster->outlier;
    const mg_priority_t *pr = &ep->cluster->priorities[ep->priority];
    unsigned ejected = 0, count = 0, j;
    double now = ev_now(ctx->loop), t;
    const char *why = "";

    if (oc == NULL || ctx->ejected_until[ep->index] > now) {
        return;
    }
    for (j = 0; j < pr->nendpoints; j++) {
        ejected += ctx->ejected_until[pr->eps[j]->index] > now;
    }
    t = mg_lb_outlier_record(&ctx->outlier[ep->index], oc, status, ejected,
                             pr->nendpoints, &why, &count);
    if (t <= 0) {
        return;
    }
    ctx->ejected_until[ep->index] = now + t;
    mg_met_inc(ep->met + MG_MET_E_EJECTIONS);
    mg_log_error(MG_LOG_NOTICE, &mg_log, 0,
                 "outlier detection: endpoint %s of cluster %s ejected for "
                 "%.1f s after %u consecutive %s (ejection %u)", ep->address,
                 ep->cluster->name, t, count, why,
                 ctx->outlier[ep->index].ejections);
}

static void
proxy_connect(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    const mg_cluster_conf_t *cl = c->route->cluster;
    const mg_endpoint_conf_t *ep;
    mg_uconn_t *u;
    int err = 0;
    char msg[256];
    /* Failed connections move on to the next endpoint only when the
     * policy retries them; either way within the cluster's attempts. */
    unsigned max = cl->retry.on & MG_RETRY_CONNECT_FAILURE
                       ? cl->retry.attempts
                       : mg_min(cl->retry.attempts, c->attempts + 1);
    mg_lb_view_t view;
    const char *limit;

    if (cl->eds_name != NULL) {
        mg_eds_refresh(ctx, cl);
    }
    while (c->attempts < max) {
        view.active = ctx->active;
        view.ejected_until = ctx->ejected_until;
        view.now = ev_now(ctx->loop);
        ep = mg_lb_pick(&ctx->lb[cl->index], cl, &view, c->tried,
                        c->local_only ? MG_LB_LOCAL_ONLY
                        : c->retried  ? MG_LB_HEALTHY_ONLY
                                      : MG_LB_ANY);
        if (ep == NULL) {
            break;
        }
        limit = proxy_breaker_tripped(c, ep);
        if (limit != NULL) {
            ctx->overflows[cl->index]++;
            mg_met_inc(cl->met + MG_MET_C_OVERFLOWS);
            mg_log_error(MG_LOG_INFO, &mg_log, 0,
                         "circuit breaker %s of cluster %s (level %u) is "
                         "open, client: %s", limit, cl->name, ep->priority,
                         c->client_ip);
            snprintf(msg, sizeof(msg), "upstream overflow: circuit breaker "
                     "%s of cluster %s\n", limit, cl->name);
            c->ep = NULL;
            if (c->grpc || c->resp_head_done) {
                proxy_fail(c, 503, msg);
            } else {
                client_detach_upstream(c, 0);
                if (!c->req_body_done) {
                    c->closing = 1;
                }
                client_respond(c, 503, "text/plain", msg, strlen(msg),
                               "x-meshgate-error: overflow\r\n");
            }
            return;
        }
        /* A try after the first is a retry, unless it only replays one
         * the upstream never took (proxy_replay()). */
        if (c->attempts > 0 && !c->replaying) {
            mg_met_inc(cl->met + MG_MET_C_RETRIES);
        }
        c->replaying = 0;
        c->attempts++;
        c->try_start = ev_time();
        mg_trace_upstream_try(&c->trace, c->try_start);
        mg_met_inc(cl->priorities[ep->priority].met + MG_MET_P_ATTEMPTS);
        if (ep->protocol != MG_PROTO_HTTP1) {
            u = mg_h2up_open(ctx, ep, c, c->no_pool, &err);
        } else {
            u = c->no_pool || c->connect || c->upgrade
                    ? NULL : mg_upstream_take(ctx, ep);
            if (u == NULL) {
                u = mg_upstream_connect(ctx, ep, &err);
            }
        }
        if (u == NULL) {
            if (ep->pos < 64) {
                c->tried |= (uint64_t)1 << ep->pos;
            }
            c->last_err = err;
            mg_met_inc(ep->met + MG_MET_E_CONNECT_FAILURES);
            mg_log_error(MG_LOG_WARN, &mg_log, err,
                         "connect() to %s failed, cluster: %s, client: %s",
                         ep->address, cl->name, c->client_ip);
            continue;
        }
        if (u->is_h2) {
            proxy_attach_h2(c, u, ep);
        } else {
            proxy_attach(c, u, ep);
        }
        return;
    }
    c->ep = NULL;
    if (c->local_only) {
        /* From another region, and nothing here could take it: say so
         * rather than pass it on (no cascades); the sender may try its
         * next region. */
        snprintf(msg, sizeof(msg), "no healthy endpoint for cluster %s in "
                 "region %s (request from region %s)%s%s\n", cl->name,
                 ctx->snap->gateway.region, c->origin,
                 c->last_err ? ": " : "",
                 c->last_err ? strerror(c->last_err) : "");
        if (c->grpc || c->resp_head_done) {
            proxy_fail(c, 503, msg);
        } else {
            client_detach_upstream(c, 0);
            if (!c->req_body_done) {
                c->closing = 1;
            }
            client_respond(c, 503, "text/plain", msg, strlen(msg),
                           "x-meshgate-error: no-healthy-local-endpoint\r\n");
        }
        return;
    }
    if (c->last_err == ETIMEDOUT) {
        snprintf(msg, sizeof(msg), "upstream connect timeout (cluster %s)\n",
                 cl->name);
        proxy_fail(c, 504, msg);
        return;
    }
    snprintf(msg, sizeof(msg), "upstream connect error: %s (cluster %s)\n",
             c->last_err ? strerror(c->last_err) : "no endpoint available",
             cl->name);
    proxy_fail(c, 503, msg);
}

/* A connection attempt failed before anything was sent: try the next
 * endpoint. */
static void
proxy_connect_failed(mg_client_t *c, int err)
{
    char name[MG_DNS_LOG_NAME_LEN];
    const mg_cluster_conf_t *cl = c->route->cluster;

    mg_log_error(MG_LOG_WARN, &mg_log, err,
                 "connect() to %s failed, cluster: %s, client: %s",
                 proxy_upstream_name(c, name, sizeof(name)), cl->name,
                 c->client_ip);
    mg_met_inc(c->ep->met + MG_MET_E_CONNECT_FAILURES);
    proxy_outlier(c, c->ep, 0);
    if (c->ep->pos < 64) {
        c->tried |= (uint64_t)1 << c->ep->pos;
    }
    c->last_err = err;
    client_detach_upstream(c, 0);
    proxy_connect(c);
}

/* Drops the upstream and winds the request back to its first byte (its
 * head and body are still in our buffers), to be sent again. */
static void
proxy_rewind(mg_client_t *c)
{
    client_detach_upstream(c, 0);
    c->uhead->pos = c->uhead->start;
    if (c->body_start != NULL) {
        c->in->pos = c->body_start;
    }
    c->body_left = c->req_body_kind == MG_H1_BODY_LENGTH ? c->content_length
                                                         : 0;
    c->req_body_done = c->req_body_kind == MG_H1_BODY_NONE
                       || (c->req_body_kind == MG_H1_BODY_LENGTH
                           && c->content_length == 0);
    memset(&c->req_ck, 0, sizeof(c->req_ck));
    c->req_ck_done = 0;
    c->body_scanned = 0;
}

/* Sends the request again from the start when all of it is still at hand;
 * |fresh|: on a new connection. MG_OK if it went. */
static int
proxy_replay(mg_client_t *c, int fresh)
{
    if (c->resp_seen || !c->replayable || c->uhead == NULL
        || c->attempts >= 8) {
        return MG_ERROR;
    }
    proxy_rewind(c);
    c->no_pool = fresh;
    /* Not the endpoint's doing (a stale pooled connection, a refused
     * stream): no attempt is spent, and endpoints tried stay tried. */
    if (c->attempts > 0) {
        c->attempts--;
    }
    c->replaying = 1;
    proxy_connect(c);
    return MG_OK;
}

/* Whether the cluster's retry policy lets this request go again after
 * |status| (0: the upstream failed before answering). */
static int
proxy_may_retry(mg_client_t *c, unsigned status)
{
    const mg_retry_conf_t *rc = &c->route->cluster->retry;

    const mg_cluster_conf_t *cl = c->route->cluster;
    unsigned active = 0, p, j, allowed;
    mg_lb_view_t view;

    if (c->attempts >= rc->attempts || !c->replayable || c->uhead == NULL
        || c->resp_head_done) {
        return 0;
    }
    if (status == 0 ? !(rc->on & MG_RETRY_RESET)
                    : !(((rc->on & MG_RETRY_5XX) && status >= 500
                         && status <= 599)
                        || ((rc->on & MG_RETRY_GATEWAY_ERROR) && status >= 502
                            && status <= 504)
                        || ((rc->on & MG_RETRY_RETRIABLE_STATUS)
                            && status < 640
                            && (rc->statuses[status / 64]
                                & ((uint64_t)1 << (status % 64)))))) {
        return 0;
    }
    /* Only when a healthy endpoint not tried yet is left: otherwise what
     * this one said is the best answer there is. (Looked up without
     * picking: the balancer's state is for real picks.) */
    view.active = c->ctx->active;
    view.ejected_until = c->ctx->ejected_until;
    view.now = ev_now(c->ctx->loop);
    for (p = 0; p < (c->local_only ? 1 : cl->npriorities); p++) {
        for (j = 0; j < cl->priorities[p].nendpoints; j++) {
            const mg_endpoint_conf_t *ep = cl->priorities[p].eps[j];

            if (ep != c->ep && (ep->pos >= 64
                                || !(c->tried & ((uint64_t)1 << ep->pos)))
                && mg_lb_available(ep, &view)) {
                goto found;
            }
        }
    }
    return 0;
found:
    if (c->retried) {
        return 1;   /* already counted in the budget */
    }
    if (c->ctx->retrying[cl->index]
        >= proxy_share(c->ctx, cl->breakers.max_retries)) {
        /* The max_retries breaker: the answer goes as it is. */
        c->ctx->overflows[cl->index]++;
        mg_met_inc(cl->met + MG_MET_C_OVERFLOWS);
        mg_log_error(MG_LOG_INFO, &mg_log, 0,
                     "circuit breaker max_retries of cluster %s is open",
                     cl->name);
        return 0;
    }
    /* The budget: retries may be at most |budget| of the cluster's active
     * requests (but 3 at any time), so a failing service is not hit with
     * a multiple of its load. */
    for (p = 0; p < cl->npriorities; p++) {
        for (j = 0; j < cl->priorities[p].nendpoints; j++) {
            active += c->ctx->active[cl->priorities[p].eps[j]->index];
        }
    }
    allowed = mg_max(3u, (unsigned)(rc->budget * active));
    if (c->ctx->retrying[cl->index] >= allowed) {
        mg_log_error(MG_LOG_INFO, &mg_log, 0,
                     "retry budget of cluster %s exhausted (%u retrying, %u "
                     "active)", cl->name, c->ctx->retrying[cl->index],
                     active);
        return 0;
    }
    return 1;
}

/* A region's front proxy that had no healthy endpoint for the service has
 * said so: that answer goes to the client as it is, rather than the request
 * touring every region (bounded fan-out in an outage, and a clear cause). */
static int
proxy_final_answer(const mg_h1_response_t *resp)
{
    unsigned i;

    for (i = 0; i < resp->nheaders; i++) {
        if (mg_str_caseeq_lit(resp->headers[i].name, "x-meshgate-error")) {
            return 1;
        }
    }
    return 0;
}

/* Tries the request on another endpoint, preferring ones not tried yet;
 * what this one answered is dropped. */
static void
proxy_retry(mg_client_t *c, const char *why)
{
    char name[MG_DNS_LOG_NAME_LEN];

    mg_log_error(MG_LOG_INFO, &mg_log, 0,
                 "upstream %s %s, retrying (attempt %u of %u), cluster: %s, "
                 "request: \"%.*s %.*s\"",
                 proxy_upstream_name(c, name, sizeof(name)), why,
                 c->attempts + 1, c->route->cluster->retry.attempts,
                 c->route->cluster->name, (int)c->method_len, c->method,
                 (int)c->target_len, c->target);
    const mg_retry_conf_t *rc = &c->route->cluster->retry;
    double delay, cap;
    unsigned n;

    if (c->ep != NULL && c->ep->pos < 64) {
        c->tried |= (uint64_t)1 << c->ep->pos;
    }
    if (!c->retried) {
        c->retried = 1;
        c->ctx->retrying[c->route->cluster->index]++;
    }
    proxy_rewind(c);
    c->resp_seen = 0;
    c->uhead_scanned = 0;
    c->no_pool = 0;
    /* Exponential backoff with full jitter: retries of many requests
     * spread out instead of arriving together. */
    n = c->attempts > 0 ? c->attempts - 1 : 0;
    cap = mg_min(rc->max_backoff, rc->backoff * (double)(1u << mg_min(n, 16u)));
    delay = cap * (double)(random() % 1000) / 1000.0;
    if (delay <= 0) {
        proxy_connect(c);
        return;
    }
    ev_timer_set(&c->retry_timer, delay, 0.);
    ev_timer_start(c->ctx->loop, &c->retry_timer);
}

static void
proxy_on_retry_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    proxy_connect((mg_client_t *)w->data);
}

/* The upstream went away before answering. A request on a reused pooled
 * connection that it may not have seen is sent again on a fresh one. */
static void
proxy_upstream_lost(mg_client_t *c, int err, const char *what)
{
    char name[MG_DNS_LOG_NAME_LEN];
    char msg[160];
    int safe_method = c->method_id == MG_H1_METHOD_GET
                      || c->method_id == MG_H1_METHOD_HEAD
                      || c->method_id == MG_H1_METHOD_OPTIONS
                      || c->method_id == MG_H1_METHOD_PUT
                      || c->method_id == MG_H1_METHOD_DELETE
                      || c->method_id == MG_H1_METHOD_TRACE;

    if (c->u != NULL && c->u->reused && safe_method
        && proxy_replay(c, 1) == MG_OK) {
        return;   /* a stale pooled connection: not the endpoint's fault */
    }
    if (c->ep != NULL) {
        mg_met_inc(c->ep->met + MG_MET_E_RESETS);
        proxy_outlier(c, c->ep, 0);
    }
    if (proxy_may_retry(c, 0)) {
        proxy_retry(c, what);
        return;
    }
    mg_log_error(MG_LOG_ERROR, &mg_log, err,
                 "upstream %s %s, cluster: %s, client: %s, request: \"%.*s "
                 "%.*s\"", proxy_upstream_name(c, name, sizeof(name)), what,
                 c->route->cluster->name, c->client_ip, (int)c->method_len,
                 c->method, (int)c->target_len, c->target);
    snprintf(msg, sizeof(msg), "upstream %s (cluster %s)\n", what,
             c->route->cluster->name);
    proxy_fail(c, 502, msg);
}

/* Fails the request: an error response when none has started yet, else
 * the client connection just closes (its response is cut short). */
static void
proxy_fail(mg_client_t *c, unsigned status, const char *reason)
{
    client_detach_upstream(c, 0);
    if (c->is_stream && c->resp_submitted) {
        c->status = c->status ? c->status : status;
        mg_h2_reset(c);
        return;
    }
    if (c->resp_head_done || c->state == CS_TUNNEL) {
        c->status = c->status ? c->status : status;
        c->keep_alive = 0;
        if (c->method_len != 0) {
            client_log_request(c);
            c->method_len = 0;
        }
        client_close(c);
        return;
    }
    if (!c->req_body_done) {
        c->closing = 1;
    }
    client_respond_text(c, status, reason);
}

/* How many bytes at in->pos belong to the request body. */
static size_t
proxy_req_body_avail(mg_client_t *c, int *err)
{
    size_t pending, consumed = 0;
    int rc;

    *err = 0;
    if (c->req_body_done || c->in == NULL) {
        return 0;
    }
    pending = mg_buf_pending(c->in);
    if (c->req_body_kind == MG_H1_BODY_LENGTH) {
        return (size_t)mg_min((int64_t)pending, c->body_left);
    }
    if (!c->req_ck_done && c->body_scanned < pending) {
        rc = mg_h1_chunked_parse(&c->req_ck, c->in->pos + c->body_scanned,
                                 pending - c->body_scanned, &consumed, NULL, 0,
                                 c->lc->limits.max_body_size);
        c->body_scanned += consumed;
        if (rc == MG_OK) {
            c->req_ck_done = 1;
        } else if (rc != MG_AGAIN) {
            *err = rc;
        }
    }
    return c->body_scanned;
}

static void
proxy_send_upstream(mg_client_t *c)
{
    if (c->u->is_h2) {
        mg_h2up_resume_send(c->u);
    } else if (c->is_stream) {
        proxy_send_upstream_stream(c);
    } else {
        proxy_send_upstream_h1(c);
    }
}

static void
proxy_request_sent(mg_client_t *c)
{
    mg_uconn_t *u = c->u;

    c->req_body_done = 1;
    ev_io_stop(c->ctx->loop, &u->wev);
    if (!ev_is_active(&u->timer)) {
        ev_timer_again(c->ctx->loop, &u->timer);
    }
}

/* An HTTP/2 stream's body goes upstream as it came (with a known length)
 * or framed as chunked; flow control credit returns as bytes leave. */
static void
proxy_send_upstream_stream(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    mg_uconn_t *u = c->u;
    struct iovec iov[3];
    size_t head, hdr, data, avail;
    ssize_t n;
    int iovcnt, len;

    if (u == NULL || u->connecting
        || (u->io.ssl != NULL && !u->io.handshake_done)) {
        return;
    }
    for (;;) {
        head = c->uhead ? mg_buf_pending(c->uhead) : 0;
        avail = c->in ? mg_buf_pending(c->in) : 0;
        data = 0;
        if (c->req_body_kind == MG_H1_BODY_LENGTH) {
            data = (size_t)mg_min((int64_t)avail, c->body_left);
        } else if (c->gen_chunked) {
            if (c->chunk_left == 0 && c->chunk_hdr_pos == c->chunk_hdr_len
                && !c->chunk_final) {
                if (avail > 0) {
                    len = snprintf(c->chunk_hdr, sizeof(c->chunk_hdr),
                                   "%zx\r\n", avail);
                    c->chunk_hdr_len = (unsigned)len;
                    c->chunk_hdr_pos = 0;
                    c->chunk_left = avail;
                } else if (c->body_eof) {
                    memcpy(c->chunk_hdr, "0\r\n\r\n", 5);
                    c->chunk_hdr_len = 5;
                    c->chunk_hdr_pos = 0;
                    c->chunk_final = 1;
                }
            }
            data = (size_t)mg_min(avail, c->chunk_left);
        }
        hdr = c->chunk_hdr_len - c->chunk_hdr_pos;
        iovcnt = 0;
        if (head > 0) {
            iov[iovcnt].iov_base = c->uhead->pos;
            iov[iovcnt++].iov_len = head;
        }
        if (hdr > 0) {
            iov[iovcnt].iov_base = c->chunk_hdr + c->chunk_hdr_pos;
            iov[iovcnt++].iov_len = hdr;
        }
        if (data > 0) {
            iov[iovcnt].iov_base = c->in->pos;
            iov[iovcnt++].iov_len = data;
        }
        if (iovcnt == 0) {
            break;
        }
        n = mg_io_sendv(&u->io, iov, iovcnt);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                ev_io_start(ctx->loop, &u->wev);
                return;
            }
            proxy_upstream_lost(c, errno, "reset the connection");
            return;
        }
        if (head > 0) {
            size_t k = mg_min((size_t)n, head);

            c->uhead->pos += k;
            n -= (ssize_t)k;
        }
        if (hdr > 0 && n > 0) {
            size_t k = mg_min((size_t)n, hdr);

            c->chunk_hdr_pos += (unsigned)k;
            n -= (ssize_t)k;
        }
        if (n > 0) {
            c->in->pos += n;
            if (c->req_body_kind == MG_H1_BODY_LENGTH) {
                c->body_left -= n;
            } else {
                c->chunk_left -= (uint64_t)n;
                if (c->chunk_left == 0) {
                    memcpy(c->chunk_hdr, "\r\n", 2);
                    c->chunk_hdr_len = 2;
                    c->chunk_hdr_pos = 0;
                }
            }
            mg_h2_consume(c, (size_t)n);
        }
    }
    if (c->in != NULL && mg_buf_pending(c->in) == 0) {
        c->in->pos = c->in->last = c->in->start;
    }
    if (c->req_body_kind == MG_H1_BODY_NONE
        || (c->req_body_kind == MG_H1_BODY_LENGTH && c->body_left == 0)
        || (c->gen_chunked && c->chunk_final
            && c->chunk_hdr_pos == c->chunk_hdr_len)) {
        proxy_request_sent(c);
        return;
    }
    ev_io_stop(ctx->loop, &u->wev);
}

static void
proxy_send_upstream_h1(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    mg_uconn_t *u = c->u;
    struct iovec iov[2];
    size_t head = c->uhead ? mg_buf_pending(c->uhead) : 0, body;
    ssize_t n;
    int iovcnt, err;

    for (;;) {
        body = proxy_req_body_avail(c, &err);
        if (err != 0) {
            c->req_keep_alive = 0;
            c->closing = 1;
            if (c->resp_head_done) {
                proxy_fail(c, 400, "");
                return;
            }
            client_detach_upstream(c, 0);
            c->req_body_done = 1;
            client_reject(c, err);
            return;
        }
        iovcnt = 0;
        if (head > 0) {
            iov[iovcnt].iov_base = c->uhead->pos;
            iov[iovcnt++].iov_len = head;
        }
        if (body > 0) {
            iov[iovcnt].iov_base = c->in->pos;
            iov[iovcnt++].iov_len = body;
        }
        if (iovcnt == 0) {
            break;
        }
        n = mg_io_sendv(&u->io, iov, iovcnt);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                ev_io_start(ctx->loop, &u->wev);
                ev_io_stop(ctx->loop, &c->rev);
                return;
            }
            proxy_upstream_lost(c, errno, "reset the connection");
            return;
        }
        if ((size_t)n <= head) {
            c->uhead->pos += n;
            head -= (size_t)n;
            continue;
        }
        if (head > 0) {
            c->uhead->pos += head;
            n -= (ssize_t)head;
            head = 0;
        }
        c->in->pos += n;
        if (c->req_body_kind == MG_H1_BODY_LENGTH) {
            c->body_left -= n;
            if (c->body_left == 0) {
                c->req_body_done = 1;
            }
        } else {
            c->body_scanned -= (size_t)n;
            if (c->req_ck_done && c->body_scanned == 0) {
                c->req_body_done = 1;
            }
        }
    }
    ev_io_stop(ctx->loop, &u->wev);
    if (c->req_body_done) {
        /* Whatever follows is the next request: not read until this
         * response is done (client_on_read() stops the watcher if it
         * comes early). */
        if (!c->resp_head_done) {
            ev_timer_stop(ctx->loop, &c->timer);
        }
        if (!ev_is_active(&u->timer)) {
            ev_timer_again(ctx->loop, &u->timer);
        }
        return;
    }
    /* More body to come from the client. */
    if (c->in != NULL && mg_buf_pending(c->in) == 0) {
        if (c->in->pos != c->body_start) {
            c->replayable = 0;
        }
        c->in->pos = c->in->last = c->in->start;
        c->body_start = NULL;
    }
    client_want_read(c);
    client_timer_set(c, c->lc->request_header_timeout > c->lc->idle_timeout
                            ? c->lc->request_header_timeout
                            : c->lc->idle_timeout);
}

static void
proxy_read_body_from_client(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    ssize_t n;

    if (c->in == NULL) {
        c->in = mg_buf_get(&ctx->bufs);
        if (c->in == NULL) {
            proxy_fail(c, 500, "out of memory\n");
            return;
        }
        c->body_start = NULL;
        c->replayable = 0;
    }
    if (mg_buf_room(c->in) == 0) {
        if (c->in->pos == c->in->start) {
            /* Full: wait for the upstream to take some. */
            ev_io_stop(ctx->loop, &c->rev);
            return;
        }
        c->replayable = 0;
        mg_buf_compact(c->in);
        c->body_start = NULL;
    }
    n = mg_io_recv(&c->io, c->in->last, mg_buf_room(c->in));
    if (n > 0) {
        mg_met_add(c->lc->met + MG_MET_L_BYTES_IN, (uint64_t)n);
    }
    if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
        /* The client gave up in the middle of its body. */
        c->keep_alive = 0;
        c->status = c->status ? c->status : 400;
        if (c->method_len != 0) {
            client_log_request(c);
            c->method_len = 0;
        }
        client_close(c);
        return;
    }
    if (n == -1) {
        return;
    }
    c->in->last += n;
    proxy_send_upstream(c);
}

/* ------------------------------------------------------------------ */
/* Responses from the upstream                                         */

static int
proxy_build_client_head(mg_client_t *c, const mg_h1_response_t *resp)
{
    mg_ctx_t *ctx = c->ctx;
    size_t need = resp->head_len + 256;
    mg_buf_t *b;
    const mg_h1_header_t *h;
    unsigned i;
    int n, vary_seen = 0;

    b = need <= MG_BUF_SIZE ? mg_buf_get(&ctx->bufs) : mg_buf_get_large(need);
    if (b == NULL) {
        return MG_ERROR;
    }
    c->out = b;
    n = snprintf(b->last, mg_buf_room(b), "HTTP/1.1 %u %.*s\r\n",
                 resp->status, (int)mg_min(resp->reason.len, 200),
                 resp->reason.data);
    b->last += n;
    for (i = 0; i < resp->nheaders; i++) {
        h = &resp->headers[i];
        if (h->hop_by_hop) {
            continue;
        }
        if (h->id == MG_H1_HDR_CONTENT_LENGTH
            && ((c->resp_body_kind != MG_H1_BODY_LENGTH
                 && resp->status != 304 && c->method_id != MG_H1_METHOD_HEAD)
                || c->gzip_on)) {
            continue;
        }
        if (c->gzip_vary && !vary_seen && mg_str_caseeq_lit(h->name, "vary")) {
            /* The first Vary field names Accept-Encoding too, once. */
            vary_seen = 1;
            if (!proxy_has_token(h->value, "accept-encoding")
                && !proxy_has_token(h->value, "*")) {
                if (buf_add_header(b, h->name, h->value.data, h->value.len,
                                   ", Accept-Encoding", 17) != MG_OK) {
                    return MG_ERROR;
                }
                continue;
            }
        }
        if (buf_add_header(b, h->name, h->value.data, h->value.len, NULL, 0)
            != MG_OK) {
            return MG_ERROR;
        }
    }
    if (c->gzip_vary && !vary_seen
        && buf_add_lit(b, "Vary: Accept-Encoding\r\n") != MG_OK) {
        return MG_ERROR;
    }
    if (c->gzip_on) {
        if (buf_add_lit(b, "Content-Encoding: gzip\r\n") != MG_OK
            || (c->version_minor == 1
                && buf_add_lit(b, "Transfer-Encoding: chunked\r\n")
                       != MG_OK)) {
            return MG_ERROR;
        }
    } else if (c->resp_body_kind == MG_H1_BODY_CHUNKED && !c->resp_decode
               && buf_add_lit(b, "Transfer-Encoding: chunked\r\n") != MG_OK) {
        return MG_ERROR;
    }
    if (resp->status == 101) {
        if (buf_add_lit(b, "Connection: upgrade\r\n") != MG_OK) {
            return MG_ERROR;
        }
        for (i = 0; i < resp->nheaders; i++) {
            if (resp->headers[i].id == MG_H1_HDR_UPGRADE
                && buf_add_header(b, resp->headers[i].name,
                                  resp->headers[i].value.data,
                                  resp->headers[i].value.len, NULL, 0)
                       != MG_OK) {
                return MG_ERROR;
            }
        }
    } else if (!c->keep_alive) {
        if (buf_add_lit(b, "Connection: close\r\n") != MG_OK) {
            return MG_ERROR;
        }
    } else if (c->version_minor == 0) {
        if (buf_add_lit(b, "Connection: keep-alive\r\n") != MG_OK) {
            return MG_ERROR;
        }
    }
    return buf_add_lit(b, "\r\n");
}

/* Whether the comma-separated list |v| has |token| (any case). */
static int
proxy_has_token(mg_str_t v, const char *token)
{
    size_t n = strlen(token), i;

    for (i = 0; i + n <= v.len; i++) {
        if (strncasecmp(v.data + i, token, n) == 0
            && (i == 0 || v.data[i - 1] == ',' || v.data[i - 1] == ' ')
            && (i + n == v.len || v.data[i + n] == ',' || v.data[i + n] == ' '
                || v.data[i + n] == '=')) {
            return 1;
        }
    }
    return 0;
}

/* Decides whether this response is compressed on its way to the client,
 * and whether it must say it varies with Accept-Encoding. */
static void
proxy_gzip_decide(mg_client_t *c, const mg_h1_response_t *resp)
{
    const mg_gzip_conf_t *conf = c->route->gzip;
    mg_str_t ctype = mg_str_null;
    int64_t len = resp->body_kind == MG_H1_BODY_LENGTH ? resp->content_length
                                                       : -1;
    unsigned i;

    c->gzip_on = 0;
    c->gzip_vary = 0;
    if (conf == NULL || c->resp_done || resp->status < 200
        || resp->status >= 400 || resp->status == 204 || resp->status == 206
        || resp->status == 304 || c->method_id == MG_H1_METHOD_HEAD) {
        return;
    }
    for (i = 0; i < resp->nheaders; i++) {
        const mg_h1_header_t *h = &resp->headers[i];

        if (mg_str_caseeq_lit(h->name, "content-encoding")
            || mg_str_caseeq_lit(h->name, "content-range")) {
            return;   /* already encoded, or a range of the original */
        }
        if (mg_str_caseeq_lit(h->name, "cache-control")
            && proxy_has_token(h->value, "no-transform")) {
            return;   /* directives compare case-insensitively */
        }
        if (mg_str_caseeq_lit(h->name, "content-type")) {
            ctype = h->value;
        }
    }
    if (!mg_gzip_wants(conf, ctype, len)) {
        return;
    }
    c->gzip_vary = 1;
    if (!c->accept_gzip) {
        return;
    }
    c->gz = mg_gzip_new(conf->level);
    if (c->gz == NULL) {
        return;   /* sent as it is */
    }
    c->gzip_on = 1;
    /* Compression needs the plain body; HTTP/1.1 clients get it chunked,
     * HTTP/1.0 ones delimited by the close. */
    c->resp_decode = 1;
    if (!c->is_stream && c->version_minor == 0) {
        c->keep_alive = 0;
    }
}

static void
proxy_on_response_head(mg_client_t *c, const mg_h1_response_t *resp)
{
    mg_ctx_t *ctx = c->ctx;

    c->status = resp->status;
    c->resp_head_done = 1;
    if (c->u != NULL && c->ep != NULL) {
        /* A per-try timeout bounded the wait for the head; the body gets
         * the full silence timeout. */
        c->u->timer.repeat = proxy_response_timeout(c, c->ep);
    }
    c->resp_body_kind = resp->body_kind;
    c->resp_left = resp->body_kind == MG_H1_BODY_LENGTH ? resp->content_length
                                                        : 0;
    memset(&c->resp_ck, 0, sizeof(c->resp_ck));
    c->resp_scanned = 0;
    c->resp_keep_alive = resp->keep_alive;
    c->resp_decode = resp->body_kind == MG_H1_BODY_CHUNKED
                     && (c->version_minor == 0 || c->is_stream);
    c->keep_alive = c->req_keep_alive && !ctx->draining && c->req_body_done
                    && resp->body_kind != MG_H1_BODY_CLOSE && !c->resp_decode
                    && resp->status != 101;
    if (resp->body_kind == MG_H1_BODY_NONE
        || (resp->body_kind == MG_H1_BODY_LENGTH && resp->content_length == 0)) {
        c->resp_done = 1;
    }
    proxy_gzip_decide(c, resp);
    /* The request can no longer be replayed: its head is not needed. */
    mg_buf_put(&ctx->bufs, c->uhead);
    c->uhead = NULL;
    if (c->is_stream) {
        if (mg_h2_submit_response(c, resp) != MG_OK) {
            c->resp_head_done = 0;
            proxy_fail(c, 502, "upstream response head not translatable\n");
        }
        return;
    }
    if (proxy_build_client_head(c, resp) != MG_OK) {
        mg_buf_put(&ctx->bufs, c->out);
        c->out = NULL;
        c->resp_head_done = 0;
        proxy_fail(c, 502, "upstream response head too large\n");
    }
}

/* How many bytes at u->in->pos belong to the response body and may go to
 * the client now. */
static size_t
proxy_resp_body_avail(mg_client_t *c, int *err)
{
    mg_buf_t *in = c->u ? c->u->in : NULL;
    size_t pending, consumed = 0, out_len = 0;
    int rc;

    *err = 0;
    if (in == NULL) {
        return 0;
    }
    pending = mg_buf_pending(in);
    switch (c->resp_body_kind) {
    case MG_H1_BODY_LENGTH:
        return (size_t)mg_min((int64_t)pending, c->resp_left);
    case MG_H1_BODY_CLOSE:
        return pending;
    case MG_H1_BODY_CHUNKED:
        if (!c->resp_done && c->resp_scanned < pending) {
            char *p = in->pos + c->resp_scanned;
            size_t len = pending - c->resp_scanned;

            rc = mg_h1_chunked_parse(&c->resp_ck, p, len, &consumed,
                                     &out_len, c->resp_decode, 0);
            if (rc != MG_OK && rc != MG_AGAIN) {
                *err = rc;
                return 0;
            }
            if (c->resp_decode) {
                /* Decoded data sits at the front of the scanned range;
                 * drop the framing bytes behind it. */
                memmove(p + out_len, p + consumed, len - consumed);
                in->last -= consumed - out_len;
                c->resp_scanned += out_len;
            } else {
                c->resp_scanned += consumed;
            }
            if (rc == MG_OK) {
                c->resp_done = 1;
            }
        }
        return c->resp_scanned;
    default:
        return 0;
    }
}

static void
proxy_finish(mg_client_t *c)
{
    int reuse = c->resp_keep_alive && c->req_body_done
                && c->resp_body_kind != MG_H1_BODY_CLOSE && c->u != NULL
                && c->u->in != NULL && mg_buf_pending(c->u->in) == 0;

    client_detach_upstream(c, reuse);
    client_finish_request(c);
}

/* The client cannot take more: read no more from the upstream until it
 * does (back-pressure), and bound how long it may stall. */
static void
proxy_client_blocked(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;

    ev_io_start(ctx->loop, &c->wev);
    if (c->u != NULL) {
        ev_io_stop(ctx->loop, &c->u->rev);
        ev_timer_stop(ctx->loop, &c->u->timer);
    }
    client_timer_set(c, c->lc->send_timeout);
}

/* Everything the upstream sent has been passed on: read more, with the
 * silence timer running again once the request is all sent. */
static void
proxy_read_upstream_again(mg_client_t *c)
{
    mg_uconn_t *u = c->u;

    if (u->in != NULL && mg_buf_pending(u->in) == 0) {
        u->in->pos = u->in->last = u->in->start;
    }
    upstream_want_read(c);
    if (c->req_body_done) {
        ev_timer_again(c->ctx->loop, &u->timer);
    }
}

/* Takes |n| bytes of response body out of the upstream buffer. */
static void
proxy_resp_consume(mg_client_t *c, size_t n)
{
    mg_uconn_t *u = c->u;

    if (n > 0) {
        u->in->pos += n;
        if (c->resp_body_kind == MG_H1_BODY_LENGTH) {
            c->resp_left -= (int64_t)n;
            if (c->resp_left == 0) {
                c->resp_done = 1;
            }
        } else if (c->resp_body_kind == MG_H1_BODY_CHUNKED) {
            c->resp_scanned -= n;
        }
    }
    if (c->resp_body_kind == MG_H1_BODY_CLOSE && c->resp_eof
        && (u->in == NULL || mg_buf_pending(u->in) == 0)) {
        c->resp_done = 1;
    }
}

/*
 * Compresses what the upstream sent into c->gz_out, framed as one chunk
 * for an HTTP/1.1 client. Returns MG_OK (output, or input taken), MG_AGAIN
 * (needs more from the upstream) or MG_ERROR.
 */
static int
proxy_gzip_produce(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    size_t avail = 0, in_len, hdr, tail, room;
    ssize_t n;
    int err, mode, framed = !c->is_stream && c->version_minor == 1;
    char *out;

    if (c->gz_out == NULL) {
        c->gz_out = mg_buf_get(&ctx->bufs);
        if (c->gz_out == NULL) {
            return MG_ERROR;
        }
    }
    c->gz_out->pos = c->gz_out->last = c->gz_out->start;
    if (c->u != NULL) {
        avail = proxy_resp_body_avail(c, &err);
        if (err != 0) {
            return MG_ERROR;
        }
    }
    if (c->resp_body_kind == MG_H1_BODY_CLOSE && c->resp_eof && avail == 0) {
        c->resp_done = 1;   /* the upstream's close ended the body */
    }
    if (avail > 0) {
        mode = Z_NO_FLUSH;
    } else if (mg_proxy__resp_complete(c)) {
        mode = Z_FINISH;
    } else if (!c->gz->flushed) {
        mode = Z_SYNC_FLUSH;   /* the upstream paused: pass on what we have */
    } else {
        return MG_AGAIN;
    }
    /* A chunk: "xxxxxx\r\n" data "\r\n", plus the last chunk at the end. */
    hdr = framed ? 8 : 0;
    tail = framed ? 2 + 5 : 0;
    out = c->gz_out->start + hdr;
    room = (size_t)(c->gz_out->end - out) - tail;
    in_len = avail;
    n = mg_gzip_run(c->gz, avail ? c->u->in->pos : "", &in_len, out, room,
                    mode);
    if (n < 0) {
        return MG_ERROR;
    }
    if (in_len > 0) {
        proxy_resp_consume(c, in_len);
    }
    if (n > 0) {
        if (framed) {
            static const char hex[] = "0123456789abcdef";
            char *p = c->gz_out->start;
            int k;

            /* Fixed width, leading zeros: the size fits before the data
             * it describes (a block is far below 16^6 bytes). */
            for (k = 5; k >= 0; k--) {
                p[k] = hex[((size_t)n >> (4 * (5 - k))) & 0xf];
            }
            p[6] = '\r';
            p[7] = '\n';
        }
        c->gz_out->pos = framed ? c->gz_out->start : out;
        c->gz_out->last = out + n;
        if (framed) {
            memcpy(c->gz_out->last, "\r\n", 2);
            c->gz_out->last += 2;
        }
    }
    if (c->gz->finished && framed) {
        if (n == 0) {
            c->gz_out->pos = c->gz_out->last = c->gz_out->start;
        }
        memcpy(c->gz_out->last, "0\r\n\r\n", 5);
        c->gz_out->last += 5;
    }
    return MG_OK;
}

static void
proxy_send_client_gzip(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    struct iovec iov[2];
    int iovcnt, rc;
    ssize_t n;

    for (;;) {
        iovcnt = 0;
        if (c->out != NULL && mg_buf_pending(c->out) > 0) {
            iov[iovcnt].iov_base = c->out->pos;
            iov[iovcnt++].iov_len = mg_buf_pending(c->out);
        }
        if (c->gz_out != NULL && mg_buf_pending(c->gz_out) > 0) {
            iov[iovcnt].iov_base = c->gz_out->pos;
            iov[iovcnt++].iov_len = mg_buf_pending(c->gz_out);
        }
        if (iovcnt == 0) {
            if (c->gz->finished) {
                break;
            }
            rc = proxy_gzip_produce(c);
            if (rc == MG_ERROR) {
                proxy_fail(c, 502, "");
                return;
            }
            if (rc == MG_AGAIN) {
                /* Wait for the upstream. */
                ev_io_stop(ctx->loop, &c->wev);
                if (c->u != NULL) {
                    proxy_read_upstream_again(c);
                }
                return;
            }
            continue;
        }
        n = mg_io_sendv(&c->io, iov, iovcnt);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                proxy_client_blocked(c);
                return;
            }
            c->keep_alive = 0;
            mg_proxy__log(c);
            client_close(c);
            return;
        }
        c->bytes_sent += (uint64_t)n;
        if (c->out != NULL && mg_buf_pending(c->out) > 0) {
            size_t k = mg_min((size_t)n, mg_buf_pending(c->out));

            c->out->pos += k;
            n -= (ssize_t)k;
            if (mg_buf_pending(c->out) == 0) {
                mg_buf_put(&ctx->bufs, c->out);
                c->out = NULL;
            }
        }
        if (n > 0) {
            c->gz_out->pos += n;
        }
    }
    ev_io_stop(ctx->loop, &c->wev);
    ev_timer_stop(ctx->loop, &c->timer);
    proxy_finish(c);
}

/* HTTP/2 side of compression: copies compressed bytes for a DATA frame.
 * Returns the bytes copied; |*eof| when the body is complete; 0 without
 * eof means wait for the upstream. -1 on error. */
ssize_t
mg_proxy__gzip_read(mg_client_t *c, char *buf, size_t length, int *eof)
{
    size_t n;
    int rc;

    *eof = 0;
    while (c->gz_out == NULL || mg_buf_pending(c->gz_out) == 0) {
        if (c->gz->finished) {
            *eof = 1;
            if (c->u != NULL) {
                mg_proxy__resp_body_sent(c, 0);   /* releases the upstream */
            }
            return 0;
        }
        rc = proxy_gzip_produce(c);
        if (rc == MG_ERROR) {
            return -1;
        }
        if (rc == MG_AGAIN) {
            if (c->u != NULL && c->u->in != NULL
                && mg_buf_pending(c->u->in) == 0) {
                /* With the silence timer, as on the other paths. */
                proxy_read_upstream_again(c);
            }
            return 0;
        }
    }
    n = mg_min(length, mg_buf_pending(c->gz_out));
    memcpy(buf, c->gz_out->pos, n);
    c->gz_out->pos += n;
    c->bytes_sent += n;
    if (mg_buf_pending(c->gz_out) == 0 && c->gz->finished) {
        *eof = 1;
        if (c->u != NULL) {
            mg_proxy__resp_body_sent(c, 0);
        }
    }
    return (ssize_t)n;
}

static void
proxy_send_client(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    struct iovec iov[2];
    size_t head, body;
    ssize_t n;
    int iovcnt, err;

    if (c->is_stream) {
        mg_h2_resume(c);
        return;
    }
    if (c->gzip_on) {
        proxy_send_client_gzip(c);
        return;
    }

    for (;;) {
        head = c->out ? mg_buf_pending(c->out) : 0;
        body = c->method_id == MG_H1_METHOD_HEAD ? 0
                                                 : proxy_resp_body_avail(c, &err);
        if (c->method_id != MG_H1_METHOD_HEAD && err != 0) {
            proxy_upstream_lost(c, 0, "sent an invalid chunked body");
            return;
        }
        iovcnt = 0;
        if (head > 0) {
            iov[iovcnt].iov_base = c->out->pos;
            iov[iovcnt++].iov_len = head;
        }
        if (body > 0) {
            iov[iovcnt].iov_base = c->u->in->pos;
            iov[iovcnt++].iov_len = body;
        }
        if (iovcnt == 0) {
            break;
        }
        n = mg_io_sendv(&c->io, iov, iovcnt);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                proxy_client_blocked(c);
                return;
            }
            c->keep_alive = 0;
            if (c->method_len != 0) {
                client_log_request(c);
                c->method_len = 0;
            }
            client_close(c);
            return;
        }
        c->bytes_sent += (uint64_t)n;
        if ((size_t)n < head) {
            c->out->pos += n;
            continue;
        }
        if (head > 0) {
            mg_buf_put(&ctx->bufs, c->out);
            c->out = NULL;
            n -= (ssize_t)head;
        }
        if (n > 0) {
            c->u->in->pos += n;
            if (c->resp_body_kind == MG_H1_BODY_LENGTH) {
                c->resp_left -= n;
                if (c->resp_left == 0) {
                    c->resp_done = 1;
                }
            } else if (c->resp_body_kind == MG_H1_BODY_CHUNKED) {
                c->resp_scanned -= (size_t)n;
            }
        }
    }
    ev_io_stop(ctx->loop, &c->wev);
    ev_timer_stop(ctx->loop, &c->timer);
    if (c->resp_body_kind == MG_H1_BODY_CLOSE && c->resp_eof) {
        c->resp_done = 1;
    }
    if (mg_proxy__resp_complete(c)) {
        proxy_finish(c);
        return;
    }
    if (c->u != NULL) {
        proxy_read_upstream_again(c);
    }
}

static void
proxy_on_upstream_read(mg_client_t *c)
{
    char name[MG_DNS_LOG_NAME_LEN];
    mg_ctx_t *ctx = c->ctx;
    mg_uconn_t *u = c->u;
    mg_buf_t *nb;
    ssize_t n;

    if (u->in == NULL) {
        u->in = mg_buf_get(&ctx->bufs);
        if (u->in == NULL) {
            proxy_fail(c, 502, "out of memory\n");
            return;
        }
    }
    if (c->resp_head_done) {
        /* Body: only read when the client took everything pending. */
        if (c->out != NULL || mg_buf_pending(u->in) != 0) {
            ev_io_stop(ctx->loop, &u->rev);
            return;
        }
        u->in->pos = u->in->last = u->in->start;
    } else if (mg_buf_room(u->in) == 0) {
        if (u->in->pos != u->in->start) {
            mg_buf_compact(u->in);
        } else if ((size_t)(u->in->end - u->in->start) < PROXY_RESP_HEAD_MAX) {
            nb = mg_buf_get_large(PROXY_RESP_HEAD_MAX);
            if (nb == NULL) {
                proxy_fail(c, 502, "out of memory\n");
                return;
            }
            memcpy(nb->last, u->in->pos, mg_buf_pending(u->in));
            nb->last += mg_buf_pending(u->in);
            mg_buf_put(&ctx->bufs, u->in);
            u->in = nb;
        } else {
            proxy_upstream_lost(c, 0, "sent a response head too large");
            return;
        }
    }
    n = mg_io_recv(&u->io, u->in->last, mg_buf_room(u->in));
    if (n == -1) {
        if (errno == EAGAIN || errno == EINTR) {
            return;
        }
        if (!c->resp_head_done) {
            proxy_upstream_lost(c, errno, "reset the connection");
        } else {
            proxy_fail(c, 502, "");
        }
        return;
    }
    if (n == 0) {
        if (!c->resp_head_done) {
            proxy_upstream_lost(c, 0, "closed the connection prematurely");
            return;
        }
        if (c->resp_body_kind == MG_H1_BODY_CLOSE) {
            c->resp_eof = 1;
            c->resp_keep_alive = 0;
            ev_io_stop(ctx->loop, &u->rev);
            proxy_send_client(c);
            return;
        }
        mg_log_error(MG_LOG_ERROR, &mg_log, 0,
                     "upstream %s closed the connection in the middle of a "
                     "response body, client: %s",
                     proxy_upstream_name(c, name, sizeof(name)), c->client_ip);
        proxy_fail(c, 502, "");
        return;
    }
    u->in->last += n;
    c->resp_seen = 1;
    /* Reset the response timer: it bounds silence, not the whole body. */
    ev_timer_again(ctx->loop, &u->timer);
    proxy_upstream_parse(c);
}

/* Response heads in u->in, then the body on to the client. */
static void
proxy_upstream_parse(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    mg_uconn_t *u = c->u;
    mg_h1_response_t *resp = ctx->resp;
    long hl;
    int rc;

    while (!c->resp_head_done) {
        hl = mg_h1_find_head_end(u->in->pos, mg_buf_pending(u->in),
                                 &c->uhead_scanned);
        if (hl == MG_AGAIN) {
            return;
        }
        rc = mg_h1_parse_response(resp, u->in->pos, (size_t)hl, c->method_id,
                                  PROXY_RESP_HEAD_MAX);
        if (rc < 0) {
            c->resp_seen = 1;
            c->u->reused = 0;
            proxy_upstream_lost(c, 0, "sent an invalid response");
            return;
        }
        u->in->pos += rc;
        c->uhead_scanned = 0;
        if (resp->status < 200 && resp->status != 101) {
            continue;   /* 100 Continue and other interim answers */
        }
        if (resp->status == 101 && !c->upgrade) {
            proxy_upstream_lost(c, 0, "switched protocols unasked");
            return;
        }
        if (c->ep != NULL) {
            mg_met_status(c->ep->met + MG_MET_E_RQ, resp->status);
            mg_met_status(c->ep->cluster->priorities[c->ep->priority].met
                              + MG_MET_P_RQ, resp->status);
            proxy_outlier(c, c->ep, resp->status);
        }
        if (proxy_may_retry(c, resp->status)
            && !(resp->status == 503 && c->ep != NULL
                 && c->ep->region != NULL && proxy_final_answer(resp))) {
            char why[32];

            snprintf(why, sizeof(why), "answered %u", resp->status);
            proxy_retry(c, why);
            return;
        }
        proxy_on_response_head(c, resp);
        if (c->resp_head_done && resp->status == 101) {
            c->state = CS_TUNNEL;
            ev_timer_stop(ctx->loop, &u->timer);
            tunnel_pump(c);
            return;
        }
    }
    if (c->resp_head_done) {
        proxy_send_client(c);
    }
}

/* ------------------------------------------------------------------ */
/* Tunnels: Upgrade after 101, and CONNECT                             */

static void
tunnel_close(mg_client_t *c)
{
    c->keep_alive = 0;
    if (c->method_len != 0) {
        client_log_request(c);
        c->method_len = 0;
    }
    client_close(c);
}

/* Writes what |b| holds to |io|. Returns the bytes written (0 when it
 * would block or has nothing) or -1 when the connection failed. */
static ssize_t
tunnel_flush(mg_io_t *io, mg_buf_t *b)
{
    struct iovec iov;
    ssize_t n;

    if (b == NULL || mg_buf_pending(b) == 0) {
        return 0;
    }
    iov.iov_base = b->pos;
    iov.iov_len = mg_buf_pending(b);
    n = mg_io_sendv(io, &iov, 1);
    if (n > 0) {
        b->pos += n;
        if (mg_buf_pending(b) == 0) {
            b->pos = b->last = b->start;
        }
        return n;
    }
    return n == -1 && errno != EAGAIN && errno != EINTR ? -1 : 0;
}

/* Reads from |io| into |b| unless |*eof|. Returns 1 on progress (bytes
 * or the end of the stream, which sets |*eof|), 0 when it would block or
 * |b| is full, -1 when the connection failed. */
static int
tunnel_fill(mg_io_t *io, mg_buf_t *b, int *eof)
{
    ssize_t n;

    if (mg_buf_pending(b) == 0) {
        b->pos = b->last = b->start;
    }
    if (*eof || mg_buf_room(b) == 0) {
        return 0;
    }
    n = mg_io_recv(io, b->last, mg_buf_room(b));
    if (n > 0) {
        b->last += n;
        return 1;
    }
    if (n == 0) {
        *eof = 1;
        return 1;
    }
    return errno != EAGAIN && errno != EINTR ? -1 : 0;
}

/* Moves bytes both ways until each side has finished sending and all is
 * flushed. Every event of either connection lands here. */
static void
tunnel_pump(mg_client_t *c)
{
    mg_ctx_t *ctx = c->ctx;
    mg_uconn_t *u = c->u;
    int progress, rc, c_eof = c->c_eof, u_eof = c->u_eof;
    ssize_t n;

    if (u->in == NULL) {
        u->in = mg_buf_get(&ctx->bufs);
    }
    if (c->in == NULL) {
        c->in = mg_buf_get(&ctx->bufs);
    }
    if (u->in == NULL || c->in == NULL) {
        tunnel_close(c);
        return;
    }
    do {
        progress = 0;
        /* Upstream -> client: our 101/200 head first. */
        n = tunnel_flush(&c->io, c->out);
        if (n == 0 && (c->out == NULL || mg_buf_pending(c->out) == 0)) {
            n = tunnel_flush(&c->io, u->in);
        }
        if (n < 0) {
            tunnel_close(c);
            return;
        }
        c->bytes_sent += (uint64_t)n;
        progress |= n > 0;
        rc = tunnel_fill(&u->io, u->in, &u_eof);
        /* Client -> upstream. */
        n = tunnel_flush(&u->io, c->in);
        if (rc < 0 || n < 0) {
            tunnel_close(c);
            return;
        }
        progress |= rc > 0 || n > 0;
        rc = tunnel_fill(&c->io, c->in, &c_eof);
        if (rc < 0) {
            tunnel_close(c);
            return;
        }
        progress |= rc > 0;
        c->c_eof = c_eof;
        c->u_eof = u_eof;
    } while (progress);

    /* Half-close each way once its side is done and flushed. */
    if (c->c_eof && mg_buf_pending(c->in) == 0) {
        mg_io_shutdown_write(&u->io);
    }
    if (c->u_eof && mg_buf_pending(u->in) == 0
        && (c->out == NULL || mg_buf_pending(c->out) == 0)) {
        mg_io_shutdown_write(&c->io);
    }
    if (c->c_eof && c->u_eof && mg_buf_pending(c->in) == 0
        && mg_buf_pending(u->in) == 0) {
        tunnel_close(c);
        return;
    }
    /* Watch exactly what can make progress. */
    if (!c->c_eof && mg_buf_room(c->in) > 0) {
        client_want_read(c);
    } else {
        ev_io_stop(ctx->loop, &c->rev);
    }
    if (mg_buf_pending(u->in) > 0
        || (c->out != NULL && mg_buf_pending(c->out) > 0)) {
        ev_io_start(ctx->loop, &c->wev);
    } else {
        ev_io_stop(ctx->loop, &c->wev);
    }
    if (!c->u_eof && mg_buf_room(u->in) > 0) {
        upstream_want_read(c);
    } else {
        ev_io_stop(ctx->loop, &u->rev);
    }
    if (mg_buf_pending(c->in) > 0) {
        ev_io_start(ctx->loop, &u->wev);
    } else {
        ev_io_stop(ctx->loop, &u->wev);
    }
    client_timer_set(c, c->lc->idle_timeout);
}

/* ------------------------------------------------------------------ */
/* Event callbacks                                                     */

static void
client_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_client_t *c = w->data;

    switch (c->state) {
    case CS_HANDSHAKE:
        client_handshake(c);
        break;
    case CS_H2:
        mg_h2_on_read(c);
        break;
    case CS_HEAD:
        client_read_head(c);
        break;
    case CS_PROXY:
        if (!c->req_body_done && c->u != NULL && !c->u->connecting) {
            proxy_read_body_from_client(c);
        } else {
            ev_io_stop(loop, w);
        }
        break;
    case CS_TUNNEL:
        tunnel_pump(c);
        break;
    default:
        ev_io_stop(loop, w);
        break;
    }
}

static void
client_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_client_t *c = w->data;

    switch (c->state) {
    case CS_HANDSHAKE:
        client_handshake(c);
        break;
    case CS_H2:
        mg_h2_on_write(c);
        break;
    case CS_DIRECT:
        ev_io_stop(loop, w);
        client_send_direct(c);
        break;
    case CS_PROXY:
        proxy_send_client(c);
        break;
    case CS_TUNNEL:
        tunnel_pump(c);
        break;
    default:
        ev_io_stop(loop, w);
        break;
    }
}

static void
client_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_client_t *c = w->data;

    if (c->state == CS_H2) {
        mg_h2_on_timer(c);
        return;
    }
    if (c->state == CS_HEAD && c->in != NULL && mg_buf_pending(c->in) > 0) {
        mg_log_error(MG_LOG_INFO, &mg_log, 0,
                     "client timed out sending its request head, client: %s, "
                     "listener: %s", c->client_ip, c->lc->name);
        c->closing = 1;
        c->req_keep_alive = 0;
        client_log_fields_from_raw(c);
        client_respond_text(c, 408, "request timeout\n");
        return;
    }
    /* Idle keep-alive, a stalled reader or a silent tunnel. */
    c->keep_alive = 0;
    if (c->method_len != 0) {
        c->status = c->status ? c->status : 408;
        client_log_request(c);
        c->method_len = 0;
    }
    client_close(c);
}

static void
upstream_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_uconn_t *u = w->data;
    mg_client_t *c = u->owner;

    if (u->io.ssl != NULL && !u->io.handshake_done) {
        upstream_handshake(c);
        return;
    }
    if (c->state == CS_TUNNEL) {
        tunnel_pump(c);
        return;
    }
    proxy_on_upstream_read(c);
}

static void
upstream_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_uconn_t *u = w->data;
    mg_client_t *c = u->owner;
    int err = 0;
    socklen_t len = sizeof(err);

    if (u->connecting) {
        if (getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
            err = errno;
        }
        if (err != 0) {
            proxy_connect_failed(c, err);
            return;
        }
        u->connecting = 0;
        mg_met_inc(c->ep->met + MG_MET_E_CX_TOTAL);
        ev_io_stop(loop, &u->wev);
        ev_timer_stop(loop, &u->timer);
        c->ctx->active[c->ep->index]--;
        proxy_attach(c, u, c->ep);
        return;
    }
    if (u->io.ssl != NULL && !u->io.handshake_done) {
        upstream_handshake(c);
        return;
    }
    if (c->state == CS_TUNNEL) {
        tunnel_pump(c);
        return;
    }
    proxy_send_upstream(c);
}

static void
upstream_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    char name[MG_DNS_LOG_NAME_LEN];
    mg_uconn_t *u = w->data;
    mg_client_t *c = u->owner;
    char msg[160];

    if (u->connecting || (u->io.ssl != NULL && !u->io.handshake_done)) {
        proxy_connect_failed(c, ETIMEDOUT);
        return;
    }
    mg_met_inc(u->ep->cluster->met + MG_MET_C_TIMEOUTS);
    if (!c->resp_head_done && c->ep != NULL) {
        proxy_outlier(c, c->ep, 0);
    }
    if (!c->resp_head_done && proxy_may_retry(c, 504)) {
        proxy_retry(c, "timed out");
        return;
    }
    mg_log_error(MG_LOG_ERROR, &mg_log, 0,
                 "upstream %s timed out, cluster: %s, client: %s",
                 proxy_upstream_name(c, name, sizeof(name)),
                 u->ep->cluster->name, c->client_ip);
    snprintf(msg, sizeof(msg), "upstream response timeout (cluster %s)\n",
             u->ep->cluster->name);
    proxy_fail(c, 504, msg);
}

/* ------------------------------------------------------------------ */
/* Internals for the HTTP/2 side                                       */

mg_client_t *
mg_proxy__stream_new(mg_client_t *conn, int32_t stream_id)
{
    mg_ctx_t *ctx = conn->ctx;
    mg_client_t *s = ctx->free_clients;

    if (s != NULL) {
        ctx->free_clients = s->next;
        ctx->nfree_clients--;
    } else {
        s = malloc(sizeof(*s));
        if (s == NULL) {
            return NULL;
        }
    }
    memset(s, 0, offsetof(mg_client_t, client_ip));
    s->method_len = s->target_len = s->host_len = 0;
    s->ctx = ctx;
    s->lc = conn->lc;
    s->io.fd = -1;
    s->io.ssl = NULL;
    s->parent = conn;
    s->h2 = NULL;
    s->is_stream = 1;
    s->stream_id = stream_id;
    s->state = CS_PROXY;
    s->version_minor = 1;
    memcpy(s->client_ip, conn->client_ip, sizeof(s->client_ip));
    ev_init(&s->timer, client_on_timer);
    ev_init(&s->retry_timer, proxy_on_retry_timer);
    s->retry_timer.data = s;
    s->timer.data = s;
    return s;
}

int
mg_proxy__resp_complete(const mg_client_t *c)
{
    /* An HTTP/2 response may still bring trailers after its body. */
    return c->resp_done
           && (c->resp_body_kind != MG_H1_BODY_CHUNKED || c->resp_scanned == 0)
           && (c->u == NULL || !c->u->is_h2 || c->u->end_stream);
}

void
mg_proxy__log(mg_client_t *c)
{
    proxy_request_end(c);
    if (c->method_len != 0 && !c->logged) {
        c->logged = 1;
        client_log_request(c);
    }
}

void
mg_proxy__stream_free(mg_client_t *s)
{
    mg_ctx_t *ctx = s->ctx;
    int reuse = s->u != NULL && mg_proxy__resp_complete(s)
                && s->resp_keep_alive && s->req_body_done
                && s->resp_body_kind != MG_H1_BODY_CLOSE && s->u->in != NULL
                && mg_buf_pending(s->u->in) == 0;

    client_request_done(s);
    client_detach_upstream(s, reuse);
    mg_proxy__log(s);
    mg_buf_put(&ctx->bufs, s->in);
    mg_buf_put(&ctx->bufs, s->out);
    mg_buf_put(&ctx->bufs, s->uhead);
    mg_buf_put(&ctx->bufs, s->trailers);
    s->in = s->out = s->uhead = s->trailers = NULL;
    client_gzip_end(s);
    if (ctx->nfree_clients < 1024) {
        s->next = ctx->free_clients;
        ctx->free_clients = s;
        ctx->nfree_clients++;
    } else {
        free(s);
    }
}

void
mg_proxy__handle_request(mg_client_t *c, const mg_h1_request_t *r)
{
    client_handle_request(c, r);
}

void
mg_proxy__send_upstream(mg_client_t *c)
{
    if (c->u != NULL && !c->req_body_done) {
        proxy_send_upstream(c);
    }
}

size_t
mg_proxy__resp_body_avail(mg_client_t *c, int *err)
{
    *err = 0;
    if (c->u == NULL) {
        return 0;
    }
    return proxy_resp_body_avail(c, err);
}

void
mg_proxy__resp_body_sent(mg_client_t *c, size_t n)
{
    mg_uconn_t *u = c->u;
    int reuse;

    if (u == NULL) {
        return;
    }
    if (n > 0) {
        u->in->pos += n;
        c->bytes_sent += n;
        if (c->resp_body_kind == MG_H1_BODY_LENGTH) {
            c->resp_left -= (int64_t)n;
            if (c->resp_left == 0) {
                c->resp_done = 1;
            }
        } else if (c->resp_body_kind == MG_H1_BODY_CHUNKED) {
            c->resp_scanned -= n;
        }
    }
    if (c->resp_body_kind == MG_H1_BODY_CLOSE && c->resp_eof
        && (u->in == NULL || mg_buf_pending(u->in) == 0)) {
        c->resp_done = 1;
    }
    if (mg_proxy__resp_complete(c)) {
        reuse = c->resp_keep_alive && c->req_body_done
                && c->resp_body_kind != MG_H1_BODY_CLOSE && u->in != NULL
                && mg_buf_pending(u->in) == 0;
        client_detach_upstream(c, reuse);
        return;
    }
    if (u->in != NULL && mg_buf_pending(u->in) == 0) {
        proxy_read_upstream_again(c);
    }
}

void
mg_proxy__close(mg_client_t *c)
{
    client_close(c);
}

void
mg_proxy__want_read(mg_client_t *c)
{
    client_want_read(c);
}

/* ------------------------------------------------------------------ */
/* Events of HTTP/2 upstream streams (mg_h2up.c)                       */

void
mg_proxy__up_input(mg_client_t *c)
{
    mg_uconn_t *u = c->u;

    if (u == NULL) {
        return;
    }
    c->resp_seen = 1;
    if (c->req_body_done) {
        ev_timer_again(c->ctx->loop, &u->timer);
    }
    if (c->resp_head_done && !c->is_stream && ev_is_active(&c->wev)) {
        return;   /* the client is slow: its write event sends the rest */
    }
    proxy_upstream_parse(c);
}

void
mg_proxy__up_failed(mg_client_t *c, unsigned how, int err)
{
    char name[MG_DNS_LOG_NAME_LEN];
    char msg[160];

    if (c->u == NULL) {
        return;
    }
    if (c->body_err != 0) {
        /* The client's own body was malformed: that is its answer. */
        err = c->body_err;
        c->body_err = 0;
        client_detach_upstream(c, 0);
        c->req_keep_alive = 0;
        c->closing = 1;
        c->req_body_done = 1;
        if (c->resp_head_done) {
            proxy_fail(c, 400, "");
        } else {
            client_reject(c, err);
        }
        return;
    }
    switch (how) {
    case MG_UP_CONNECT:
        proxy_connect_failed(c, err ? err : ECONNREFUSED);
        return;
    case MG_UP_REFUSED:
        /* Not processed by the upstream: any method may go again, on any
         * connection that still takes streams. */
        if (c->refusals++ < 16 && proxy_replay(c, 0) == MG_OK) {
            return;
        }
        snprintf(msg, sizeof(msg), "upstream refused the stream (cluster "
                 "%s)\n", c->route->cluster->name);
        proxy_fail(c, 503, msg);
        return;
    case MG_UP_LOST:
        if (!c->resp_head_done) {
            /* Maybe never seen: idempotent requests on a reused
             * connection go again. */
            proxy_upstream_lost(c, err, "closed the connection");
            return;
        }
        break;
    default:
        if (!c->resp_head_done) {
            c->u->reused = 0;   /* it saw the request: no second try */
            proxy_upstream_lost(c, err, "reset the stream");
            return;
        }
        break;
    }
    if (c->ep != NULL) {
        mg_met_inc(c->ep->met + MG_MET_E_RESETS);
    }
    mg_log_error(MG_LOG_ERROR, &mg_log, err,
                 "upstream %s failed in the middle of a response body, "
                 "client: %s", proxy_upstream_name(c, name, sizeof(name)),
                 c->client_ip);
    proxy_fail(c, 502, "");
}

/* The request body read so far has all left: read on, bounded by the
 * client timeouts. */
static void
proxy_body_want_more(mg_client_t *c)
{
    if (c->in != NULL) {
        c->in->pos = c->in->last = c->in->start;
    }
    c->body_start = NULL;
    if (!c->is_stream) {
        client_want_read(c);
        client_timer_set(c, c->lc->request_header_timeout > c->lc->idle_timeout
                                ? c->lc->request_header_timeout
                                : c->lc->idle_timeout);
    }
}

ssize_t
mg_proxy__up_body_read(mg_client_t *c, char *buf, size_t len, int *eof)
{
    size_t pending, n, consumed = 0, out_len = 0;
    char *p;
    int rc, done;

    *eof = 0;
    if (c->req_body_done) {
        *eof = 1;
        return 0;
    }
    pending = c->in != NULL ? mg_buf_pending(c->in) : 0;
    if (c->req_body_kind == MG_H1_BODY_CHUNKED && !c->is_stream) {
        /* De-chunk in place: HTTP/2 frames the body itself. */
        if (!c->req_ck_done && c->body_scanned < pending) {
            p = c->in->pos + c->body_scanned;
            rc = mg_h1_chunked_parse(&c->req_ck, p, pending - c->body_scanned,
                                     &consumed, &out_len, 1,
                                     c->lc->limits.max_body_size);
            if (rc != MG_OK && rc != MG_AGAIN) {
                c->body_err = rc;
                return -1;
            }
            memmove(p + out_len, p + consumed,
                    pending - c->body_scanned - consumed);
            c->in->last -= consumed - out_len;
            c->body_scanned += out_len;
            c->replayable = 0;
            if (rc == MG_OK) {
                c->req_ck_done = 1;
            }
        }
        n = mg_min(c->body_scanned, len);
        c->body_scanned -= n;
        done = c->req_ck_done && c->body_scanned == 0;
    } else if (c->req_body_kind == MG_H1_BODY_LENGTH) {
        n = (size_t)mg_min((int64_t)mg_min(pending, len), c->body_left);
        c->body_left -= (int64_t)n;
        done = c->body_left == 0;
    } else {
        /* An HTTP/2 client's body without a length: until END_STREAM. */
        n = mg_min(pending, len);
        done = c->body_eof && n == pending;
    }
    if (n > 0) {
        memcpy(buf, c->in->pos, n);
        c->in->pos += n;
        c->replayable = 0;
        if (c->is_stream) {
            mg_h2_consume(c, n);
        }
    }
    if (done) {
        c->req_body_done = 1;
        *eof = 1;
        if (!c->is_stream && !c->resp_head_done) {
            ev_timer_stop(c->ctx->loop, &c->timer);
        }
        if (c->u != NULL) {
            ev_timer_again(c->ctx->loop, &c->u->timer);
        }
    } else if (c->in == NULL || mg_buf_pending(c->in) == 0) {
        proxy_body_want_more(c);
    } else if (!c->is_stream) {
        client_want_read(c);   /* e.g. a chunk header cut at the end */
    }
    return (ssize_t)n;
}
