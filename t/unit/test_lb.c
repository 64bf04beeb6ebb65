/*
 * Unit tests of load balancing over priority levels: the spill arithmetic
 * (overprovisioning factor 1.4), level choice by health over many picks,
 * local-only picks, exclusion of tried endpoints and the panic mode when
 * nothing is healthy.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "mg_lb.h"
#include "mg_shm.h"
#include "mg_snapshot.h"
#include "tap.h"

static void
loads(unsigned n, const unsigned *healthy, const unsigned *total,
      unsigned *out)
{
    mg_lb_priority_loads(healthy, total, n, out);
}

static void
test_loads(void)
{
    unsigned l[4];

    loads(2, (unsigned[]){ 4, 1 }, (unsigned[]){ 4, 1 }, l);
    ok(l[0] == 100 && l[1] == 0, "all local healthy: 100/0 (%u/%u)", l[0],
       l[1]);
    loads(2, (unsigned[]){ 1, 1 }, (unsigned[]){ 2, 1 }, l);
    ok(l[0] == 70 && l[1] == 30, "half local healthy: 70/30 (%u/%u)", l[0],
       l[1]);
    loads(2, (unsigned[]){ 3, 1 }, (unsigned[]){ 4, 1 }, l);
    ok(l[0] == 100 && l[1] == 0,
       "75%% healthy x 1.4 > 100%%: no spill (%u/%u)", l[0], l[1]);
    loads(2, (unsigned[]){ 1, 1 }, (unsigned[]){ 5, 1 }, l);
    ok(l[0] == 28 && l[1] == 72, "20%% healthy: 28/72 (%u/%u)", l[0], l[1]);
    loads(2, (unsigned[]){ 0, 1 }, (unsigned[]){ 3, 1 }, l);
    ok(l[0] == 0 && l[1] == 100, "nothing local: all to the next (%u/%u)",
       l[0], l[1]);
    loads(3, (unsigned[]){ 0, 0, 1 }, (unsigned[]){ 2, 1, 1 }, l);
    ok(l[0] == 0 && l[1] == 0 && l[2] == 100,
       "local and first region down: all to the second (%u/%u/%u)", l[0],
       l[1], l[2]);
    loads(3, (unsigned[]){ 1, 0, 1 }, (unsigned[]){ 5, 1, 1 }, l);
    ok(l[0] == 28 && l[1] == 0 && l[2] == 72,
       "a level with nothing healthy is skipped (%u/%u/%u)", l[0], l[1],
       l[2]);
    /* Both partly healthy, 28 + 70 < 100: shares in proportion. */
    loads(2, (unsigned[]){ 1, 1 }, (unsigned[]){ 5, 2 }, l);
    ok(l[0] + l[1] == 100 && l[0] >= 28 && l[0] <= 29,
       "28 %% and 70 %% of health share 100 %% (%u/%u)", l[0], l[1]);
    loads(2, (unsigned[]){ 0, 0 }, (unsigned[]){ 2, 1 }, l);
    ok(l[0] == 100 && l[1] == 0, "nothing healthy anywhere: level 0 (%u/%u)",
       l[0], l[1]);
    loads(1, (unsigned[]){ 0 }, (unsigned[]){ 0 }, l);
    is_int(l[0], 100, "a single empty level still gets the whole share");
}

/* A cluster: two local endpoints, then two regions' front proxies. */
static mg_endpoint_conf_t local[2], remote1[1], remote2[1];
static mg_endpoint_conf_t *local_eps[2] = { &local[0], &local[1] };
static mg_endpoint_conf_t *remote1_eps[1] = { &remote1[0] };
static mg_endpoint_conf_t *remote2_eps[1] = { &remote2[0] };
static mg_priority_t levels[3];
static mg_cluster_conf_t cl;
static mg_health_check_conf_t hc;
static mg_region_conf_t regions[2];

static void
cluster_init(void)
{
    unsigned i;
    mg_endpoint_conf_t *all[4] = { &local[0], &local[1], &remote1[0],
                                   &remote2[0] };

    memset(&cl, 0, sizeof(cl));
    cl.name = "users";
    cl.lb = MG_LB_ROUND_ROBIN;
    cl.priorities = levels;
    cl.npriorities = 3;
    cl.nendpoints = 4;
    levels[0] = (mg_priority_t){ .eps = local_eps, .nendpoints = 2,
                                 .endpoints = local, .total_weight = 2 };
    levels[1] = (mg_priority_t){ .eps = remote1_eps, .nendpoints = 1,
                                 .endpoints = remote1, .total_weight = 1,
                                 .region = &regions[0] };
    levels[2] = (mg_priority_t){ .eps = remote2_eps, .nendpoints = 1,
                                 .endpoints = remote2, .total_weight = 1,
                                 .region = &regions[1] };
    regions[0].name = "b";
    regions[1].name = "c";
    for (i = 0; i < 4; i++) {
        memset(all[i], 0, sizeof(*all[i]));
        all[i]->weight = 1;
        all[i]->index = i;
        all[i]->pos = i;
        all[i]->priority = i < 2 ? 0 : i - 1;
        all[i]->cluster = &cl;
        all[i]->health_check = &hc;
        all[i]->health_slot = i;
        all[i]->address = i == 0 ? "a1" : i == 1 ? "a2" : i == 2 ? "b" : "c";
    }
    remote1[0].region = &regions[0];
    remote2[0].region = &regions[1];
}

