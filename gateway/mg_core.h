/*
 * Core definitions shared by every meshgate module: return codes and the
 * forward typedefs, so that headers rarely need to include each other.
 */
#ifndef MG_CORE_H
#define MG_CORE_H

#include <stddef.h>
#include <stdint.h>

#define MG_OK        0
#define MG_ERROR    -1
#define MG_AGAIN    -2   /* wait for an event, then call again */
#define MG_DECLINED -3   /* not mine: try the next one */
#define MG_DONE     -4   /* finished, or handed off */

#define MG_VERSION_STRING PACKAGE_VERSION

typedef struct mg_pool_s mg_pool_t;
typedef struct mg_log_s mg_log_t;
typedef struct mg_buf_s mg_buf_t;
typedef struct mg_snapshot_s mg_snapshot_t;
typedef struct mg_listener_conf_s mg_listener_conf_t;
typedef struct mg_cluster_conf_s mg_cluster_conf_t;
typedef struct mg_endpoint_conf_s mg_endpoint_conf_t;
typedef struct mg_route_s mg_route_t;
typedef struct mg_route_table_s mg_route_table_t;
typedef struct mg_h1_request_s mg_h1_request_t;
typedef struct mg_h1_response_s mg_h1_response_t;
typedef struct mg_ctx_s mg_ctx_t;
typedef struct mg_client_s mg_client_t;
typedef struct mg_upstream_pool_s mg_upstream_pool_t;
typedef struct mg_access_log_s mg_access_log_t;
typedef struct mg_access_format_s mg_access_format_t;
typedef struct mg_outlier_conf_s mg_outlier_conf_t;

#define mg_countof(a) (sizeof(a) / sizeof((a)[0]))
#define mg_min(a, b) ((a) < (b) ? (a) : (b))
#define mg_max(a, b) ((a) > (b) ? (a) : (b))

/* Bitmaps in 64-bit words, for the block tables of shared memory: the
 * first run of |n| clear bits wholly below |limit| (or |limit| when there
 * is none), and setting or clearing a run. */
static inline unsigned
mg_bits_find_clear(const uint64_t *map, unsigned limit, unsigned n)
{
    unsigned b, i;

    for (b = 0; b + n <= limit; b++) {
        for (i = b; i < b + n; i++) {
            if (map[i / 64] & ((uint64_t)1 << (i % 64))) {
                break;
            }
        }
        if (i == b + n) {
            return b;
        }
    }
    return limit;
}

static inline void
mg_bits_set(uint64_t *map, unsigned b, unsigned n, int on)
{
    unsigned i;

    for (i = b; i < b + n; i++) {
        if (on) {
            map[i / 64] |= (uint64_t)1 << (i % 64);
        } else {
            map[i / 64] &= ~((uint64_t)1 << (i % 64));
        }
    }
}

#if defined(__GNUC__)
#define mg_likely(x) __builtin_expect(!!(x), 1)
#define mg_unlikely(x) __builtin_expect(!!(x), 0)
#define MG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define mg_likely(x) (x)
#define mg_unlikely(x) (x)
#define MG_PRINTF(f, a)
#endif

#endif /* MG_CORE_H */
