/*
 * Configuration loading in three steps, run alike by `meshgate -t` and by a
 * reload:
 *
 * 1. Parse: libconfig reads the main file and each *.conf in the conf.d
 *    directory beside it (libconfig has no directory include, so each file
 *    gets its own config_t). Each section is checked against a key table
 *    written as data: unknown keys, wrong types and out-of-range values are
 *    errors, and ${NAME} is expanded in every string.
 * 2. Validate: names are unique, references resolve, addresses are usable.
 * 3. Build: one snapshot in one arena, route tables included.
 *
 * Every problem is collected as "file:line: reason" so that one run reports
 * them all; any error means no snapshot. Temporary data (the libconfig trees,
 * the side tables that carry names and positions until references are
 * resolved) lives in a scratch pool destroyed before returning.
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "mg_access_log.h"
#include "mg_conf.h"
#include "mg_gzip.h"
#include "mg_log.h"
#include "mg_pool.h"
#include "mg_router.h"
#include "mg_shm.h"
#include "mg_snapshot.h"
#include "mg_tls.h"

#define CONF_POOL_SIZE    16384
#define CONF_MAX_SECONDS  (365.0 * 86400)   /* keeps ev timers sane */
#define CONF_MAX_WORKERS  512
/* Every worker slot has its peering count in shared memory. */
_Static_assert(CONF_MAX_WORKERS <= MG_SHM_WORKERS,
               "a worker slot without its shared peering count");
#define CONF_NO_MAX       9.2e18            /* about INT64_MAX */

/* What a key's value must be. */
enum {
    CONF_STR = 1,
    CONF_INT,            /* int or int64 */
    CONF_NUM,            /* int, int64 or float: durations */
    CONF_BOOL,
    CONF_GROUP,          /* { ... } */
    CONF_LIST,           /* ( { ... }, ... ) */
    CONF_STRS,           /* [ "a", "b" ] */
    CONF_STR_OR_INT      /* workers: "auto" or a count */
};

/* conf_key_t.flags */
#define CONF_REQUIRED  0x01
#define CONF_BOUNDS    0x02   /* min <= value <= max */
#define CONF_POSITIVE  0x04   /* 0 < value <= max */

typedef struct conf_key_s {
    const char *name;
    unsigned type;
    unsigned flags;
    double min, max;
    double dnum;             /* default of a number or a bool */
    const char *dstr;        /* default of a string; NULL: none */
} conf_key_t;

#define CK_STR(n, d)        { n, CONF_STR, 0, 0, 0, 0, d }
#define CK_STR_REQ(n)       { n, CONF_STR, CONF_REQUIRED, 0, 0, 0, NULL }
#define CK_INT(n, lo, hi, d) { n, CONF_INT, CONF_BOUNDS, lo, hi, d, NULL }
#define CK_INT_REQ(n, lo, hi) \
    { n, CONF_INT, CONF_REQUIRED | CONF_BOUNDS, lo, hi, 0, NULL }
#define CK_SECS(n, d) \
    { n, CONF_NUM, CONF_POSITIVE, 0, CONF_MAX_SECONDS, d, NULL }
#define CK_BOOL(n, d)       { n, CONF_BOOL, 0, 0, 0, d, NULL }
#define CK_GROUP(n)         { n, CONF_GROUP, 0, 0, 0, 0, NULL }
#define CK_LIST_REQ(n)      { n, CONF_LIST, CONF_REQUIRED, 0, 0, 0, NULL }
#define CK_LIST(n)          { n, CONF_LIST, 0, 0, 0, 0, NULL }
#define CK_STRS_REQ(n)      { n, CONF_STRS, CONF_REQUIRED, 0, 0, 0, NULL }
#define CK_STRS(n)          { n, CONF_STRS, 0, 0, 0, 0, NULL }

/* A key's value after parsing; defaults are filled in first. */
typedef struct conf_val_s {
    const config_setting_t *s;   /* NULL when absent or invalid */
    const char *str;             /* expanded, in the snapshot pool */
    long long i;                 /* CONF_INT, CONF_BOOL */
    double num;                  /* CONF_NUM */
} conf_val_t;

enum {
    GK_REGION, GK_ZONE, GK_WORKERS, GK_USER, GK_DRAIN_TIMEOUT, GK_LOG_LEVEL,
    GK_ERROR_LOG, GK_PID_FILE, GK_TLS_TICKET_ROTATION, GK_METRICS, GK_N
};

static const conf_key_t conf_gateway_keys[GK_N] = {
    [GK_REGION] = CK_STR("region", "default"),
    [GK_ZONE] = CK_STR("zone", ""),
    [GK_WORKERS] = { "workers", CONF_STR_OR_INT, CONF_BOUNDS, 1,
                     CONF_MAX_WORKERS, 0, NULL },
    [GK_USER] = CK_STR("user", "nobody"),
    [GK_DRAIN_TIMEOUT] = CK_SECS("drain_timeout", 30),
    [GK_LOG_LEVEL] = CK_STR("log_level", "notice"),
    [GK_ERROR_LOG] = CK_STR("error_log", "stderr"),
    [GK_PID_FILE] = CK_STR("pid_file", NULL),
    [GK_TLS_TICKET_ROTATION] = CK_SECS("tls_ticket_rotation", 3600),
    [GK_METRICS] = CK_BOOL("metrics", 1),
};

enum { AK_LISTEN, AK_ALLOW_REMOTE, AK_N };

static const conf_key_t conf_admin_keys[AK_N] = {
    [AK_LISTEN] = CK_STR_REQ("listen"),
    [AK_ALLOW_REMOTE] = CK_BOOL("allow_remote", 0),
};

enum {
    LK_NAME, LK_LISTEN, LK_ROUTES, LK_BACKLOG, LK_MAX_REQUEST_LINE,
    LK_MAX_HEADER_SIZE, LK_MAX_HEADERS, LK_MAX_BODY_SIZE,
    LK_REQUEST_HEADER_TIMEOUT, LK_IDLE_TIMEOUT, LK_SEND_TIMEOUT,
    LK_ACCESS_LOG, LK_ACCESS_LOG_FORMAT, LK_ACCESS_LOG_JSON, LK_TLS, LK_H2C,
    LK_PEERING, LK_PUBLIC, LK_N
};

static const conf_key_t conf_listener_keys[LK_N] = {
    [LK_NAME] = CK_STR_REQ("name"),
    [LK_LISTEN] = CK_STR_REQ("listen"),
    [LK_ROUTES] = CK_STR_REQ("routes"),
    [LK_BACKLOG] = CK_INT("backlog", 1, 65535, 511),
    [LK_MAX_REQUEST_LINE] = CK_INT("max_request_line", 256, 1048576, 8192),
    [LK_MAX_HEADER_SIZE] = CK_INT("max_header_size", 1024, 1048576, 32768),
    [LK_MAX_HEADERS] = CK_INT("max_headers", 1, MG_H1_MAX_HEADERS, 100),
    [LK_MAX_BODY_SIZE] = CK_INT("max_body_size", 0, CONF_NO_MAX, 0),
    [LK_REQUEST_HEADER_TIMEOUT] = CK_SECS("request_header_timeout", 10),
    [LK_IDLE_TIMEOUT] = CK_SECS("idle_timeout", 60),
    [LK_SEND_TIMEOUT] = CK_SECS("send_timeout", 60),
    [LK_ACCESS_LOG] = CK_STR("access_log", "off"),
    [LK_ACCESS_LOG_FORMAT] = CK_STR("access_log_format", NULL),
    [LK_ACCESS_LOG_JSON] = CK_BOOL("access_log_json", 0),
    [LK_TLS] = CK_GROUP("tls"),
    [LK_H2C] = CK_BOOL("h2c", 0),
    [LK_PEERING] = CK_BOOL("peering", 0),
    [LK_PUBLIC] = CK_BOOL("public", 0),
};

/* A listener's tls = { ... }. */
enum {
    TK_CERTIFICATES, TK_ALPN, TK_PROTOCOLS, TK_CIPHERS, TK_CIPHERSUITES,
    TK_CLIENT_CA, TK_VERIFY_CLIENT, TK_SESSION_TICKETS, TK_N
};

static const conf_key_t conf_tls_keys[TK_N] = {
    [TK_CERTIFICATES] = CK_LIST_REQ("certificates"),
    [TK_ALPN] = CK_STRS("alpn"),
    [TK_PROTOCOLS] = CK_STRS("protocols"),
    [TK_CIPHERS] = CK_STR("ciphers", NULL),
    [TK_CIPHERSUITES] = CK_STR("ciphersuites", NULL),
    [TK_CLIENT_CA] = CK_STR("client_ca", NULL),
    [TK_VERIFY_CLIENT] = CK_STR("verify_client", "off"),
    [TK_SESSION_TICKETS] = CK_BOOL("session_tickets", 1),
};

enum { PK_CERT, PK_KEY, PK_N };

static const conf_key_t conf_cert_keys[PK_N] = {
    [PK_CERT] = CK_STR_REQ("cert"),
    [PK_KEY] = CK_STR_REQ("key"),
};

/* Used when a listener's tls has no alpn. */
static const char *const conf_default_alpn[] = { "h2", "http/1.1" };

enum {
    RK_DOMAINS, RK_PREFIX, RK_PATH, RK_CLUSTER, RK_DIRECT_RESPONSE,
    RK_REDIRECT, RK_UPGRADE, RK_CONNECT, RK_TIMEOUT, RK_REQUIRE_CLIENT_CERT,
    RK_GZIP, RK_INTERNAL, RK_NAME, RK_N
};

static const conf_key_t conf_route_keys[RK_N] = {
    [RK_DOMAINS] = CK_STRS_REQ("domains"),
    [RK_PREFIX] = CK_STR("prefix", NULL),
    [RK_PATH] = CK_STR("path", NULL),
    [RK_CLUSTER] = CK_STR("cluster", NULL),
    [RK_DIRECT_RESPONSE] = CK_GROUP("direct_response"),
    [RK_REDIRECT] = CK_GROUP("redirect"),
    [RK_UPGRADE] = CK_BOOL("upgrade", 0),
    [RK_CONNECT] = CK_BOOL("connect", 0),
    [RK_TIMEOUT] = { "timeout", CONF_NUM, CONF_BOUNDS, 0, CONF_MAX_SECONDS, 0,
                     NULL },
    [RK_REQUIRE_CLIENT_CERT] = CK_BOOL("require_client_cert", 0),
    [RK_GZIP] = CK_GROUP("gzip"),
    [RK_INTERNAL] = CK_BOOL("internal", 0),
    [RK_NAME] = CK_STR("name", NULL),
};

enum { DK_STATUS, DK_BODY, DK_CONTENT_TYPE, DK_N };

static const conf_key_t conf_direct_keys[DK_N] = {
    [DK_STATUS] = CK_INT_REQ("status", 100, 599),
    [DK_BODY] = CK_STR("body", ""),
    [DK_CONTENT_TYPE] = CK_STR("content_type", "text/plain"),
};

enum { XK_STATUS, XK_SCHEME, XK_HOST, XK_PATH, XK_N };

static const conf_key_t conf_redirect_keys[XK_N] = {
    [XK_STATUS] = CK_INT("status", 300, 399, 301),
    [XK_SCHEME] = CK_STR("scheme", NULL),
    [XK_HOST] = CK_STR("host", NULL),
    [XK_PATH] = CK_STR("path", NULL),
};

enum {
    CK_NAME, CK_LB, CK_CONNECT_TIMEOUT, CK_RESPONSE_TIMEOUT, CK_IDLE_TIMEOUT,
    CK_MAX_IDLE, CK_ENDPOINTS, CK_PROTOCOL, CK_TLS, CK_KEEPALIVE_INTERVAL,
    CK_KEEPALIVE_TIMEOUT, CK_OUT_OF_ZONE, CK_HEALTH_CHECK, CK_RETRY,
    CK_OUTLIER, CK_BREAKERS, CK_DNS_REFRESH, CK_DISCOVERY, CK_EDS_NAME,
    CK_MAX_ENDPOINTS, CK_N
};

static const conf_key_t conf_cluster_keys[CK_N] = {
    [CK_NAME] = CK_STR_REQ("name"),
    [CK_LB] = CK_STR("lb", "round_robin"),
    [CK_CONNECT_TIMEOUT] = CK_SECS("connect_timeout", 1),
    [CK_RESPONSE_TIMEOUT] = CK_SECS("response_timeout", 15),
    [CK_IDLE_TIMEOUT] = CK_SECS("idle_timeout", 60),
    [CK_MAX_IDLE] = CK_INT("max_idle", 0, 65535, 64),
    [CK_ENDPOINTS] = CK_LIST("endpoints"),
    [CK_PROTOCOL] = CK_STR("protocol", "http/1.1"),
    [CK_TLS] = CK_GROUP("tls"),
    /* 0 turns the PINGs off. */
    [CK_KEEPALIVE_INTERVAL] = { "keepalive_interval", CONF_NUM, CONF_BOUNDS, 0,
                                CONF_MAX_SECONDS, 30, NULL },
    [CK_KEEPALIVE_TIMEOUT] = CK_SECS("keepalive_timeout", 10),
    [CK_OUT_OF_ZONE] = CK_STRS("out_of_zone"),
    [CK_HEALTH_CHECK] = CK_GROUP("health_check"),
    [CK_RETRY] = CK_GROUP("retry"),
    [CK_OUTLIER] = CK_GROUP("outlier"),
    [CK_BREAKERS] = CK_GROUP("circuit_breakers"),
    [CK_DNS_REFRESH] = CK_SECS("dns_refresh", 30),
    [CK_DISCOVERY] = CK_STR("discovery", "static"),
    [CK_EDS_NAME] = CK_STR("eds_name", NULL),
    [CK_MAX_ENDPOINTS] = CK_INT("max_endpoints", 1, MG_EDS_MAX_SLOTS, 256),
};

/* outlier = { ... } of a cluster. */
enum {
    OK_5XX, OK_GATEWAY, OK_BASE, OK_MAX, OK_PERCENT, OK_N
};

static const conf_key_t conf_outlier_keys[OK_N] = {
    [OK_5XX] = CK_INT("consecutive_5xx", 0, 1000, 5),
    [OK_GATEWAY] = CK_INT("consecutive_gateway_failure", 0, 1000, 5),
    [OK_BASE] = CK_SECS("base_ejection_time", 30),
    [OK_MAX] = CK_SECS("max_ejection_time", 300),
    [OK_PERCENT] = CK_INT("max_ejection_percent", 0, 100, 10),
};

/* circuit_breakers = { ... } of a cluster. */
enum { BK_CONNECTIONS, BK_PENDING, BK_REQUESTS, BK_RETRIES, BK_N };

static const conf_key_t conf_breaker_keys[BK_N] = {
    [BK_CONNECTIONS] = CK_INT("max_connections", 1, 10000000, 1024),
    [BK_PENDING] = CK_INT("max_pending", 1, 10000000, 1024),
    [BK_REQUESTS] = CK_INT("max_requests", 1, 10000000, 1024),
    [BK_RETRIES] = CK_INT("max_retries", 0, 10000000, 3),
};

/* health_check = { ... } of a cluster or region. */
enum {
    HK_TYPE, HK_PATH, HK_HOST, HK_STATUSES, HK_INTERVAL, HK_TIMEOUT,
    HK_JITTER, HK_HEALTHY, HK_UNHEALTHY, HK_N
};

static const conf_key_t conf_health_keys[HK_N] = {
    [HK_TYPE] = CK_STR("type", "http"),
    [HK_PATH] = CK_STR("path", "/healthz"),
    [HK_HOST] = CK_STR("host", NULL),
    [HK_STATUSES] = CK_STRS("statuses"),
    [HK_INTERVAL] = CK_SECS("interval", 5),
    [HK_TIMEOUT] = CK_SECS("timeout", 1),
    [HK_JITTER] = { "jitter", CONF_NUM, CONF_BOUNDS, 0, CONF_MAX_SECONDS, 0,
                    NULL },
    [HK_HEALTHY] = CK_INT("healthy_threshold", 1, 100, 2),
    [HK_UNHEALTHY] = CK_INT("unhealthy_threshold", 1, 100, 3),
};

