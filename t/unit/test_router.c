/*
 * Unit tests of the router: host precedence (exact, then the longest
 * wildcard suffix, then "*"), host normalisation (case, port, trailing dot,
 * IPv6 literals) and path matching in configuration order.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "mg_pool.h"
#include "mg_router.h"
#include "mg_snapshot.h"
#include "tap.h"

#define NROUTES 10

static mg_route_t routes[NROUTES];

static void
route_init(unsigned i, const char *path, int exact)
{
    memset(&routes[i], 0, sizeof(mg_route_t));
    routes[i].action = MG_ROUTE_DIRECT;
    routes[i].status = 200 + i;
    routes[i].path = mg_str(path);
    routes[i].path_exact = exact ? 1 : 0;
}

/* The index of the route |host| and |path| select, or -1 for none. */
static int
match(const mg_route_table_t *t, const char *host, const char *path)
{
    const mg_route_t *r;

    r = mg_router_match(t, host ? mg_str(host) : mg_str_null, mg_str(path));
    return r == NULL ? -1 : (int)(r - routes);
}

int
main(void)
{
    static const char *d_exact[] = { "API.example.com", "www.example.com" };
    static const char *d_wild[] = { "*.example.com" };
    static const char *d_wild_long[] = { "*.eu.example.com" };
    static const char *d_any[] = { "*" };
    static const char *d_v6[] = { "[::1]", "localhost" };
    static const char *d_dup[] = { "dup.test", "DUP.test" };
    mg_router_entry_t e[] = {
        { &routes[0], d_exact, 2 },      /* /v1/ prefix */
        { &routes[1], d_exact, 2 },      /* = /v1/health */
        { &routes[2], d_exact, 2 },      /* / prefix */
        { &routes[3], d_wild, 1 },       /* / */
        { &routes[4], d_wild_long, 1 },  /* / */
        { &routes[5], d_any, 1 },        /* = /only */
        { &routes[6], d_v6, 2 },         /* / */
        { &routes[7], d_dup, 2 },        /* /a */
        { &routes[8], d_dup, 2 },        /* / */
    };
    mg_route_table_t *t, *empty, *noany;
    mg_pool_t *pool;

    route_init(0, "/v1/", 0);
    route_init(1, "/v1/health", 1);
    route_init(2, "/", 0);
    route_init(3, "/", 0);
    route_init(4, "/", 0);
    route_init(5, "/only", 1);
    route_init(6, "/", 0);
    route_init(7, "/a", 0);
    route_init(8, "/", 0);

    pool = mg_pool_create(4096);
    t = mg_router_build(pool, "test", e, mg_countof(e));
    ok(t != NULL, "table built");
    ok(t != NULL && strcmp(t->name, "test") == 0, "table keeps its name");
    is_int(t->nexact, 5, "five distinct exact hosts (dup.test once)");
    is_int(t->nwild, 2, "two wildcard suffixes");
    ok(t->nwild == 2 && t->wild[0].suffix.len > t->wild[1].suffix.len,
       "wildcards are sorted longest first");
    ok(t->exact[0].host.data[0] != 'A', "exact hosts are lower-cased");

    /* Exact beats wildcard beats "*". */
    is_int(match(t, "api.example.com", "/x"), 2, "exact host wins");
    is_int(match(t, "a.example.com", "/x"), 3, "wildcard host");
    is_int(match(t, "a.b.example.com", "/x"), 3,
           "wildcard matches several labels");
    is_int(match(t, "x.eu.example.com", "/x"), 4,
           "longest wildcard suffix wins");
    is_int(match(t, "eu.example.com", "/x"), 3,
           "*.eu.example.com does not match eu.example.com itself");
    is_int(match(t, "example.com", "/only"), 5,
           "*.example.com does not match example.com: falls to \"*\"");
    is_int(match(t, "other.test", "/only"), 5, "\"*\" catches other hosts");

    /* Host normalisation. */
    is_int(match(t, "WWW.Example.COM", "/x"), 2, "host case is ignored");
    is_int(match(t, "Api.Example.Com:8443", "/x"), 2, "a :port is ignored");
    is_int(match(t, "api.example.com.", "/x"), 2, "a trailing dot is ignored");
    is_int(match(t, "api.example.com.:80", "/x"), 2,
           "a trailing dot before the port is ignored");
    is_int(match(t, "A.EU.example.com:1", "/"), 4,
           "wildcards ignore case and port");
    is_int(match(t, "[::1]:8000", "/x"), 6, "IPv6 literal with a port");
    is_int(match(t, "[::1]", "/x"), 6, "IPv6 literal without a port");
    is_int(match(t, "localhost:8000", "/x"), 6, "localhost:8000");
    is_int(match(t, "", "/only"), 5, "empty host only matches \"*\"");
    is_int(match(t, NULL, "/only"), 5, "absent host only matches \"*\"");

    /* Paths: first match in configuration order, no fallthrough. */
    is_int(match(t, "api.example.com", "/v1/health"), 0,
           "an earlier prefix route wins over a later exact route");
    is_int(match(t, "api.example.com", "/v1/users"), 0, "prefix route");
    is_int(match(t, "api.example.com", "/v1"), 2,
           "a shorter path does not match the prefix /v1/");
    is_int(match(t, "other.test", "/only/more"), -1,
           "an exact route does not match a longer path");
    is_int(match(t, "other.test", "/onl"), -1,
           "an exact route does not match a shorter path");
    is_int(match(t, "other.test", "/"), -1,
           "a virtual host without a matching path gives NULL");
    is_int(match(t, "dup.test", "/abc"), 7,
           "one domain in several entries keeps their order (1st)");
    is_int(match(t, "dup.test", "/b"), 8,
           "one domain in several entries keeps their order (2nd)");
    ok(t->nexact == 5, "a domain listed twice in one entry adds one vhost");

    {
        mg_router_entry_t e2[] = { { &routes[1], d_exact, 2 },
                                   { &routes[0], d_exact, 2 } };
        mg_route_table_t *t2 = mg_router_build(pool, "order", e2, 2);

        is_int(match(t2, "api.example.com", "/v1/health"), 1,
               "exact route first in configuration order wins");
        is_int(match(t2, "api.example.com", "/v1/x"), 0,
               "then the prefix route");
    }

    noany = mg_router_build(pool, "noany", e, 3);
    is_int(match(noany, "unknown.test", "/"), -1,
           "no virtual host for the host gives NULL");
    is_int(match(noany, "www.example.com", "/"), 2, "exact host still found");
    is_int(noany->any.nroutes, 0, "no \"*\" vhost when none configured");

    empty = mg_router_build(pool, "empty", NULL, 0);
    ok(empty != NULL, "an empty table builds");
    is_int(match(empty, "a.test", "/"), -1, "an empty table matches nothing");

    {
        /* Many hosts: the binary search must find every one of them. */
        static char names[200][16];
        static const char *doms[200];
        mg_router_entry_t big = { &routes[9], doms, 200 };
        mg_route_table_t *tb;
        int i, found = 0;
        char host[32];

        route_init(9, "/", 0);
        for (i = 0; i < 200; i++) {
            snprintf(names[i], sizeof(names[i]), "h%03d.Test", (i * 37) % 200);
            doms[i] = names[i];
        }
        tb = mg_router_build(pool, "big", &big, 1);
        for (i = 0; i < 200; i++) {
            snprintf(host, sizeof(host), "H%03d.TEST:80", i);
            found += match(tb, host, "/") == 9;
        }
        is_int(found, 200, "binary search finds all 200 hosts");
        is_int(match(tb, "h200.test", "/"), -1, "and misses an absent one");
    }

    mg_pool_destroy(pool);
    return done_testing();
}
