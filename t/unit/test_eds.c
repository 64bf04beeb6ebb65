/*
 * Unit tests of the discovery table: an address keeps its slot while it
 * stays, a new one takes the slot freed longest ago (never used first), an
 * address listed twice counts once, the capacity bounds the set, and a
 * worker's view (levels by priority, weights, health, zone) follows each
 * assignment.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "mg_conf.h"
#include "mg_ctx.h"
#include "mg_eds.h"
#include "mg_snapshot.h"
#include "tap.h"

static mg_eds_endpoint_t
ep(const char *ip, unsigned port, unsigned priority, unsigned weight,
   unsigned health)
{
    mg_eds_endpoint_t e;
    struct sockaddr_in *sin = (struct sockaddr_in *)&e.addr;

    memset(&e, 0, sizeof(e));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &sin->sin_addr);
    e.addrlen = sizeof(*sin);
    snprintf(e.text, sizeof(e.text), "%s:%u", ip, port);
    snprintf(e.zone, sizeof(e.zone), "z%u", port % 10);
    e.priority = priority;
    e.weight = weight;
    e.health = health;
    return e;
}

/* The slot of |text| in |cl|'s current view, or -1. */
static int
slot_of(const mg_cluster_conf_t *cl, const char *text)
{
    unsigned k;

    for (k = 0; k < cl->max_endpoints; k++) {
        if (!cl->eds_slots[k].eds_gone
            && strcmp(cl->eds_slots[k].address, text) == 0) {
            return (int)k;
        }
    }
    return -1;
}

