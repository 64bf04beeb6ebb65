/*
 * The running configuration: one immutable snapshot, built by mg_conf_load()
 * in one arena and only read afterwards. Live state (health, stats, pools)
 * never lives here.
 */
#ifndef MG_SNAPSHOT_H
#define MG_SNAPSHOT_H

#include <stdint.h>
#include <sys/socket.h>

#include "mg_core.h"
#include "mg_h1.h"
#include "mg_str.h"

/* How a cluster spreads requests over the endpoints of one priority. */
enum {
    MG_LB_ROUND_ROBIN = 1,
    MG_LB_WEIGHTED_ROUND_ROBIN,
    MG_LB_LEAST_REQUEST
};

/* Active health checking of a cluster's endpoints or a region's front
 * proxy, run by the control process. */
enum {
    MG_HC_HTTP = 1,               /* GET path, status in the expected set */
    MG_HC_TCP                     /* connect (and TLS handshake) succeeds */
};

typedef struct mg_health_check_conf_s {
    unsigned type;                /* MG_HC_* */
    const char *path;             /* default "/healthz" */
    const char *host;             /* Host sent; NULL = the cluster name */
    uint64_t statuses[10];        /* bit s%64 of word s/64: status s is ok;
                                   * default 200..399 */
    double interval;              /* default 5 s */
    double timeout;               /* default 1 s */
    double jitter;                /* up to this much added, default 0 */
    unsigned healthy_threshold;   /* passes to become healthy, default 2 */
    unsigned unhealthy_threshold; /* failures to become unhealthy, 3 */
} mg_health_check_conf_t;

/* When a failed attempt is tried again (bits of mg_retry_conf_t.on). */
enum {
    MG_RETRY_CONNECT_FAILURE = 1 << 0,
    MG_RETRY_REFUSED_STREAM = 1 << 1,
    MG_RETRY_RESET = 1 << 2,
    MG_RETRY_5XX = 1 << 3,
    MG_RETRY_GATEWAY_ERROR = 1 << 4,   /* 502, 503, 504 */
    MG_RETRY_RETRIABLE_STATUS = 1 << 5 /* the codes in |statuses| */
};

typedef struct mg_retry_conf_s {
    unsigned on;                  /* MG_RETRY_*; default connect-failure,
                                   * refused-stream */
    uint64_t statuses[10];        /* retriable-status codes, as above */
    unsigned attempts;            /* tries in all, first included; default 3 */
    double per_try_timeout;       /* 0 = the response timeout only */
    double backoff;               /* base delay between tries, 0.025 s */
    double max_backoff;           /* cap, 0.25 s */
    double budget;                /* retries at most this fraction of the
                                   * cluster's active requests, 0.2 (and
                                   * 3 at any time) */
} mg_retry_conf_t;

/* Passive outlier detection: endpoints that keep failing are ejected for a
 * while (per worker, from what that worker sees). */
struct mg_outlier_conf_s {
    unsigned consecutive_5xx;     /* 0 = off; default 5 */
    unsigned consecutive_gateway; /* 502/503/504 and connection failures,
                                   * 0 = off; default 5 */
    double base_ejection_time;    /* times the number of ejections, 30 s */
    double max_ejection_time;     /* cap, 300 s */
    unsigned max_ejection_percent; /* of a level's endpoints, default 10 (at
                                   * least one may always go) */
};

/* Circuit breakers of a cluster, for each priority level. The limits are
 * for the whole instance; each worker enforces its share (limit / workers,
 * rounded up), so a crashed worker never leaves a count behind. */
typedef struct mg_breakers_conf_s {
    unsigned max_connections;     /* upstream connections, default 1024 */
    unsigned max_pending;         /* requests waiting for a connection */
    unsigned max_requests;        /* requests in flight, default 1024 */
    unsigned max_retries;         /* requests being retried, default 3 */
} mg_breakers_conf_t;

/* Another region, reached through its front proxy. */
typedef struct mg_region_conf_s {
    const char *name;
    const char *front_proxy;      /* "host:port" as configured */
    struct sockaddr_storage addr; /* unset when |host| is a name */
    socklen_t addrlen;
    const char *host;             /* a host name to resolve, else NULL */
    uint16_t port;                /* with |host| */
    double dns_refresh;           /* seconds between lookups, default 30 */
    unsigned protocol;            /* MG_PROTO_*, default h2 (h2c without
                                   * tls) */
    void *tls;                    /* SSL_CTX *, or NULL */
    const char *tls_sni;
    const mg_health_check_conf_t *health_check;
    unsigned pool;                /* upstream pool shared by every cluster */
    const char *file;
    int line;
} mg_region_conf_t;