/* retry = { ... } of a cluster. */
enum {
    YK_ON, YK_STATUSES, YK_ATTEMPTS, YK_PER_TRY_TIMEOUT, YK_BACKOFF,
    YK_MAX_BACKOFF, YK_BUDGET, YK_N
};

static const conf_key_t conf_retry_keys[YK_N] = {
    [YK_ON] = CK_STRS("on"),
    [YK_STATUSES] = CK_STRS("statuses"),
    [YK_ATTEMPTS] = CK_INT("attempts", 1, 10, 3),
    [YK_PER_TRY_TIMEOUT] = { "per_try_timeout", CONF_NUM, CONF_BOUNDS, 0,
                             CONF_MAX_SECONDS, 0, NULL },
    [YK_BACKOFF] = { "backoff", CONF_NUM, CONF_BOUNDS, 0, 60, 0.025, NULL },
    [YK_MAX_BACKOFF] = { "max_backoff", CONF_NUM, CONF_BOUNDS, 0, 600, 0.25,
                         NULL },
    [YK_BUDGET] = { "budget", CONF_NUM, CONF_BOUNDS, 0, 1, 0.2, NULL },
};

/* regions = ( { ... } ): the front proxies of other regions. */
enum {
    NK_NAME, NK_FRONT_PROXY, NK_PROTOCOL, NK_TLS, NK_HEALTH_CHECK,
    NK_DNS_REFRESH, NK_N
};

static const conf_key_t conf_region_keys[NK_N] = {
    [NK_NAME] = CK_STR_REQ("name"),
    [NK_FRONT_PROXY] = CK_STR_REQ("front_proxy"),
    [NK_PROTOCOL] = CK_STR("protocol", NULL),
    [NK_TLS] = CK_GROUP("tls"),
    [NK_HEALTH_CHECK] = CK_GROUP("health_check"),
    [NK_DNS_REFRESH] = CK_SECS("dns_refresh", 30),
};

/* xds = { ... }: the discovery server of clusters with discovery = "eds". */
enum {
    XDK_ADDRESS, XDK_TLS, XDK_NODE_ID, XDK_NODE_CLUSTER, XDK_ADS, XDK_API,
    XDK_READY_WAIT, XDK_N
};

static const conf_key_t conf_xds_keys[XDK_N] = {
    [XDK_ADDRESS] = CK_STR("address", NULL),
    [XDK_TLS] = CK_GROUP("tls"),
    [XDK_NODE_ID] = CK_STR("node_id", NULL),
    [XDK_NODE_CLUSTER] = CK_STR("node_cluster", "meshgate"),
    [XDK_ADS] = CK_BOOL("ads", 0),
    [XDK_API] = CK_STR("api", "v3"),
    [XDK_READY_WAIT] = CK_BOOL("ready_wait", 0),
};

/* tracing = { ... }: trace context propagation and span export. */
enum {
    SK_ZIPKIN, SK_SAMPLING_PERCENT, SK_SERVICE_NAME, SK_PROPAGATE, SK_BATCH,
    SK_FLUSH_INTERVAL, SK_TIMEOUT, SK_N
};

static const conf_key_t conf_tracing_keys[SK_N] = {
    [SK_ZIPKIN] = CK_STR_REQ("zipkin"),
    [SK_SAMPLING_PERCENT] = { "sampling_percent", CONF_NUM, CONF_BOUNDS, 0,
                              100, 100, NULL },
    [SK_SERVICE_NAME] = CK_STR("service_name", NULL),
    [SK_PROPAGATE] = CK_STRS("propagate"),
    [SK_BATCH] = CK_INT("batch", 1, 1000, 100),
    [SK_FLUSH_INTERVAL] = CK_SECS("flush_interval", 1),
    [SK_TIMEOUT] = CK_SECS("timeout", 5),
};

/* A cluster's tls = { ... }: how we talk TLS to its endpoints. */
enum {
    UK_CA, UK_CERT, UK_KEY, UK_SNI, UK_VERIFY, UK_PROTOCOLS, UK_CIPHERS,
    UK_CIPHERSUITES, UK_N
};

static const conf_key_t conf_cluster_tls_keys[UK_N] = {
    [UK_CA] = CK_STR("ca", NULL),
    [UK_CERT] = CK_STR("cert", NULL),
    [UK_KEY] = CK_STR("key", NULL),
    [UK_SNI] = CK_STR("sni", NULL),
    [UK_VERIFY] = CK_BOOL("verify", 1),
    [UK_PROTOCOLS] = CK_STRS("protocols"),
    [UK_CIPHERS] = CK_STR("ciphers", NULL),
    [UK_CIPHERSUITES] = CK_STR("ciphersuites", NULL),
};

enum { EK_ADDRESS, EK_WEIGHT, EK_ZONE, EK_N };

static const conf_key_t conf_endpoint_keys[EK_N] = {
    [EK_ADDRESS] = CK_STR_REQ("address"),
    [EK_WEIGHT] = CK_INT("weight", 1, 1000, 1),
    [EK_ZONE] = CK_STR("zone", ""),
};

/* A route while its cluster name waits for validation. */
typedef struct conf_route_s {
    mg_route_t *r;
    const char *table;
    const char *cluster;              /* name, NULL for other actions */
    const config_setting_t *cluster_s;
    const char **domains;
    unsigned ndomains;
    const config_setting_t *name_s;   /* `name`, when set */
} conf_route_t;

/* A listener while its route table name waits for validation. */
typedef struct conf_listener_s {
    mg_listener_conf_t *l;
    const char *table;
    const config_setting_t *s;
    const config_setting_t *name_s;
    const config_setting_t *listen_s;
    const config_setting_t *routes_s;
} conf_listener_t;

/* A growable array of pointers in the scratch pool. */
typedef struct conf_vec_s {
    void **items;
    unsigned n;
    unsigned cap;
} conf_vec_t;

typedef struct conf_ctx_s {
    mg_conf_errors_t *errs;
    mg_pool_t *pool;                  /* the snapshot's */
    mg_pool_t *tmp;                   /* scratch, gone on return */
    mg_snapshot_t *snap;
    const char *main_file;
    const char *dir;                  /* where the main file is */
    conf_vec_t cfgs;                  /* config_t *, in reading order */
    conf_vec_t paths;                 /* the files we opened ourselves */
    conf_vec_t files;                 /* pairs: libconfig name, pool copy */

    const config_setting_t *gateway;
    const config_setting_t *admin;
    const config_setting_t *tracing;
    const config_setting_t *xds;
    unsigned eds_clusters;            /* with discovery = "eds" */
    const config_setting_t *eds_s;    /* the last of them */
    conf_vec_t listener_s;            /* config_setting_t * of each */
    conf_vec_t cluster_s;
    conf_vec_t region_s;
    conf_vec_t ooz;                   /* conf_ooz_t *: out_of_zone names */
    conf_vec_t table_s;               /* every "name = ( ... )" in routes */

    conf_vec_t routes;                /* conf_route_t * */
    conf_vec_t listeners;             /* conf_listener_t * */
    const config_setting_t *admin_listen_s;
    const char *admin_listen;
    int admin_allow_remote;
} conf_ctx_t;

static void
conf_out_of_memory(void)
{
    /* Emerg is never filtered, so no level check is needed. */
    mg_log_write(&mg_log, MG_LOG_EMERG, 0,
                 "out of memory while loading the configuration");
    exit(1);
}

static void *
conf_alloc(mg_pool_t *pool, size_t size)
{
    void *p = mg_pcalloc(pool, size);

    if (p == NULL) {
        conf_out_of_memory();
    }
    return p;
}

static char *
conf_strdup(mg_pool_t *pool, const char *s)
{
    char *p = mg_pstrdup(pool, s);

    if (p == NULL) {
        conf_out_of_memory();
    }
    return p;
}

static void
conf_vec_push(conf_ctx_t *ctx, conf_vec_t *v, const void *item)
{
    void **items;

    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 8;
        items = conf_alloc(ctx->tmp, v->cap * sizeof(void *));
        if (v->n) {
            memcpy(items, v->items, v->n * sizeof(void *));
        }
        v->items = items;
    }
    v->items[v->n++] = (void *)item;
}

/*
 * The file name to show for |s|. libconfig names an @include'd file as
 * written in the directive, which is relative to the main file's directory
 * (the include dir), so that directory is put in front of it.
 */
static const char *
conf_file(conf_ctx_t *ctx, const config_setting_t *s)
{
    const char *f = s ? config_setting_source_file(s) : NULL;
    const char *show;
    char *buf;
    size_t len;
    unsigned i;

    if (f == NULL) {
        return ctx->main_file;
    }
    for (i = 0; i < ctx->files.n; i += 2) {
        if (ctx->files.items[i] == f) {
            return ctx->files.items[i + 1];
        }
    }
    show = f;
    for (i = 0; i < ctx->paths.n; i++) {
        if (strcmp(ctx->paths.items[i], f) == 0) {
            break;
        }
    }
    if (i == ctx->paths.n && f[0] != '/' && strcmp(ctx->dir, ".") != 0) {
        len = strlen(ctx->dir) + strlen(f) + 2;
        buf = conf_alloc(ctx->tmp, len);
        snprintf(buf, len, "%s/%s", ctx->dir, f);
        show = buf;
    }
    show = conf_strdup(ctx->pool, show);
    conf_vec_push(ctx, &ctx->files, f);
    conf_vec_push(ctx, &ctx->files, show);
    return show;
}

static int
conf_line(const config_setting_t *s)
{
    return s ? (int)config_setting_source_line(s) : 0;
}

static void
conf_add_error(conf_ctx_t *ctx, char *msg)
{
    mg_conf_errors_t *e = ctx->errs;
    char **msgs = realloc(e->msgs, (e->n + 1) * sizeof(char *));

    if (msgs == NULL) {
        conf_out_of_memory();
    }
    e->msgs = msgs;
    e->msgs[e->n++] = msg;
}

static void MG_PRINTF(4, 0)
conf_verror_at(conf_ctx_t *ctx, const char *file, int line, const char *fmt,
               va_list ap)
{
    char reason[1024], *msg;
    int n;

    vsnprintf(reason, sizeof(reason), fmt, ap);
    if (line > 0) {
        n = snprintf(NULL, 0, "%s:%d: %s", file, line, reason);
    } else {
        n = snprintf(NULL, 0, "%s: %s", file, reason);
    }
    msg = mg_xalloc((size_t)n + 1);
    if (line > 0) {
        snprintf(msg, (size_t)n + 1, "%s:%d: %s", file, line, reason);
    } else {
        snprintf(msg, (size_t)n + 1, "%s: %s", file, reason);
    }
    conf_add_error(ctx, msg);
}

/* Reports a problem at a file and line (no line when |line| is 0). */
static void MG_PRINTF(4, 5)
conf_error_at(conf_ctx_t *ctx, const char *file, int line, const char *fmt,
              ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_verror_at(ctx, file, line, fmt, ap);
    va_end(ap);
}

/* Reports a problem at setting |s|. */
static void MG_PRINTF(3, 4)
conf_error(conf_ctx_t *ctx, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_verror_at(ctx, conf_file(ctx, s), conf_line(s), fmt, ap);
    va_end(ap);
}

/*
 * Expands ${NAME} in |in| from the environment. "$" alone is kept as is.
 * Returns the result in the snapshot pool, or NULL after reporting each
 * problem at |s|.
 */
static const char *
conf_expand(conf_ctx_t *ctx, const config_setting_t *s, const char *in)
{
    const char *p, *end, *val;
    char *out, name[256];
    size_t len = 0, cap, vlen, nlen;
    int bad = 0;

    if (strstr(in, "${") == NULL) {
        return conf_strdup(ctx->pool, in);
    }

    cap = strlen(in) + 64;
    out = mg_xalloc(cap);
    for (p = in; *p != '\0'; p++) {
        if (p[0] != '$' || p[1] != '{') {
            val = p;
            vlen = 1;
        } else {
            end = strchr(p + 2, '}');
            if (end == NULL) {
                conf_error(ctx, s, "unterminated \"${\" in \"%s\"", in);
                bad = 1;
                break;
            }
            nlen = (size_t)(end - (p + 2));
            if (nlen == 0 || nlen >= sizeof(name)
                || strspn(p + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "abcdefghijklmnopqrstuvwxyz0123456789_")
                       != nlen)
            {
                conf_error(ctx, s, "bad environment variable name \"%.*s\"",
                           (int)(end - p + 1), p);
                bad = 1;
                p = end;
                continue;
            }
            memcpy(name, p + 2, nlen);
            name[nlen] = '\0';
            p = end;
            val = getenv(name);
            if (val == NULL) {
                conf_error(ctx, s, "environment variable %s is not set", name);
                bad = 1;
                continue;
            }
            vlen = strlen(val);
        }
        if (len + vlen + 1 > cap) {
            cap = (len + vlen + 1) * 2;
            out = realloc(out, cap);
            if (out == NULL) {
                conf_out_of_memory();
            }
        }
        memcpy(out + len, val, vlen);
        len += vlen;
    }
    out[len] = '\0';

    val = bad ? NULL : conf_strdup(ctx->pool, out);
    free(out);
    return val;
}

static const char *
conf_type_name(unsigned type)
{
    switch (type) {
    case CONF_STR:
        return "a string";
    case CONF_INT:
        return "an integer";
    case CONF_NUM:
        return "a number";
    case CONF_BOOL:
        return "true or false";
    case CONF_GROUP:
        return "a group { ... }";
    case CONF_LIST:
        return "a list ( { ... }, ... )";
    case CONF_STRS:
        return "an array of strings [ \"...\", ... ]";
    default:
        return "a string or an integer";
    }
}

static int
conf_type_ok(const config_setting_t *s, unsigned type)
{
    int t = config_setting_type(s);
    int i, n;

    switch (type) {
    case CONF_STR:
        return t == CONFIG_TYPE_STRING;
    case CONF_INT:
        return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
    case CONF_NUM:
        return config_setting_is_number(s);
    case CONF_BOOL:
        return t == CONFIG_TYPE_BOOL;
    case CONF_GROUP:
        return t == CONFIG_TYPE_GROUP;
    case CONF_LIST:
        /* "[]" is how libconfig spells an empty array: let it pass as an
         * empty list. */
        return t == CONFIG_TYPE_LIST
               || (t == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0);
    case CONF_STRS:
        if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
            return 0;
        }
        n = config_setting_length(s);
        for (i = 0; i < n; i++) {
            if (config_setting_type(config_setting_get_elem(s, i))
                != CONFIG_TYPE_STRING)
            {
                return 0;
            }
        }
        return 1;
    default:
        return t == CONFIG_TYPE_STRING || t == CONFIG_TYPE_INT
               || t == CONFIG_TYPE_INT64;
    }
}

/* Checks one value against its key; fills |v|. MG_OK or MG_ERROR. */
static int
conf_value(conf_ctx_t *ctx, const config_setting_t *s, const conf_key_t *k,
           conf_val_t *v)
{
    const char *str;
    double d;

    if (!conf_type_ok(s, k->type)) {
        conf_error(ctx, s, "key \"%s\" must be %s", k->name,
                   conf_type_name(k->type));
        return MG_ERROR;
    }

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_STRING:
        str = conf_expand(ctx, s, config_setting_get_string(s));
        if (str == NULL) {
            return MG_ERROR;   /* |v| keeps the default */
        }
        v->str = str;
        v->s = s;
        return MG_OK;
    case CONFIG_TYPE_BOOL:
        v->i = config_setting_get_bool(s);
        v->s = s;
        return MG_OK;
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
    case CONFIG_TYPE_FLOAT:
        if (k->type == CONF_NUM) {
            d = config_setting_get_float(s);
            if (config_setting_type(s) != CONFIG_TYPE_FLOAT) {
                d = (double)config_setting_get_int64(s);
            }
        } else {
            v->i = config_setting_get_int64(s);
            d = (double)v->i;
        }
        if ((k->flags & CONF_BOUNDS) && (d < k->min || d > k->max)) {
            if (k->max >= CONF_NO_MAX) {
                conf_error(ctx, s, "key \"%s\" must be at least %.15g",
                           k->name, k->min);
            } else {
                conf_error(ctx, s,
                           "key \"%s\" must be between %.15g and %.15g",
                           k->name, k->min, k->max);
            }
            return MG_ERROR;
        }
        if ((k->flags & CONF_POSITIVE) && !(d > 0 && d <= k->max)) {
            conf_error(ctx, s,
                       "key \"%s\" must be greater than 0 and at most %.15g",
                       k->name, k->max);
            return MG_ERROR;
        }
        v->num = d;
        v->s = s;
        return MG_OK;
    default:
        v->s = s;   /* aggregates: the caller walks them */
        return MG_OK;
    }
}

