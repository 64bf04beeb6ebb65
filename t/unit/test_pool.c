/* Unit tests: arena pools, buffers and the load balancers. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "mg_buf.h"
#include "mg_lb.h"
#include "mg_pool.h"
#include "mg_snapshot.h"
#include "tap.h"

static int cleanup_order[4];
static int cleanup_n;

static void
record_cleanup(void *data)
{
    cleanup_order[cleanup_n++] = *(int *)data;
}

static void
test_pool(void)
{
    mg_pool_t *pool = mg_pool_create(1024);
    char *a, *b, *big, *s;
    int i, ids[3] = { 1, 2, 3 };

    ok(pool != NULL, "a pool is created");
    a = mg_palloc(pool, 10);
    b = mg_palloc(pool, 10);
    ok(a != NULL && b != NULL && b >= a + 10, "small allocations do not overlap");
    ok(((uintptr_t)b & 15) == 0, "allocations are 16-byte aligned");
    big = mg_palloc(pool, 100000);
    ok(big != NULL, "an allocation larger than a block succeeds");
    memset(big, 0xab, 100000);
    for (i = 0; i < 1000; i++) {
        if (mg_palloc(pool, 100) == NULL) {
            break;
        }
    }
    is_int(i, 1000, "many allocations spill into new blocks");
    s = mg_pstrndup(pool, "hello world", 5);
    ok(s != NULL && strcmp(s, "hello") == 0, "pstrndup copies and terminates");
    ok(((char *)mg_pcalloc(pool, 64))[63] == 0, "pcalloc zeroes");
    for (i = 0; i < 3; i++) {
        mg_pool_cleanup_add(pool, record_cleanup, &ids[i]);
    }
    mg_pool_destroy(pool);
    is_int(cleanup_n, 3, "every cleanup handler ran");
    ok(cleanup_order[0] == 3 && cleanup_order[2] == 1,
       "cleanup handlers run newest first");

    pool = mg_pool_create(1024);
    mg_pool_fail_nth(2);
    ok(mg_palloc(pool, 8) != NULL, "the first allocation succeeds");
    ok(mg_palloc(pool, 8) == NULL, "the second allocation fails on request");
    ok(mg_palloc(pool, 8) != NULL, "allocation works again afterwards");
    mg_pool_destroy(pool);
}

static void
test_buf(void)
{
    mg_buf_cache_t cache = { NULL, 0, 2 };
    mg_buf_t *a = mg_buf_get(&cache), *b = mg_buf_get(&cache),
             *c = mg_buf_get(&cache), *d;

    ok(a && b && c, "buffers are handed out");
    is_int(mg_buf_room(a), MG_BUF_SIZE, "a new buffer is empty and full size");
    memcpy(a->last, "abcdef", 6);
    a->last += 6;
    a->pos += 2;
    mg_buf_compact(a);
    ok(a->pos == a->start && mg_buf_pending(a) == 4
       && memcmp(a->pos, "cdef", 4) == 0, "compact moves pending bytes down");
    mg_buf_put(&cache, a);
    mg_buf_put(&cache, b);
    mg_buf_put(&cache, c);
    is_int(cache.nfree, 2, "the cache keeps at most max_free blocks");
    d = mg_buf_get(&cache);
    ok(d == b && mg_buf_pending(d) == 0, "a cached block is reused, reset");
    mg_buf_put(&cache, d);
    d = mg_buf_get_large(100000);
    ok(d != NULL && mg_buf_room(d) == 100000, "a large buffer has its size");
    mg_buf_put(&cache, d);
    is_int(cache.nfree, 2, "large buffers are not cached");
    mg_buf_cache_clear(&cache);
    is_int(cache.nfree, 0, "clearing empties the cache");
}

static void
test_lb(void)
{
    mg_endpoint_conf_t eps[3];
    mg_endpoint_conf_t *level[3] = { &eps[0], &eps[1], &eps[2] };
    mg_priority_t pr;
    mg_cluster_conf_t cl;
    mg_lb_state_t st;
    unsigned active[3] = { 0, 0, 0 }, hits[3] = { 0, 0, 0 }, i;
    int current[3] = { 0, 0, 0 };
    const mg_endpoint_conf_t *ep;
    mg_lb_view_t view = { active, NULL, 0 };

    memset(eps, 0, sizeof(eps));
    memset(&cl, 0, sizeof(cl));
    for (i = 0; i < 3; i++) {
        eps[i].index = i;
        eps[i].pos = i;
        eps[i].weight = 1;
    }
    memset(&pr, 0, sizeof(pr));
    pr.eps = level;
    pr.endpoints = eps;
    pr.nendpoints = 3;
    cl.priorities = &pr;
    cl.npriorities = 1;

    cl.lb = MG_LB_ROUND_ROBIN;
    memset(&st, 0, sizeof(st));
    for (i = 0; i < 30; i++) {
        hits[mg_lb_pick(&st, &cl, &view, 0, MG_LB_ANY)->index]++;
    }
    ok(hits[0] == 10 && hits[1] == 10 && hits[2] == 10,
       "round robin spreads evenly");
    ep = mg_lb_pick(&st, &cl, &view, 1 | 4, MG_LB_ANY);
    ok(ep == &eps[1], "excluded endpoints are skipped");
    ok(mg_lb_pick(&st, &cl, &view, 7, MG_LB_ANY) == NULL,
       "nothing is picked when every endpoint is excluded");

    cl.lb = MG_LB_WEIGHTED_ROUND_ROBIN;
    eps[0].weight = 5;
    eps[1].weight = 1;
    eps[2].weight = 1;
    memset(&st, 0, sizeof(st));
    st.current = current;
    memset(hits, 0, sizeof(hits));
    for (i = 0; i < 70; i++) {
        hits[mg_lb_pick(&st, &cl, &view, 0, MG_LB_ANY)->index]++;
    }
    ok(hits[0] == 50 && hits[1] == 10 && hits[2] == 10,
       "weighted round robin follows the weights (%u/%u/%u)", hits[0],
       hits[1], hits[2]);
    memset(current, 0, sizeof(current));
    {
        char seq[8];

        for (i = 0; i < 7; i++) {
            seq[i] = (char)('a' + mg_lb_pick(&st, &cl, &view, 0, MG_LB_ANY)->index);
        }
        seq[7] = '\0';
        ok(strcmp(seq, "aabacaa") == 0,
           "smooth weighting interleaves instead of bursting (%s)", seq);
    }

    cl.lb = MG_LB_LEAST_REQUEST;
    eps[0].weight = eps[1].weight = eps[2].weight = 1;
    memset(&st, 0, sizeof(st));
    active[0] = 5;
    active[1] = 0;
    active[2] = 3;
    ok(mg_lb_pick(&st, &cl, &view, 0, MG_LB_ANY) == &eps[1],
       "least request picks the idlest endpoint");
    active[1] = 9;
    ok(mg_lb_pick(&st, &cl, &view, 0, MG_LB_ANY) == &eps[2],
       "least request follows the counts");
    active[0] = active[1] = active[2] = 0;
    memset(hits, 0, sizeof(hits));
    for (i = 0; i < 30; i++) {
        hits[mg_lb_pick(&st, &cl, &view, 0, MG_LB_ANY)->index]++;
    }
    ok(hits[0] == 10 && hits[1] == 10 && hits[2] == 10,
       "least request breaks ties round robin");
}

int
main(void)
{
    test_pool();
    test_buf();
    test_lb();
    return done_testing();
}
