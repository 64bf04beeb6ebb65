/*
 * Routing: host to virtual host, then path to the first matching route.
 *
 * The table is built once per snapshot, so building may take its time and
 * memory; matching runs per request and allocates nothing. Exact hosts are
 * sorted so a binary search with a case-insensitive compare finds them
 * without lower-casing the request's host first; wildcard suffixes are kept
 * longest first so the first suffix that matches is the most specific one.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "mg_pool.h"
#include "mg_router.h"
#include "mg_snapshot.h"

#define ROUTER_EXACT 1
#define ROUTER_WILD  2
#define ROUTER_ANY   3

/* One (domain, entry) pair while building. */
typedef struct router_pair_s {
    unsigned kind;          /* ROUTER_EXACT, _WILD or _ANY */
    mg_str_t key;           /* lower case; a wildcard keeps its leading '.' */
    unsigned entry;         /* index in the entries, for configuration order */
} router_pair_t;

/* Case-insensitive byte order; both build and match use it, so the sorted
 * array and the binary search agree. */
static int
router_casecmp(mg_str_t a, mg_str_t b)
{
    size_t i, n = mg_min(a.len, b.len);
    unsigned char ca, cb;

    for (i = 0; i < n; i++) {
        ca = (unsigned char)mg_tolower(a.data[i]);
        cb = (unsigned char)mg_tolower(b.data[i]);
        if (ca != cb) {
            return ca < cb ? -1 : 1;
        }
    }
    if (a.len == b.len) {
        return 0;
    }
    return a.len < b.len ? -1 : 1;
}

/* Sorts exact hosts by name, wildcards longest first, and keeps the
 * entries of one domain in configuration order. */
static int
router_pair_cmp(const void *pa, const void *pb)
{
    const router_pair_t *a = pa, *b = pb;
    int rc;

    if (a->kind != b->kind) {
        return a->kind < b->kind ? -1 : 1;
    }
    if (a->kind == ROUTER_WILD && a->key.len != b->key.len) {
        return a->key.len > b->key.len ? -1 : 1;
    }
    rc = router_casecmp(a->key, b->key);
    if (rc != 0) {
        return rc;
    }
    if (a->entry != b->entry) {
        return a->entry < b->entry ? -1 : 1;
    }
    return 0;
}

/* Fills |vh| with the routes of pairs[from..to), dropping a route listed
 * twice for one domain by the same entry. */
static int
router_fill_vhost(mg_pool_t *pool, mg_vhost_t *vh, const router_pair_t *pairs,
                  unsigned from, unsigned to, const mg_router_entry_t *entries)
{
    unsigned i, n = 0;

    vh->routes = mg_palloc(pool, (to - from) * sizeof(mg_route_t *));
    if (vh->routes == NULL) {
        return MG_ERROR;
    }
    for (i = from; i < to; i++) {
        if (i > from && pairs[i].entry == pairs[i - 1].entry) {
            continue;
        }
        vh->routes[n++] = entries[pairs[i].entry].route;
    }
    vh->nroutes = n;
    return MG_OK;
}