/* Fills |vals| with the defaults of |keys|. */
static void
conf_defaults(const conf_key_t *keys, unsigned nkeys, conf_val_t *vals)
{
    unsigned k;

    for (k = 0; k < nkeys; k++) {
        memset(&vals[k], 0, sizeof(conf_val_t));
        vals[k].str = keys[k].dstr;
        vals[k].i = (long long)keys[k].dnum;
        vals[k].num = keys[k].dnum;
    }
}

/*
 * Checks group |g| (a |what|) against |keys|: every member must be a known
 * key of the right type and every required key present. |vals| gets the
 * values, defaults where absent. Returns MG_OK or MG_ERROR (reported).
 */
static int
conf_group(conf_ctx_t *ctx, const config_setting_t *g, const char *what,
           const conf_key_t *keys, unsigned nkeys, conf_val_t *vals)
{
    const config_setting_t *m;
    const char *name;
    unsigned i, k;
    int rc = MG_OK, n;
    unsigned char seen[32];

    conf_defaults(keys, nkeys, vals);
    memset(seen, 0, sizeof(seen));
    if (!config_setting_is_group(g)) {
        conf_error(ctx, g, "%s must be a group { ... }", what);
        return MG_ERROR;
    }

    n = config_setting_length(g);
    for (i = 0; i < (unsigned)n; i++) {
        m = config_setting_get_elem(g, i);
        name = config_setting_name(m);
        for (k = 0; k < nkeys; k++) {
            if (strcmp(name, keys[k].name) == 0) {
                break;
            }
        }
        if (k == nkeys) {
            conf_error(ctx, m, "unknown key \"%s\" in %s", name, what);
            rc = MG_ERROR;
            continue;
        }
        seen[k] = 1;
        if (conf_value(ctx, m, &keys[k], &vals[k]) != MG_OK) {
            rc = MG_ERROR;
        }
    }

    for (k = 0; k < nkeys; k++) {
        if ((keys[k].flags & CONF_REQUIRED) && !seen[k]) {
            conf_error(ctx, g, "missing key \"%s\" in %s", keys[k].name, what);
            rc = MG_ERROR;
        }
    }
    return rc;
}

/* Names of listeners and clusters appear in logs, stats and headers. */
static int
conf_name_ok(const char *name)
{
    return name[0] != '\0'
           && strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                           "0123456789_.-")
                  == strlen(name);
}

/* The port after the colon of an address. NULL, or why it is not one. */
static const char *
conf_port(const char *port, uint16_t *out)
{
    char *end;
    long n;

    if (port[0] < '0' || port[0] > '9') {
        return "bad port";
    }
    errno = 0;
    n = strtol(port, &end, 10);
    if (*end != '\0' || errno != 0) {
        return "bad port";
    }
    if (n < 1 || n > 65535) {
        return "port must be between 1 and 65535";
    }
    *out = (uint16_t)n;
    return NULL;
}

/*
 * Parses |text| into |ss|. Returns NULL, or the reason it is not an address;
 * |*hostname| tells that the host part looks like a DNS name.
 */
static const char *
conf_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len,
          int *hostname)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    char host[INET6_ADDRSTRLEN + 8];
    const char *colon, *port, *reason;
    size_t hlen;
    uint16_t n;

    *hostname = 0;
    memset(ss, 0, sizeof(*ss));

    if (text[0] == '[') {
        colon = strchr(text, ']');
        if (colon == NULL) {
            return "missing ']'";
        }
        if (colon[1] != ':') {
            return "missing port";
        }
        hlen = (size_t)(colon - text - 1);
        port = colon + 2;
        if (hlen == 0 || hlen >= sizeof(host)) {
            return "bad IPv6 address";
        }
        memcpy(host, text + 1, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            return "bad IPv6 address";
        }
        sin6->sin6_family = AF_INET6;
        *len = sizeof(struct sockaddr_in6);
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            return "missing port";
        }
        if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
            return "an IPv6 address needs brackets: \"[::1]:80\"";
        }
        hlen = (size_t)(colon - text);
        port = colon + 1;
        if (hlen == 0) {
            return "missing host (use \"*\" for every address)";
        }
        if (hlen >= sizeof(host)) {
            *hostname = 1;
            return "host names are not resolved";
        }
        memcpy(host, text, hlen);
        host[hlen] = '\0';
        sin->sin_family = AF_INET;
        *len = sizeof(struct sockaddr_in);
        if (strcmp(host, "*") == 0) {
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        } else if (strcasecmp(host, "localhost") == 0) {
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
            if (strspn(host, "0123456789.") == hlen) {
                return "bad IPv4 address";
            }
            *hostname = 1;
            return "host names are not resolved";
        }
    }

    reason = conf_port(port, &n);
    if (reason != NULL) {
        return reason;
    }
    if (ss->ss_family == AF_INET) {
        sin->sin_port = htons(n);
    } else {
        sin6->sin6_port = htons(n);
    }
    return NULL;
}

int
mg_conf_parse_addr(const char *text, struct sockaddr_storage *ss,
                   socklen_t *len)
{
    int hostname;

    return conf_addr(text, ss, len, &hostname) == NULL ? MG_OK : MG_ERROR;
}

/* RFC 1123 names (letters, digits and '-' in labels of 1..63 bytes, not
 * at either end of a label), plus '_', which private zones use; a final
 * dot is allowed. Anything else could never resolve, so it is refused
 * now rather than failing every lookup later. */
static int
conf_host_name_ok(const char *h, size_t len)
{
    size_t i, label = 0;

    if (len > 0 && h[len - 1] == '.') {
        len--;
    }
    if (len == 0 || len > 253) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (h[i] == '.') {
            if (label == 0 || h[i - 1] == '-') {
                return 0;
            }
            label = 0;
            continue;
        }
        if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z')
              || (h[i] >= '0' && h[i] <= '9') || h[i] == '-'
              || h[i] == '_')
            || (label == 0 && h[i] == '-') || ++label > 63) {
            return 0;
        }
    }
    return h[len - 1] != '-';
}

/*
 * The address of an endpoint or a front proxy at |s|: a literal one into
 * |ss|, or a host name (resolved later, by mg_dns in the control process)
 * into |*host| and |*port|. Reports errors as "bad address"/"bad
 * front_proxy" (|what|). MG_OK or MG_ERROR.
 */
static int
conf_peer_addr(conf_ctx_t *ctx, const config_setting_t *s, const char *what,
               const char *text, struct sockaddr_storage *ss, socklen_t *len,
               const char **host, uint16_t *port)
{
    const char *reason, *colon;
    char *h;
    int hostname;

    *host = NULL;
    reason = conf_addr(text, ss, len, &hostname);
    if (hostname) {
        /* conf_addr() saw exactly one colon and a host before it. */
        colon = strrchr(text, ':');
        reason = conf_port(colon + 1, port);
        if (reason == NULL
            && !conf_host_name_ok(text, (size_t)(colon - text))) {
            reason = "bad host name";
        }
        if (reason == NULL) {
            h = conf_alloc(ctx->pool, (size_t)(colon - text) + 1);
            memcpy(h, text, (size_t)(colon - text));
            *host = h;
            *len = 0;
            return MG_OK;
        }
    } else if (reason == NULL && text[0] == '*') {
        reason = "it needs a host, not \"*\"";
    }
    if (reason != NULL) {
        conf_error(ctx, s, "bad %s \"%s\": %s", what, text, reason);
        return MG_ERROR;
    }
    return MG_OK;
}

static int
conf_addr_is_loopback(const struct sockaddr_storage *ss)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
    const uint8_t *a;

    if (ss->ss_family == AF_INET) {
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)) {
        return 1;
    }
    a = sin6->sin6_addr.s6_addr;
    return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && a[12] == 127;
}

static int
conf_addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
    const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;

    if (a->ss_family != b->ss_family) {
        return 0;
    }
    if (a->ss_family == AF_INET) {
        return a4->sin_port == b4->sin_port
               && a4->sin_addr.s_addr == b4->sin_addr.s_addr;
    }
    return a6->sin6_port == b6->sin6_port
           && memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) == 0;
}

/* Parses a listening address at |s|, reporting "bad address". */
static int
conf_listen_addr(conf_ctx_t *ctx, const config_setting_t *s, const char *text,
                 struct sockaddr_storage *ss, socklen_t *len)
{
    const char *reason;
    int hostname;

    reason = conf_addr(text, ss, len, &hostname);
    if (reason != NULL) {
        conf_error(ctx, s, "bad address \"%s\": %s", text, reason);
        return MG_ERROR;
    }
    return MG_OK;
}

/* 1. Parse ---------------------------------------------------------------- */

/* conf.d holds *.conf files; editors' and packagers' leftovers
 * (".x.conf.swp", "x.conf.dpkg-old") do not end in ".conf". */
static int
conf_dir_filter(const struct dirent *d)
{
    size_t len = strlen(d->d_name);

    return d->d_name[0] != '.' && len > 5
           && strcmp(d->d_name + len - 5, ".conf") == 0;
}

/* Reads one file into a new config_t. MG_OK or MG_ERROR (reported). */
static int
conf_read_file(conf_ctx_t *ctx, const char *path)
{
    config_t *cfg;
    FILE *f;

    /* libconfig only says "file I/O error"; find out why first. */
    f = fopen(path, "r");
    if (f == NULL) {
        conf_error_at(ctx, path, 0, "cannot open configuration file: %s",
                      strerror(errno));
        return MG_ERROR;
    }
    fclose(f);

    cfg = conf_alloc(ctx->tmp, sizeof(config_t));
    config_init(cfg);
    config_set_include_dir(cfg, ctx->dir);
    conf_vec_push(ctx, &ctx->cfgs, cfg);
    conf_vec_push(ctx, &ctx->paths, path);

    if (config_read_file(cfg, path) != CONFIG_TRUE) {
        if (config_error_type(cfg) == CONFIG_ERR_FILE_IO) {
            conf_error_at(ctx, path, 0, "cannot read configuration file");
        } else {
            conf_error_at(ctx,
                          config_error_file(cfg) ? config_error_file(cfg)
                                                 : path,
                          config_error_line(cfg), "%s", config_error_text(cfg));
        }
        return MG_ERROR;
    }
    return MG_OK;
}

/* Reads the main file, then each *.conf in conf.d. MG_OK or MG_ERROR. */
static int
conf_read_files(conf_ctx_t *ctx)
{
    struct dirent **names;
    struct stat st;
    char *cdir, *path;
    size_t len;
    int i, n, rc;

    rc = conf_read_file(ctx, ctx->main_file);

    len = strlen(ctx->dir) + sizeof("/conf.d");
    cdir = conf_alloc(ctx->tmp, len);
    snprintf(cdir, len, "%s/conf.d", ctx->dir);

    n = scandir(cdir, &names, conf_dir_filter, alphasort);
    if (n == -1) {
        if (errno == ENOENT || errno == ENOTDIR) {
            return rc;
        }
        conf_error_at(ctx, cdir, 0, "cannot read directory: %s",
                      strerror(errno));
        return MG_ERROR;
    }
    for (i = 0; i < n; i++) {
        len = strlen(cdir) + strlen(names[i]->d_name) + 2;
        path = conf_alloc(ctx->tmp, len);
        snprintf(path, len, "%s/%s", cdir, names[i]->d_name);
        free(names[i]);
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
            continue;
        }
        if (conf_read_file(ctx, path) != MG_OK) {
            rc = MG_ERROR;
        }
    }
    free(names);
    return rc;
}

/* Sorts each file's top-level settings into sections. */
static void
conf_sections(conf_ctx_t *ctx)
{
    const config_setting_t *root, *m, *e;
    const config_setting_t **once;
    const char *name;
    conf_vec_t *vec;
    config_t *cfg;
    unsigned f, i, j, n, ne;

    for (f = 0; f < ctx->cfgs.n; f++) {
        cfg = ctx->cfgs.items[f];
        root = config_root_setting(cfg);
        n = (unsigned)config_setting_length(root);
        for (i = 0; i < n; i++) {
            m = config_setting_get_elem(root, i);
            name = config_setting_name(m);
            once = NULL;
            vec = NULL;
            if (strcmp(name, "gateway") == 0) {
                once = &ctx->gateway;
            } else if (strcmp(name, "admin") == 0) {
                once = &ctx->admin;
            } else if (strcmp(name, "tracing") == 0) {
                once = &ctx->tracing;
            } else if (strcmp(name, "xds") == 0) {
                once = &ctx->xds;
            } else if (strcmp(name, "listeners") == 0) {
                vec = &ctx->listener_s;
            } else if (strcmp(name, "clusters") == 0) {
                vec = &ctx->cluster_s;
            } else if (strcmp(name, "regions") == 0) {
                vec = &ctx->region_s;
            } else if (strcmp(name, "routes") == 0) {
                vec = &ctx->table_s;
            } else {
                conf_error(ctx, m,
                           "unknown key \"%s\" at top level (sections are "
                           "gateway, admin, tracing, xds, regions, listeners, "
                           "routes and clusters)",
                           name);
                continue;
            }

            if (once != NULL) {
                if (*once != NULL) {
                    conf_error(ctx, m,
                               "duplicate section %s, first defined at %s:%d",
                               name, conf_file(ctx, *once), conf_line(*once));
                } else {
                    *once = m;
                }
                continue;
            }

            if (vec == &ctx->table_s) {
                /* routes = { table = ( route, ... ); ... }; */
                if (!config_setting_is_group(m)) {
                    conf_error(ctx, m,
                               "key \"routes\" must be a group of route "
                               "tables: routes = { name = ( ... ); }");
                    continue;
                }
                ne = (unsigned)config_setting_length(m);
                for (j = 0; j < ne; j++) {
                    e = config_setting_get_elem(m, j);
                    if (!conf_type_ok(e, CONF_LIST)) {
                        conf_error(ctx, e,
                                   "route table \"%s\" must be a list of "
                                   "routes ( { ... }, ... )",
                                   config_setting_name(e));
                        continue;
                    }
                    conf_vec_push(ctx, vec, e);
                }
                continue;
            }

            if (!conf_type_ok(m, CONF_LIST)) {
                conf_error(ctx, m, "key \"%s\" must be %s", name,
                           conf_type_name(CONF_LIST));
                continue;
            }
            ne = (unsigned)config_setting_length(m);
            for (j = 0; j < ne; j++) {
                conf_vec_push(ctx, vec, config_setting_get_elem(m, j));
            }
        }
    }
}

