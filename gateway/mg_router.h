/*
 * Routing: a route table (one per `routes` entry in the config) maps the
 * request's host to a virtual host, then the path to the first route of that
 * virtual host that matches, in configuration order.
 *
 * Host matching is case-insensitive and ignores a ":port" suffix. An exact
 * domain wins over a wildcard "*.suffix" (the longest suffix wins among
 * wildcards), which wins over "*". "*.example.com" matches "a.example.com"
 * and "a.b.example.com", not "example.com".
 */
#ifndef MG_ROUTER_H
#define MG_ROUTER_H

#include "mg_core.h"
#include "mg_str.h"

typedef struct mg_vhost_s {
    const mg_route_t **routes;    /* in configuration order */
    unsigned nroutes;
} mg_vhost_t;

typedef struct mg_router_exact_s {
    mg_str_t host;                /* lower case */
    mg_vhost_t vh;
} mg_router_exact_t;

typedef struct mg_router_wild_s {
    mg_str_t suffix;              /* lower case, with the leading '.' */
    mg_vhost_t vh;
} mg_router_wild_t;

struct mg_route_table_s {
    const char *name;
    mg_router_exact_t *exact;     /* sorted for binary search */
    unsigned nexact;
    mg_router_wild_t *wild;       /* longest suffix first */
    unsigned nwild;
    mg_vhost_t any;               /* "*"; nroutes 0 when absent */
    const mg_route_t **all;       /* every route, in configuration order */
    unsigned nroutes;
};

/* One route with its domains, as the config parser hands them over. */
typedef struct mg_router_entry_s {
    const mg_route_t *route;
    const char **domains;         /* "name", "*.suffix" or "*" */
    unsigned ndomains;
} mg_router_entry_t;

/*
 * Builds a table named |name| from |entries| (in configuration order) in
 * |pool|. Domains are lower-cased; the same domain in several entries
 * collects those routes in order. Returns NULL when out of memory.
 */
mg_route_table_t *mg_router_build(mg_pool_t *pool, const char *name,
                                  const mg_router_entry_t *entries,
                                  unsigned nentries);

/*
 * Returns the route for |host| (may carry ":port", any case; may be empty)
 * and |path|, or NULL when no virtual host or no route matches (404).
 * A prefix route matches when the path starts with it; an exact route when
 * the path equals it. Allocates nothing.
 */
const mg_route_t *mg_router_match(const mg_route_table_t *t, mg_str_t host,
                                  mg_str_t path);

#endif /* MG_ROUTER_H */