/* mg_endpoint_conf_t.dns_slot of an endpoint without a DNS table entry. */
#define MG_DNS_NO_SLOT ((unsigned)-1)

struct mg_endpoint_conf_s {
    const char *address;          /* as configured, for logs: "host:port" */
    struct sockaddr_storage addr; /* unset (addrlen 0) when |host| is set */
    socklen_t addrlen;
    const char *host;             /* a host name that mg_dns resolves, or
                                   * NULL for a literal address */
    uint16_t port;                /* with |host|: the port of every address */
    double dns_refresh;           /* with |host|: seconds between lookups */
    unsigned dns_slot;            /* with |host|: its name's entry in the
                                   * DNS table; MG_DNS_NO_SLOT until the
                                   * master assigns one (mg_dns_assign) */
    unsigned weight;              /* >= 1 */
    const char *zone;             /* "" when not set */
    unsigned index;               /* 0..snap->nendpoints-1, across clusters */
    unsigned pool;                /* its upstream pool: its own, or the one
                                   * of its region */
    unsigned priority;            /* its level in the cluster */
    unsigned pos;                 /* position in the cluster, all levels */
    unsigned protocol;            /* MG_PROTO_*: the cluster's or region's */
    void *tls;                    /* SSL_CTX * to reach it, or NULL */
    const char *tls_sni;
    const mg_region_conf_t *region; /* a remote front proxy; NULL = local */
    const mg_health_check_conf_t *health_check; /* NULL: not checked */
    unsigned health_slot;         /* its entry in shared memory (mg_shm) */
    unsigned met;                 /* first cell of its series (mg_metrics) */
    unsigned met_health;          /* ... of its health check's series */
    const mg_cluster_conf_t *cluster;
    /* An endpoint slot of a discovery cluster: what the last assignment
     * said, as each worker applied it to its own copy (mg_eds). */
    char *eds_text;               /* |address|'s buffer, MG_EDS_TEXT_LEN */
    char *eds_zone;               /* |zone|'s buffer, MG_EDS_TEXT_LEN */
    unsigned eds_down:1;          /* its health status excludes it */
    unsigned eds_gone:1;          /* not in the assignment */
    unsigned eds_health:3;        /* MG_EDS_HEALTH_* as the server said */
    unsigned eds_gen;             /* bumped when the slot's address changes */
};

#define MG_EDS_LEVELS   4         /* local priorities from discovery */
#define MG_EDS_MAX_SLOTS 4096     /* max_endpoints of a cluster */
#define MG_EDS_TEXT_LEN 64

/* One priority level of a cluster. Level 0 holds the local endpoints; then
 * one level per region of out_of_zone, in order, holding its front proxy. */
typedef struct mg_priority_s {
    mg_endpoint_conf_t **eps;     /* the level's endpoints */
    unsigned nendpoints;
    mg_endpoint_conf_t *endpoints; /* where the configuration's are kept
                                   * (eps points into it); read eps */
    unsigned total_weight;
    const mg_region_conf_t *region; /* NULL for level 0 */
    unsigned met;                 /* first cell of its series (mg_metrics) */
} mg_priority_t;

struct mg_cluster_conf_s {
    const char *name;
    unsigned index;               /* 0..snap->nclusters-1 */
    unsigned lb;                  /* MG_LB_* */
    double connect_timeout;       /* seconds, default 1 */
    double response_timeout;      /* upstream response headers, default 15 */
    double idle_timeout;          /* pooled keep-alive conns, default 60 */
    unsigned max_idle;            /* pooled conns per endpoint per worker,
                                   * default 64 */
    double keepalive_interval;    /* HTTP/2: PING a quiet connection after
                                   * this long, default 30, 0 = never */
    double keepalive_timeout;     /* HTTP/2: PING answer awaited, default 10 */
    double dns_refresh;           /* endpoints by host name: seconds between
                                   * lookups, default 30 */
    mg_priority_t *priorities;
    unsigned npriorities;         /* >= 1 */
    unsigned protocol;            /* MG_PROTO_*: how we talk to endpoints */
    void *tls;                    /* SSL_CTX * for TLS to the endpoints, or
                                   * NULL for cleartext */
    const char *tls_sni;          /* server name sent, NULL = none */
    const mg_health_check_conf_t *health_check; /* NULL: none */
    mg_retry_conf_t retry;
    const mg_outlier_conf_t *outlier; /* NULL: no passive ejection */
    mg_breakers_conf_t breakers;
    unsigned nendpoints;          /* across its levels */
    unsigned met;                 /* first cell of its series (mg_metrics) */
    /* discovery = "eds": the first MG_EDS_LEVELS levels hold the slots the
     * assignment uses, by priority; the regions' levels follow. */
    const char *eds_name;         /* the resource asked for; NULL: static */
    unsigned max_endpoints;       /* slots */
    mg_endpoint_conf_t *eds_slots; /* [max_endpoints] */
    unsigned eds_entry;           /* its entry in shared memory (mg_eds) */
    const char *file;             /* where it was defined */
    int line;
};