static void
conf_parse_gateway(conf_ctx_t *ctx)
{
    mg_gateway_conf_t *gw = &ctx->snap->gateway;
    conf_val_t v[GK_N];
    const char *w;
    long ncpu, n;
    char *end;

    if (ctx->gateway != NULL) {
        conf_group(ctx, ctx->gateway, "gateway", conf_gateway_keys, GK_N, v);
    } else {
        conf_defaults(conf_gateway_keys, GK_N, v);
    }

    gw->region = v[GK_REGION].str;
    if (!conf_name_ok(gw->region)) {
        conf_error(ctx, v[GK_REGION].s,
                   "region \"%s\" may only contain letters, digits, '_', '.' "
                   "and '-'", gw->region);
    }
    gw->zone = v[GK_ZONE].str;
    if (gw->zone[0] != '\0' && !conf_name_ok(gw->zone)) {
        conf_error(ctx, v[GK_ZONE].s,
                   "zone \"%s\" may only contain letters, digits, '_', '.' "
                   "and '-'", gw->zone);
    }

    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    gw->workers = (unsigned)mg_max(1, mg_min(ncpu, CONF_MAX_WORKERS));
    if (v[GK_WORKERS].s != NULL) {
        if (config_setting_type(v[GK_WORKERS].s) != CONFIG_TYPE_STRING) {
            gw->workers = (unsigned)v[GK_WORKERS].i;
        } else if (strcmp((w = v[GK_WORKERS].str), "auto") != 0) {
            /* A number in a string comes from ${MESHGATE_WORKERS}. */
            errno = 0;
            n = strtol(w, &end, 10);
            if (w[0] < '0' || w[0] > '9' || *end != '\0' || errno != 0
                || n < 1 || n > CONF_MAX_WORKERS)
            {
                conf_error(ctx, v[GK_WORKERS].s,
                           "key \"workers\" must be \"auto\" or an integer "
                           "between 1 and %d", CONF_MAX_WORKERS);
            } else {
                gw->workers = (unsigned)n;
            }
        }
    }

    gw->user = v[GK_USER].str;
    if (geteuid() == 0 && getpwnam(gw->user) == NULL) {
        if (v[GK_USER].s != NULL) {
            conf_error(ctx, v[GK_USER].s, "unknown user \"%s\"", gw->user);
        } else {
            conf_error_at(ctx, ctx->gateway ? conf_file(ctx, ctx->gateway)
                                            : ctx->main_file,
                          conf_line(ctx->gateway),
                          "unknown user \"%s\" (the default of gateway.user)",
                          gw->user);
        }
    }

    gw->drain_timeout = v[GK_DRAIN_TIMEOUT].num;

    gw->log_level = mg_log_level_parse(v[GK_LOG_LEVEL].str);
    if (gw->log_level == -1) {
        conf_error(ctx, v[GK_LOG_LEVEL].s,
                   "key \"log_level\" must be one of emerg, alert, crit, "
                   "error, warn, notice, info, debug");
        gw->log_level = MG_LOG_NOTICE;
    }

    gw->error_log = v[GK_ERROR_LOG].str;
    if (gw->error_log[0] == '\0') {
        conf_error(ctx, v[GK_ERROR_LOG].s,
                   "key \"error_log\" must be \"stderr\" or a file path");
    }
    gw->pid_file = v[GK_PID_FILE].str;
    if (gw->pid_file != NULL && gw->pid_file[0] == '\0') {
        conf_error(ctx, v[GK_PID_FILE].s, "key \"pid_file\" must be a path");
    }
    gw->tls_ticket_rotation = v[GK_TLS_TICKET_ROTATION].num;
    gw->metrics = v[GK_METRICS].i != 0;
}

static void
conf_parse_admin(conf_ctx_t *ctx)
{
    conf_val_t v[AK_N];

    if (ctx->admin == NULL) {
        return;
    }
    if (conf_group(ctx, ctx->admin, "admin", conf_admin_keys, AK_N, v)
        != MG_OK)
    {
        return;
    }
    ctx->admin_listen_s = v[AK_LISTEN].s;
    ctx->admin_listen = v[AK_LISTEN].str;
    ctx->admin_allow_remote = (int)v[AK_ALLOW_REMOTE].i;
}

/* After the gateway section: the service is named after the region by
 * default. */
static const char **conf_strs(conf_ctx_t *ctx, const config_setting_t *s,
                               unsigned *n);

static void *conf_client_tls(conf_ctx_t *ctx, const config_setting_t *g,
                             unsigned protocol, const char **sni);

/*
 * The xds group: the discovery server of the clusters with discovery =
 * "eds". MESHGATE_XDS_HOST and MESHGATE_XDS_PORT replace the host and the
 * port of its address (or give the whole address without the group), so
 * a container is pointed at its control plane without editing files.
 * Runs after the clusters, which say whether a server is needed.
 */
static void
conf_parse_xds(conf_ctx_t *ctx)
{
    const char *env_host = getenv("MESHGATE_XDS_HOST");
    const char *env_port = getenv("MESHGATE_XDS_PORT");
    const char *addr = NULL, *colon, *host_part, *api;
    const config_setting_t *at = ctx->xds ? ctx->xds : ctx->eds_s;
    mg_xds_conf_t *xc;
    conf_val_t v[XDK_N];
    char hostname[256], buf[512], *p;
    size_t hlen;
    uint16_t port;

    if (env_host != NULL && env_host[0] == '\0') {
        env_host = NULL;
    }
    if (env_port != NULL && env_port[0] == '\0') {
        env_port = NULL;
    }
    if (ctx->xds == NULL && ctx->eds_clusters == 0) {
        return;
    }
    if (ctx->xds != NULL) {
        conf_group(ctx, ctx->xds, "xds", conf_xds_keys, XDK_N, v);
        if (!config_setting_is_group(ctx->xds)) {
            return;
        }
    } else {
        conf_defaults(conf_xds_keys, XDK_N, v);
    }
    xc = conf_alloc(ctx->pool, sizeof(*xc));
    xc->file = conf_file(ctx, at);
    xc->line = conf_line(at);
    addr = v[XDK_ADDRESS].str;

    /* The environment's host and port over the file's. */
    if (env_host != NULL || env_port != NULL) {
        char fhost[256] = "";
        const char *fport = "";

        if (addr != NULL) {
            colon = strrchr(addr, ':');
            if (colon != NULL) {
                hlen = mg_min((size_t)(colon - addr), sizeof(fhost) - 1);
                memcpy(fhost, addr, hlen);
                fhost[hlen] = '\0';
                fport = colon + 1;
            }
        }
        host_part = env_host ? env_host : fhost;
        if (host_part[0] == '\0' || (env_port ? env_port : fport)[0] == '\0') {
            conf_error(ctx, at, "the xds address needs a host and a port: "
                       "set address, or both MESHGATE_XDS_HOST and "
                       "MESHGATE_XDS_PORT");
            return;
        }
        snprintf(buf, sizeof(buf), "%s%s%s:%s",
                 strchr(host_part, ':') && host_part[0] != '[' ? "[" : "",
                 host_part,
                 strchr(host_part, ':') && host_part[0] != '[' ? "]" : "",
                 env_port ? env_port : fport);
        addr = conf_strdup(ctx->pool, buf);
    }
    if (addr == NULL) {
        conf_error(ctx, at, ctx->xds != NULL
                   ? "xds needs an address (or MESHGATE_XDS_HOST and "
                     "MESHGATE_XDS_PORT)"
                   : "discovery = \"eds\" needs an xds group with the "
                     "server's address (or MESHGATE_XDS_HOST and "
                     "MESHGATE_XDS_PORT)");
        return;
    }
    xc->address = addr;
    {
        struct sockaddr_storage ss;
        socklen_t len;
        const char *host = NULL;

        if (conf_peer_addr(ctx, v[XDK_ADDRESS].s ? v[XDK_ADDRESS].s : at,
                           "xds address", addr, &ss, &len, &host, &port)
            != MG_OK) {
            return;
        }
        if (host == NULL) {
            /* A literal address: the client connects to its text form. */
            colon = strrchr(addr, ':');
            hlen = (size_t)(colon - addr);
            p = conf_alloc(ctx->pool, hlen + 1);
            memcpy(p, addr, hlen);
            p[hlen] = '\0';
            if (p[0] == '[') {
                memmove(p, p + 1, hlen);
                p[hlen - 2] = '\0';
            }
            host = p;
            port = (uint16_t)atoi(colon + 1);
        }
        xc->host = host;
        xc->port = port;
    }
    if (v[XDK_TLS].s != NULL) {
        xc->tls = conf_client_tls(ctx, v[XDK_TLS].s, MG_PROTO_H2,
                                  &xc->tls_sni);
    }
    if (v[XDK_NODE_ID].str != NULL) {
        xc->node_id = v[XDK_NODE_ID].str;
    } else {
        if (gethostname(hostname, sizeof(hostname)) != 0) {
            snprintf(hostname, sizeof(hostname), "meshgate");
        }
        hostname[sizeof(hostname) - 1] = '\0';
        xc->node_id = conf_strdup(ctx->pool, hostname);
    }
    if (xc->node_id[0] == '\0') {
        conf_error(ctx, v[XDK_NODE_ID].s, "key \"node_id\" must not be empty");
    }
    xc->node_cluster = v[XDK_NODE_CLUSTER].str;
    xc->ads = v[XDK_ADS].i != 0;
    xc->ready_wait = v[XDK_READY_WAIT].i != 0;
    api = v[XDK_API].str;
    if (strcmp(api, "v2") == 0) {
        xc->v2 = 1;
    } else if (strcmp(api, "v3") != 0) {
        conf_error(ctx, v[XDK_API].s, "key \"api\" must be \"v3\" or \"v2\"");
    }
    ctx->snap->xds = xc;
}

static void
conf_parse_tracing(conf_ctx_t *ctx)
{
    const mg_conf_flag_t *formats = mg_conf_trace_formats;
    mg_tracing_conf_t *tc;
    conf_val_t v[SK_N];
    const char *reason, **names;
    unsigned i, k, n;
    int hostname;
    size_t len;
    char *sn;

    if (ctx->tracing == NULL) {
        return;
    }
    conf_group(ctx, ctx->tracing, "tracing", conf_tracing_keys, SK_N, v);
    if (!config_setting_is_group(ctx->tracing)) {
        return;
    }
    tc = conf_alloc(ctx->pool, sizeof(*tc));
    tc->file = conf_file(ctx, ctx->tracing);
    tc->line = conf_line(ctx->tracing);

    tc->zipkin = v[SK_ZIPKIN].str;
    if (tc->zipkin != NULL) {
        /* Workers never resolve names, and neither does the exporter. */
        reason = conf_addr(tc->zipkin, &tc->addr, &tc->addrlen, &hostname);
        if (reason == NULL && tc->zipkin[0] == '*') {
            reason = "it needs a host, not \"*\"";
        } else if (hostname) {
            reason = "use an IP address or localhost (host names are not "
                     "resolved here)";
        }
        if (reason != NULL) {
            conf_error(ctx, v[SK_ZIPKIN].s, "bad zipkin address \"%s\": %s",
                       tc->zipkin, reason);
        }
    }

    tc->sampling_percent = v[SK_SAMPLING_PERCENT].num;
    tc->sample_below = (uint64_t)(tc->sampling_percent / 100.0
                                  * 4294967296.0);

    if (v[SK_SERVICE_NAME].str != NULL) {
        tc->service_name = v[SK_SERVICE_NAME].str;
        if (tc->service_name[0] == '\0') {
            conf_error(ctx, v[SK_SERVICE_NAME].s,
                       "key \"service_name\" must not be empty");
        }
    } else {
        len = sizeof("meshgate-") + strlen(ctx->snap->gateway.region);
        sn = conf_alloc(ctx->pool, len);
        snprintf(sn, len, "meshgate-%s", ctx->snap->gateway.region);
        tc->service_name = sn;
    }

    tc->propagate = MG_TRACE_PROP_W3C | MG_TRACE_PROP_B3;
    if (v[SK_PROPAGATE].s != NULL
        && (names = conf_strs(ctx, v[SK_PROPAGATE].s, &n)) != NULL) {
        tc->propagate = 0;
        for (i = 0; i < n; i++) {
            for (k = 0; k < mg_countof(mg_conf_trace_formats); k++) {
                if (strcmp(names[i], formats[k].name) == 0) {
                    tc->propagate |= formats[k].bit;
                    break;
                }
            }
            if (k == mg_countof(mg_conf_trace_formats)) {
                conf_error(ctx, config_setting_get_elem(v[SK_PROPAGATE].s, i),
                           "unknown propagate format \"%s\" (use \"w3c\", "
                           "\"b3\" or \"b3-single\")", names[i]);
            }
        }
    }

    tc->batch = (unsigned)v[SK_BATCH].i;
    tc->flush_interval = v[SK_FLUSH_INTERVAL].num;
    tc->timeout = v[SK_TIMEOUT].num;
    ctx->snap->tracing = tc;
}

/* TLS problems are reported at the value's setting, or at the tls group
 * when the problem has no single value (out of memory). */
typedef struct conf_tls_report_s {
    conf_ctx_t *ctx;
    const config_setting_t *s;
} conf_tls_report_t;

static void
conf_tls_error(void *data, const void *pos, const char *msg)
{
    conf_tls_report_t *rep = data;

    conf_error(rep->ctx, pos != NULL ? pos : rep->s, "%s", msg);
}

/* A file named in the configuration: a relative path is relative to the
 * directory of the main file, like @include. */
static const char *
conf_file_path(conf_ctx_t *ctx, const char *path)
{
    size_t len;
    char *buf;

    if (path == NULL || path[0] == '/' || strcmp(ctx->dir, ".") == 0) {
        return path;
    }
    len = strlen(ctx->dir) + strlen(path) + 2;
    buf = conf_alloc(ctx->pool, len);
    snprintf(buf, len, "%s/%s", ctx->dir, path);
    return buf;
}

/* The expanded strings of array |s|, or NULL after reporting. */
static const char **
conf_strs(conf_ctx_t *ctx, const config_setting_t *s, unsigned *n)
{
    const config_setting_t *e;
    const char **v;
    unsigned i;
    int bad = 0;

    *n = (unsigned)config_setting_length(s);
    v = conf_alloc(ctx->tmp, (*n + 1) * sizeof(char *));
    for (i = 0; i < *n; i++) {
        e = config_setting_get_elem(s, i);
        v[i] = conf_expand(ctx, e, config_setting_get_string(e));
        bad |= v[i] == NULL;
    }
    return bad ? NULL : v;
}

/* protocols, ciphers and ciphersuites of a listener's or cluster's tls. */
static int
conf_tls_common(conf_ctx_t *ctx, mg_tls_common_conf_t *c,
                const conf_val_t *protocols, const conf_val_t *ciphers,
                const conf_val_t *ciphersuites)
{
    if (protocols->s != NULL) {
        c->protocols = conf_strs(ctx, protocols->s, &c->nprotocols);
        c->protocols_pos = protocols->s;
        if (c->protocols == NULL) {
            return MG_ERROR;
        }
    }
    c->ciphers = ciphers->str;
    c->ciphers_pos = ciphers->s;
    c->ciphersuites = ciphersuites->str;
    c->ciphersuites_pos = ciphersuites->s;
    return MG_OK;
}