static void
health(unsigned slot, int up)
{
    mg_shm_set_health(slot, up ? MG_HEALTH_HEALTHY : MG_HEALTH_UNHEALTHY);
}

/* How many of |n| picks land on each endpoint (by pos). */
static void
spread(mg_lb_state_t *st, unsigned n, uint64_t exclude, unsigned mode,
       unsigned counts[5])
{
    const mg_endpoint_conf_t *ep;
    unsigned active[4] = { 0 }, i;
    mg_lb_view_t view = { active, NULL, 0 };

    memset(counts, 0, 5 * sizeof(unsigned));
    for (i = 0; i < n; i++) {
        ep = mg_lb_pick(st, &cl, &view, exclude, mode);
        counts[ep ? ep->pos : 4]++;
    }
}

static void
test_pick(void)
{
    mg_lb_state_t st;
    unsigned c[5];

    memset(&st, 0, sizeof(st));
    st.rng = 12345;
    cluster_init();
    ok(mg_shm_create() == MG_OK, "the shared health table is mapped");

    spread(&st, 1000, 0, MG_LB_ANY, c);
    ok(c[0] == 500 && c[1] == 500 && c[2] == 0 && c[3] == 0,
       "unknown health counts as healthy: all local, round robin "
       "(%u %u %u %u)", c[0], c[1], c[2], c[3]);

    health(0, 1);
    health(1, 0);
    health(2, 1);
    health(3, 1);
    spread(&st, 10000, 0, MG_LB_ANY, c);
    ok(c[1] == 0, "the unhealthy local endpoint gets nothing (%u)", c[1]);
    ok(c[0] > 6700 && c[0] < 7300 && c[2] > 2700 && c[2] < 3300 && c[3] == 0,
       "half local healthy: about 70 %% stay, 30 %% spill to the first "
       "region (%u %u %u)", c[0], c[2], c[3]);

    health(0, 0);
    spread(&st, 1000, 0, MG_LB_ANY, c);
    ok(c[2] == 1000, "no local endpoint healthy: all to region b (%u)", c[2]);

    health(2, 0);
    spread(&st, 1000, 0, MG_LB_ANY, c);
    ok(c[3] == 1000, "region b down too: all to region c (%u)", c[3]);

    spread(&st, 10, 0, MG_LB_LOCAL_ONLY, c);
    ok(c[4] == 10, "local only with nothing healthy locally: no pick (%u)",
       c[4]);

    health(3, 0);
    spread(&st, 8, 0, MG_LB_ANY, c);
    ok(c[4] == 0 && c[0] + c[1] == 8,
       "nothing healthy anywhere: panic, level 0 is tried (%u %u)", c[0],
       c[1]);

    health(0, 1);
    health(1, 1);
    health(2, 1);
    health(3, 1);
    spread(&st, 100, (1 << 0) | (1 << 1), MG_LB_ANY, c);
    ok(c[2] == 100, "both local endpoints tried: the retry goes to region b "
       "(%u)", c[2]);
    spread(&st, 100, (1 << 0) | (1 << 1) | (1 << 2), MG_LB_ANY, c);
    ok(c[3] == 100, "and then to region c (%u)", c[3]);
    spread(&st, 10, 0xf, MG_LB_ANY, c);
    ok(c[4] == 10, "everything tried: no pick (%u)", c[4]);
    spread(&st, 10, 1 << 0, MG_LB_LOCAL_ONLY, c);
    ok(c[1] == 10, "local only skips the tried endpoint (%u)", c[1]);
}

