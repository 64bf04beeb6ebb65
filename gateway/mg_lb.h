/*
 * Load balancing inside one priority level of a cluster: round robin,
 * smooth weighted round robin and least request. State is per worker.
 */
#ifndef MG_LB_H
#define MG_LB_H

#include "mg_core.h"

typedef struct mg_lb_state_s {
    unsigned next;                /* round robin cursor */
    int *current;                 /* smooth WRR running weights, one per
                                   * endpoint of priority 0 */
} mg_lb_state_t;

/*
 * Picks an endpoint of |cl| priority 0, skipping those whose bit is set in
 * |exclude| (bit i = endpoint i of the level; endpoints past 64 are never
 * excluded). |active| is the per-endpoint count of active requests indexed
 * by endpoint->index (least request). Returns NULL when every endpoint is
 * excluded.
 */
const mg_endpoint_conf_t *mg_lb_pick(mg_lb_state_t *st,
                                     const mg_cluster_conf_t *cl,
                                     const unsigned *active,
                                     uint64_t exclude);

#endif /* MG_LB_H */