mg_route_table_t *
mg_router_build(mg_pool_t *pool, const char *name,
                const mg_router_entry_t *entries, unsigned nentries)
{
    mg_route_table_t *t = NULL;
    router_pair_t *pairs;
    unsigned i, j, k, n = 0, npairs = 0, nexact = 0, nwild = 0;
    const char *d;
    char *low;
    size_t len, c;

    for (i = 0; i < nentries; i++) {
        npairs += entries[i].ndomains;
    }
    pairs = malloc((npairs ? npairs : 1) * sizeof(router_pair_t));
    if (pairs == NULL) {
        return NULL;
    }

    for (i = 0; i < nentries; i++) {
        for (j = 0; j < entries[i].ndomains; j++) {
            d = entries[i].domains[j];
            len = strlen(d);
            if (strcmp(d, "*") == 0) {
                pairs[n].kind = ROUTER_ANY;
                pairs[n].key = mg_str_null;
            } else {
                if (d[0] == '*') {   /* "*.suffix": keep the '.' */
                    d++;
                    len--;
                }
                low = mg_pstrndup(pool, d, len);
                if (low == NULL) {
                    goto failed;
                }
                for (c = 0; c < len; c++) {
                    low[c] = mg_tolower(low[c]);
                }
                pairs[n].kind = (d != entries[i].domains[j]) ? ROUTER_WILD
                                                             : ROUTER_EXACT;
                pairs[n].key = (mg_str_t){ low, len };
            }
            pairs[n].entry = i;
            n++;
        }
    }
    qsort(pairs, n, sizeof(router_pair_t), router_pair_cmp);

    for (i = 0; i < n; i++) {
        if (i > 0 && pairs[i].kind == pairs[i - 1].kind
            && mg_str_eq(pairs[i].key, pairs[i - 1].key))
        {
            continue;
        }
        if (pairs[i].kind == ROUTER_EXACT) {
            nexact++;
        } else if (pairs[i].kind == ROUTER_WILD) {
            nwild++;
        }
    }

    t = mg_pcalloc(pool, sizeof(mg_route_table_t));
    if (t == NULL) {
        goto failed;
    }
    t->name = mg_pstrdup(pool, name);
    t->exact = mg_pcalloc(pool, (nexact ? nexact : 1)
                                    * sizeof(mg_router_exact_t));
    t->wild = mg_pcalloc(pool, (nwild ? nwild : 1) * sizeof(mg_router_wild_t));
    if (t->name == NULL || t->exact == NULL || t->wild == NULL) {
        goto failed;
    }

    for (i = 0; i < n; i = k) {
        for (k = i + 1; k < n; k++) {
            if (pairs[k].kind != pairs[i].kind
                || !mg_str_eq(pairs[k].key, pairs[i].key))
            {
                break;
            }
        }
        if (pairs[i].kind == ROUTER_EXACT) {
            t->exact[t->nexact].host = pairs[i].key;
            if (router_fill_vhost(pool, &t->exact[t->nexact].vh, pairs, i, k,
                                  entries) != MG_OK)
            {
                goto failed;
            }
            t->nexact++;
        } else if (pairs[i].kind == ROUTER_WILD) {
            t->wild[t->nwild].suffix = pairs[i].key;
            if (router_fill_vhost(pool, &t->wild[t->nwild].vh, pairs, i, k,
                                  entries) != MG_OK)
            {
                goto failed;
            }
            t->nwild++;
        } else if (router_fill_vhost(pool, &t->any, pairs, i, k, entries)
                   != MG_OK)
        {
            goto failed;
        }
    }

    free(pairs);
    return t;

failed:
    free(pairs);
    return NULL;
}

/* Drops a ":port" and one trailing '.' (an absolute name, RFC 1034 §3.1),
 * keeping an IPv6 literal's brackets: "[::1]:8000" -> "[::1]". */
static mg_str_t
router_split_host(mg_str_t host)
{
    const char *p;

    if (host.len > 0 && host.data[0] == '[') {
        p = memchr(host.data, ']', host.len);
        if (p != NULL) {
            host.len = (size_t)(p - host.data) + 1;
        }
        return host;
    }
    p = memchr(host.data, ':', host.len);
    if (p != NULL) {
        host.len = (size_t)(p - host.data);
    }
    if (host.len > 0 && host.data[host.len - 1] == '.') {
        host.len--;
    }
    return host;
}

static const mg_vhost_t *
router_find_vhost(const mg_route_table_t *t, mg_str_t host)
{
    unsigned lo = 0, hi = t->nexact, mid, i;
    const mg_router_wild_t *w;
    int rc;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        rc = router_casecmp(host, t->exact[mid].host);
        if (rc == 0) {
            return &t->exact[mid].vh;
        }
        if (rc < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }

    /* Longest first: the first hit is the most specific suffix. The host
     * must be longer than the suffix so "*.example.com" does not match
     * "example.com" itself. */
    for (i = 0; i < t->nwild; i++) {
        w = &t->wild[i];
        if (host.len > w->suffix.len
            && router_casecmp((mg_str_t){ host.data + host.len - w->suffix.len,
                                          w->suffix.len },
                              w->suffix) == 0)
        {
            return &w->vh;
        }
    }

    return t->any.nroutes ? &t->any : NULL;
}

const mg_route_t *
mg_router_match(const mg_route_table_t *t, mg_str_t host, mg_str_t path)
{
    const mg_vhost_t *vh;
    const mg_route_t *r;
    unsigned i;

    if (host.data == NULL) {
        host = mg_str_lit("");
    }
    vh = router_find_vhost(t, router_split_host(host));
    if (vh == NULL) {
        return NULL;
    }
    for (i = 0; i < vh->nroutes; i++) {
        r = vh->routes[i];
        if (r->path_exact) {
            if (mg_str_eq(path, r->path)) {
                return r;
            }
        } else if (path.len >= r->path.len
                   && memcmp(path.data, r->path.data, r->path.len) == 0)
        {
            return r;
        }
    }
    return NULL;
}
