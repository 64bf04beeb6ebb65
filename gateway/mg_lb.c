#include "config.h"

#include "mg_lb.h"
#include "mg_shm.h"
#include "mg_snapshot.h"

void
mg_lb_priority_loads(const unsigned *healthy, const unsigned *total,
                     unsigned n, unsigned *load)
{
    unsigned health[MG_LB_MAX_LEVELS], sum = 0, left = 100, i, first = n;

    n = mg_min(n, MG_LB_MAX_LEVELS);
    for (i = 0; i < n; i++) {
        health[i] = total[i] == 0
                        ? 0
                        : mg_min(100u, MG_LB_OVERPROVISION * healthy[i]
                                           / total[i]);
        sum += health[i];
        if (health[i] > 0 && first == n) {
            first = i;
        }
        load[i] = 0;
    }
    if (sum == 0) {
        if (n > 0) {
            load[0] = 100;
        }
        return;
    }
    /* Below 100 in all, the levels share in proportion to their health. */
    sum = mg_min(sum, 100u);
    for (i = 0; i < n && left > 0; i++) {
        load[i] = mg_min(left, health[i] * 100 / sum);
        left -= load[i];
    }
    /* Rounding leaves a little: to the first level with health. */
    load[first] += left;
}

int
mg_lb_available(const mg_endpoint_conf_t *ep, const mg_lb_view_t *v)
{
    if (ep->eds_down) {
        return 0;
    }
    if (v->ejected_until != NULL && v->ejected_until[ep->index] > v->now) {
        return 0;
    }
    return mg_shm_healthy(ep);
}

static int
lb_skip(uint64_t exclude, const mg_endpoint_conf_t *ep, const mg_lb_view_t *v,
        int panic)
{
    if (ep->pos < 64 && (exclude & ((uint64_t)1 << ep->pos))) {
        return 1;
    }
    return !panic && !mg_lb_available(ep, v);
}

static const mg_endpoint_conf_t *
lb_round_robin(mg_lb_state_t *st, unsigned level, const mg_priority_t *pr,
               const mg_lb_view_t *v, uint64_t exclude, int panic)
{
    unsigned i, n = pr->nendpoints, k;

    for (i = 0; i < n; i++) {
        k = (st->next[level] + i) % n;
        if (!lb_skip(exclude, pr->eps[k], v, panic)) {
            st->next[level] = k + 1;
            return pr->eps[k];
        }
    }
    return NULL;
}

/* nginx's smooth weighted round robin: each pick adds every weight to its
 * running value, takes the largest and subtracts the total from it, which
 * interleaves heavy and light endpoints instead of bursting. */
static const mg_endpoint_conf_t *
lb_weighted(mg_lb_state_t *st, unsigned level, const mg_priority_t *pr,
            const mg_lb_view_t *v, uint64_t exclude, int panic)
{
    const mg_endpoint_conf_t *ep, *best = NULL;
    unsigned i;
    int total = 0;

    if (st->current == NULL) {
        return lb_round_robin(st, level, pr, v, exclude, panic);
    }
    for (i = 0; i < pr->nendpoints; i++) {
        ep = pr->eps[i];
        if (lb_skip(exclude, ep, v, panic)) {
            continue;
        }
        st->current[ep->pos] += (int)ep->weight;
        total += (int)ep->weight;
        if (best == NULL || st->current[ep->pos] > st->current[best->pos]) {
            best = ep;
        }
    }
    if (best != NULL) {
        st->current[best->pos] -= total;
    }
    return best;
}

/* Fewest active requests (scaled by weight); ties go round robin so equal
 * endpoints still share the load. */
static const mg_endpoint_conf_t *
lb_least_request(mg_lb_state_t *st, unsigned level, const mg_priority_t *pr,
                 const mg_lb_view_t *v, uint64_t exclude, int panic)
{
    unsigned i, k, n = pr->nendpoints;
    int best = -1;
    uint64_t best_load = 0, load;

    for (i = 0; i < n; i++) {
        k = (st->next[level] + i) % n;
        if (lb_skip(exclude, pr->eps[k], v, panic)) {
            continue;
        }
        /* active / weight, compared without division. */
        load = (uint64_t)v->active[pr->eps[k]->index] * 1000
               / pr->eps[k]->weight;
        if (best == -1 || load < best_load) {
            best = (int)k;
            best_load = load;
        }
    }
    if (best == -1) {
        return NULL;
    }
    st->next[level] = (unsigned)best + 1;
    return pr->eps[best];
}