/* Upstream protocols. */
enum {
    MG_PROTO_HTTP1 = 1,
    MG_PROTO_H2,                  /* HTTP/2 over TLS (needs tls) */
    MG_PROTO_H2C                  /* HTTP/2 cleartext, prior knowledge */
};

/* Client certificate checks on a TLS listener. */
enum {
    MG_TLS_VERIFY_OFF = 0,
    MG_TLS_VERIFY_OPTIONAL,       /* asked for; routes may require it */
    MG_TLS_VERIFY_REQUIRED        /* handshake fails without a valid one */
};

enum {
    MG_ROUTE_CLUSTER = 1,
    MG_ROUTE_DIRECT,
    MG_ROUTE_REDIRECT
};

struct mg_route_s {
    unsigned action;              /* MG_ROUTE_* */
    const char *name;             /* for metrics: `name`, else the first
                                   * domain and the path, unique in its
                                   * table */
    unsigned index;               /* position in its table's |all| */
    unsigned path_exact:1;        /* |path| must equal the request path */
    unsigned allow_upgrade:1;     /* Upgrade (WebSocket) may be tunnelled */
    unsigned allow_connect:1;     /* CONNECT may open a tunnel */
    unsigned require_client_cert:1; /* 403 without a verified client
                                     * certificate */
    unsigned internal:1;          /* never served on a public listener */
    mg_str_t path;                /* the prefix or exact path */
    const mg_cluster_conf_t *cluster;  /* MG_ROUTE_CLUSTER */
    double timeout;               /* whole response; 0 = cluster's */
    const struct mg_gzip_conf_s *gzip; /* response compression, or NULL */
    /* MG_ROUTE_DIRECT */
    unsigned status;
    mg_str_t body;
    mg_str_t content_type;        /* default "text/plain" */
    /* MG_ROUTE_REDIRECT: each part empty = keep the request's */
    unsigned redirect_status;     /* 301 (default), 302, 303, 307, 308 */
    mg_str_t redirect_scheme;
    mg_str_t redirect_host;       /* host[:port] */
    mg_str_t redirect_path;       /* replaces the path; the query is kept */
    const char *file;
    int line;
};

struct mg_listener_conf_s {
    const char *name;
    const char *listen;           /* as configured */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned index;
    unsigned admin:1;             /* the admin listener: no routes */
    int backlog;                  /* default 511 */
    const mg_route_table_t *routes;
    mg_h1_limits_t limits;
    double request_header_timeout;/* default 10 s: 408 */
    double idle_timeout;          /* keep-alive between requests, 60 s */
    double send_timeout;          /* client not reading, 60 s */
    const char *access_log;       /* path, or NULL when off */
    const mg_access_format_t *access_format; /* NULL: the default line */
    void *tls;                    /* SSL_CTX *, or NULL for cleartext */
    unsigned tls_verify;          /* MG_TLS_VERIFY_* */
    unsigned h2:1;                /* HTTP/2 offered (ALPN h2 on TLS) */
    unsigned h2c:1;               /* cleartext HTTP/2 by prior knowledge */
    unsigned peering:1;           /* other regions' front proxies: served
                                   * from local endpoints only */
    unsigned public:1;            /* internet-facing: no internal routes */
    unsigned met;                 /* first cell of its series (mg_metrics) */
    unsigned *route_met;          /* per route of |routes| by index, then
                                   * one for requests with no route */
    const char *file;
    int line;
};

/* Trace context formats written upstream (mg_tracing_conf_t.propagate). */
enum {
    MG_TRACE_PROP_W3C = 1 << 0,   /* traceparent (and tracestate) */
    MG_TRACE_PROP_B3 = 1 << 1,    /* X-B3-TraceId, X-B3-SpanId, ... */
    MG_TRACE_PROP_B3_SINGLE = 1 << 2 /* b3 */
};

/* Distributed tracing: spans exported to a Zipkin v2 collector by the
 * control process, trace context propagated upstream (mg_trace). */