int
main(void)
{
    char dir[] = "/tmp/mg-test-eds-XXXXXX", path[512];
    mg_conf_errors_t errs = { NULL, 0 };
    mg_eds_endpoint_t set[8];
    mg_eds_status_t st;
    mg_snapshot_t *snap;
    mg_cluster_conf_t *cl;
    mg_ctx_t ctx;
    FILE *f;
    int a, b, c, d;
    unsigned i;

    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp");
        return done_testing();
    }
    snprintf(path, sizeof(path), "%s/m.conf", dir);
    f = fopen(path, "w");
    fputs("gateway = { workers = 1; };\n"
          "xds = { address = \"127.0.0.1:1\"; };\n"
          "listeners = ( { name = \"l\"; listen = \"127.0.0.1:1\"; "
          "routes = \"r\"; } );\n"
          "routes = { r = ( { domains = [\"*\"]; prefix = \"/\"; "
          "cluster = \"users\"; } ); };\n"
          "clusters = ( { name = \"users\"; discovery = \"eds\"; "
          "max_endpoints = 4; } );\n", f);
    fclose(f);
    snap = mg_conf_load(path, &errs);
    for (i = 0; i < errs.n; i++) {
        printf("# %s\n", errs.msgs[i]);
    }
    mg_conf_errors_free(&errs);
    ok(snap != NULL, "a discovery cluster loads");
    if (snap == NULL) {
        return done_testing();
    }
    cl = &snap->clusters[0];
    ok(cl->eds_name != NULL && strcmp(cl->eds_name, "users") == 0
       && cl->max_endpoints == 4, "eds_name defaults to the cluster's name");
    ok(mg_eds_create() == MG_OK && mg_eds_assign(snap, 1, 1) == MG_OK,
       "table entry assigned");
    memset(&ctx, 0, sizeof(ctx));
    ok(mg_ctx_init(&ctx, ev_default_loop(0), snap) == MG_OK, "a worker");
    ok(mg_eds_status(cl, &st) == MG_OK && !st.got_first,
       "no assignment yet");
    mg_eds_refresh(&ctx, cl);
    is_int(cl->priorities[0].nendpoints, 0, "no endpoint before it");

    set[0] = ep("10.0.0.1", 80, 0, 1, 0);
    set[1] = ep("10.0.0.2", 80, 0, 3, 0);
    set[2] = ep("10.0.0.3", 80, 1, 1, 2);
    mg_eds_publish(cl, set, 3, "v1");
    mg_eds_refresh(&ctx, cl);
    ok(mg_eds_status(cl, &st) == MG_OK && st.got_first && st.nendpoints == 3
       && strcmp(st.version, "v1") == 0, "v1: 3 endpoints, version kept");
    is_int(cl->priorities[0].nendpoints, 2, "v1: two at priority 0");
    is_int(cl->priorities[1].nendpoints, 1, "v1: one at priority 1");
    is_int(cl->priorities[0].total_weight, 4, "v1: weights 1 + 3");
    a = slot_of(cl, "10.0.0.1:80");
    b = slot_of(cl, "10.0.0.2:80");
    c = slot_of(cl, "10.0.0.3:80");
    ok(a >= 0 && b >= 0 && c >= 0 && a != b && b != c && a != c,
       "v1: each address has its slot (%d %d %d)", a, b, c);
    ok(c >= 0 && cl->eds_slots[c].eds_down
       && cl->eds_slots[c].eds_health == MG_EDS_HEALTH_UNHEALTHY,
       "v1: an UNHEALTHY endpoint is down");
    ok(a >= 0 && strcmp(cl->eds_slots[a].zone, "z0") == 0, "v1: its zone");

    /* .2 stays, .1 and .3 go, .4 comes: .4 takes the slot never used. */
    set[0] = ep("10.0.0.2", 80, 0, 3, 0);
    set[1] = ep("10.0.0.4", 80, 0, 1, 1);
    set[2] = ep("10.0.0.4", 80, 0, 1, 1);
    mg_eds_publish(cl, set, 3, "v2");
    mg_eds_refresh(&ctx, cl);
    is_int(slot_of(cl, "10.0.0.2:80"), b, "v2: an address that stays keeps "
           "its slot");
    d = slot_of(cl, "10.0.0.4:80");
    ok(d >= 0 && d != a && d != c, "v2: a new one takes the never-used slot "
       "(%d), not a just-freed one", d);
    ok(mg_eds_status(cl, &st) == MG_OK && st.nendpoints == 2,
       "v2: an address listed twice counts once");
    is_int(slot_of(cl, "10.0.0.1:80"), -1, "v2: a removed one is gone");
    ok(a >= 0 && cl->eds_slots[a].eds_gone, "v2: its slot is free");

    /* Two more new ones: the slots freed in v2 go, .1's first (freed at
     * the same time as .3's, the lower slot first). */
    set[0] = ep("10.0.0.2", 80, 0, 3, 0);
    set[1] = ep("10.0.0.4", 80, 0, 1, 1);
    set[2] = ep("10.0.0.5", 80, 0, 1, 0);
    set[3] = ep("10.0.0.6", 80, 0, 1, 0);
    set[4] = ep("10.0.0.7", 80, 0, 1, 0);
    mg_eds_publish(cl, set, 5, "v3");
    mg_eds_refresh(&ctx, cl);
    ok(mg_eds_status(cl, &st) == MG_OK && st.nendpoints == 4,
       "v3: the capacity (4) bounds the set");
    ok(slot_of(cl, "10.0.0.5:80") == (a < c ? a : c)
       && slot_of(cl, "10.0.0.6:80") == (a < c ? c : a),
       "v3: freed slots are reused, of the same age the lower first");
    is_int(slot_of(cl, "10.0.0.4:80"), d, "v3: .4 stays put");
    is_int(cl->priorities[0].nendpoints, 4, "v3: the view has all four");

    mg_eds_reject(cl, "cluster users: bad");
    ok(mg_eds_status(cl, &st) == MG_OK && st.rejections == 1
       && strcmp(st.nack, "cluster users: bad") == 0 && st.nendpoints == 4,
       "a rejection is recorded, the endpoints stay");
    mg_eds_refresh(&ctx, cl);
    is_int(cl->priorities[0].nendpoints, 4, "and the view too");

    mg_ctx_destroy(&ctx);
    mg_snapshot_free(snap);
    unlink(path);
    rmdir(dir);
    return done_testing();
}