/* A listener's tls group: builds l->tls (the SSL_CTX of its handshakes). */
static void
conf_parse_listener_tls(conf_ctx_t *ctx, mg_listener_conf_t *l,
                        const config_setting_t *g)
{
    conf_tls_report_t rep = { ctx, g };
    const config_setting_t *list, *e;
    mg_tls_server_conf_t tc;
    mg_tls_cert_conf_t *certs;
    conf_val_t v[TK_N], pv[PK_N];
    const char *verify;
    unsigned i, n;
    int rc;

    rc = conf_group(ctx, g, "tls", conf_tls_keys, TK_N, v);
    if (!config_setting_is_group(g)) {
        return;
    }
    memset(&tc, 0, sizeof(tc));
    tc.name = l->name != NULL ? l->name : "";

    list = v[TK_CERTIFICATES].s;
    n = list != NULL ? (unsigned)config_setting_length(list) : 0;
    if (list != NULL && n == 0) {
        conf_error(ctx, list, "key \"certificates\" must not be empty");
        rc = MG_ERROR;
    }
    certs = conf_alloc(ctx->tmp, (n + 1) * sizeof(mg_tls_cert_conf_t));
    for (i = 0; i < n; i++) {
        e = config_setting_get_elem(list, i);
        if (conf_group(ctx, e, "certificate", conf_cert_keys, PK_N, pv)
            != MG_OK)
        {
            rc = MG_ERROR;
            continue;
        }
        certs[i].cert = conf_file_path(ctx, pv[PK_CERT].str);
        certs[i].cert_pos = pv[PK_CERT].s;
        certs[i].key = conf_file_path(ctx, pv[PK_KEY].str);
        certs[i].key_pos = pv[PK_KEY].s;
    }
    tc.certs = certs;
    tc.ncerts = n;

    if (v[TK_ALPN].s != NULL) {
        tc.alpn = conf_strs(ctx, v[TK_ALPN].s, &tc.nalpn);
        tc.alpn_pos = v[TK_ALPN].s;
        if (tc.alpn == NULL) {
            rc = MG_ERROR;
            tc.nalpn = 0;
        }
    } else {
        tc.alpn = conf_default_alpn;
        tc.nalpn = mg_countof(conf_default_alpn);
    }
    for (i = 0; i < tc.nalpn; i++) {
        if (strcmp(tc.alpn[i], "h2") == 0) {
            l->h2 = 1;
        }
    }
    if (conf_tls_common(ctx, &tc.common, &v[TK_PROTOCOLS], &v[TK_CIPHERS],
                        &v[TK_CIPHERSUITES])
        != MG_OK)
    {
        rc = MG_ERROR;
    }

    tc.client_ca = conf_file_path(ctx, v[TK_CLIENT_CA].str);
    tc.client_ca_pos = v[TK_CLIENT_CA].s;
    verify = v[TK_VERIFY_CLIENT].str;
    if (strcmp(verify, "off") == 0) {
        tc.verify = MG_TLS_VERIFY_OFF;
    } else if (strcmp(verify, "optional") == 0) {
        tc.verify = MG_TLS_VERIFY_OPTIONAL;
    } else if (strcmp(verify, "required") == 0) {
        tc.verify = MG_TLS_VERIFY_REQUIRED;
    } else {
        conf_error(ctx, v[TK_VERIFY_CLIENT].s,
                   "key \"verify_client\" must be \"off\", \"optional\" or "
                   "\"required\"");
        rc = MG_ERROR;
    }
    if (tc.verify != MG_TLS_VERIFY_OFF && tc.client_ca == NULL) {
        conf_error(ctx, v[TK_VERIFY_CLIENT].s,
                   "verify_client = \"%s\" needs client_ca, the CA file "
                   "that client certificates are checked against", verify);
        rc = MG_ERROR;
    }
    l->tls_verify = tc.verify;
    tc.session_tickets = v[TK_SESSION_TICKETS].i != 0;
    tc.session_timeout = ctx->snap->gateway.tls_ticket_rotation;
    tc.on_error = conf_tls_error;
    tc.data = &rep;

    /* Certificates are checked even when another key was wrong, so that
     * one run reports every problem; only the whole list is needed. */
    for (i = 0; i < n; i++) {
        if (certs[i].cert == NULL || certs[i].key == NULL) {
            return;
        }
    }
    if (n == 0) {
        return;
    }
    l->tls = mg_tls_server_create(ctx->pool, &tc);
    if (rc != MG_OK) {
        l->tls = NULL;   /* the pool frees it with the failed snapshot */
    }
}

/* access_log_format and access_log_json of listener |l|: compiled here,
 * once, so that a request's line costs no parsing. */
static void
conf_parse_access_format(conf_ctx_t *ctx, mg_listener_conf_t *l,
                         const conf_val_t *v)
{
    char err[256];

    l->access_format = NULL;
    if (v[LK_ACCESS_LOG_JSON].i != 0) {
        if (v[LK_ACCESS_LOG_FORMAT].str != NULL) {
            conf_error(ctx, v[LK_ACCESS_LOG_FORMAT].s,
                       "access_log_format cannot be used with "
                       "access_log_json = true, whose lines carry every "
                       "field");
            return;
        }
        l->access_format = mg_access_format_json();
        return;
    }
    if (v[LK_ACCESS_LOG_FORMAT].str == NULL) {
        return;
    }
    l->access_format = mg_access_format_compile(ctx->pool,
                                                v[LK_ACCESS_LOG_FORMAT].str,
                                                err, sizeof(err));
    if (l->access_format == NULL) {
        conf_error(ctx, v[LK_ACCESS_LOG_FORMAT].s, "%s", err);
    }
}

static void
conf_parse_listeners(conf_ctx_t *ctx)
{
    const config_setting_t *s;
    mg_listener_conf_t *l;
    conf_listener_t *cl;
    conf_val_t v[LK_N];
    unsigned i, n;

    /* The admin listener, when configured, takes the last slot. */
    n = ctx->listener_s.n + (ctx->admin != NULL);
    ctx->snap->listeners = conf_alloc(ctx->pool,
                                      (n ? n : 1) * sizeof(mg_listener_conf_t));

    for (i = 0; i < ctx->listener_s.n; i++) {
        s = ctx->listener_s.items[i];
        l = &ctx->snap->listeners[ctx->snap->nlisteners];
        /* After an error the rest is still checked, so one run reports
         * all; a missing required value stays NULL. */
        conf_group(ctx, s, "listener", conf_listener_keys, LK_N, v);
        if (!config_setting_is_group(s)) {
            continue;
        }
        ctx->snap->nlisteners++;
        cl = conf_alloc(ctx->tmp, sizeof(conf_listener_t));
        cl->l = l;
        cl->s = s;
        cl->name_s = v[LK_NAME].s;
        cl->listen_s = v[LK_LISTEN].s;
        cl->routes_s = v[LK_ROUTES].s;
        cl->table = v[LK_ROUTES].str;
        conf_vec_push(ctx, &ctx->listeners, cl);

        l->name = v[LK_NAME].str;
        l->listen = v[LK_LISTEN].str;
        l->backlog = (int)v[LK_BACKLOG].i;
        l->limits.max_request_line = (size_t)v[LK_MAX_REQUEST_LINE].i;
        l->limits.max_header_size = (size_t)v[LK_MAX_HEADER_SIZE].i;
        l->limits.max_headers = (unsigned)v[LK_MAX_HEADERS].i;
        l->limits.max_body_size = (int64_t)v[LK_MAX_BODY_SIZE].i;
        l->request_header_timeout = v[LK_REQUEST_HEADER_TIMEOUT].num;
        l->idle_timeout = v[LK_IDLE_TIMEOUT].num;
        l->send_timeout = v[LK_SEND_TIMEOUT].num;
        l->access_log = strcmp(v[LK_ACCESS_LOG].str, "off") == 0
                            ? NULL
                            : v[LK_ACCESS_LOG].str;
        if (l->access_log != NULL && l->access_log[0] == '\0') {
            conf_error(ctx, v[LK_ACCESS_LOG].s,
                       "key \"access_log\" must be a path or \"off\"");
        }
        conf_parse_access_format(ctx, l, v);
        if (v[LK_TLS].s != NULL) {
            conf_parse_listener_tls(ctx, l, v[LK_TLS].s);
        }
        l->h2c = v[LK_H2C].i != 0;
        if (l->h2c && v[LK_TLS].s != NULL) {
            conf_error(ctx, v[LK_H2C].s,
                       "h2c = true (cleartext HTTP/2) cannot be used with "
                       "tls; a TLS listener offers HTTP/2 through alpn");
        }
        l->public = v[LK_PUBLIC].i != 0;
        l->peering = v[LK_PEERING].i != 0;
        if (l->peering && (v[LK_TLS].s == NULL
                           || (l->tls != NULL
                               && l->tls_verify != MG_TLS_VERIFY_REQUIRED))) {
            /* Only front proxies holding a mesh certificate may get in. */
            conf_error(ctx, v[LK_PEERING].s,
                       "peering = true needs tls with client_ca and "
                       "verify_client = \"required\"");
        }
        if (l->peering && l->public) {
            conf_error(ctx, v[LK_PUBLIC].s,
                       "a listener cannot be both peering and public");
        }
        l->file = conf_file(ctx, s);
        l->line = conf_line(s);
    }
}