static const mg_endpoint_conf_t *
lb_pick_level(mg_lb_state_t *st, const mg_cluster_conf_t *cl, unsigned level,
              const mg_lb_view_t *v, uint64_t exclude, int panic)
{
    const mg_priority_t *pr = &cl->priorities[level];

    if (pr->nendpoints == 0) {
        return NULL;
    }
    switch (cl->lb) {
    case MG_LB_WEIGHTED_ROUND_ROBIN:
        return lb_weighted(st, level, pr, v, exclude, panic);
    case MG_LB_LEAST_REQUEST:
        return lb_least_request(st, level, pr, v, exclude, panic);
    default:
        return lb_round_robin(st, level, pr, v, exclude, panic);
    }
}

static unsigned
lb_random(mg_lb_state_t *st)
{
    uint64_t x = st->rng ? st->rng : 0x9e3779b97f4a7c15ull;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    st->rng = x;
    return (unsigned)(x >> 32);
}

const mg_endpoint_conf_t *
mg_lb_pick(mg_lb_state_t *st, const mg_cluster_conf_t *cl,
           const mg_lb_view_t *v, uint64_t exclude, unsigned mode)
{
    unsigned healthy[MG_LB_MAX_LEVELS] = { 0 }, total[MG_LB_MAX_LEVELS] = { 0 };
    unsigned load[MG_LB_MAX_LEVELS];
    unsigned n = mg_min(cl->npriorities, MG_LB_MAX_LEVELS), p, j, r, level;
    const mg_endpoint_conf_t *ep;

    if (mode == MG_LB_LOCAL_ONLY || n == 1) {
        ep = lb_pick_level(st, cl, 0, v, exclude, 0);
        if (ep != NULL || mode != MG_LB_ANY) {
            return ep;
        }
        return lb_pick_level(st, cl, 0, v, exclude, 1);
    }
    for (p = 0; p < n; p++) {
        healthy[p] = 0;
        total[p] = cl->priorities[p].nendpoints;
        for (j = 0; j < total[p]; j++) {
            healthy[p] += mg_lb_available(cl->priorities[p].eps[j], v);
        }
    }
    mg_lb_priority_loads(healthy, total, n, load);
    r = lb_random(st) % 100;
    for (level = 0; level + 1 < n && r >= load[level]; level++) {
        r -= load[level];
    }
    /* The chosen level first; when it has nothing left for this request
     * (all tried or down), the next ones, then the earlier ones. */
    for (p = 0; p < n; p++) {
        ep = lb_pick_level(st, cl, (level + p) % n, v, exclude, 0);
        if (ep != NULL) {
            return ep;
        }
    }
    for (p = 0; p < n && mode == MG_LB_ANY; p++) {
        ep = lb_pick_level(st, cl, p, v, exclude, 1);
        if (ep != NULL) {
            return ep;
        }
    }
    return NULL;
}

double
mg_lb_outlier_record(mg_outlier_state_t *st, const mg_outlier_conf_t *oc,
                     unsigned status, unsigned ejected, unsigned total,
                     const char **why, unsigned *count)
{
    double t;

    if (status != 0 && status < 500) {
        st->consecutive_5xx = st->consecutive_gateway = 0;
        return 0;
    }
    st->consecutive_5xx++;
    if (status == 0 || (status >= 502 && status <= 504)) {
        st->consecutive_gateway++;
    } else {
        st->consecutive_gateway = 0;
    }
    if (oc->consecutive_5xx > 0 && st->consecutive_5xx >= oc->consecutive_5xx) {
        *why = "5xx";
        *count = st->consecutive_5xx;
    } else if (oc->consecutive_gateway > 0
               && st->consecutive_gateway >= oc->consecutive_gateway) {
        *why = "gateway failures";
        *count = st->consecutive_gateway;
    } else {
        return 0;
    }
    /* max_ejection_percent of the level, counting this one, but one may
     * always go. */
    if (ejected > 0 && (ejected + 1) * 100 > oc->max_ejection_percent * total) {
        return 0;
    }
    st->ejections++;
    st->consecutive_5xx = st->consecutive_gateway = 0;
    t = oc->base_ejection_time * (double)st->ejections;
    return t < oc->max_ejection_time ? t : oc->max_ejection_time;
}