static void
test_outlier(void)
{
    mg_outlier_conf_t oc = { 3, 2, 10.0, 25.0, 50 };
    mg_outlier_state_t st;
    const char *why = "";
    unsigned count = 0, i;
    double t;

    memset(&st, 0, sizeof(st));
    ok(mg_lb_outlier_record(&st, &oc, 500, 0, 4, &why, &count) == 0
       && mg_lb_outlier_record(&st, &oc, 500, 0, 4, &why, &count) == 0,
       "two 500s: not yet");
    t = mg_lb_outlier_record(&st, &oc, 500, 0, 4, &why, &count);
    ok(t == 10.0 && strcmp(why, "5xx") == 0 && count == 3,
       "the third consecutive 500 ejects for the base time (%.1f, %s, %u)",
       t, why, count);
    ok(st.consecutive_5xx == 0 && st.ejections == 1,
       "the counts start over after an ejection");
    mg_lb_outlier_record(&st, &oc, 500, 0, 4, &why, &count);
    mg_lb_outlier_record(&st, &oc, 200, 0, 4, &why, &count);
    ok(st.consecutive_5xx == 0, "a success resets the count");
    ok(mg_lb_outlier_record(&st, &oc, 404, 0, 4, &why, &count) == 0
       && st.consecutive_5xx == 0, "a 4xx is a success here");
    t = mg_lb_outlier_record(&st, &oc, 0, 0, 4, &why, &count);
    ok(t == 0, "one failed connection: not yet");
    t = mg_lb_outlier_record(&st, &oc, 503, 0, 4, &why, &count);
    ok(t == 20.0 && strcmp(why, "gateway failures") == 0,
       "a failed connection then a 503: two gateway failures, the second "
       "ejection lasts twice as long (%.1f, %s)", t, why);
    mg_lb_outlier_record(&st, &oc, 0, 0, 4, &why, &count);
    t = mg_lb_outlier_record(&st, &oc, 0, 0, 4, &why, &count);
    is_int((long)t, 25, "the third ejection is capped by max_ejection_time");
    mg_lb_outlier_record(&st, &oc, 502, 0, 4, &why, &count);
    mg_lb_outlier_record(&st, &oc, 500, 0, 4, &why, &count);
    ok(st.consecutive_gateway == 0 && st.consecutive_5xx == 2,
       "a 500 breaks a run of gateway failures but not of 5xx");
    t = mg_lb_outlier_record(&st, &oc, 502, 0, 4, &why, &count);
    ok(t > 0 && strcmp(why, "5xx") == 0,
       "a gateway failure is a 5xx too: the third 5xx ejects (%.1f)", t);

    memset(&st, 0, sizeof(st));
    for (i = 0; i < 5; i++) {
        t = mg_lb_outlier_record(&st, &oc, 500, 2, 4, &why, &count);
    }
    ok(t == 0 && st.ejections == 0,
       "2 of 4 already ejected at max_ejection_percent 50: no more");
    t = mg_lb_outlier_record(&st, &oc, 500, 1, 4, &why, &count);
    ok(t > 0, "1 of 4 ejected: another may go (2 of 4 = 50 %%)");
    memset(&st, 0, sizeof(st));
    for (i = 0; i < 3; i++) {
        t = mg_lb_outlier_record(&st, &oc, 500, 1, 3, &why, &count);
    }
    ok(t == 0, "1 of 3 ejected at 50 %%: a second would make 67 %%, no");
    oc.max_ejection_percent = 0;
    memset(&st, 0, sizeof(st));
    for (i = 0; i < 3; i++) {
        t = mg_lb_outlier_record(&st, &oc, 500, 0, 4, &why, &count);
    }
    ok(t > 0, "max_ejection_percent 0 still lets one go");
    oc.consecutive_5xx = 0;
    oc.consecutive_gateway = 0;
    memset(&st, 0, sizeof(st));
    for (i = 0; i < 50; i++) {
        t = mg_lb_outlier_record(&st, &oc, 503, 0, 4, &why, &count);
    }
    ok(t == 0, "both thresholds 0: detection is off");
}

static void
test_ejected_pick(void)
{
    mg_lb_state_t st;
    const mg_endpoint_conf_t *ep;
    unsigned active[4] = { 0 }, i, hits[4] = { 0 };
    double ejected[4] = { 0, 100.0, 0, 0 };
    mg_lb_view_t view = { active, ejected, 50.0 };

    memset(&st, 0, sizeof(st));
    cluster_init();
    for (i = 0; i < 4; i++) {
        health(i, 1);
    }
    for (i = 0; i < 100; i++) {
        ep = mg_lb_pick(&st, &cl, &view, 0, MG_LB_ANY);
        hits[ep ? ep->pos : 0]++;
    }
    ok(hits[1] == 0 && hits[0] > 50,
       "an ejected endpoint gets nothing and counts as unhealthy: half "
       "the level is gone, 30 %% spills (%u %u %u)", hits[0], hits[1],
       hits[2]);
    view.now = 150.0;
    memset(hits, 0, sizeof(hits));
    for (i = 0; i < 100; i++) {
        ep = mg_lb_pick(&st, &cl, &view, 0, MG_LB_ANY);
        hits[ep ? ep->pos : 0]++;
    }
    ok(hits[0] == 50 && hits[1] == 50, "after the ejection ends it is back "
       "(%u %u)", hits[0], hits[1]);
}

int
main(void)
{
    test_loads();
    test_pick();
    test_outlier();
    test_ejected_pick();
    return done_testing();
}