typedef struct mg_tracing_conf_s {
    const char *zipkin;           /* the collector, "host:port" as
                                   * configured (also its Host header) */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    double sampling_percent;      /* of new traces, 0..100, default 100 */
    uint64_t sample_below;        /* a new trace is sampled when 32 random
                                   * bits are below this: percent of 2^32 */
    const char *service_name;     /* default "meshgate-<region>" */
    unsigned propagate;           /* MG_TRACE_PROP_*, default W3C | B3 */
    unsigned batch;               /* spans per POST, 1..1000, default 100 */
    double flush_interval;        /* longest wait of a partial batch, 1 s */
    double timeout;               /* one POST, default 5 s */
    const char *file;
    int line;
} mg_tracing_conf_t;

/* The xDS control plane that discovery clusters take endpoints from; one
 * stream, held by the control process (mg_xds). */
typedef struct mg_xds_conf_s {
    const char *address;          /* "host:port", after the environment's
                                   * MESHGATE_XDS_HOST / _PORT */
    const char *host;
    uint16_t port;
    void *tls;                    /* SSL_CTX *, or NULL for cleartext */
    const char *tls_sni;
    const char *node_id;          /* default: the host name */
    const char *node_cluster;     /* default "meshgate" */
    unsigned ads:1;               /* one ADS stream, else EDS */
    unsigned v2:1;                /* envoy.api.v2 (Rotor), else v3 */
    unsigned ready_wait:1;        /* /ready waits for every first answer */
    const char *file;
    int line;
} mg_xds_conf_t;

typedef struct mg_gateway_conf_s {
    const char *region;           /* default "default" */
    const char *zone;             /* "" when not set */
    unsigned workers;             /* "auto" resolved to online CPUs */
    const char *user;             /* privileges dropped to it when root */
    double drain_timeout;         /* default 30 s */
    int log_level;                /* MG_LOG_* */
    const char *error_log;        /* path or "stderr" */
    const char *pid_file;         /* NULL when not set */
    double tls_ticket_rotation;   /* seconds between ticket key changes */
    int metrics;                  /* counters kept (default), or not */
} mg_gateway_conf_t;

struct mg_snapshot_s {
    mg_pool_t *pool;              /* owns everything below */
    const char *conf_file;        /* the main file */
    mg_gateway_conf_t gateway;
    mg_listener_conf_t *listeners;
    unsigned nlisteners;
    mg_route_table_t **route_tables;
    unsigned nroute_tables;
    mg_cluster_conf_t *clusters;
    unsigned nclusters;
    unsigned nendpoints;          /* across all clusters and priorities */
    mg_region_conf_t *regions;
    unsigned nregions;
    unsigned npools;              /* upstream pools: endpoints + regions */
    unsigned met;                 /* first cell of the instance's series */
    const mg_tracing_conf_t *tracing; /* NULL: tracing is off */
    const struct mg_xds_conf_s *xds; /* NULL: no discovery server */
};

/* Where a walk over a snapshot's endpoints stands; zero it to start. */
typedef struct mg_endpoint_walk_s {
    unsigned c, p, j;             /* cluster, level, endpoint */
} mg_endpoint_walk_t;

/*
 * The next endpoint, across every cluster and level, whose entry in a
 * table of |nslots| (health checks, DNS names) was not yielded yet:
 * |slot| gives an endpoint's entry, or |nslots| for none; |seen| holds one
 * bit per entry, zeroed before the walk. NULL at the end.
 */
static inline const mg_endpoint_conf_t *
mg_snapshot_next_slot(const mg_snapshot_t *snap, mg_endpoint_walk_t *w,
                      uint64_t *seen, unsigned nslots,
                      unsigned (*slot)(const mg_endpoint_conf_t *ep))
{
    const mg_cluster_conf_t *cl;
    const mg_endpoint_conf_t *ep;
    unsigned s;

    for (; w->c < snap->nclusters; w->c++, w->p = 0, w->j = 0) {
        cl = &snap->clusters[w->c];
        for (; w->p < cl->npriorities; w->p++, w->j = 0) {
            while (w->j < cl->priorities[w->p].nendpoints) {
                ep = cl->priorities[w->p].eps[w->j++];
                s = slot(ep);
                if (s >= nslots || (seen[s / 64] & ((uint64_t)1 << (s % 64)))) {
                    continue;
                }
                seen[s / 64] |= (uint64_t)1 << (s % 64);
                return ep;
            }
        }
    }
    return NULL;
}

#endif /* MG_SNAPSHOT_H */