/* Checks a domain of a route; returns the reason it is bad, or NULL. */
static const char *
conf_domain_check(const char *d)
{
    struct in6_addr a6;
    char buf[INET6_ADDRSTRLEN + 1];
    size_t len = strlen(d);

    if (strcmp(d, "*") == 0) {
        return NULL;
    }
    if (len == 0) {
        return "empty domain";
    }
    if (d[0] == '[') {
        if (d[len - 1] != ']') {
            return "ports are not allowed in domains";
        }
        if (len - 2 >= sizeof(buf) || len < 3) {
            return "bad IPv6 address";
        }
        memcpy(buf, d + 1, len - 2);
        buf[len - 2] = '\0';
        return inet_pton(AF_INET6, buf, &a6) == 1 ? NULL : "bad IPv6 address";
    }
    if (d[0] == '*') {
        if (d[1] != '.' || d[2] == '\0') {
            return "a wildcard must look like \"*.example.com\"";
        }
        d += 2;
        len -= 2;
    }
    if (strchr(d, '*') != NULL) {
        return "a wildcard may only be a leading \"*.\"";
    }
    if (strchr(d, ':') != NULL) {
        return "ports are not allowed in domains";
    }
    if (strspn(d, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789-._")
        != len)
    {
        return "a domain may only contain letters, digits, '-', '_' and '.'";
    }
    if (d[0] == '.' || d[len - 1] == '.' || strstr(d, "..") != NULL) {
        return "empty label";
    }
    return NULL;
}

/* A path or prefix: starts with '/', no spaces or control bytes. */
static int
conf_path_ok(const char *p)
{
    if (p[0] != '/') {
        return 0;
    }
    for (; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int
conf_parse_direct(conf_ctx_t *ctx, const config_setting_t *s, mg_route_t *r)
{
    conf_val_t v[DK_N];

    if (conf_group(ctx, s, "direct_response", conf_direct_keys, DK_N, v)
        != MG_OK)
    {
        return MG_ERROR;
    }
    r->action = MG_ROUTE_DIRECT;
    r->status = (unsigned)v[DK_STATUS].i;
    r->body = mg_str(v[DK_BODY].str);
    r->content_type = mg_str(v[DK_CONTENT_TYPE].str);
    return MG_OK;
}

enum { ZK_TYPES, ZK_MIN_LENGTH, ZK_LEVEL, ZK_N };

static const conf_key_t conf_gzip_keys[ZK_N] = {
    [ZK_TYPES] = CK_STRS("types"),
    [ZK_MIN_LENGTH] = CK_INT("min_length", 0, 1LL << 40, 1024),
    [ZK_LEVEL] = CK_INT("level", 1, 9, 5),
};

/* Types worth compressing when the route names none: text and the
 * structured formats that shrink well; images and archives already are. */
static const char *const conf_gzip_default_types[] = {
    "text/html", "text/plain", "text/css", "text/xml", "text/javascript",
    "application/javascript", "application/json", "application/xml",
    "image/svg+xml"
};

static int
conf_parse_gzip(conf_ctx_t *ctx, const config_setting_t *s, mg_route_t *r)
{
    conf_val_t v[ZK_N];
    mg_gzip_conf_t *gz;
    mg_str_t *types;
    const char **names = NULL;
    unsigned i, n;
    size_t k;

    if (conf_group(ctx, s, "gzip", conf_gzip_keys, ZK_N, v) != MG_OK) {
        return MG_ERROR;
    }
    if (v[ZK_TYPES].s != NULL) {
        names = conf_strs(ctx, v[ZK_TYPES].s, &n);
        if (names == NULL) {
            return MG_ERROR;
        }
        if (n == 0) {
            conf_error(ctx, v[ZK_TYPES].s, "gzip types must not be empty");
            return MG_ERROR;
        }
    } else {
        names = (const char **)conf_gzip_default_types;
        n = (unsigned)mg_countof(conf_gzip_default_types);
    }
    gz = conf_alloc(ctx->pool, sizeof(*gz));
    types = conf_alloc(ctx->pool, n * sizeof(*types));
    for (i = 0; i < n; i++) {
        char *t = conf_strdup(ctx->pool, names[i]);

        for (k = 0; t[k] != '\0'; k++) {
            t[k] = mg_tolower(t[k]);
        }
        if (strchr(t, '/') == NULL || strpbrk(t, " ;") != NULL) {
            conf_error(ctx, v[ZK_TYPES].s,
                       "gzip type \"%s\" must be a media type such as "
                       "\"text/html\", without parameters", names[i]);
            return MG_ERROR;
        }
        types[i] = mg_str(t);
    }
    gz->level = (int)v[ZK_LEVEL].i;
    gz->min_length = v[ZK_MIN_LENGTH].i;
    gz->types = types;
    gz->ntypes = n;
    r->gzip = gz;
    return MG_OK;
}

static int
conf_parse_redirect(conf_ctx_t *ctx, const config_setting_t *s, mg_route_t *r)
{
    conf_val_t v[XK_N];
    const char *h;
    int rc = MG_OK;

    if (conf_group(ctx, s, "redirect", conf_redirect_keys, XK_N, v) != MG_OK) {
        return MG_ERROR;
    }
    r->action = MG_ROUTE_REDIRECT;
    r->redirect_status = (unsigned)v[XK_STATUS].i;
    switch (r->redirect_status) {
    case 301:
    case 302:
    case 303:
    case 307:
    case 308:
        break;
    default:
        conf_error(ctx, v[XK_STATUS].s,
                   "redirect status must be 301, 302, 303, 307 or 308");
        rc = MG_ERROR;
    }
    if (v[XK_SCHEME].str != NULL) {
        if (strcmp(v[XK_SCHEME].str, "http") != 0
            && strcmp(v[XK_SCHEME].str, "https") != 0)
        {
            conf_error(ctx, v[XK_SCHEME].s,
                       "redirect scheme must be \"http\" or \"https\"");
            rc = MG_ERROR;
        }
        r->redirect_scheme = mg_str(v[XK_SCHEME].str);
    }
    if ((h = v[XK_HOST].str) != NULL) {
        if (h[0] == '\0'
            || strspn(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                         "0123456789-._:[]")
                   != strlen(h))
        {
            conf_error(ctx, v[XK_HOST].s,
                       "redirect host \"%s\" must look like host[:port]", h);
            rc = MG_ERROR;
        }
        r->redirect_host = mg_str(h);
    }
    if (v[XK_PATH].str != NULL) {
        if (!conf_path_ok(v[XK_PATH].str)) {
            conf_error(ctx, v[XK_PATH].s,
                       "redirect path \"%s\" must start with '/' and have no "
                       "spaces", v[XK_PATH].str);
            rc = MG_ERROR;
        }
        r->redirect_path = mg_str(v[XK_PATH].str);
    }
    if (v[XK_SCHEME].s == NULL && v[XK_HOST].s == NULL
        && v[XK_PATH].s == NULL && rc == MG_OK)
    {
        conf_error(ctx, s, "redirect needs at least one of scheme, host or "
                           "path");
        rc = MG_ERROR;
    }
    return rc;
}

static void
conf_parse_route(conf_ctx_t *ctx, const char *table, const config_setting_t *s)
{
    const config_setting_t *d, *e;
    conf_val_t v[RK_N];
    conf_route_t *cr;
    mg_route_t *r;
    const char *why;
    unsigned i, nactions;
    int rc;

    rc = conf_group(ctx, s, "route", conf_route_keys, RK_N, v);
    if (!config_setting_is_group(s)) {
        return;
    }

    r = conf_alloc(ctx->pool, sizeof(mg_route_t));
    cr = conf_alloc(ctx->tmp, sizeof(conf_route_t));
    cr->r = r;
    cr->table = table;
    r->file = conf_file(ctx, s);
    r->line = conf_line(s);

    if (v[RK_DOMAINS].s != NULL) {
        d = v[RK_DOMAINS].s;
        cr->ndomains = (unsigned)config_setting_length(d);
        if (cr->ndomains == 0) {
            conf_error(ctx, d, "key \"domains\" must not be empty");
            rc = MG_ERROR;
        }
        cr->domains = conf_alloc(ctx->pool,
                                 (cr->ndomains + 1) * sizeof(char *));
        for (i = 0; i < cr->ndomains; i++) {
            e = config_setting_get_elem(d, i);
            cr->domains[i] = conf_expand(ctx, e, config_setting_get_string(e));
            if (cr->domains[i] == NULL) {
                rc = MG_ERROR;
                continue;
            }
            why = conf_domain_check(cr->domains[i]);
            if (why != NULL) {
                conf_error(ctx, e, "bad domain \"%s\": %s", cr->domains[i],
                           why);
                rc = MG_ERROR;
            }
        }
    }

    if (v[RK_PREFIX].s != NULL && v[RK_PATH].s != NULL) {
        conf_error(ctx, v[RK_PATH].s, "route has both prefix and path");
        rc = MG_ERROR;
    } else if (v[RK_PREFIX].s != NULL || v[RK_PATH].s != NULL) {
        i = v[RK_PREFIX].s != NULL ? RK_PREFIX : RK_PATH;
        r->path_exact = (i == RK_PATH);
        r->path = mg_str(v[i].str);
        if (!conf_path_ok(v[i].str)) {
            conf_error(ctx, v[i].s,
                       "key \"%s\" must start with '/' and have no spaces",
                       conf_route_keys[i].name);
            rc = MG_ERROR;
        }
    } else if (!config_setting_lookup((config_setting_t *)s, "prefix")
               && !config_setting_lookup((config_setting_t *)s, "path"))
    {
        conf_error(ctx, s, "route needs prefix or path");
        rc = MG_ERROR;
    }

    nactions = 0;
    for (i = RK_CLUSTER; i <= RK_REDIRECT; i++) {
        nactions += config_setting_lookup((config_setting_t *)s,
                                          conf_route_keys[i].name)
                    != NULL;
    }
    if (nactions == 0) {
        conf_error(ctx, s,
                   "route needs one of cluster, direct_response or redirect");
        rc = MG_ERROR;
    } else if (nactions > 1) {
        conf_error(ctx, s, "route has more than one of cluster, "
                           "direct_response and redirect");
        rc = MG_ERROR;
    } else if (v[RK_CLUSTER].s != NULL) {
        r->action = MG_ROUTE_CLUSTER;
        cr->cluster = v[RK_CLUSTER].str;
        cr->cluster_s = v[RK_CLUSTER].s;
    } else if (v[RK_DIRECT_RESPONSE].s != NULL) {
        if (conf_parse_direct(ctx, v[RK_DIRECT_RESPONSE].s, r) != MG_OK) {
            rc = MG_ERROR;
        }
    } else if (v[RK_REDIRECT].s != NULL) {
        if (conf_parse_redirect(ctx, v[RK_REDIRECT].s, r) != MG_OK) {
            rc = MG_ERROR;
        }
    }

    r->allow_upgrade = v[RK_UPGRADE].i != 0;
    r->allow_connect = v[RK_CONNECT].i != 0;
    if (r->allow_connect && nactions == 1 && v[RK_CLUSTER].s == NULL
        && config_setting_lookup((config_setting_t *)s, "cluster") == NULL)
    {
        conf_error(ctx, v[RK_CONNECT].s,
                   "connect = true needs a cluster to tunnel to");
        rc = MG_ERROR;
    }
    r->timeout = v[RK_TIMEOUT].num;
    r->require_client_cert = v[RK_REQUIRE_CLIENT_CERT].i != 0;
    r->internal = v[RK_INTERNAL].i != 0;
    if (v[RK_NAME].s != NULL) {
        r->name = v[RK_NAME].str;
        cr->name_s = v[RK_NAME].s;
        if (r->name[0] == '\0') {
            conf_error(ctx, v[RK_NAME].s, "key \"name\" must not be empty");
            rc = MG_ERROR;
        }
    }
    if (v[RK_GZIP].s != NULL && conf_parse_gzip(ctx, v[RK_GZIP].s, r) != MG_OK) {
        rc = MG_ERROR;
    }

    if (rc == MG_OK) {
        conf_vec_push(ctx, &ctx->routes, cr);
    }
}

static void
conf_parse_routes(conf_ctx_t *ctx)
{
    const config_setting_t *t;
    const char *name;
    unsigned i, j, n;

    for (i = 0; i < ctx->table_s.n; i++) {
        t = ctx->table_s.items[i];
        name = conf_strdup(ctx->pool, config_setting_name(t));
        n = (unsigned)config_setting_length(t);
        for (j = 0; j < n; j++) {
            conf_parse_route(ctx, name, config_setting_get_elem(t, j));
        }
    }
}

static void
conf_parse_endpoint(conf_ctx_t *ctx, const config_setting_t *s,
                    mg_endpoint_conf_t *e)
{
    conf_val_t v[EK_N];

    conf_group(ctx, s, "endpoint", conf_endpoint_keys, EK_N, v);
    e->address = v[EK_ADDRESS].str;
    e->weight = (unsigned)v[EK_WEIGHT].i;
    e->zone = v[EK_ZONE].str;
    if (e->address == NULL) {
        return;
    }

    (void)conf_peer_addr(ctx, v[EK_ADDRESS].s, "address", e->address,
                         &e->addr, &e->addrlen, &e->host, &e->port);
    if (e->zone[0] != '\0' && !conf_name_ok(e->zone)) {
        conf_error(ctx, v[EK_ZONE].s,
                   "zone \"%s\" may only contain letters, digits, '_', '.' "
                   "and '-'", e->zone);
    }
}

/* A cluster's tls group: builds cl->tls (the SSL_CTX of connections to
 * its endpoints). cl->protocol is known. */
/* A client TLS context from a cluster's or region's tls group; ALPN offers
 * h2 for |protocol| MG_PROTO_H2. NULL after an error. */
static void *
conf_client_tls(conf_ctx_t *ctx, const config_setting_t *g, unsigned protocol,
                const char **sni)
{
    conf_tls_report_t rep = { ctx, g };
    mg_tls_client_conf_t tc;
    conf_val_t v[UK_N];
    const char *why;
    int rc;

    rc = conf_group(ctx, g, "tls", conf_cluster_tls_keys, UK_N, v);
    if (!config_setting_is_group(g)) {
        return NULL;
    }
    memset(&tc, 0, sizeof(tc));
    if (conf_tls_common(ctx, &tc.common, &v[UK_PROTOCOLS], &v[UK_CIPHERS],
                        &v[UK_CIPHERSUITES])
        != MG_OK)
    {
        rc = MG_ERROR;
    }
    tc.ca = conf_file_path(ctx, v[UK_CA].str);
    tc.ca_pos = v[UK_CA].s;
    tc.cert = conf_file_path(ctx, v[UK_CERT].str);
    tc.cert_pos = v[UK_CERT].s;
    tc.key = conf_file_path(ctx, v[UK_KEY].str);
    tc.key_pos = v[UK_KEY].s;
    if (v[UK_CERT].s != NULL && v[UK_KEY].s == NULL) {
        conf_error(ctx, v[UK_CERT].s, "tls cert needs key");
        rc = MG_ERROR;
    } else if (v[UK_KEY].s != NULL && v[UK_CERT].s == NULL) {
        conf_error(ctx, v[UK_KEY].s, "tls key needs cert");
        rc = MG_ERROR;
    }
    tc.sni = v[UK_SNI].str;
    if (tc.sni != NULL) {
        why = tc.sni[0] == '*' || tc.sni[0] == '[' ? "must be a host name"
                                                   : conf_domain_check(tc.sni);
        if (why != NULL) {
            conf_error(ctx, v[UK_SNI].s, "bad sni \"%s\": %s", tc.sni, why);
            rc = MG_ERROR;
        }
    }
    *sni = tc.sni;
    tc.verify = v[UK_VERIFY].i != 0;
    tc.h2 = protocol == MG_PROTO_H2;
    tc.on_error = conf_tls_error;
    tc.data = &rep;
    if (rc != MG_OK) {
        return NULL;
    }
    return mg_tls_client_create(ctx->pool, &tc);
}


/* Status sets: [ "200-399", "404" ] into bits; MG_OK or MG_ERROR. */
static int
conf_statuses(conf_ctx_t *ctx, const config_setting_t *s, uint64_t bits[10])
{
    const config_setting_t *e;
    const char *str;
    char *end;
    long lo, hi, k;
    int i, n = config_setting_length(s), rc = MG_OK;

    memset(bits, 0, 10 * sizeof(uint64_t));
    if (n == 0) {
        conf_error(ctx, s, "statuses must not be empty");
        return MG_ERROR;
    }
    for (i = 0; i < n; i++) {
        e = config_setting_get_elem(s, i);
        str = config_setting_get_string(e);
        lo = strtol(str, &end, 10);
        hi = lo;
        if (*end == '-') {
            hi = strtol(end + 1, &end, 10);
        }
        if (*end != '\0' || end == str || lo < 100 || hi > 599 || lo > hi) {
            conf_error(ctx, e, "status \"%s\" must be a code (100..599) or a "
                       "range \"200-299\"", str);
            rc = MG_ERROR;
            continue;
        }
        for (k = lo; k <= hi; k++) {
            bits[k / 64] |= (uint64_t)1 << (k % 64);
        }
    }
    return rc;
}

static const mg_health_check_conf_t *
conf_parse_health(conf_ctx_t *ctx, const config_setting_t *g)
{
    mg_health_check_conf_t *hc;
    conf_val_t v[HK_N];
    long k;

    conf_group(ctx, g, "health_check", conf_health_keys, HK_N, v);
    if (!config_setting_is_group(g)) {
        return NULL;
    }
    hc = conf_alloc(ctx->pool, sizeof(*hc));
    if (strcmp(v[HK_TYPE].str, "http") == 0) {
        hc->type = MG_HC_HTTP;
    } else if (strcmp(v[HK_TYPE].str, "tcp") == 0) {
        hc->type = MG_HC_TCP;
    } else {
        conf_error(ctx, v[HK_TYPE].s, "health_check type must be \"http\" "
                   "or \"tcp\"");
    }
    hc->path = v[HK_PATH].str;
    if (hc->path[0] != '/' || strpbrk(hc->path, " \t\r\n") != NULL) {
        conf_error(ctx, v[HK_PATH].s, "health_check path must start with "
                   "'/' and hold no spaces or line breaks");
    }
    hc->host = v[HK_HOST].str;
    if (hc->host != NULL
        && (hc->host[0] == '\0' || strpbrk(hc->host, " \t\r\n") != NULL)) {
        /* Sent as the Host field: nothing that could end the line. */
        conf_error(ctx, v[HK_HOST].s, "health_check host \"%s\" is not a "
                   "host name", hc->host);
    }
    if (v[HK_STATUSES].s != NULL) {
        (void)conf_statuses(ctx, v[HK_STATUSES].s, hc->statuses);
    } else {
        for (k = 200; k < 400; k++) {
            hc->statuses[k / 64] |= (uint64_t)1 << (k % 64);
        }
    }
    hc->interval = v[HK_INTERVAL].num;
    hc->timeout = v[HK_TIMEOUT].num;
    hc->jitter = v[HK_JITTER].num;
    hc->healthy_threshold = (unsigned)v[HK_HEALTHY].i;
    hc->unhealthy_threshold = (unsigned)v[HK_UNHEALTHY].i;
    if (hc->timeout > hc->interval) {
        conf_error(ctx, v[HK_TIMEOUT].s ? v[HK_TIMEOUT].s : g,
                   "health_check timeout (%.3g s) must not exceed its "
                   "interval (%.3g s)", hc->timeout, hc->interval);
    }
    return hc;
}

/* Retries when the cluster says nothing: a connection that failed, or a
 * stream the upstream refused, went nowhere and is safe to try again. */
static void
conf_retry_defaults(mg_retry_conf_t *r)
{
    memset(r, 0, sizeof(*r));
    r->on = MG_RETRY_CONNECT_FAILURE | MG_RETRY_REFUSED_STREAM;
    r->attempts = (unsigned)conf_retry_keys[YK_ATTEMPTS].dnum;
    r->backoff = conf_retry_keys[YK_BACKOFF].dnum;
    r->max_backoff = conf_retry_keys[YK_MAX_BACKOFF].dnum;
    r->budget = conf_retry_keys[YK_BUDGET].dnum;
}

const mg_conf_flag_t mg_conf_retry_on[6] = {
    { "connect-failure", MG_RETRY_CONNECT_FAILURE },
    { "refused-stream", MG_RETRY_REFUSED_STREAM },
    { "reset", MG_RETRY_RESET },
    { "5xx", MG_RETRY_5XX },
    { "gateway-error", MG_RETRY_GATEWAY_ERROR },
    { "retriable-status", MG_RETRY_RETRIABLE_STATUS },
};

const mg_conf_flag_t mg_conf_trace_formats[3] = {
    { "w3c", MG_TRACE_PROP_W3C },
    { "b3", MG_TRACE_PROP_B3 },
    { "b3-single", MG_TRACE_PROP_B3_SINGLE },
};

static void
conf_parse_retry(conf_ctx_t *ctx, const config_setting_t *g,
                 mg_retry_conf_t *r)
{
    const mg_conf_flag_t *names = mg_conf_retry_on;
    conf_val_t v[YK_N];
    const config_setting_t *e;
    const char *str;
    int i, n;
    size_t k;

    conf_retry_defaults(r);
    conf_group(ctx, g, "retry", conf_retry_keys, YK_N, v);
    if (!config_setting_is_group(g)) {
        return;
    }
    if (v[YK_ON].s != NULL) {
        r->on = 0;
        n = config_setting_length(v[YK_ON].s);
        for (i = 0; i < n; i++) {
            e = config_setting_get_elem(v[YK_ON].s, i);
            str = config_setting_get_string(e);
            for (k = 0; k < mg_countof(mg_conf_retry_on); k++) {
                if (strcmp(str, names[k].name) == 0) {
                    r->on |= names[k].bit;
                    break;
                }
            }
            if (k == mg_countof(mg_conf_retry_on)) {
                conf_error(ctx, e, "retry on \"%s\": must be one of "
                           "connect-failure, refused-stream, reset, 5xx, "
                           "gateway-error, retriable-status", str);
            }
        }
    }
    if (v[YK_STATUSES].s != NULL) {
        (void)conf_statuses(ctx, v[YK_STATUSES].s, r->statuses);
    } else if (r->on & MG_RETRY_RETRIABLE_STATUS) {
        conf_error(ctx, v[YK_ON].s, "retry on \"retriable-status\" needs "
                   "statuses");
    }
    r->attempts = (unsigned)v[YK_ATTEMPTS].i;
    r->per_try_timeout = v[YK_PER_TRY_TIMEOUT].num;
    r->backoff = v[YK_BACKOFF].num;
    r->max_backoff = v[YK_MAX_BACKOFF].num;
    r->budget = v[YK_BUDGET].num;
}

/* The protocol key of a cluster or region; |def| when absent. */
static unsigned
conf_protocol(conf_ctx_t *ctx, const conf_val_t *v, unsigned def)
{
    const char *proto = v->str;

    if (proto == NULL) {
        return def;
    }
    if (strcmp(proto, "h2") == 0) {
        return MG_PROTO_H2;
    }
    if (strcmp(proto, "h2c") == 0) {
        return MG_PROTO_H2C;
    }
    if (strcmp(proto, "http/1.1") != 0) {
        conf_error(ctx, v->s, "key \"protocol\" must be one of "
                   "\"http/1.1\", \"h2\", \"h2c\"");
    }
    return MG_PROTO_HTTP1;
}

static void
conf_parse_regions(conf_ctx_t *ctx)
{
    mg_snapshot_t *snap = ctx->snap;
    const config_setting_t *s;
    mg_region_conf_t *r;
    conf_val_t v[NK_N];
    unsigned i, n = ctx->region_s.n;

    snap->regions = conf_alloc(ctx->pool, (n ? n : 1) * sizeof(*r));
    for (i = 0; i < n; i++) {
        s = ctx->region_s.items[i];
        conf_group(ctx, s, "region", conf_region_keys, NK_N, v);
        if (!config_setting_is_group(s)) {
            continue;
        }
        r = &snap->regions[snap->nregions++];
        r->name = v[NK_NAME].str;
        r->file = conf_file(ctx, s);
        r->line = conf_line(s);
        if (r->name != NULL && !conf_name_ok(r->name)) {
            conf_error(ctx, v[NK_NAME].s, "region \"%s\" may only contain "
                       "letters, digits, '_', '.' and '-'", r->name);
        }
        r->front_proxy = v[NK_FRONT_PROXY].str;
        r->dns_refresh = v[NK_DNS_REFRESH].num;
        if (r->front_proxy != NULL) {
            (void)conf_peer_addr(ctx, v[NK_FRONT_PROXY].s, "front_proxy",
                                 r->front_proxy, &r->addr, &r->addrlen,
                                 &r->host, &r->port);
        }
        r->protocol = conf_protocol(ctx, &v[NK_PROTOCOL],
                                    v[NK_TLS].s ? MG_PROTO_H2 : MG_PROTO_H2C);
        if (r->protocol == MG_PROTO_H2 && v[NK_TLS].s == NULL) {
            conf_error(ctx, v[NK_PROTOCOL].s ? v[NK_PROTOCOL].s : s,
                       "protocol \"h2\" needs tls");
        } else if (r->protocol == MG_PROTO_H2C && v[NK_TLS].s != NULL) {
            conf_error(ctx, v[NK_PROTOCOL].s, "protocol \"h2c\" is "
                       "cleartext HTTP/2; use \"h2\" with tls");
        }
        if (v[NK_TLS].s != NULL) {
            r->tls = conf_client_tls(ctx, v[NK_TLS].s, r->protocol,
                                     &r->tls_sni);
        }
        if (v[NK_HEALTH_CHECK].s != NULL) {
            r->health_check = conf_parse_health(ctx, v[NK_HEALTH_CHECK].s);
        }
    }
}

/* A cluster's out_of_zone names, until the regions are known. */
typedef struct conf_ooz_s {
    mg_cluster_conf_t *cl;
    const config_setting_t *s;
} conf_ooz_t;

static void
conf_parse_clusters(conf_ctx_t *ctx)
{
    const config_setting_t *s, *eps;
    mg_cluster_conf_t *cl;
    mg_priority_t *pr;
    conf_val_t v[CK_N];
    const char *lb, *proto;
    unsigned i, j, n;

    n = ctx->cluster_s.n;
    ctx->snap->clusters = conf_alloc(ctx->pool,
                                     (n ? n : 1) * sizeof(mg_cluster_conf_t));

    for (i = 0; i < n; i++) {
        s = ctx->cluster_s.items[i];
        cl = &ctx->snap->clusters[ctx->snap->nclusters];
        conf_group(ctx, s, "cluster", conf_cluster_keys, CK_N, v);
        if (!config_setting_is_group(s)) {
            continue;
        }
        ctx->snap->nclusters++;
        cl->name = v[CK_NAME].str;   /* NULL after an error */
        cl->file = conf_file(ctx, s);
        cl->line = conf_line(s);
        lb = v[CK_LB].str;
        if (strcmp(lb, "round_robin") == 0) {
            cl->lb = MG_LB_ROUND_ROBIN;
        } else if (strcmp(lb, "weighted_round_robin") == 0) {
            cl->lb = MG_LB_WEIGHTED_ROUND_ROBIN;
        } else if (strcmp(lb, "least_request") == 0) {
            cl->lb = MG_LB_LEAST_REQUEST;
        } else {
            conf_error(ctx, v[CK_LB].s,
                       "key \"lb\" must be one of round_robin, "
                       "weighted_round_robin, least_request");
        }
        cl->connect_timeout = v[CK_CONNECT_TIMEOUT].num;
        cl->response_timeout = v[CK_RESPONSE_TIMEOUT].num;
        cl->idle_timeout = v[CK_IDLE_TIMEOUT].num;
        cl->max_idle = (unsigned)v[CK_MAX_IDLE].i;
        cl->keepalive_interval = v[CK_KEEPALIVE_INTERVAL].num;
        cl->keepalive_timeout = v[CK_KEEPALIVE_TIMEOUT].num;
        cl->dns_refresh = v[CK_DNS_REFRESH].num;
        if (v[CK_HEALTH_CHECK].s != NULL) {
            cl->health_check = conf_parse_health(ctx, v[CK_HEALTH_CHECK].s);
        }
        if (v[CK_RETRY].s != NULL) {
            conf_parse_retry(ctx, v[CK_RETRY].s, &cl->retry);
        } else {
            conf_retry_defaults(&cl->retry);
        }
        {
            conf_val_t b[BK_N];

            if (v[CK_BREAKERS].s != NULL) {
                conf_group(ctx, v[CK_BREAKERS].s, "circuit_breakers",
                           conf_breaker_keys, BK_N, b);
            } else {
                conf_defaults(conf_breaker_keys, BK_N, b);
            }
            cl->breakers.max_connections = (unsigned)b[BK_CONNECTIONS].i;
            cl->breakers.max_pending = (unsigned)b[BK_PENDING].i;
            cl->breakers.max_requests = (unsigned)b[BK_REQUESTS].i;
            cl->breakers.max_retries = (unsigned)b[BK_RETRIES].i;
        }
        if (v[CK_OUTLIER].s != NULL) {
            conf_val_t o[OK_N];
            mg_outlier_conf_t *oc = conf_alloc(ctx->pool, sizeof(*oc));

            conf_group(ctx, v[CK_OUTLIER].s, "outlier", conf_outlier_keys,
                       OK_N, o);
            oc->consecutive_5xx = (unsigned)o[OK_5XX].i;
            oc->consecutive_gateway = (unsigned)o[OK_GATEWAY].i;
            oc->base_ejection_time = o[OK_BASE].num;
            oc->max_ejection_time = o[OK_MAX].num;
            oc->max_ejection_percent = (unsigned)o[OK_PERCENT].i;
            if (oc->max_ejection_time < oc->base_ejection_time) {
                conf_error(ctx, o[OK_MAX].s ? o[OK_MAX].s : v[CK_OUTLIER].s,
                           "outlier max_ejection_time must be at least "
                           "base_ejection_time");
            }
            cl->outlier = oc;
        }
        if (v[CK_OUT_OF_ZONE].s != NULL) {
            conf_ooz_t *o = conf_alloc(ctx->tmp, sizeof(*o));

            o->cl = cl;
            o->s = v[CK_OUT_OF_ZONE].s;
            conf_vec_push(ctx, &ctx->ooz, o);
        }

        proto = v[CK_PROTOCOL].str;
        cl->protocol = MG_PROTO_HTTP1;
        if (strcmp(proto, "h2") == 0) {
            cl->protocol = MG_PROTO_H2;
            if (v[CK_TLS].s == NULL) {
                conf_error(ctx, v[CK_PROTOCOL].s,
                           "protocol \"h2\" needs tls (use \"h2c\" for "
                           "cleartext HTTP/2)");
            }
        } else if (strcmp(proto, "h2c") == 0) {
            cl->protocol = MG_PROTO_H2C;
            if (v[CK_TLS].s != NULL) {
                conf_error(ctx, v[CK_PROTOCOL].s,
                           "protocol \"h2c\" is cleartext HTTP/2; use "
                           "\"h2\" with tls");
            }
        } else if (strcmp(proto, "http/1.1") != 0) {
            conf_error(ctx, v[CK_PROTOCOL].s,
                       "key \"protocol\" must be one of \"http/1.1\", "
                       "\"h2\", \"h2c\"");
        }
        if (v[CK_TLS].s != NULL) {
            cl->tls = conf_client_tls(ctx, v[CK_TLS].s, cl->protocol,
                                      &cl->tls_sni);
        }

        eps = v[CK_ENDPOINTS].s;
        if (strcmp(v[CK_DISCOVERY].str, "eds") == 0) {
            /* Endpoints come from the xds server, into slots at the
             * local levels (conf_build_clusters). */
            cl->eds_name = v[CK_EDS_NAME].str ? v[CK_EDS_NAME].str
                                              : cl->name ? cl->name : "";
            cl->max_endpoints = (unsigned)v[CK_MAX_ENDPOINTS].i;
            cl->priorities = conf_alloc(ctx->pool,
                                        MG_EDS_LEVELS * sizeof(mg_priority_t));
            cl->npriorities = MG_EDS_LEVELS;
            if (eps != NULL) {
                conf_error(ctx, eps, "cluster \"%s\": discovery = \"eds\" "
                           "takes its endpoints from the xds server: no "
                           "endpoints list", cl->name ? cl->name : "");
            }
            if (cl->health_check != NULL) {
                conf_error(ctx, v[CK_HEALTH_CHECK].s, "cluster \"%s\": "
                           "health_check is not supported with discovery = "
                           "\"eds\" (the server's health status is used)",
                           cl->name ? cl->name : "");
            }
            if (cl->eds_name[0] == '\0' || strlen(cl->eds_name) > 180) {
                conf_error(ctx, v[CK_EDS_NAME].s ? v[CK_EDS_NAME].s : s,
                           "key \"eds_name\" must be 1 to 180 bytes");
            }
            ctx->eds_clusters++;
            ctx->eds_s = s;
            continue;
        }
        if (strcmp(v[CK_DISCOVERY].str, "static") != 0) {
            conf_error(ctx, v[CK_DISCOVERY].s, "key \"discovery\" must be "
                       "\"static\" or \"eds\"");
        } else if (v[CK_EDS_NAME].s != NULL) {
            conf_error(ctx, v[CK_EDS_NAME].s, "key \"eds_name\" needs "
                       "discovery = \"eds\"");
        }
        cl->priorities = conf_alloc(ctx->pool, sizeof(mg_priority_t));
        cl->npriorities = 1;
        pr = &cl->priorities[0];
        if (eps == NULL) {
            conf_error(ctx, s, "missing key \"endpoints\" in cluster");
            continue;
        }
        pr->nendpoints = (unsigned)config_setting_length(eps);
        if (pr->nendpoints == 0) {
            conf_error(ctx, eps, "cluster \"%s\": endpoints must not be empty",
                       cl->name ? cl->name : "(unnamed)");
            continue;
        }
        pr->endpoints = conf_alloc(ctx->pool,
                                   pr->nendpoints * sizeof(mg_endpoint_conf_t));
        for (j = 0; j < pr->nendpoints; j++) {
            conf_parse_endpoint(ctx, config_setting_get_elem(eps, j),
                                &pr->endpoints[j]);
        }
    }
}

/* 2. Validate ------------------------------------------------------------- */

static const mg_cluster_conf_t *
conf_find_cluster(const mg_snapshot_t *snap, const char *name)
{
    unsigned i;

    for (i = 0; i < snap->nclusters; i++) {
        if (snap->clusters[i].name != NULL
            && strcmp(snap->clusters[i].name, name) == 0)
        {
            return &snap->clusters[i];
        }
    }
    return NULL;
}

static int
conf_table_defined(conf_ctx_t *ctx, const char *name)
{
    unsigned i;

    for (i = 0; i < ctx->table_s.n; i++) {
        if (strcmp(config_setting_name(
                       (const config_setting_t *)ctx->table_s.items[i]),
                   name)
            == 0)
        {
            return 1;
        }
    }
    return 0;
}

static void
conf_validate_listeners(conf_ctx_t *ctx)
{
    conf_listener_t *a, *b;
    const config_setting_t *as = NULL;
    struct sockaddr_storage admin_addr;
    socklen_t admin_len;
    unsigned i, j;
    int admin_ok = 0;

    if (ctx->admin_listen_s != NULL) {
        as = ctx->admin_listen_s;
        if (conf_listen_addr(ctx, as, ctx->admin_listen, &admin_addr,
                             &admin_len)
            == MG_OK)
        {
            admin_ok = 1;
            if (!ctx->admin_allow_remote
                && !conf_addr_is_loopback(&admin_addr))
            {
                conf_error(ctx, as,
                           "admin listen address %s is not loopback; set "
                           "admin.allow_remote = true to allow it",
                           ctx->admin_listen);
            }
        }
    }

    for (i = 0; i < ctx->listeners.n; i++) {
        a = ctx->listeners.items[i];
        /* A missing or mistyped value was reported already. */
        if (a->l->name == NULL) {
            a->l->name = "(unnamed)";
        } else if (!conf_name_ok(a->l->name)) {
            conf_error(ctx, a->name_s,
                       "listener name \"%s\" may only contain letters, "
                       "digits, '_', '.' and '-'", a->l->name);
        } else if (strcmp(a->l->name, "admin") == 0) {
            conf_error(ctx, a->name_s,
                       "listener name \"admin\" is reserved for the admin "
                       "listener");
        }
        for (j = 0; j < i; j++) {
            b = ctx->listeners.items[j];
            if (a->name_s != NULL && b->name_s != NULL
                && strcmp(a->l->name, b->l->name) == 0)
            {
                conf_error(ctx, a->name_s,
                           "duplicate listener name \"%s\", first defined at "
                           "%s:%d", a->l->name, b->l->file, b->l->line);
                break;
            }
        }

        if (a->l->listen != NULL
            && conf_listen_addr(ctx, a->listen_s, a->l->listen, &a->l->addr,
                                &a->l->addrlen)
                   == MG_OK)
        {
            for (j = 0; j < i; j++) {
                b = ctx->listeners.items[j];
                if (b->l->addrlen && conf_addr_eq(&a->l->addr, &b->l->addr)) {
                    conf_error(ctx, a->listen_s,
                               "listener \"%s\": address %s is already used "
                               "by listener \"%s\" at %s:%d", a->l->name,
                               a->l->listen, b->l->name, b->l->file,
                               b->l->line);
                    break;
                }
            }
            if (admin_ok && conf_addr_eq(&a->l->addr, &admin_addr)) {
                conf_error(ctx, a->listen_s,
                           "listener \"%s\": address %s is already used by "
                           "the admin listener at %s:%d", a->l->name,
                           a->l->listen, conf_file(ctx, as), conf_line(as));
            }
        } else {
            a->l->addrlen = 0;
        }

        if (a->table != NULL && !conf_table_defined(ctx, a->table)) {
            conf_error(ctx, a->routes_s,
                       "listener %s: route table %s is not defined",
                       a->l->name, a->table);
        }
    }
}

/* Two endpoints at the same place: the same address, or the same host
 * name (case does not matter in DNS) and port. */
static int
conf_endpoint_eq(const mg_endpoint_conf_t *a, const mg_endpoint_conf_t *b)
{
    if (a->host != NULL || b->host != NULL) {
        return a->host != NULL && b->host != NULL && a->port == b->port
               && strcasecmp(a->host, b->host) == 0;
    }
    return b->addrlen != 0 && conf_addr_eq(&a->addr, &b->addr);
}

static void
conf_validate_clusters(conf_ctx_t *ctx)
{
    mg_snapshot_t *snap = ctx->snap;
    mg_cluster_conf_t *a, *b;
    mg_priority_t *pr;
    unsigned i, j, k;

    for (i = 0; i < snap->nclusters; i++) {
        a = &snap->clusters[i];
        if (a->name == NULL) {
            continue;   /* reported already */
        }
        if (!conf_name_ok(a->name)) {
            conf_error_at(ctx, a->file, a->line,
                          "cluster name \"%s\" may only contain letters, "
                          "digits, '_', '.' and '-'", a->name);
        }
        for (j = 0; j < i; j++) {
            b = &snap->clusters[j];
            if (b->name != NULL && strcmp(a->name, b->name) == 0) {
                conf_error_at(ctx, a->file, a->line,
                              "duplicate cluster name \"%s\", first defined "
                              "at %s:%d", a->name, b->file, b->line);
                break;
            }
        }
        pr = &a->priorities[0];
        for (j = 0; j < pr->nendpoints; j++) {
            if (pr->endpoints[j].addrlen == 0
                && pr->endpoints[j].host == NULL) {
                continue;
            }
            for (k = 0; k < j; k++) {
                if (conf_endpoint_eq(&pr->endpoints[j], &pr->endpoints[k]))
                {
                    conf_error_at(ctx, a->file, a->line,
                                  "cluster \"%s\": endpoint %s is listed "
                                  "twice", a->name,
                                  pr->endpoints[j].address);
                    break;
                }
            }
        }
    }
}


static const mg_region_conf_t *
conf_find_region(const mg_snapshot_t *snap, const char *name)
{
    unsigned i;

    for (i = 0; i < snap->nregions; i++) {
        if (snap->regions[i].name != NULL
            && strcmp(snap->regions[i].name, name) == 0) {
            return &snap->regions[i];
        }
    }
    return NULL;
}

/* Region names, and each cluster's out_of_zone: one priority level per
 * region, in the order given, after the local endpoints. */
static void
conf_validate_regions(conf_ctx_t *ctx)
{
    mg_snapshot_t *snap = ctx->snap;
    const mg_region_conf_t *r, *found;
    mg_priority_t *levels;
    conf_ooz_t *o;
    const config_setting_t *e;
    const char *name;
    unsigned i, j, n, local;

    for (i = 0; i < snap->nregions; i++) {
        r = &snap->regions[i];
        if (r->name == NULL) {
            continue;
        }
        if (strcmp(r->name, snap->gateway.region) == 0) {
            conf_error_at(ctx, r->file, r->line, "region \"%s\" is this "
                          "gateway's own region (gateway.region)", r->name);
        }
        for (j = 0; j < i; j++) {
            if (snap->regions[j].name != NULL
                && strcmp(snap->regions[j].name, r->name) == 0) {
                conf_error_at(ctx, r->file, r->line, "duplicate region "
                              "\"%s\", first defined at %s:%d", r->name,
                              snap->regions[j].file, snap->regions[j].line);
                break;
            }
        }
    }
    for (i = 0; i < ctx->ooz.n; i++) {
        o = ctx->ooz.items[i];
        n = (unsigned)config_setting_length(o->s);
        local = o->cl->npriorities;
        levels = conf_alloc(ctx->pool, (n + local) * sizeof(*levels));
        memcpy(levels, o->cl->priorities, local * sizeof(*levels));
        o->cl->priorities = levels;
        for (j = 0; j < n; j++) {
            e = config_setting_get_elem(o->s, j);
            name = config_setting_get_string(e);
            found = conf_find_region(snap, name);
            if (found == NULL) {
                conf_error(ctx, e, "cluster \"%s\": out_of_zone region "
                           "\"%s\" is not defined in regions",
                           o->cl->name ? o->cl->name : "(unnamed)", name);
                continue;
            }
            levels[o->cl->npriorities].region = found;
            o->cl->npriorities++;
        }
        for (j = local; j < o->cl->npriorities; j++) {
            unsigned k;

            for (k = local; k < j; k++) {
                if (levels[k].region == levels[j].region) {
                    conf_error(ctx, o->s, "cluster \"%s\": region \"%s\" is "
                               "listed twice in out_of_zone",
                               o->cl->name ? o->cl->name : "(unnamed)",
                               levels[j].region->name);
                }
            }
        }
    }
}

static void
conf_validate_routes(conf_ctx_t *ctx)
{
    conf_route_t *cr;
    unsigned i;

    for (i = 0; i < ctx->routes.n; i++) {
        cr = ctx->routes.items[i];
        if (cr->cluster == NULL) {
            continue;
        }
        cr->r->cluster = conf_find_cluster(ctx->snap, cr->cluster);
        if (cr->r->cluster == NULL) {
            conf_error(ctx, cr->cluster_s,
                       "route in table \"%s\": cluster %s is not defined",
                       cr->table, cr->cluster);
        }
    }
}

/* 3. Build ---------------------------------------------------------------- */

/* Lists the routes of table |t| in order and names those without a name,
 * for metrics: the first domain and the path, with "#n" when another
 * route of the table has that name already. Set names must be unique. */
static void
conf_name_routes(conf_ctx_t *ctx, mg_route_table_t *t,
                 const mg_router_entry_t *entries, unsigned n)
{
    const mg_route_t **all;
    mg_route_t *r;
    conf_route_t *cr;
    unsigned i, j, k;
    const char *domain;
    char *name;
    size_t len;

    all = conf_alloc(ctx->pool, (n + 1) * sizeof(mg_route_t *));
    for (i = 0; i < n; i++) {
        r = (mg_route_t *)entries[i].route;
        r->index = i;
        all[i] = r;
        if (r->name != NULL) {
            for (j = 0; j < i; j++) {
                if (all[j]->name != NULL && strcmp(all[j]->name, r->name) == 0) {
                    for (k = 0; k < ctx->routes.n; k++) {
                        cr = ctx->routes.items[k];
                        if (cr->r == r) {
                            conf_error(ctx, cr->name_s, "route name \"%s\" "
                                       "is used twice in table \"%s\"",
                                       r->name, t->name);
                        }
                    }
                    break;
                }
            }
        }
    }
    for (i = 0; i < n; i++) {
        r = (mg_route_t *)all[i];
        if (r->name != NULL) {
            continue;
        }
        /* "*" says nothing: such routes go by their path alone. */
        domain = strcmp(entries[i].domains[0], "*") == 0
                     ? "" : entries[i].domains[0];
        len = strlen(domain) + r->path.len + 16;
        name = conf_alloc(ctx->pool, len);
        snprintf(name, len, "%s%.*s", domain, (int)r->path.len, r->path.data);
        for (j = 0; j < n; j++) {
            if (j != i && all[j]->name != NULL
                && strcmp(all[j]->name, name) == 0) {
                snprintf(name, len, "%s%.*s#%u", domain, (int)r->path.len,
                         r->path.data, i + 1);
                break;
            }
        }
        r->name = name;
    }
    t->all = all;
    t->nroutes = n;
}

static void
conf_build_tables(conf_ctx_t *ctx)
{
    mg_snapshot_t *snap = ctx->snap;
    mg_router_entry_t *entries;
    mg_route_table_t *t;
    conf_route_t *cr;
    const char *name;
    unsigned i, j, k, n;

    snap->route_tables = conf_alloc(ctx->pool, (ctx->table_s.n + 1)
                                                   * sizeof(mg_route_table_t *));
    entries = conf_alloc(ctx->tmp, (ctx->routes.n + 1)
                                       * sizeof(mg_router_entry_t));

    /* Tables of one name from several files merge, in reading order. */
    for (i = 0; i < ctx->table_s.n; i++) {
        name = config_setting_name(
            (const config_setting_t *)ctx->table_s.items[i]);
        for (j = 0; j < snap->nroute_tables; j++) {
            if (strcmp(snap->route_tables[j]->name, name) == 0) {
                break;
            }
        }
        if (j < snap->nroute_tables) {
            continue;
        }
        n = 0;
        for (k = 0; k < ctx->routes.n; k++) {
            cr = ctx->routes.items[k];
            if (strcmp(cr->table, name) == 0) {
                entries[n].route = cr->r;
                entries[n].domains = cr->domains;
                entries[n].ndomains = cr->ndomains;
                n++;
            }
        }
        t = mg_router_build(ctx->pool, name, entries, n);
        if (t == NULL) {
            conf_out_of_memory();
        }
        conf_name_routes(ctx, t, entries, n);
        snap->route_tables[snap->nroute_tables++] = t;
    }
}

static void
conf_build_listeners(conf_ctx_t *ctx)
{
    mg_snapshot_t *snap = ctx->snap;
    mg_listener_conf_t *l;
    conf_listener_t *cl;
    unsigned i, j;

    for (i = 0; i < ctx->listeners.n; i++) {
        cl = ctx->listeners.items[i];
        for (j = 0; j < snap->nroute_tables; j++) {
            if (strcmp(snap->route_tables[j]->name, cl->table) == 0) {
                cl->l->routes = snap->route_tables[j];
            }
        }
    }

    if (ctx->admin != NULL) {
        l = &snap->listeners[snap->nlisteners++];
        l->name = "admin";
        l->admin = 1;
        l->listen = ctx->admin_listen;
        mg_conf_parse_addr(l->listen, &l->addr, &l->addrlen);
        l->backlog = (int)conf_listener_keys[LK_BACKLOG].dnum;
        l->limits.max_request_line =
            (size_t)conf_listener_keys[LK_MAX_REQUEST_LINE].dnum;
        l->limits.max_header_size =
            (size_t)conf_listener_keys[LK_MAX_HEADER_SIZE].dnum;
        l->limits.max_headers =
            (unsigned)conf_listener_keys[LK_MAX_HEADERS].dnum;
        l->request_header_timeout =
            conf_listener_keys[LK_REQUEST_HEADER_TIMEOUT].dnum;
        l->idle_timeout = conf_listener_keys[LK_IDLE_TIMEOUT].dnum;
        l->send_timeout = conf_listener_keys[LK_SEND_TIMEOUT].dnum;
        l->file = conf_file(ctx, ctx->admin);
        l->line = conf_line(ctx->admin);
    }

    for (i = 0; i < snap->nlisteners; i++) {
        snap->listeners[i].index = i;
    }
}

static void
conf_build_clusters(conf_ctx_t *ctx)
{
    mg_snapshot_t *snap = ctx->snap;
    mg_cluster_conf_t *cl;
    mg_priority_t *pr;
    mg_endpoint_conf_t *ep;
    const mg_region_conf_t *r;
    unsigned i, p, j;

    for (i = 0; i < snap->nclusters; i++) {
        cl = &snap->clusters[i];
        cl->index = i;
        for (p = 0; p < cl->npriorities; p++) {
            pr = &cl->priorities[p];
            r = pr->region;
            if (r != NULL) {
                /* The level of a region: its front proxy alone. */
                pr->endpoints = conf_alloc(ctx->pool, sizeof(*ep));
                pr->nendpoints = 1;
                ep = &pr->endpoints[0];
                ep->address = r->front_proxy;
                ep->addr = r->addr;
                ep->addrlen = r->addrlen;
                ep->host = r->host;
                ep->port = r->port;
                ep->dns_refresh = r->dns_refresh;
                ep->weight = 1;
                ep->zone = "";
                ep->region = r;
            }
            pr->total_weight = 0;
            if (cl->eds_name != NULL && p < MG_EDS_LEVELS) {
                continue;   /* the slots below */
            }
            for (j = 0; j < pr->nendpoints; j++) {
                ep = &pr->endpoints[j];
                ep->index = snap->nendpoints++;
                ep->cluster = cl;
                ep->priority = p;
                ep->pos = cl->nendpoints++;
                ep->dns_slot = MG_DNS_NO_SLOT;
                if (r != NULL) {
                    ep->protocol = r->protocol;
                    ep->tls = r->tls;
                    ep->tls_sni = r->tls_sni;
                    ep->health_check = r->health_check;
                } else {
                    ep->protocol = cl->protocol;
                    ep->tls = cl->tls;
                    ep->tls_sni = cl->tls_sni;
                    ep->health_check = cl->health_check;
                    ep->dns_refresh = cl->dns_refresh;
                }
                pr->total_weight += ep->weight;
            }
        }
    }
    for (i = 0; i < snap->nclusters; i++) {
        cl = &snap->clusters[i];
        for (p = 0; p < cl->npriorities; p++) {
            pr = &cl->priorities[p];
            if (cl->eds_name != NULL && p < MG_EDS_LEVELS) {
                /* Filled by each worker from the assignment (mg_eds). */
                pr->eps = conf_alloc(ctx->pool, (cl->max_endpoints + 1)
                                                * sizeof(mg_endpoint_conf_t *));
                continue;
            }
            pr->eps = conf_alloc(ctx->pool, (pr->nendpoints + 1)
                                                * sizeof(mg_endpoint_conf_t *));
            for (j = 0; j < pr->nendpoints; j++) {
                pr->eps[j] = &pr->endpoints[j];
            }
        }
        if (cl->eds_name == NULL) {
            continue;
        }
        /* Discovery slots: endpoints in every way but their address,
         * which the assignment gives; none is in a level yet. */
        cl->eds_slots = conf_alloc(ctx->pool, cl->max_endpoints
                                              * sizeof(mg_endpoint_conf_t));
        cl->eds_entry = (unsigned)-1;
        for (j = 0; j < cl->max_endpoints; j++) {
            ep = &cl->eds_slots[j];
            ep->eds_text = conf_alloc(ctx->pool, MG_EDS_TEXT_LEN);
            snprintf(ep->eds_text, MG_EDS_TEXT_LEN, "%s#%u", cl->eds_name,
                     j);
            ep->address = ep->eds_text;
            ep->eds_zone = conf_alloc(ctx->pool, MG_EDS_TEXT_LEN);
            ep->zone = ep->eds_zone;
            ep->eds_gone = 1;
            ep->weight = 1;
            ep->index = snap->nendpoints++;
            ep->cluster = cl;
            ep->priority = 0;
            ep->pos = cl->nendpoints++;
            ep->dns_slot = MG_DNS_NO_SLOT;
            ep->protocol = cl->protocol;
            ep->tls = cl->tls;
            ep->tls_sni = cl->tls_sni;
        }
    }
    /* Local endpoints have a pool each; every cluster reaches a region
     * through the one pool of that region. */
    for (i = 0; i < snap->nregions; i++) {
        snap->regions[i].pool = snap->nendpoints + i;
    }
    snap->npools = snap->nendpoints + snap->nregions;
    for (i = 0; i < snap->nclusters; i++) {
        cl = &snap->clusters[i];
        for (p = 0; p < cl->npriorities; p++) {
            pr = &cl->priorities[p];
            for (j = 0; j < pr->nendpoints; j++) {
                ep = pr->eps[j];
                ep->pool = ep->region ? ep->region->pool : ep->index;
            }
        }
        for (j = 0; cl->eds_name != NULL && j < cl->max_endpoints; j++) {
            cl->eds_slots[j].pool = cl->eds_slots[j].index;
        }
    }
}

static char *
conf_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t len;
    char *dir;

    if (slash == NULL) {
        return mg_xstrdup(".");
    }
    len = slash == path ? 1 : (size_t)(slash - path);
    dir = mg_xalloc(len + 1);
    memcpy(dir, path, len);
    dir[len] = '\0';
    return dir;
}

mg_snapshot_t *
mg_conf_load(const char *path, mg_conf_errors_t *errs)
{
    conf_ctx_t ctx;
    mg_snapshot_t *snap;
    mg_pool_t *pool;
    char *dir;
    unsigned i;

    memset(&ctx, 0, sizeof(ctx));
    pool = mg_pool_create(CONF_POOL_SIZE);
    ctx.tmp = mg_pool_create(CONF_POOL_SIZE);
    if (pool == NULL || ctx.tmp == NULL) {
        conf_out_of_memory();
    }
    snap = conf_alloc(pool, sizeof(mg_snapshot_t));
    snap->pool = pool;
    snap->conf_file = conf_strdup(pool, path);

    ctx.errs = errs;
    ctx.pool = pool;
    ctx.snap = snap;
    ctx.main_file = snap->conf_file;
    dir = conf_dirname(path);
    ctx.dir = conf_strdup(ctx.tmp, dir);
    free(dir);

    if (conf_read_files(&ctx) == MG_OK) {
        conf_sections(&ctx);
        conf_parse_gateway(&ctx);
        conf_parse_admin(&ctx);
        conf_parse_tracing(&ctx);
        conf_parse_regions(&ctx);
        conf_parse_clusters(&ctx);
        conf_parse_xds(&ctx);
        conf_parse_routes(&ctx);
        conf_parse_listeners(&ctx);

        conf_validate_clusters(&ctx);
        conf_validate_regions(&ctx);
        conf_validate_routes(&ctx);
        conf_validate_listeners(&ctx);

        if (errs->n == 0) {
            conf_build_clusters(&ctx);
            conf_build_tables(&ctx);
            conf_build_listeners(&ctx);
        }
    }

    for (i = 0; i < ctx.cfgs.n; i++) {
        config_destroy(ctx.cfgs.items[i]);
    }
    mg_pool_destroy(ctx.tmp);

    if (errs->n > 0) {
        mg_pool_destroy(pool);
        return NULL;
    }
    return snap;
}

void
mg_snapshot_free(mg_snapshot_t *snap)
{
    if (snap != NULL) {
        mg_pool_destroy(snap->pool);
    }
}

void
mg_conf_errors_free(mg_conf_errors_t *errs)
{
    unsigned i;

    for (i = 0; i < errs->n; i++) {
        free(errs->msgs[i]);
    }
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}
