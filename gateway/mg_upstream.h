/*
 * Upstream HTTP/1.1 connections and the per-worker, per-endpoint keep-alive
 * pool. A pooled connection watches for the peer closing it and for its idle
 * timeout; a connection that became a tunnel never comes back to a pool.
 * A request to an HTTP/2 cluster also gets an mg_uconn_t, standing for one
 * stream of a shared connection (see mg_h2up.h): the request path reads its
 * response from |in| the same way.
 */
#ifndef MG_UPSTREAM_H
#define MG_UPSTREAM_H

#include <ev.h>

#include "mg_core.h"
#include "mg_ctx.h"
#include "mg_dns.h"
#include "mg_io.h"

typedef struct mg_uconn_s mg_uconn_t;
typedef struct mg_h2up_s mg_h2up_t;

struct mg_uconn_s {
    mg_io_t io;                   /* the socket, maybe with TLS */
    ev_io rev;
    ev_io wev;
    ev_timer timer;
    mg_ctx_t *ctx;
    const mg_endpoint_conf_t *ep;
    unsigned eds_gen;             /* ep->eds_gen when it connected: a
                                   * discovery slot may mean another
                                   * address by the time it is released */
    mg_buf_t *in;                 /* response bytes */
    mg_dns_peer_t peer;           /* the address it went to (for an HTTP/2
                                   * stream, its connection's) */
    mg_uconn_t *next;             /* pool list */
    mg_uconn_t *prev;
    void *owner;                  /* the client connection using it */
    unsigned connecting:1;        /* connect() in progress */
    unsigned reused:1;            /* served an earlier request */
    unsigned pooled:1;

    /* An HTTP/2 stream: no socket of its own (io.fd is -1). */
    mg_h2up_t *h2;                /* its connection; NULL once the stream
                                   * closed or the connection went away */
    mg_buf_t *trailers;           /* response trailers, "name: value\r\n" */
    int32_t stream_id;
    size_t unconsumed;            /* DATA bytes not yet given back as window */
    unsigned is_h2:1;
    unsigned submitted:1;         /* HEADERS handed to the session */
    unsigned head_seen:1;         /* final response head received */
    unsigned chunked:1;           /* body framed as chunks into |in| */
    unsigned end_stream:1;        /* the response is complete */
    unsigned sent:1;              /* the session wrote some of the request */
    unsigned has_length:1;        /* the response has a content-length */
    unsigned head_req:1;          /* a HEAD request: no body follows */
    unsigned status;              /* of the response head being received */
};

struct mg_upstream_pool_s {
    mg_uconn_t *idle;             /* most recently used first */
    unsigned nidle;
    mg_h2up_t *h2;                /* HTTP/2 connections, newest first */
    unsigned nh2;
    uint32_t h2_max_streams;      /* the peer's last MAX_CONCURRENT_STREAMS */
};

/* A non-blocking socket connecting to |ep| (|*in_progress| set when the
 * connect is not done yet), or -1 with *err set: EDESTADDRREQ when |ep|'s
 * host name has no address yet. |peer| receives the address chosen (see
 * mg_dns_addr()). */
int mg_upstream_socket(const mg_endpoint_conf_t *ep, mg_dns_peer_t *peer,
                       int *in_progress, int *err);

/* Takes an idle connection to |ep| from the pool, or NULL. Connections to
 * an address that |ep|'s host name no longer resolves to are closed. */
mg_uconn_t *mg_upstream_take(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep);

/*
 * Starts a non-blocking connect to |ep|, at the next of its addresses when
 * it has a host name (u->peer). Returns the connection (connecting set:
 * wait for wev) or NULL with *err set to the errno (refused at once, out
 * of fds, EDESTADDRREQ: no address known for its host name yet, ...).
 * Watchers are initialised with |cb_read|/|cb_write| and not started.
 */
mg_uconn_t *mg_upstream_connect(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep,
                                int *err);

/* Returns |u| to its endpoint's pool, or closes it when the pool is full or
 * the worker drains. */
void mg_upstream_release(mg_uconn_t *u);

/* Closes |u| and frees it (an HTTP/2 stream is cancelled unless its
 * response is complete). */
void mg_upstream_close(mg_uconn_t *u);

/* Closes every pooled connection (drain); HTTP/2 connections close once
 * their last stream is done. */
void mg_upstream_close_idle(mg_ctx_t *ctx);

/* Closes the idle connections of pool |pool| and retires its HTTP/2 ones
 * (they close after their last stream): its endpoint left or moved. */
void mg_upstream_retire_pool(mg_ctx_t *ctx, unsigned pool);

/* Starts TLS on |io| towards |ep| (SNI, name check). */
int mg_upstream_tls_start(mg_io_t *io, const mg_endpoint_conf_t *ep);

#endif /* MG_UPSTREAM_H */
