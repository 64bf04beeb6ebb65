#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "mg_buf.h"
#include "mg_dns.h"
#include "mg_h2up.h"
#include "mg_log.h"
#include "mg_metrics.h"
#include "mg_snapshot.h"
#include "mg_upstream.h"

static void
upstream_pool_unlink(mg_uconn_t *u)
{
    mg_upstream_pool_t *pool = &u->ctx->pools[u->ep->pool];

    if (!u->pooled) {
        return;
    }
    if (u->prev != NULL) {
        u->prev->next = u->next;
    } else {
        pool->idle = u->next;
    }
    if (u->next != NULL) {
        u->next->prev = u->prev;
    }
    u->next = u->prev = NULL;
    u->pooled = 0;
    pool->nidle--;
    ev_io_stop(u->ctx->loop, &u->rev);
    ev_timer_stop(u->ctx->loop, &u->timer);
}

void
mg_upstream_close(mg_uconn_t *u)
{
    struct ev_loop *loop = u->ctx->loop;

    if (u->is_h2) {
        mg_h2up_stream_close(u);
        return;
    }
    upstream_pool_unlink(u);
    ev_io_stop(loop, &u->rev);
    ev_io_stop(loop, &u->wev);
    ev_timer_stop(loop, &u->timer);
    if (u->ctx->conns[u->ep->index] > 0) {
        u->ctx->conns[u->ep->index]--;
        mg_met_dec(u->ep->met + MG_MET_E_CX_ACTIVE);
    }
    mg_io_close(&u->io);
    mg_buf_put(&u->ctx->bufs, u->in);
    free(u);
}

/* While pooled, readability means the peer closed the connection or sent
 * bytes nobody asked for: either way it is no longer usable. */
static void
upstream_on_idle_read(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_upstream_close((mg_uconn_t *)w->data);
}

static void
upstream_on_idle_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_upstream_close((mg_uconn_t *)w->data);
}

mg_uconn_t *
mg_upstream_take(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep)
{
    mg_upstream_pool_t *pool = &ctx->pools[ep->pool];
    mg_uconn_t *u;

    while ((u = pool->idle) != NULL) {
        upstream_pool_unlink(u);
        if (mg_dns_peer_valid(u->ep, &u->peer)) {
            u->reused = 1;
            return u;
        }
        /* Its host name moved on: new requests follow the new answer. */
        mg_upstream_close(u);
    }
    return NULL;
}

