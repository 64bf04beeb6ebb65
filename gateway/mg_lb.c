#include "config.h"

#include "mg_lb.h"
#include "mg_snapshot.h"

static int
lb_excluded(uint64_t exclude, unsigned i)
{
    return i < 64 && (exclude & ((uint64_t)1 << i));
}

static const mg_endpoint_conf_t *
lb_round_robin(mg_lb_state_t *st, const mg_priority_t *pr, uint64_t exclude)
{
    unsigned i, n = pr->nendpoints, k;

    for (i = 0; i < n; i++) {
        k = (st->next + i) % n;
        if (!lb_excluded(exclude, k)) {
            st->next = k + 1;
            return &pr->endpoints[k];
        }
    }
    return NULL;
}

/* nginx's smooth weighted round robin: each pick adds every weight to its
 * running value, takes the largest and subtracts the total from it, which
 * interleaves heavy and light endpoints instead of bursting. */
static const mg_endpoint_conf_t *
lb_weighted(mg_lb_state_t *st, const mg_priority_t *pr, uint64_t exclude)
{
    unsigned i;
    int best = -1, total = 0;

    if (st->current == NULL) {
        return lb_round_robin(st, pr, exclude);
    }
    for (i = 0; i < pr->nendpoints; i++) {
        if (lb_excluded(exclude, i)) {
            continue;
        }
        st->current[i] += (int)pr->endpoints[i].weight;
        total += (int)pr->endpoints[i].weight;
        if (best == -1 || st->current[i] > st->current[best]) {
            best = (int)i;
        }
    }
    if (best == -1) {
        return NULL;
    }
    st->current[best] -= total;
    return &pr->endpoints[best];
}

/* Fewest active requests (scaled by weight); ties go round robin so equal
 * endpoints still share the load. */
static const mg_endpoint_conf_t *
lb_least_request(mg_lb_state_t *st, const mg_priority_t *pr,
                 const unsigned *active, uint64_t exclude)
{
    unsigned i, k, n = pr->nendpoints;
    int best = -1;
    uint64_t best_load = 0, load;

    for (i = 0; i < n; i++) {
        k = (st->next + i) % n;
        if (lb_excluded(exclude, k)) {
            continue;
        }
        /* active / weight, compared without division. */
        load = (uint64_t)active[pr->endpoints[k].index] * 1000
               / pr->endpoints[k].weight;
        if (best == -1 || load < best_load) {
            best = (int)k;
            best_load = load;
        }
    }
    if (best == -1) {
        return NULL;
    }
    st->next = (unsigned)best + 1;
    return &pr->endpoints[best];
}

const mg_endpoint_conf_t *
mg_lb_pick(mg_lb_state_t *st, const mg_cluster_conf_t *cl,
           const unsigned *active, uint64_t exclude)
{
    const mg_priority_t *pr = &cl->priorities[0];

    if (pr->nendpoints == 0) {
        return NULL;
    }
    switch (cl->lb) {
    case MG_LB_WEIGHTED_ROUND_ROBIN:
        return lb_weighted(st, pr, exclude);
    case MG_LB_LEAST_REQUEST:
        return lb_least_request(st, pr, active, exclude);
    default:
        return lb_round_robin(st, pr, exclude);
    }
}
