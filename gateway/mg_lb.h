/*
 * Load balancing over a cluster's priority levels: level 0 holds the local
 * endpoints, each later level a remote region's front proxy. A level takes
 * traffic in proportion to its health with an overprovisioning factor of
 * 1.4 (Envoy's model): the local level keeps min(100 %, 1.4 x its healthy
 * fraction) and the rest spills to the next levels. Inside a level: round
 * robin, smooth weighted round robin or least request, over the healthy
 * endpoints. State is per worker.
 */
#ifndef MG_LB_H
#define MG_LB_H

#include "mg_core.h"

#define MG_LB_OVERPROVISION 140     /* percent: the factor 1.4 */
#define MG_LB_MAX_LEVELS    16

/* What a worker knows of the endpoints, indexed by endpoint->index. */
typedef struct mg_lb_view_s {
    const unsigned *active;       /* requests in flight (least request) */
    const double *ejected_until;  /* outlier ejection ends, or NULL */
    double now;                   /* the worker's clock, as ejected_until */
} mg_lb_view_t;

typedef struct mg_lb_state_s {
    unsigned next[MG_LB_MAX_LEVELS]; /* round robin cursor per level */
    int *current;                 /* smooth WRR running weights, one per
                                   * endpoint of the cluster (by ep->pos) */
    uint64_t rng;                 /* xorshift state: the level of a pick */
} mg_lb_state_t;

/*
 * Shares of traffic (percent, summing to 100) of |n| levels with
 * |healthy[i]| of |total[i]| endpoints healthy. With nothing healthy
 * anywhere, level 0 takes everything. Pure arithmetic, for unit tests too.
 */
void mg_lb_priority_loads(const unsigned *healthy, const unsigned *total,
                          unsigned n, unsigned *load);

/* How mg_lb_pick() may choose. */
enum {
    MG_LB_ANY = 0,                /* any level, by their loads */
    MG_LB_LOCAL_ONLY,             /* level 0 only, healthy endpoints only */
    MG_LB_HEALTHY_ONLY            /* any level, never an unhealthy endpoint
                                   * (a retry: panic is for first tries) */
};

/*
 * Picks an endpoint of |cl|, skipping those whose bit is set in |exclude|
 * (bit i = the endpoint with pos i; past 64 never excluded) and those
 * health checks found down or outlier detection ejected (|v|). When every
 * level is
 * unhealthy, any endpoint not excluded may be tried (panic), only with
 * MG_LB_ANY. NULL when nothing is left.
 */
const mg_endpoint_conf_t *mg_lb_pick(mg_lb_state_t *st,
                                     const mg_cluster_conf_t *cl,
                                     const mg_lb_view_t *v,
                                     uint64_t exclude, unsigned mode);

/* Passive outlier detection of one endpoint, as one worker sees it. */
typedef struct mg_outlier_state_s {
    unsigned consecutive_5xx;
    unsigned consecutive_gateway; /* 502-504, failed connections, resets */
    unsigned ejections;           /* so far: each lasts longer */
} mg_outlier_state_t;

/*
 * Records what an endpoint just did: |status| of its response, or 0 for a
 * failed connection, reset or timeout. |ejected| of the |total| endpoints
 * of its level are ejected now. Returns the seconds it is now ejected for,
 * or 0; |*why| then names the cause ("5xx" or "gateway failures") and the
 * state holds the count that caused it until the next call.
 */
double mg_lb_outlier_record(mg_outlier_state_t *st,
                            const mg_outlier_conf_t *oc, unsigned status,
                            unsigned ejected, unsigned total,
                            const char **why, unsigned *count);

/* Whether |ep| may take requests: healthy and not ejected. */
int mg_lb_available(const mg_endpoint_conf_t *ep, const mg_lb_view_t *v);

#endif /* MG_LB_H */