int
mg_upstream_socket(const mg_endpoint_conf_t *ep, mg_dns_peer_t *peer,
                   int *in_progress, int *err)
{
    int fd, on = 1;

    *in_progress = 0;
    if (mg_dns_addr(ep, peer) != MG_OK) {
        /* A failed connect, so the request goes on to the next endpoint;
         * the control process has logged why the name has no address. */
        *err = EDESTADDRREQ;
        return -1;
    }
    fd = socket(peer->addr.ss_family,
                SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        *err = errno;
        return -1;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (connect(fd, (const struct sockaddr *)&peer->addr, peer->addrlen)
        == -1) {
        if (errno != EINPROGRESS) {
            *err = errno;
            close(fd);
            return -1;
        }
        *in_progress = 1;
    }
    return fd;
}

mg_uconn_t *
mg_upstream_connect(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep, int *err)
{
    mg_dns_peer_t peer;
    mg_uconn_t *u;
    int fd, in_progress;

    fd = mg_upstream_socket(ep, &peer, &in_progress, err);
    if (fd == -1) {
        return NULL;
    }
    u = calloc(1, sizeof(*u));
    if (u == NULL) {
        *err = ENOMEM;
        close(fd);
        return NULL;
    }
    u->peer = peer;
    u->io.fd = fd;
    u->io.ssl = NULL;
    u->ctx = ctx;
    u->ep = ep;
    u->eds_gen = ep->eds_gen;
    u->connecting = in_progress;
    ctx->conns[ep->index]++;   /* circuit breakers count connections */
    if (!in_progress) {
        mg_met_inc(ep->met + MG_MET_E_CX_TOTAL);
    }
    mg_met_inc(ep->met + MG_MET_E_CX_ACTIVE);
    ev_io_init(&u->rev, upstream_on_idle_read, fd, EV_READ);
    ev_io_init(&u->wev, upstream_on_idle_read, fd, EV_WRITE);
    ev_init(&u->timer, upstream_on_idle_timeout);
    u->rev.data = u->wev.data = u->timer.data = u;
    return u;
}

void
mg_upstream_release(mg_uconn_t *u)
{
    mg_ctx_t *ctx = u->ctx;
    mg_upstream_pool_t *pool = &ctx->pools[u->ep->pool];
    const mg_cluster_conf_t *cl = u->ep->cluster;

    if (u->is_h2) {
        mg_h2up_stream_close(u);
        return;
    }
    ev_io_stop(ctx->loop, &u->rev);
    ev_io_stop(ctx->loop, &u->wev);
    ev_timer_stop(ctx->loop, &u->timer);
    u->owner = NULL;
    if (ctx->draining || pool->nidle >= cl->max_idle || u->ep->eds_gone
        || u->eds_gen != u->ep->eds_gen
        || (u->in != NULL && mg_buf_pending(u->in) != 0)) {
        mg_upstream_close(u);
        return;
    }
    /* An idle pooled connection holds no buffer. */
    mg_buf_put(&ctx->bufs, u->in);
    u->in = NULL;
    ev_set_cb(&u->rev, upstream_on_idle_read);
    ev_set_cb(&u->timer, upstream_on_idle_timeout);
    ev_io_start(ctx->loop, &u->rev);
    ev_timer_set(&u->timer, cl->idle_timeout, 0.);
    ev_timer_start(ctx->loop, &u->timer);
    u->prev = NULL;
    u->next = pool->idle;
    if (pool->idle != NULL) {
        pool->idle->prev = u;
    }
    pool->idle = u;
    pool->nidle++;
    u->pooled = 1;
}

void
mg_upstream_close_idle(mg_ctx_t *ctx)
{
    unsigned i;

    for (i = 0; i < ctx->snap->npools; i++) {
        mg_upstream_retire_pool(ctx, i);
    }
}

void
mg_upstream_retire_pool(mg_ctx_t *ctx, unsigned pool)
{
    while (ctx->pools[pool].idle != NULL) {
        mg_upstream_close(ctx->pools[pool].idle);
    }
    mg_h2up_retire_pool(ctx, pool);
}

/*
 * TLS sessions to resume, one per upstream pool (an endpoint, or a region's
 * front proxy), per worker: a new connection to a known peer skips the full
 * handshake's key exchange and certificate check. TLS 1.3 hands sessions
 * out after the handshake, so they are taken in the new-session callback.
 */
static SSL_SESSION **upstream_sessions;
static unsigned upstream_nsessions;
static int upstream_ep_index = -1;   /* SSL ex_data: the endpoint */

static int
upstream_on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    const mg_endpoint_conf_t *ep = SSL_get_ex_data(ssl, upstream_ep_index);
    SSL_SESSION **grown;
    unsigned n;

    if (ep == NULL) {
        return 0;
    }
    if (ep->pool >= upstream_nsessions) {
        n = ep->pool + 16;
        grown = realloc(upstream_sessions, n * sizeof(*grown));
        if (grown == NULL) {
            return 0;
        }
        memset(grown + upstream_nsessions, 0,
               (n - upstream_nsessions) * sizeof(*grown));
        upstream_sessions = grown;
        upstream_nsessions = n;
    }
    if (upstream_sessions[ep->pool] != NULL) {
        SSL_SESSION_free(upstream_sessions[ep->pool]);
    }
    upstream_sessions[ep->pool] = sess;
    return 1;   /* the reference is ours now */
}

int
mg_upstream_tls_start(mg_io_t *io, const mg_endpoint_conf_t *ep)
{
    SSL *ssl;

    if (upstream_ep_index == -1) {
        upstream_ep_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    }
    /* Each worker keeps its own sessions, outside OpenSSL's cache. */
    SSL_CTX_set_session_cache_mode(ep->tls, SSL_SESS_CACHE_CLIENT
                                                | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ep->tls, upstream_on_new_session);
    ssl = SSL_new(ep->tls);
    if (ssl == NULL) {
        return MG_ERROR;
    }
    io->ssl = ssl;
    if (SSL_set_fd(ssl, io->fd) != 1
        || SSL_set_ex_data(ssl, upstream_ep_index, (void *)ep) != 1) {
        return MG_ERROR;
    }
    if (ep->tls_sni != NULL) {
        if (SSL_set_tlsext_host_name(ssl, ep->tls_sni) != 1
            || SSL_set1_host(ssl, ep->tls_sni) != 1) {
            return MG_ERROR;
        }
    }
    if (ep->pool < upstream_nsessions && upstream_sessions[ep->pool] != NULL) {
        /* A session OpenSSL finds unusable (expired, another server) just
         * means a full handshake. */
        (void)SSL_set_session(ssl, upstream_sessions[ep->pool]);
    }
    SSL_set_connect_state(ssl);
    return MG_OK;
}
