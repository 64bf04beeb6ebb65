/*
 * The per-worker context of the request path: the loop, the snapshot this
 * worker serves, free lists and the per-endpoint state (pools, active
 * request counts, balancer cursors). One per worker process.
 */
#ifndef MG_CTX_H
#define MG_CTX_H

#include <sys/types.h>

#include <ev.h>

#include "mg_buf.h"
#include "mg_core.h"
#include "mg_lb.h"

typedef void (*mg_ctx_empty_cb)(mg_ctx_t *ctx);


struct mg_ctx_s {
    struct ev_loop *loop;
    const mg_snapshot_t *snap;
    unsigned slot;
    unsigned long generation;
    pid_t pid;
    double master_start;
    unsigned workers;
    int draining;
    mg_buf_cache_t bufs;
    mg_client_t *clients;         /* every open client connection */
    unsigned nclients;
    mg_client_t *free_clients;    /* recycled connection objects */
    unsigned nfree_clients;
    mg_upstream_pool_t *pools;    /* [snap->nendpoints] */
    unsigned *active;             /* [snap->nendpoints] active requests */
    unsigned *retrying;           /* [snap->nclusters] requests that were
                                   * retried and are still active */
    unsigned *conns;              /* [snap->nendpoints] upstream connections
                                   * open (HTTP/2 ones count once) */
    unsigned *pending;            /* [snap->nendpoints] requests waiting for
                                   * their connection to be made */
    mg_outlier_state_t *outlier;  /* [snap->nendpoints] */
    double *ejected_until;        /* [snap->nendpoints] on the loop's clock */
    uint64_t *overflows;          /* [snap->nclusters] circuit breakers that
                                   * turned a request away */
    mg_lb_state_t *lb;            /* [snap->nclusters] */
    uint64_t *eds_seq;            /* [snap->nclusters] the discovery
                                   * assignment applied (mg_eds) */
    mg_access_log_t *access_logs; /* [snap->nlisteners] */
    uint64_t request_seq;
    char request_id_seed[17];     /* random per worker, hex */
    uint64_t trace_rng[2];        /* mg_trace's ids and sampling; seeded
                                   * on first use */
    mg_ctx_empty_cb on_empty;     /* draining and the last client closed */
    /* Parsed heads are only needed while a head is handled, which never
     * spans an event, so one of each per worker keeps connections small. */
    mg_h1_request_t *req;
    mg_h1_response_t *resp;
};

/* Sets up |ctx| for |snap| (zero it first). MG_OK or MG_ERROR. */
int mg_ctx_init(mg_ctx_t *ctx, struct ev_loop *loop, const mg_snapshot_t *snap);

/* Flushes logs and frees what mg_ctx_init made. */
void mg_ctx_destroy(mg_ctx_t *ctx);

/* Reopens the access logs (SIGUSR1). */
void mg_ctx_reopen_logs(mg_ctx_t *ctx);

#endif /* MG_CTX_H */
