/*
 * Unit tests of the shared metrics: histogram buckets at and around every
 * bound, series that keep their cells across generations, cells given
 * back and zeroed, sums over process slots, and gauges zeroed when a
 * process goes while its counters stay.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mg_conf.h"
#include "mg_metrics.h"
#include "mg_router.h"
#include "mg_snapshot.h"
#include "tap.h"

static void
test_buckets(void)
{
    unsigned i, bad = 0;
    uint64_t b, prev = 0;

    is_int(mg_met_hist_bucket(0), 0, "0 us: first bucket");
    is_int(mg_met_hist_bucket(10), 0, "10 us: first bucket (le 1e-05)");
    is_int(mg_met_hist_bucket(11), 1, "11 us: second bucket (le 2e-05)");
    is_int(mg_met_hist_bound(0), 10, "first bound 10 us");
    is_int(mg_met_hist_bound(8), 90, "ninth bound 90 us");
    is_int(mg_met_hist_bound(9), 100, "tenth bound 100 us");
    is_int(mg_met_hist_bound(53), 9000000, "last decade ends at 9 s");
    is_int(mg_met_hist_bound(57), 60000000, "last bound 60 s");
    for (i = 0; i < MG_MET_HIST_BOUNDS; i++) {
        b = mg_met_hist_bound(i);
        if (b <= prev || mg_met_hist_bucket(b) != i
            || mg_met_hist_bucket(b + 1) != i + 1
            || (b > 1 && mg_met_hist_bucket(b - 1)
                             != (b - 1 > prev ? i : i - 1))) {
            printf("# bound %u = %llu misplaced\n", i, (unsigned long long)b);
            bad++;
        }
        prev = b;
    }
    is_int(bad, 0, "every bound is the top of its bucket, and increasing");
    is_int(mg_met_hist_bucket(UINT64_C(60000001)), MG_MET_HIST_BOUNDS,
           "past 60 s: +Inf");
    is_int(mg_met_hist_bucket(UINT64_MAX), MG_MET_HIST_BOUNDS,
           "huge: +Inf");
    /* 200 ms lands in le=0.2, 200.001 ms in le=0.3. */
    is_int(mg_met_hist_bound(mg_met_hist_bucket(200000)), 200000,
           "200 ms: le 0.2");
    is_int(mg_met_hist_bound(mg_met_hist_bucket(200001)), 300000,
           "just over 200 ms: le 0.3");
}

static mg_snapshot_t *
load(const char *dir, const char *text)
{
    char path[512];
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    FILE *f;
    unsigned i;

    snprintf(path, sizeof(path), "%s/m.conf", dir);
    f = fopen(path, "w");
    if (f == NULL) {
        return NULL;
    }
    fputs(text, f);
    fclose(f);
    snap = mg_conf_load(path, &errs);
    for (i = 0; i < errs.n; i++) {
        printf("# %s\n", errs.msgs[i]);
    }
    mg_conf_errors_free(&errs);
    return snap;
}

#define CONF_HEAD \
    "gateway = { workers = 1; };\n" \
    "listeners = ( { name = \"main\"; listen = \"127.0.0.1:1\"; " \
    "routes = \"r\"; } );\n" \
    "routes = { r = ( { domains = [\"*\"]; prefix = \"/a\"; " \
    "cluster = \"%s\"; }, { domains = [\"x.example\"]; prefix = \"/\"; " \
    "cluster = \"%s\"; } ); };\n"

