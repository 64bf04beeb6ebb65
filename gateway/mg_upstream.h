/*
 * Upstream HTTP/1.1 connections and the per-worker, per-endpoint keep-alive
 * pool. A pooled connection watches for the peer closing it and for its idle
 * timeout; a connection that became a tunnel never comes back to a pool.
 */
#ifndef MG_UPSTREAM_H
#define MG_UPSTREAM_H

#include <ev.h>

#include "mg_core.h"
#include "mg_ctx.h"
#include "mg_io.h"

typedef struct mg_uconn_s mg_uconn_t;

struct mg_uconn_s {
    mg_io_t io;                   /* the socket, maybe with TLS */
    ev_io rev;
    ev_io wev;
    ev_timer timer;
    mg_ctx_t *ctx;
    const mg_endpoint_conf_t *ep;
    mg_buf_t *in;                 /* response bytes */
    mg_uconn_t *next;             /* pool list */
    mg_uconn_t *prev;
    void *owner;                  /* the client connection using it */
    unsigned connecting:1;        /* connect() in progress */
    unsigned reused:1;            /* served an earlier request */
    unsigned pooled:1;
};

struct mg_upstream_pool_s {
    mg_uconn_t *idle;             /* most recently used first */
    unsigned nidle;
};

/* Takes an idle connection to |ep| from the pool, or NULL. */
mg_uconn_t *mg_upstream_take(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep);

/*
 * Starts a non-blocking connect to |ep|. Returns the connection (connecting
 * set: wait for wev) or NULL with *err set to the errno (refused at once,
 * out of fds, ...). Watchers are initialised with |cb_read|/|cb_write| and
 * not started.
 */
mg_uconn_t *mg_upstream_connect(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep,
                                int *err);

/* Returns |u| to its endpoint's pool, or closes it when the pool is full or
 * the worker drains. */
void mg_upstream_release(mg_uconn_t *u);

/* Closes |u| and frees it. */
void mg_upstream_close(mg_uconn_t *u);

/* Closes every pooled connection (drain). */
void mg_upstream_close_idle(mg_ctx_t *ctx);

#endif /* MG_UPSTREAM_H */