static void
test_series(void)
{
    char dir[] = "/tmp/mg-test-metrics-XXXXXX";
    char text[4096];
    mg_snapshot_t *s1, *s2, *s3;
    unsigned slot, slot2, ep1, ep3;

    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp");
        return;
    }
    ok(mg_metrics_create() == MG_OK, "shared cells mapped");
    is_int(mg_metrics_slot(), 0, "the creator (master) has slot 0");

    snprintf(text, sizeof(text), CONF_HEAD "clusters = ( { name = \"%s\"; "
             "endpoints = ( { address = \"127.0.0.1:2\"; } ); } );\n",
             "users", "users", "users");
    s1 = load(dir, text);
    ok(s1 != NULL, "config 1 loads");
    if (s1 == NULL) {
        return;
    }
    ok(strcmp(s1->listeners[0].routes->all[0]->name, "/a") == 0,
       "a route on \"*\" is named by its path (%s)",
       s1->listeners[0].routes->all[0]->name);
    ok(strcmp(s1->listeners[0].routes->all[1]->name, "x.example/") == 0,
       "else by its first domain and path (%s)",
       s1->listeners[0].routes->all[1]->name);
    ok(mg_metrics_assign(s1, 1, 1) == MG_OK, "generation 1 assigned");
    ep1 = s1->clusters[0].priorities[0].endpoints[0].met;
    ok(s1->listeners[0].route_met[0] != s1->listeners[0].route_met[1]
       && s1->listeners[0].route_met[1] != s1->listeners[0].route_met[2],
       "each route and the no-route series have their own cells");

    slot = mg_metrics_slot_take();
    slot2 = mg_metrics_slot_take();
    ok(slot == 1 && slot2 == 2, "worker slots 1 and 2 (%u, %u)", slot,
       slot2);
    is_int(mg_metrics_slots_used(), 3, "three slots in use");

    /* Two "workers" count into their own slots; the sum is exact. */
    mg_metrics_use(slot, 1);
    mg_met_status(ep1 + MG_MET_E_RQ, 200);
    mg_met_status(ep1 + MG_MET_E_RQ, 503);
    mg_met_inc(ep1 + MG_MET_E_CX_ACTIVE);
    mg_met_observe(s1->listeners[0].route_met[0] + MG_MET_R_TIME, 0.2);
    mg_metrics_use(slot2, 1);
    mg_met_status(ep1 + MG_MET_E_RQ, 204);
    mg_met_inc(ep1 + MG_MET_E_CX_ACTIVE);
    mg_met_inc(ep1 + MG_MET_E_CX_ACTIVE);
    mg_met_dec(ep1 + MG_MET_E_CX_ACTIVE);
    is_int(mg_metrics_sum(ep1 + MG_MET_E_RQ + 1), 2, "2xx summed: 2");
    is_int(mg_metrics_sum(ep1 + MG_MET_E_RQ + 4), 1, "5xx summed: 1");
    is_int(mg_metrics_sum(ep1 + MG_MET_E_CX_ACTIVE), 2, "gauge summed: 2");
    is_int(mg_metrics_sum(s1->listeners[0].route_met[0] + MG_MET_R_TIME
                          + mg_met_hist_bucket(200000)), 1,
           "200 ms observed in its bucket");
    is_int(mg_metrics_sum(s1->listeners[0].route_met[0] + MG_MET_R_TIME
                          + MG_MET_HIST_BUCKETS), 200000,
           "histogram sum in microseconds");
    mg_metrics_use(slot, 0);
    mg_met_inc(ep1 + MG_MET_E_RQ + 1);
    is_int(mg_metrics_sum(ep1 + MG_MET_E_RQ + 1), 2,
           "metrics off: nothing counted");

    /* Slot 1's process exits: its gauge goes, its counters stay. */
    mg_metrics_slot_release(slot, s1);
    is_int(mg_metrics_sum(ep1 + MG_MET_E_CX_ACTIVE), 1,
           "a gone process's gauges are zeroed");
    is_int(mg_metrics_sum(ep1 + MG_MET_E_RQ + 1), 2,
           "... its counters stay");
    is_int(mg_metrics_slot_take(), slot, "its slot is taken again first");

    /* A reload with the same cluster keeps the cells. */
    s2 = load(dir, text);
    ok(s2 != NULL && mg_metrics_assign(s2, 2, 1) == MG_OK,
       "generation 2 assigned");
    if (s2 == NULL) {
        return;
    }
    is_int(s2->clusters[0].priorities[0].endpoints[0].met, ep1,
           "an endpoint kept by a reload keeps its cells");
    is_int(s2->listeners[0].route_met[1], s1->listeners[0].route_met[1],
           "so does a route");

    /* A renamed cluster gets new, zeroed cells; once generations 1 and 2
     * are gone, the old cells go back. */
    snprintf(text, sizeof(text), CONF_HEAD "clusters = ( { name = \"%s\"; "
             "endpoints = ( { address = \"127.0.0.1:2\"; } ); } );\n",
             "people", "people", "people");
    s3 = load(dir, text);
    ok(s3 != NULL && mg_metrics_assign(s3, 3, 2) == MG_OK,
       "generation 3 assigned");
    if (s3 == NULL) {
        return;
    }
    ep3 = s3->clusters[0].priorities[0].endpoints[0].met;
    ok(ep3 != ep1, "a new cluster's endpoint has other cells");
    is_int(mg_metrics_sum(ep3 + MG_MET_E_RQ + 1), 0, "... at zero");
    ok(mg_metrics_assign(s3, 4, 4) == MG_OK, "generation 4 alone");
    ok(mg_metrics_assign(s1, 5, 5) == MG_OK,
       "the old cluster comes back in generation 5");
    is_int(mg_metrics_sum(s1->clusters[0].priorities[0].endpoints[0].met
                          + MG_MET_E_RQ + 1), 0,
           "a series that was given back starts from zero");

    /* Names past the key size keep their own cells. */
    {
        char long_a[301], long_b[301];
        mg_snapshot_t *s4;

        memset(long_a, 'x', 300);
        long_a[300] = '\0';
        memcpy(long_b, long_a, sizeof(long_b));
        long_a[299] = 'a';
        long_b[299] = 'b';
        snprintf(text, sizeof(text), CONF_HEAD "clusters = ( { name = \"%s\"; "
                 "endpoints = ( { address = \"127.0.0.1:2\"; } ); }, "
                 "{ name = \"%s\"; endpoints = ( { address = "
                 "\"127.0.0.1:2\"; } ); } );\n", long_a, long_b, long_a,
                 long_b);
        s4 = load(dir, text);
        ok(s4 != NULL && mg_metrics_assign(s4, 6, 6) == MG_OK,
           "clusters with 300-byte names assigned");
        if (s4 != NULL) {
            ok(s4->clusters[0].met != s4->clusters[1].met,
               "names alike in their first 200 bytes have their own cells");
            mg_snapshot_free(s4);
        }
    }

    mg_snapshot_free(s1);
    mg_snapshot_free(s2);
    mg_snapshot_free(s3);
    snprintf(text, sizeof(text), "rm -rf %s", dir);
    (void)system(text);
}

int
main(void)
{
    test_buckets();
    test_series();
    return done_testing();
}
