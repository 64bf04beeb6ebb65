#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "mg_admin.h"
#include "mg_conf.h"
#include "mg_ctx.h"
#include "mg_dns.h"
#include "mg_lb.h"
#include "mg_log.h"
#include "mg_eds.h"
#include "mg_metrics.h"
#include "mg_router.h"
#include "mg_shm.h"
#include "mg_snapshot.h"

/* The body being built. Once |failed| is set every write is dropped, so a
 * page is written straight through and checked once at the end. */
typedef struct admin_out_s {
    char *p;
    size_t len;
    size_t cap;
    int failed;
} admin_out_t;

static const char admin_index[] =
    "admin endpoints:\n"
    "  /ready                     200 while the worker serves, 503 while "
    "draining\n"
    "  /server_info               version, uptime, generation, workers, "
    "region (JSON)\n"
    "  /clusters[?format=json]    endpoints with health, ejection and "
    "load\n"
    "  /config_dump               the running configuration (JSON, "
    "secrets redacted)\n"
    "  /stats                     counters, gauges and latency "
    "percentiles of every worker (text)\n"
    "  /stats/prometheus          the same in the Prometheus text "
    "format\n";

static void
admin_reserve(admin_out_t *o, size_t more)
{
    size_t cap;
    char *p;

    if (o->failed) {
        return;
    }
    if (more > MG_ADMIN_BODY_MAX - o->len) {
        o->failed = 1;
        return;
    }
    if (o->len + more <= o->cap) {
        return;
    }
    cap = o->cap ? o->cap : 4096;
    while (cap < o->len + more) {
        cap *= 2;
    }
    cap = mg_min(cap, (size_t)MG_ADMIN_BODY_MAX);
    p = realloc(o->p, cap);
    if (p == NULL) {
        o->failed = 1;
        return;
    }
    o->p = p;
    o->cap = cap;
}

static void
admin_raw(admin_out_t *o, const char *s, size_t n)
{
    if (n == 0) {
        return;
    }
    admin_reserve(o, n);
    if (!o->failed) {
        memcpy(o->p + o->len, s, n);
        o->len += n;
    }
}

static void
admin_puts(admin_out_t *o, const char *s)
{
    admin_raw(o, s, strlen(s));
}

static void MG_PRINTF(2, 3)
admin_printf(admin_out_t *o, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = 1;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        admin_raw(o, small, (size_t)n);
        return;
    }
    admin_reserve(o, (size_t)n + 1);
    if (o->failed) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(o->p + o->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

/* The length of the valid UTF-8 sequence at |s| (|n| bytes left), or 0.
 * Overlong forms and surrogates are refused, so the output stays valid
 * JSON whatever bytes a configuration string holds. */
static size_t
admin_utf8_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    uint32_t cp;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
        return 0;
    }
    return len;
}

/* Writes |n| bytes of |s| escaped for a JSON string, without quotes.
 * Invalid UTF-8 becomes U+FFFD. */
static void
admin_json_esc(admin_out_t *o, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i, k;
    char esc[8];

    for (i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)p[i];
            admin_raw(o, esc, 2);
        } else if (p[i] == '\n') {
            admin_raw(o, "\\n", 2);
        } else if (p[i] == '\r') {
            admin_raw(o, "\\r", 2);
        } else if (p[i] == '\t') {
            admin_raw(o, "\\t", 2);
        } else if (p[i] < 0x20 || p[i] == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
            admin_raw(o, esc, 6);
        } else if (p[i] < 0x80) {
            admin_raw(o, (const char *)p + i, 1);
        } else {
            k = admin_utf8_len(p + i, n - i);
            if (k == 0) {
                admin_raw(o, "\\ufffd", 6);
            } else {
                admin_raw(o, (const char *)p + i, k);
                i += k - 1;
            }
        }
    }
}

/* Writes |n| bytes of |s| as a JSON string, quotes included; NULL is
 * written as null. */
static void
admin_json_strn(admin_out_t *o, const char *s, size_t n)
{
    if (s == NULL) {
        admin_puts(o, "null");
        return;
    }
    admin_raw(o, "\"", 1);
    admin_json_esc(o, s, n);
    admin_raw(o, "\"", 1);
}

static void
admin_json_str(admin_out_t *o, const char *s)
{
    admin_json_strn(o, s, s ? strlen(s) : 0);
}

/* "key": with the comma that separates it from the previous member. */
static void
admin_key(admin_out_t *o, int *first, const char *key)
{
    if (!*first) {
        admin_raw(o, ",", 1);
    }
    *first = 0;
    admin_json_str(o, key);
    admin_raw(o, ":", 1);
}

static void
admin_kv_str(admin_out_t *o, int *first, const char *key, const char *v)
{
    admin_key(o, first, key);
    admin_json_str(o, v);
}

static void
admin_kv_uint(admin_out_t *o, int *first, const char *key, uint64_t v)
{
    admin_key(o, first, key);
    admin_printf(o, "%llu", (unsigned long long)v);
}

static void
admin_kv_num(admin_out_t *o, int *first, const char *key, double v)
{
    admin_key(o, first, key);
    admin_printf(o, "%.6g", v);
}

static void
admin_kv_bool(admin_out_t *o, int *first, const char *key, int v)
{
    admin_key(o, first, key);
    admin_puts(o, v ? "true" : "false");
}

/* ------------------------------------------------------------------ */
/* Names of configuration values                                       */

static const char *
admin_proto_name(unsigned proto)
{
    switch (proto) {
    case MG_PROTO_HTTP1: return "http/1.1";
    case MG_PROTO_H2: return "h2";
    case MG_PROTO_H2C: return "h2c";
    default: return "unknown";
    }
}

static const char *
admin_lb_name(unsigned lb)
{
    switch (lb) {
    case MG_LB_ROUND_ROBIN: return "round_robin";
    case MG_LB_WEIGHTED_ROUND_ROBIN: return "weighted_round_robin";
    case MG_LB_LEAST_REQUEST: return "least_request";
    default: return "unknown";
    }
}

static const char *
admin_verify_name(unsigned v)
{
    switch (v) {
    case MG_TLS_VERIFY_OPTIONAL: return "optional";
    case MG_TLS_VERIFY_REQUIRED: return "required";
    default: return "off";
    }
}

/* The region an endpoint belongs to, for output. */
static const char *
admin_ep_region(const mg_endpoint_conf_t *ep)
{
    return ep->region != NULL ? ep->region->name : "local";
}

/* Health from shared memory: "unchecked" when no check runs. */
static const char *
admin_ep_health(const mg_endpoint_conf_t *ep)
{
    static const char *const eds[] = {
        "unknown", "healthy", "unhealthy", "draining", "timeout", "degraded",
        "unknown", "unknown"
    };
    uint32_t h;

    if (ep->eds_text != NULL) {
        return eds[ep->eds_health];   /* as the xds server says */
    }
    if (ep->health_check == NULL || ep->health_slot >= MG_SHM_SLOTS) {
        return "unchecked";
    }
    if (mg_shm == NULL) {
        return "unknown";
    }
    h = atomic_load_explicit(&mg_shm->slots[ep->health_slot].health,
                             memory_order_relaxed);
    switch (h) {
    case MG_HEALTH_HEALTHY: return "healthy";
    case MG_HEALTH_UNHEALTHY: return "unhealthy";
    default: return "unknown";
    }
}

/* The status set of a bitmap (see mg_health_check_conf_t.statuses) as
 * JSON strings of ranges, "200-399", so the default is one entry. */
static void
admin_json_statuses(admin_out_t *o, const uint64_t *bits)
{
    unsigned s, from, nout = 0;

    admin_raw(o, "[", 1);
    for (s = 0; s < 640; s++) {
        if (!(bits[s / 64] & (UINT64_C(1) << (s % 64)))) {
            continue;
        }
        from = s;
        while (s + 1 < 640
               && (bits[(s + 1) / 64] & (UINT64_C(1) << ((s + 1) % 64)))) {
            s++;
        }
        admin_printf(o, nout++ ? ",\"%u" : "\"%u", from);
        if (s != from) {
            admin_printf(o, "-%u", s);
        }
        admin_raw(o, "\"", 1);
    }
    admin_raw(o, "]", 1);
}

/* ------------------------------------------------------------------ */
/* /server_info                                                        */

static void
admin_server_info(mg_ctx_t *ctx, admin_out_t *o)
{
    const mg_snapshot_t *snap = ctx->snap;
    int f = 1;

    admin_raw(o, "{", 1);
    admin_kv_str(o, &f, "version", PACKAGE_VERSION);
    admin_key(o, &f, "uptime_seconds");
    admin_printf(o, "%.0f", ev_now(ctx->loop) - ctx->master_start);
    admin_kv_uint(o, &f, "generation", ctx->generation);
    admin_kv_uint(o, &f, "workers", snap->gateway.workers);
    admin_kv_str(o, &f, "region", snap->gateway.region);
    admin_kv_str(o, &f, "zone", snap->gateway.zone);
    admin_kv_uint(o, &f, "worker", ctx->slot);
    admin_kv_uint(o, &f, "worker_pid", (uint64_t)ctx->pid);
    admin_kv_str(o, &f, "state", ctx->draining ? "draining" : "live");
    admin_kv_str(o, &f, "config_file", snap->conf_file);
    admin_puts(o, "}\n");
}

/* ------------------------------------------------------------------ */
/* /clusters                                                           */

/* Seconds |ep| stays ejected in this worker, 0 when it is not. */
static double
admin_ejected_for(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep)
{
    double left = ctx->ejected_until[ep->index] - ev_now(ctx->loop);

    return left > 0 ? left : 0;
}

/* The addresses a host name resolves to now, comma separated. */
static void
admin_resolved_text(const mg_endpoint_conf_t *ep, admin_out_t *o)
{
    mg_dns_ip_t ips[MG_DNS_ADDRS];
    char text[MG_DNS_PEER_LEN];
    unsigned i, n;

    n = mg_dns_read(ep->dns_slot, ips);
    if (n == 0) {
        admin_raw(o, "-", 1);
        return;
    }
    for (i = 0; i < n; i++) {
        mg_dns_ip_text(&ips[i], ep->port, text, sizeof(text));
        if (i > 0) {
            admin_raw(o, ",", 1);
        }
        admin_puts(o, text);
    }
}

static void
admin_resolved_json(const mg_endpoint_conf_t *ep, admin_out_t *o)
{
    mg_dns_ip_t ips[MG_DNS_ADDRS];
    char text[MG_DNS_PEER_LEN];
    unsigned i, n;

    n = mg_dns_read(ep->dns_slot, ips);
    admin_raw(o, "[", 1);
    for (i = 0; i < n; i++) {
        mg_dns_ip_text(&ips[i], ep->port, text, sizeof(text));
        if (i > 0) {
            admin_raw(o, ",", 1);
        }
        admin_json_str(o, text);
    }
    admin_raw(o, "]", 1);
}

static void
admin_clusters_text(mg_ctx_t *ctx, admin_out_t *o)
{
    const mg_snapshot_t *snap = ctx->snap;
    const mg_cluster_conf_t *cl;
    const mg_endpoint_conf_t *ep;
    const mg_priority_t *pr;
    unsigned i, l, j;
    double ej;

    admin_printf(o, "# worker %u (pid %d), generation %lu: ejections, "
                 "active requests and connections are this worker's\n",
                 ctx->slot, (int)ctx->pid, ctx->generation);
    for (i = 0; i < snap->nclusters; i++) {
        cl = &snap->clusters[i];
        for (l = 0; l < cl->npriorities; l++) {
            pr = &cl->priorities[l];
            for (j = 0; j < pr->nendpoints; j++) {
                ep = pr->eps[j];
                ej = admin_ejected_for(ctx, ep);
                admin_puts(o, cl->name);
                admin_raw(o, "::", 2);
                admin_puts(o, ep->address);
                admin_printf(o, "::level=%u region=%s zone=%s weight=%u",
                             l, admin_ep_region(ep),
                             ep->zone[0] ? ep->zone : "-", ep->weight);
                if (ep->host != NULL) {
                    admin_puts(o, " resolved=");
                    admin_resolved_text(ep, o);
                }
                admin_printf(o, " health=%s", admin_ep_health(ep));
                if (ej > 0) {
                    admin_printf(o, " ejected=yes ejected_for=%.3f", ej);
                } else {
                    admin_puts(o, " ejected=no");
                }
                admin_printf(o, " ejections=%u active=%u connections=%u"
                             " pending=%u\n",
                             ctx->outlier[ep->index].ejections,
                             ctx->active[ep->index], ctx->conns[ep->index],
                             ctx->pending[ep->index]);
            }
        }
    }
}

/* A discovery cluster's state: what the xds server last gave. */
static void
admin_eds_json(admin_out_t *o, const mg_cluster_conf_t *cl)
{
    mg_eds_status_t st;
    int f = 1;

    admin_raw(o, "{", 1);
    admin_kv_str(o, &f, "eds_name", cl->eds_name);
    if (mg_eds_status(cl, &st) == MG_OK) {
        admin_kv_bool(o, &f, "received", st.got_first);
        admin_kv_str(o, &f, "version", st.version);
        admin_key(o, &f, "last_update");
        if (st.last_update_ms != 0) {
            admin_printf(o, "%.3f", (double)st.last_update_ms / 1000);
        } else {
            admin_puts(o, "null");
        }
        admin_key(o, &f, "nack");
        if (st.nack[0] != '\0') {
            admin_json_str(o, st.nack);
        } else {
            admin_puts(o, "null");
        }
        admin_kv_uint(o, &f, "updates", st.updates);
        admin_kv_uint(o, &f, "rejections", st.rejections);
        admin_kv_uint(o, &f, "endpoints", st.nendpoints);
    }
    admin_kv_bool(o, &f, "connected", mg_eds_connected());
    admin_raw(o, "}", 1);
}

static void
admin_clusters_json(mg_ctx_t *ctx, admin_out_t *o)
{
    const mg_snapshot_t *snap = ctx->snap;
    const mg_cluster_conf_t *cl;
    const mg_endpoint_conf_t *ep;
    const mg_priority_t *pr;
    unsigned i, l, j, nep;
    double ej;
    int f = 1, fc, fe;

    admin_raw(o, "{", 1);
    admin_key(o, &f, "worker");
    admin_printf(o, "{\"slot\":%u,\"pid\":%d}", ctx->slot, (int)ctx->pid);
    admin_kv_uint(o, &f, "generation", ctx->generation);
    admin_key(o, &f, "clusters");
    admin_raw(o, "[", 1);
    for (i = 0; i < snap->nclusters; i++) {
        cl = &snap->clusters[i];
        fc = 1;
        admin_raw(o, ",", i > 0);
        admin_raw(o, "{", 1);
        admin_kv_str(o, &fc, "name", cl->name);
        admin_kv_str(o, &fc, "lb", admin_lb_name(cl->lb));
        admin_kv_uint(o, &fc, "retrying", ctx->retrying[cl->index]);
        admin_kv_uint(o, &fc, "overflows", ctx->overflows[cl->index]);
        if (cl->eds_name != NULL) {
            admin_key(o, &fc, "eds");
            admin_eds_json(o, cl);
        }
        admin_key(o, &fc, "endpoints");
        admin_raw(o, "[", 1);
        nep = 0;
        for (l = 0; l < cl->npriorities; l++) {
            pr = &cl->priorities[l];
            for (j = 0; j < pr->nendpoints; j++) {
                ep = pr->eps[j];
                ej = admin_ejected_for(ctx, ep);
                fe = 1;
                admin_raw(o, ",", nep++ > 0);
                admin_raw(o, "{", 1);
                admin_kv_str(o, &fe, "address", ep->address);
                admin_kv_uint(o, &fe, "level", l);
                admin_kv_str(o, &fe, "region", admin_ep_region(ep));
                admin_kv_str(o, &fe, "zone", ep->zone);
                admin_kv_uint(o, &fe, "weight", ep->weight);
                if (ep->host != NULL) {
                    admin_key(o, &fe, "resolved");
                    admin_resolved_json(ep, o);
                }
                admin_kv_str(o, &fe, "health", admin_ep_health(ep));
                admin_kv_bool(o, &fe, "ejected", ej > 0);
                admin_kv_num(o, &fe, "ejected_for", ej);
                admin_kv_uint(o, &fe, "ejections",
                              ctx->outlier[ep->index].ejections);
                admin_kv_uint(o, &fe, "active", ctx->active[ep->index]);
                admin_kv_uint(o, &fe, "connections", ctx->conns[ep->index]);
                admin_kv_uint(o, &fe, "pending", ctx->pending[ep->index]);
                admin_raw(o, "}", 1);
            }
        }
        admin_puts(o, "]}");
    }
    admin_puts(o, "]}\n");
}

/* ------------------------------------------------------------------ */
/* /config_dump                                                        */

/* What a TLS context shows: the subject of its certificate, never the
 * key; the key's path is not kept in the snapshot and is redacted in any
 * case. */
static void
admin_json_tls(admin_out_t *o, void *tls, const char *sni, int server,
               unsigned verify)
{
    X509 *x = NULL;
    char subject[256];
    int f = 1;

    if (tls == NULL) {
        admin_puts(o, "null");
        return;
    }
    admin_raw(o, "{", 1);
    if (server) {
        admin_kv_str(o, &f, "verify_client", admin_verify_name(verify));
    } else {
        admin_kv_str(o, &f, "sni", sni);
        admin_kv_bool(o, &f, "verify",
                      SSL_CTX_get_verify_mode(tls) & SSL_VERIFY_PEER);
    }
    x = SSL_CTX_get0_certificate(tls);
    admin_key(o, &f, server ? "certificate" : "client_certificate");
    if (x == NULL) {
        admin_puts(o, "null");
    } else {
        X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
        admin_puts(o, "{\"subject\":");
        admin_json_str(o, subject);
        admin_puts(o, ",\"key\":\"[redacted]\"}");
    }
    admin_raw(o, "}", 1);
}

static void
admin_json_health_check(admin_out_t *o, const mg_health_check_conf_t *hc)
{
    int f = 1;

    if (hc == NULL) {
        admin_puts(o, "null");
        return;
    }
    admin_raw(o, "{", 1);
    admin_kv_str(o, &f, "type", hc->type == MG_HC_TCP ? "tcp" : "http");
    if (hc->type == MG_HC_HTTP) {
        admin_kv_str(o, &f, "path", hc->path);
        admin_kv_str(o, &f, "host", hc->host);
        admin_key(o, &f, "statuses");
        admin_json_statuses(o, hc->statuses);
    }
    admin_kv_num(o, &f, "interval", hc->interval);
    admin_kv_num(o, &f, "timeout", hc->timeout);
    admin_kv_num(o, &f, "jitter", hc->jitter);
    admin_kv_uint(o, &f, "healthy_threshold", hc->healthy_threshold);
    admin_kv_uint(o, &f, "unhealthy_threshold", hc->unhealthy_threshold);
    admin_raw(o, "}", 1);
}

static void
admin_json_route(admin_out_t *o, const mg_route_t *rt)
{
    int f = 1;

    admin_raw(o, "{", 1);
    admin_key(o, &f, rt->path_exact ? "path" : "prefix");
    admin_json_strn(o, rt->path.data, rt->path.len);
    switch (rt->action) {
    case MG_ROUTE_CLUSTER:
        admin_kv_str(o, &f, "cluster", rt->cluster->name);
        admin_kv_num(o, &f, "timeout", rt->timeout);
        break;
    case MG_ROUTE_DIRECT:
        admin_kv_uint(o, &f, "direct_status", rt->status);
        admin_key(o, &f, "content_type");
        admin_json_strn(o, rt->content_type.data, rt->content_type.len);
        admin_kv_uint(o, &f, "body_bytes", rt->body.len);
        break;
    case MG_ROUTE_REDIRECT:
        admin_key(o, &f, "redirect");
        admin_printf(o, "{\"status\":%u,\"scheme\":", rt->redirect_status);
        admin_json_strn(o, rt->redirect_scheme.data, rt->redirect_scheme.len);
        admin_puts(o, ",\"host\":");
        admin_json_strn(o, rt->redirect_host.data, rt->redirect_host.len);
        admin_puts(o, ",\"path\":");
        admin_json_strn(o, rt->redirect_path.data, rt->redirect_path.len);
        admin_raw(o, "}", 1);
        break;
    default:
        break;
    }
    admin_kv_bool(o, &f, "allow_upgrade", rt->allow_upgrade);
    admin_kv_bool(o, &f, "allow_connect", rt->allow_connect);
    admin_kv_bool(o, &f, "require_client_cert", rt->require_client_cert);
    admin_kv_bool(o, &f, "internal", rt->internal);
    admin_kv_bool(o, &f, "gzip", rt->gzip != NULL);
    admin_kv_str(o, &f, "file", rt->file);
    admin_kv_uint(o, &f, "line", (uint64_t)rt->line);
    admin_raw(o, "}", 1);
}

static void
admin_json_vhost(admin_out_t *o, int *first, const char *prefix,
                 mg_str_t domain, const mg_vhost_t *vh)
{
    unsigned i;

    if (!*first) {
        admin_raw(o, ",", 1);
    }
    *first = 0;
    admin_puts(o, "{\"domain\":\"");
    admin_puts(o, prefix);
    admin_json_esc(o, domain.data, domain.len);
    admin_raw(o, "\"", 1);
    admin_puts(o, ",\"routes\":[");
    for (i = 0; i < vh->nroutes; i++) {
        if (i > 0) {
            admin_raw(o, ",", 1);
        }
        admin_json_route(o, vh->routes[i]);
    }
    admin_puts(o, "]}");
}

static void
admin_json_route_table(admin_out_t *o, const mg_route_table_t *t)
{
    unsigned i;
    int f = 1;

    admin_puts(o, "{\"name\":");
    admin_json_str(o, t->name);
    admin_puts(o, ",\"virtual_hosts\":[");
    for (i = 0; i < t->nexact; i++) {
        admin_json_vhost(o, &f, "", t->exact[i].host, &t->exact[i].vh);
    }
    for (i = 0; i < t->nwild; i++) {
        admin_json_vhost(o, &f, "*", t->wild[i].suffix, &t->wild[i].vh);
    }
    if (t->any.nroutes > 0) {
        admin_json_vhost(o, &f, "*", mg_str_lit(""), &t->any);
    }
    admin_puts(o, "]}");
}

static void
admin_json_listener(admin_out_t *o, const mg_listener_conf_t *lc)
{
    int f = 1;

    admin_raw(o, "{", 1);
    admin_kv_str(o, &f, "name", lc->name);
    admin_kv_str(o, &f, "listen", lc->listen);
    admin_kv_str(o, &f, "routes", lc->routes ? lc->routes->name : NULL);
    admin_kv_uint(o, &f, "backlog", (uint64_t)lc->backlog);
    admin_kv_uint(o, &f, "max_request_line", lc->limits.max_request_line);
    admin_kv_uint(o, &f, "max_header_size", lc->limits.max_header_size);
    admin_kv_uint(o, &f, "max_headers", lc->limits.max_headers);
    admin_kv_uint(o, &f, "max_body_size", (uint64_t)lc->limits.max_body_size);
    admin_kv_num(o, &f, "request_header_timeout", lc->request_header_timeout);
    admin_kv_num(o, &f, "idle_timeout", lc->idle_timeout);
    admin_kv_num(o, &f, "send_timeout", lc->send_timeout);
    admin_kv_str(o, &f, "access_log", lc->access_log);
    admin_kv_bool(o, &f, "h2", lc->h2);
    admin_kv_bool(o, &f, "h2c", lc->h2c);
    admin_kv_bool(o, &f, "peering", lc->peering);
    admin_kv_bool(o, &f, "public", lc->public);
    admin_key(o, &f, "tls");
    admin_json_tls(o, lc->tls, NULL, 1, lc->tls_verify);
    admin_kv_str(o, &f, "file", lc->file);
    admin_kv_uint(o, &f, "line", (uint64_t)lc->line);
    admin_raw(o, "}", 1);
}

static void
admin_json_region(admin_out_t *o, const mg_region_conf_t *rg)
{
    int f = 1;

    admin_raw(o, "{", 1);
    admin_kv_str(o, &f, "name", rg->name);
    admin_kv_str(o, &f, "front_proxy", rg->front_proxy);
    if (rg->host != NULL) {
        admin_kv_str(o, &f, "host", rg->host);
        admin_kv_num(o, &f, "dns_refresh", rg->dns_refresh);
    }
    admin_kv_str(o, &f, "protocol", admin_proto_name(rg->protocol));
    admin_key(o, &f, "tls");
    admin_json_tls(o, rg->tls, rg->tls_sni, 0, 0);
    admin_key(o, &f, "health_check");
    admin_json_health_check(o, rg->health_check);
    admin_kv_str(o, &f, "file", rg->file);
    admin_kv_uint(o, &f, "line", (uint64_t)rg->line);
    admin_raw(o, "}", 1);
}

/* The names of the bits set in |bits|, as a JSON array. */
static void
admin_json_flags(admin_out_t *o, const mg_conf_flag_t *flags, size_t nflags,
                 unsigned bits)
{
    size_t i;
    unsigned n = 0;

    admin_raw(o, "[", 1);
    for (i = 0; i < nflags; i++) {
        if (bits & flags[i].bit) {
            admin_raw(o, ",", n++ > 0);
            admin_json_str(o, flags[i].name);
        }
    }
    admin_raw(o, "]", 1);
}

static void
admin_json_retry(admin_out_t *o, const mg_retry_conf_t *rc)
{
    int f = 1;

    admin_raw(o, "{", 1);
    admin_key(o, &f, "on");
    admin_json_flags(o, mg_conf_retry_on, mg_countof(mg_conf_retry_on),
                     rc->on);
    if (rc->on & MG_RETRY_RETRIABLE_STATUS) {
        admin_key(o, &f, "statuses");
        admin_json_statuses(o, rc->statuses);
    }
    admin_kv_uint(o, &f, "attempts", rc->attempts);
    admin_kv_num(o, &f, "per_try_timeout", rc->per_try_timeout);
    admin_kv_num(o, &f, "backoff", rc->backoff);
    admin_kv_num(o, &f, "max_backoff", rc->max_backoff);
    admin_kv_num(o, &f, "budget", rc->budget);
    admin_raw(o, "}", 1);
}

static void
admin_json_cluster(admin_out_t *o, const mg_cluster_conf_t *cl)
{
    const mg_outlier_conf_t *oc = cl->outlier;
    const mg_endpoint_conf_t *ep;
    const mg_priority_t *pr;
    unsigned l, j;
    int f = 1, fl, fe;

    admin_raw(o, "{", 1);
    admin_kv_str(o, &f, "name", cl->name);
    admin_kv_str(o, &f, "lb", admin_lb_name(cl->lb));
    admin_kv_str(o, &f, "protocol", admin_proto_name(cl->protocol));
    admin_kv_num(o, &f, "connect_timeout", cl->connect_timeout);
    admin_kv_num(o, &f, "response_timeout", cl->response_timeout);
    admin_kv_num(o, &f, "idle_timeout", cl->idle_timeout);
    admin_kv_uint(o, &f, "max_idle", cl->max_idle);
    admin_kv_num(o, &f, "keepalive_interval", cl->keepalive_interval);
    admin_kv_num(o, &f, "keepalive_timeout", cl->keepalive_timeout);
    admin_kv_num(o, &f, "dns_refresh", cl->dns_refresh);
    admin_kv_str(o, &f, "discovery", cl->eds_name != NULL ? "eds" : "static");
    if (cl->eds_name != NULL) {
        admin_kv_uint(o, &f, "max_endpoints", cl->max_endpoints);
        admin_key(o, &f, "eds");
        admin_eds_json(o, cl);
    }
    admin_key(o, &f, "tls");
    admin_json_tls(o, cl->tls, cl->tls_sni, 0, 0);
    admin_key(o, &f, "health_check");
    admin_json_health_check(o, cl->health_check);
    admin_key(o, &f, "retry");
    admin_json_retry(o, &cl->retry);
    admin_key(o, &f, "outlier");
    if (oc == NULL) {
        admin_puts(o, "null");
    } else {
        admin_printf(o, "{\"consecutive_5xx\":%u,\"consecutive_gateway\":%u,"
                     "\"base_ejection_time\":%.6g,"
                     "\"max_ejection_time\":%.6g,"
                     "\"max_ejection_percent\":%u}",
                     oc->consecutive_5xx, oc->consecutive_gateway,
                     oc->base_ejection_time, oc->max_ejection_time,
                     oc->max_ejection_percent);
    }
    admin_key(o, &f, "circuit_breakers");
    admin_printf(o, "{\"max_connections\":%u,\"max_pending\":%u,"
                 "\"max_requests\":%u,\"max_retries\":%u}",
                 cl->breakers.max_connections, cl->breakers.max_pending,
                 cl->breakers.max_requests, cl->breakers.max_retries);
    admin_key(o, &f, "priorities");
    admin_raw(o, "[", 1);
    for (l = 0; l < cl->npriorities; l++) {
        pr = &cl->priorities[l];
        fl = 1;
        admin_raw(o, ",", l > 0);
        admin_raw(o, "{", 1);
        admin_kv_uint(o, &fl, "level", l);
        admin_kv_str(o, &fl, "region",
                     pr->region != NULL ? pr->region->name : "local");
        admin_kv_uint(o, &fl, "total_weight", pr->total_weight);
        admin_key(o, &fl, "endpoints");
        admin_raw(o, "[", 1);
        for (j = 0; j < pr->nendpoints; j++) {
            ep = pr->eps[j];
            fe = 1;
            admin_raw(o, ",", j > 0);
            admin_raw(o, "{", 1);
            admin_kv_str(o, &fe, "address", ep->address);
            if (ep->host != NULL) {
                admin_kv_str(o, &fe, "host", ep->host);
                admin_kv_uint(o, &fe, "port", ep->port);
                admin_kv_num(o, &fe, "dns_refresh", ep->dns_refresh);
            }
            admin_kv_uint(o, &fe, "weight", ep->weight);
            admin_kv_str(o, &fe, "zone", ep->zone);
            admin_raw(o, "}", 1);
        }
        admin_puts(o, "]}");
    }
    admin_raw(o, "]", 1);
    admin_kv_str(o, &f, "file", cl->file);
    admin_kv_uint(o, &f, "line", (uint64_t)cl->line);
    admin_raw(o, "}", 1);
}

/* The tracing section, or null when tracing is off. */
static void
admin_json_tracing(admin_out_t *o, const mg_tracing_conf_t *tc)
{
    int f = 1;

    if (tc == NULL) {
        admin_puts(o, "null");
        return;
    }
    admin_raw(o, "{", 1);
    admin_kv_str(o, &f, "zipkin", tc->zipkin);
    admin_kv_num(o, &f, "sampling_percent", tc->sampling_percent);
    admin_kv_str(o, &f, "service_name", tc->service_name);
    admin_key(o, &f, "propagate");
    admin_json_flags(o, mg_conf_trace_formats,
                     mg_countof(mg_conf_trace_formats), tc->propagate);
    admin_kv_uint(o, &f, "batch", tc->batch);
    admin_kv_num(o, &f, "flush_interval", tc->flush_interval);
    admin_kv_num(o, &f, "timeout", tc->timeout);
    admin_kv_str(o, &f, "file", tc->file);
    admin_kv_uint(o, &f, "line", (uint64_t)tc->line);
    admin_raw(o, "}", 1);
}

static void
admin_config_dump(mg_ctx_t *ctx, admin_out_t *o)
{
    const mg_snapshot_t *snap = ctx->snap;
    const mg_gateway_conf_t *g = &snap->gateway;
    const mg_listener_conf_t *admin = NULL;
    unsigned i, n;
    int f = 1, fg = 1;

    admin_raw(o, "{", 1);
    admin_kv_uint(o, &f, "generation", ctx->generation);
    admin_kv_str(o, &f, "config_file", snap->conf_file);
    admin_key(o, &f, "gateway");
    admin_raw(o, "{", 1);
    admin_kv_str(o, &fg, "region", g->region);
    admin_kv_str(o, &fg, "zone", g->zone);
    admin_kv_uint(o, &fg, "workers", g->workers);
    admin_kv_str(o, &fg, "user", g->user);
    admin_kv_num(o, &fg, "drain_timeout", g->drain_timeout);
    admin_kv_str(o, &fg, "log_level", mg_log_level_name(g->log_level));
    admin_kv_str(o, &fg, "error_log", g->error_log);
    admin_kv_str(o, &fg, "pid_file", g->pid_file);
    admin_kv_num(o, &fg, "tls_ticket_rotation", g->tls_ticket_rotation);
    admin_raw(o, "}", 1);

    for (i = 0; i < snap->nlisteners; i++) {
        if (snap->listeners[i].admin) {
            admin = &snap->listeners[i];
        }
    }
    admin_key(o, &f, "admin");
    if (admin == NULL) {
        admin_puts(o, "null");
    } else {
        admin_puts(o, "{\"listen\":");
        admin_json_str(o, admin->listen);
        admin_raw(o, "}", 1);
    }

    admin_key(o, &f, "tracing");
    admin_json_tracing(o, snap->tracing);

    admin_key(o, &f, "xds");
    if (snap->xds == NULL) {
        admin_puts(o, "null");
    } else {
        int fx = 1;

        admin_raw(o, "{", 1);
        admin_kv_str(o, &fx, "address", snap->xds->address);
        admin_kv_str(o, &fx, "api", snap->xds->v2 ? "v2" : "v3");
        admin_kv_bool(o, &fx, "ads", snap->xds->ads);
        admin_kv_str(o, &fx, "node_id", snap->xds->node_id);
        admin_kv_str(o, &fx, "node_cluster", snap->xds->node_cluster);
        admin_kv_bool(o, &fx, "ready_wait", snap->xds->ready_wait);
        admin_key(o, &fx, "tls");
        admin_json_tls(o, snap->xds->tls, snap->xds->tls_sni, 0, 0);
        admin_kv_bool(o, &fx, "connected", mg_eds_connected());
        admin_raw(o, "}", 1);
    }

    admin_key(o, &f, "regions");
    admin_raw(o, "[", 1);
    for (i = 0; i < snap->nregions; i++) {
        admin_raw(o, ",", i > 0);
        admin_json_region(o, &snap->regions[i]);
    }
    admin_raw(o, "]", 1);

    admin_key(o, &f, "listeners");
    admin_raw(o, "[", 1);
    for (i = 0, n = 0; i < snap->nlisteners; i++) {
        if (!snap->listeners[i].admin) {
            admin_raw(o, ",", n++ > 0);
            admin_json_listener(o, &snap->listeners[i]);
        }
    }
    admin_raw(o, "]", 1);

    admin_key(o, &f, "routes");
    admin_raw(o, "[", 1);
    for (i = 0; i < snap->nroute_tables; i++) {
        admin_raw(o, ",", i > 0);
        admin_json_route_table(o, snap->route_tables[i]);
    }
    admin_raw(o, "]", 1);

    admin_key(o, &f, "clusters");
    admin_raw(o, "[", 1);
    for (i = 0; i < snap->nclusters; i++) {
        admin_raw(o, ",", i > 0);
        admin_json_cluster(o, &snap->clusters[i]);
    }
    admin_puts(o, "]}\n");
}

/* ------------------------------------------------------------------ */
/* /stats and /stats/prometheus                                        */

/* What a family's series are. */
enum {
    ADMIN_S_INSTANCE = 1,
    ADMIN_S_LISTENER,
    ADMIN_S_ROUTE,
    ADMIN_S_CLUSTER,
    ADMIN_S_LEVEL,
    ADMIN_S_ENDPOINT,
    ADMIN_S_HEALTH,
    ADMIN_S_EDS                   /* a discovery cluster */
};

/* How a family's value is read. */
enum {
    ADMIN_V_COUNTER = 1,
    ADMIN_V_GAUGE,                /* cells of signed increments */
    ADMIN_V_CLASSES,              /* MG_MET_CLASSES counters, label class */
    ADMIN_V_HISTOGRAM,
    ADMIN_V_HEALTHY,              /* the shared health table, 1/0 */
    ADMIN_V_XDS_UP,               /* the xds stream, 1/0 */
    ADMIN_V_EDS_UPDATES,          /* the discovery table: counters */
    ADMIN_V_EDS_REJECTIONS,
    ADMIN_V_EDS_ENDPOINTS         /* ... and a gauge */
};

typedef struct admin_family_s {
    const char *name;             /* Prometheus, without "meshgate_" */
    const char *stat;             /* /stats suffix */
    unsigned series;              /* ADMIN_S_* */
    unsigned value;               /* ADMIN_V_* */
    unsigned cell;                /* offset in the series */
    const char *help;
} admin_family_t;

static const admin_family_t admin_families[] = {
    { "reloads_total", "reloads", ADMIN_S_INSTANCE, ADMIN_V_COUNTER,
      MG_MET_G_RELOADS, "Configurations applied by SIGHUP." },
    { "reload_failures_total", "reload_failures", ADMIN_S_INSTANCE,
      ADMIN_V_COUNTER, MG_MET_G_RELOAD_FAILURES,
      "Reloads refused (the running configuration stayed)." },
    { "worker_restarts_total", "worker_restarts", ADMIN_S_INSTANCE,
      ADMIN_V_COUNTER, MG_MET_G_RESTARTS,
      "Worker and control processes respawned after a crash." },
    { "tracing_spans_sampled_total", "spans_sampled", ADMIN_S_INSTANCE,
      ADMIN_V_COUNTER, MG_MET_G_SPANS_SAMPLED, "Trace spans recorded." },
    { "tracing_spans_sent_total", "spans_sent", ADMIN_S_INSTANCE,
      ADMIN_V_COUNTER, MG_MET_G_SPANS_SENT,
      "Trace spans the collector accepted." },
    { "tracing_spans_dropped_total", "spans_dropped", ADMIN_S_INSTANCE,
      ADMIN_V_COUNTER, MG_MET_G_SPANS_DROPPED,
      "Trace spans dropped: export queue full or collector failing." },
    { "downstream_connections_total", "cx_total", ADMIN_S_LISTENER,
      ADMIN_V_COUNTER, MG_MET_L_CX_TOTAL, "Client connections accepted." },
    { "downstream_connections_active", "cx_active", ADMIN_S_LISTENER,
      ADMIN_V_GAUGE, MG_MET_L_CX_ACTIVE, "Client connections open." },
    { "downstream_requests_active", "rq_active", ADMIN_S_LISTENER,
      ADMIN_V_GAUGE, MG_MET_L_RQ_ACTIVE, "Client requests in progress." },
    { "downstream_received_bytes_total", "bytes_received", ADMIN_S_LISTENER,
      ADMIN_V_COUNTER, MG_MET_L_BYTES_IN,
      "Request bytes read from clients (after TLS)." },
    { "downstream_sent_bytes_total", "bytes_sent", ADMIN_S_LISTENER,
      ADMIN_V_COUNTER, MG_MET_L_BYTES_OUT,
      "Response bytes sent to clients." },
    { "downstream_requests_total", "rq", ADMIN_S_ROUTE, ADMIN_V_CLASSES,
      MG_MET_R_RQ, "Client requests answered, by status class." },
    { "downstream_request_duration_seconds", "rq_time", ADMIN_S_ROUTE,
      ADMIN_V_HISTOGRAM, MG_MET_R_TIME,
      "Client request head to the end of the response." },
    { "upstream_retries_total", "retries", ADMIN_S_CLUSTER, ADMIN_V_COUNTER,
      MG_MET_C_RETRIES, "Requests tried again." },
    { "upstream_timeouts_total", "timeouts", ADMIN_S_CLUSTER,
      ADMIN_V_COUNTER, MG_MET_C_TIMEOUTS,
      "Upstream tries that timed out waiting for a response." },
    { "upstream_overflows_total", "overflows", ADMIN_S_CLUSTER,
      ADMIN_V_COUNTER, MG_MET_C_OVERFLOWS,
      "Requests a circuit breaker turned away." },
    { "upstream_requests_active", "rq_active", ADMIN_S_CLUSTER,
      ADMIN_V_GAUGE, MG_MET_C_RQ_ACTIVE, "Requests in progress." },
    { "upstream_requests_pending", "rq_pending", ADMIN_S_CLUSTER,
      ADMIN_V_GAUGE, MG_MET_C_PENDING,
      "Requests waiting for an upstream connection." },
    { "upstream_requests_total", "rq", ADMIN_S_LEVEL, ADMIN_V_CLASSES,
      MG_MET_P_RQ, "Upstream responses, by priority level and class." },
    { "upstream_attempts_total", "attempts", ADMIN_S_LEVEL, ADMIN_V_COUNTER,
      MG_MET_P_ATTEMPTS,
      "Tries sent to a priority level (priority > 0: another region)." },
    { "upstream_request_duration_seconds", "rq_time", ADMIN_S_LEVEL,
      ADMIN_V_HISTOGRAM, MG_MET_P_TIME,
      "Last upstream try's start to the end of the response." },
    { "upstream_endpoint_requests_total", "rq", ADMIN_S_ENDPOINT,
      ADMIN_V_CLASSES, MG_MET_E_RQ, "Upstream responses, by endpoint." },
    { "upstream_connect_failures_total", "connect_failures",
      ADMIN_S_ENDPOINT, ADMIN_V_COUNTER, MG_MET_E_CONNECT_FAILURES,
      "Upstream connections that failed to open." },
    { "upstream_resets_total", "resets", ADMIN_S_ENDPOINT, ADMIN_V_COUNTER,
      MG_MET_E_RESETS, "Upstream tries lost before the response ended." },
    { "upstream_connections_total", "cx_total", ADMIN_S_ENDPOINT,
      ADMIN_V_COUNTER, MG_MET_E_CX_TOTAL, "Upstream connections opened." },
    { "upstream_connections_active", "cx_active", ADMIN_S_ENDPOINT,
      ADMIN_V_GAUGE, MG_MET_E_CX_ACTIVE, "Upstream connections open." },
    { "outlier_ejections_total", "ejections", ADMIN_S_ENDPOINT,
      ADMIN_V_COUNTER, MG_MET_E_EJECTIONS,
      "Endpoint ejections by outlier detection (summed over workers)." },
    { "endpoint_healthy", "healthy", ADMIN_S_ENDPOINT, ADMIN_V_HEALTHY, 0,
      "1 unless active health checks found the endpoint unhealthy." },
    { "health_check_transitions_total", "hc", ADMIN_S_HEALTH,
      ADMIN_V_CLASSES, 0, "Health check verdict changes." },
    { "xds_connected", "xds_connected", ADMIN_S_INSTANCE, ADMIN_V_XDS_UP, 0,
      "1 while the stream to the xds server is up." },
    { "xds_updates_total", "xds_updates", ADMIN_S_EDS, ADMIN_V_EDS_UPDATES,
      0, "Endpoint assignments accepted from the xds server." },
    { "xds_rejections_total", "xds_rejections", ADMIN_S_EDS,
      ADMIN_V_EDS_REJECTIONS, 0,
      "Updates refused (NACK); the last good endpoints stayed." },
    { "xds_endpoints", "xds_endpoints", ADMIN_S_EDS, ADMIN_V_EDS_ENDPOINTS, 0,
      "Endpoints of this region the last assignment gave." },
};

static const char *const admin_class_names[MG_MET_CLASSES] = {
    "1xx", "2xx", "3xx", "4xx", "5xx"
};

/* Label values escaped as the exposition format wants. */
static void
admin_prom_label(admin_out_t *o, int first, const char *name,
                 const char *v)
{
    const char *p;

    admin_puts(o, first ? "{" : ",");
    admin_puts(o, name);
    admin_raw(o, "=\"", 2);
    for (p = v; *p != '\0'; p++) {
        switch (*p) {
        case '\\': admin_raw(o, "\\\\", 2); break;
        case '"': admin_raw(o, "\\\"", 2); break;
        case '\n': admin_raw(o, "\\n", 2); break;
        default: admin_raw(o, p, 1);
        }
    }
    admin_raw(o, "\"", 1);
}

/* One series being written: its labels (Prometheus) or its /stats name
 * prefix, and its first cell. */
typedef struct admin_series_s {
    const char *label[3];
    const char *value[3];
    unsigned nlabels;
    char prefix[600];
    unsigned met;
    const mg_endpoint_conf_t *ep;
    const mg_cluster_conf_t *cl;
} admin_series_t;

static void
admin_prom_labels(admin_out_t *o, const admin_series_t *s, const char *extra,
                  const char *extra_value)
{
    unsigned i;

    for (i = 0; i < s->nlabels; i++) {
        admin_prom_label(o, i == 0, s->label[i], s->value[i]);
    }
    if (extra != NULL) {
        admin_prom_label(o, s->nlabels == 0, extra, extra_value);
    }
    if (s->nlabels > 0 || extra != NULL) {
        admin_raw(o, "}", 1);
    }
}

/* Latency quantile |q| from histogram cells at |cell|, in seconds,
 * interpolated in its bucket. */
static double
admin_quantile(const uint64_t *b, uint64_t count, double q)
{
    double target = q * (double)count, cum = 0, lo = 0, hi;
    unsigned i;

    for (i = 0; i < MG_MET_HIST_BUCKETS; i++) {
        hi = i < MG_MET_HIST_BOUNDS ? (double)mg_met_hist_bound(i) / 1e6
                                    : lo;
        if (b[i] > 0 && cum + (double)b[i] >= target) {
            return lo + (hi - lo) * (target - cum) / (double)b[i];
        }
        cum += (double)b[i];
        lo = hi;
    }
    return lo;
}

static void
admin_series_value(admin_out_t *o, const admin_family_t *f,
                   const admin_series_t *s, int prom)
{
    uint64_t b[MG_MET_HIST_BUCKETS], count = 0, cum = 0, sum;
    const char *name = f->name;
    unsigned i;

    switch (f->value) {
    case ADMIN_V_COUNTER:
    case ADMIN_V_GAUGE:
        if (prom) {
            admin_printf(o, "meshgate_%s", name);
            admin_prom_labels(o, s, NULL, NULL);
        } else {
            admin_printf(o, "%s%s:", s->prefix, f->stat);
        }
        if (f->value == ADMIN_V_GAUGE) {
            admin_printf(o, " %" PRId64 "\n",
                         (int64_t)mg_metrics_sum(s->met + f->cell));
        } else {
            admin_printf(o, " %" PRIu64 "\n",
                         mg_metrics_sum(s->met + f->cell));
        }
        return;
    case ADMIN_V_XDS_UP:
    case ADMIN_V_EDS_UPDATES:
    case ADMIN_V_EDS_REJECTIONS:
    case ADMIN_V_EDS_ENDPOINTS: {
        mg_eds_status_t st;
        uint64_t val = 0;

        if (f->value == ADMIN_V_XDS_UP) {
            val = (uint64_t)mg_eds_connected();
        } else if (mg_eds_status(s->cl, &st) == MG_OK) {
            val = f->value == ADMIN_V_EDS_UPDATES ? st.updates
                  : f->value == ADMIN_V_EDS_REJECTIONS ? st.rejections
                                                       : st.nendpoints;
        }
        if (prom) {
            admin_printf(o, "meshgate_%s", name);
            admin_prom_labels(o, s, NULL, NULL);
        } else {
            admin_printf(o, "%s%s:", s->prefix, f->stat);
        }
        admin_printf(o, " %" PRIu64 "\n", val);
        return;
    }
    case ADMIN_V_HEALTHY:
        if (prom) {
            admin_printf(o, "meshgate_%s", name);
            admin_prom_labels(o, s, NULL, NULL);
        } else {
            admin_printf(o, "%s%s:", s->prefix, f->stat);
        }
        admin_printf(o, " %d\n", mg_shm_healthy(s->ep));
        return;
    case ADMIN_V_CLASSES:
        for (i = 0; i < (f->series == ADMIN_S_HEALTH ? 2u
                                                     : MG_MET_CLASSES); i++) {
            const char *cls = f->series == ADMIN_S_HEALTH
                                  ? (i == 0 ? "healthy" : "unhealthy")
                                  : admin_class_names[i];

            if (prom) {
                admin_printf(o, "meshgate_%s", name);
                admin_prom_labels(o, s, f->series == ADMIN_S_HEALTH
                                            ? "to" : "class", cls);
            } else if (f->series == ADMIN_S_HEALTH) {
                admin_printf(o, "%shc_to_%s:", s->prefix, cls);
            } else {
                admin_printf(o, "%s%s_%s:", s->prefix, f->stat, cls);
            }
            admin_printf(o, " %" PRIu64 "\n",
                         mg_metrics_sum(s->met + f->cell + i));
        }
        return;
    }
    /* A histogram. */
    for (i = 0; i < MG_MET_HIST_BUCKETS; i++) {
        b[i] = mg_metrics_sum(s->met + f->cell + i);
        count += b[i];
    }
    sum = mg_metrics_sum(s->met + f->cell + MG_MET_HIST_BUCKETS);
    if (!prom) {
        admin_printf(o, "%s%s: count=%" PRIu64 " sum=%.6f", s->prefix,
                     f->stat, count, (double)sum / 1e6);
        if (count > 0) {
            admin_printf(o, " p50=%.6f p90=%.6f p99=%.6f",
                         admin_quantile(b, count, 0.5),
                         admin_quantile(b, count, 0.9),
                         admin_quantile(b, count, 0.99));
        }
        admin_raw(o, "\n", 1);
        return;
    }
    for (i = 0; i < MG_MET_HIST_BUCKETS; i++) {
        char le[32];

        cum += b[i];
        if (i < MG_MET_HIST_BOUNDS) {
            snprintf(le, sizeof(le), "%g",
                     (double)mg_met_hist_bound(i) / 1e6);
        } else {
            memcpy(le, "+Inf", 5);
        }
        admin_printf(o, "meshgate_%s_bucket", name);
        admin_prom_labels(o, s, "le", le);
        admin_printf(o, " %" PRIu64 "\n", cum);
    }
    admin_printf(o, "meshgate_%s_sum", name);
    admin_prom_labels(o, s, NULL, NULL);
    admin_printf(o, " %.6f\n", (double)sum / 1e6);
    admin_printf(o, "meshgate_%s_count", name);
    admin_prom_labels(o, s, NULL, NULL);
    admin_printf(o, " %" PRIu64 "\n", count);
}

/* Entry of an endpoint in the health table, for a walk over checks. */
static unsigned
admin_health_slot(const mg_endpoint_conf_t *ep)
{
    return ep->health_check != NULL ? ep->health_slot : MG_SHM_SLOTS;
}

/* Writes family |f| for every series of its kind. */
static void
admin_family(mg_ctx_t *ctx, admin_out_t *o, const admin_family_t *f,
             int prom)
{
    const mg_snapshot_t *snap = ctx->snap;
    const mg_listener_conf_t *lc;
    const mg_cluster_conf_t *cl;
    const mg_priority_t *pr;
    const mg_endpoint_conf_t *ep;
    admin_series_t s;
    unsigned i, r, p, j, nroutes;
    char pbuf[16];

    memset(&s, 0, sizeof(s));
    switch (f->series) {
    case ADMIN_S_INSTANCE:
        s.met = snap->met;
        snprintf(s.prefix, sizeof(s.prefix), "%s",
                 f->cell >= MG_MET_G_SPANS_SENT ? "tracing." : "server.");
        admin_series_value(o, f, &s, prom);
        return;
    case ADMIN_S_LISTENER:
    case ADMIN_S_ROUTE:
        for (i = 0; i < snap->nlisteners; i++) {
            lc = &snap->listeners[i];
            if (lc->admin) {
                continue;
            }
            s.label[0] = "listener";
            s.value[0] = lc->name;
            s.nlabels = 1;
            if (f->series == ADMIN_S_LISTENER) {
                s.met = lc->met;
                snprintf(s.prefix, sizeof(s.prefix), "listener.%s.",
                         lc->name);
                admin_series_value(o, f, &s, prom);
                continue;
            }
            nroutes = lc->routes != NULL ? lc->routes->nroutes : 0;
            for (r = 0; r <= nroutes; r++) {
                s.label[1] = "route";
                s.value[1] = r < nroutes ? lc->routes->all[r]->name
                                         : "(none)";
                s.nlabels = 2;
                s.met = lc->route_met[r];
                snprintf(s.prefix, sizeof(s.prefix), "listener.%s.route.%s.",
                         lc->name, s.value[1]);
                admin_series_value(o, f, &s, prom);
            }
        }
        return;
    case ADMIN_S_HEALTH: {
        uint64_t seen[MG_SHM_SLOTS / 64];
        mg_endpoint_walk_t w;

        memset(seen, 0, sizeof(seen));
        memset(&w, 0, sizeof(w));
        while ((ep = mg_snapshot_next_slot(snap, &w, seen, MG_SHM_SLOTS,
                                           admin_health_slot)) != NULL) {
            s.label[0] = "cluster";
            s.value[0] = ep->region != NULL ? "" : ep->cluster->name;
            s.label[1] = "region";
            s.value[1] = ep->region != NULL ? ep->region->name
                                            : snap->gateway.region;
            s.label[2] = "endpoint";
            s.value[2] = ep->address;
            s.nlabels = 3;
            s.met = ep->met_health;
            if (ep->region != NULL) {
                snprintf(s.prefix, sizeof(s.prefix), "region.%s.endpoint.%s.",
                         ep->region->name, ep->address);
            } else {
                snprintf(s.prefix, sizeof(s.prefix),
                         "cluster.%s.endpoint.%s.", ep->cluster->name,
                         ep->address);
            }
            admin_series_value(o, f, &s, prom);
        }
        return;
    }
    default:
        break;
    }
    for (i = 0; i < snap->nclusters; i++) {
        cl = &snap->clusters[i];
        s.label[0] = "cluster";
        s.value[0] = cl->name;
        s.nlabels = 1;
        if (f->series == ADMIN_S_EDS) {
            if (cl->eds_name != NULL) {
                s.cl = cl;
                snprintf(s.prefix, sizeof(s.prefix), "cluster.%s.", cl->name);
                admin_series_value(o, f, &s, prom);
            }
            continue;
        }
        if (f->series == ADMIN_S_CLUSTER) {
            s.met = cl->met;
            snprintf(s.prefix, sizeof(s.prefix), "cluster.%s.", cl->name);
            admin_series_value(o, f, &s, prom);
            continue;
        }
        for (p = 0; p < cl->npriorities; p++) {
            pr = &cl->priorities[p];
            if (f->series == ADMIN_S_LEVEL) {
                snprintf(pbuf, sizeof(pbuf), "%u", p);
                s.label[1] = "priority";
                s.value[1] = pbuf;
                s.label[2] = "region";
                s.value[2] = pr->region != NULL ? pr->region->name
                                                : snap->gateway.region;
                s.nlabels = 3;
                s.met = pr->met;
                snprintf(s.prefix, sizeof(s.prefix), "cluster.%s.region.%s.",
                         cl->name, s.value[2]);
                admin_series_value(o, f, &s, prom);
                continue;
            }
            for (j = 0; j < pr->nendpoints; j++) {
                ep = pr->eps[j];
                s.label[1] = "endpoint";
                s.value[1] = ep->address;
                s.nlabels = 2;
                s.met = ep->met;
                s.ep = ep;
                snprintf(s.prefix, sizeof(s.prefix),
                         "cluster.%s.endpoint.%s.", cl->name, ep->address);
                admin_series_value(o, f, &s, prom);
            }
        }
    }
}

static void
admin_stats(mg_ctx_t *ctx, admin_out_t *o, int prom)
{
    const mg_snapshot_t *snap = ctx->snap;
    const admin_family_t *f;
    double uptime = ev_now(ctx->loop) - ctx->master_start;
    unsigned i;

    if (prom) {
        admin_puts(o, "# HELP meshgate_info The running instance.\n"
                      "# TYPE meshgate_info gauge\nmeshgate_info");
        admin_prom_label(o, 1, "version", PACKAGE_VERSION);
        admin_prom_label(o, 0, "region", snap->gateway.region);
        admin_prom_label(o, 0, "zone", snap->gateway.zone);
        admin_printf(o, "} 1\n"
                     "# HELP meshgate_start_time_seconds When the master "
                     "started (Unix time).\n"
                     "# TYPE meshgate_start_time_seconds gauge\n"
                     "meshgate_start_time_seconds %.3f\n"
                     "# HELP meshgate_workers Workers of the running "
                     "generation.\n"
                     "# TYPE meshgate_workers gauge\nmeshgate_workers %u\n"
                     "# HELP meshgate_generation The running configuration's "
                     "generation.\n"
                     "# TYPE meshgate_generation gauge\n"
                     "meshgate_generation %lu\n",
                     ctx->master_start, snap->gateway.workers,
                     ctx->generation);
    } else {
        admin_printf(o, "server.uptime: %.0f\nserver.generation: %lu\n"
                     "server.workers: %u\nserver.metrics: %s\n", uptime,
                     ctx->generation, snap->gateway.workers,
                     !snap->gateway.metrics ? "off"
                     : mg_metrics_available() ? "on" : "unavailable");
    }
    for (i = 0; i < sizeof(admin_families) / sizeof(admin_families[0]);
         i++) {
        f = &admin_families[i];
        if (prom) {
            admin_printf(o, "# HELP meshgate_%s %s\n# TYPE meshgate_%s %s\n",
                         f->name, f->help, f->name,
                         f->value == ADMIN_V_HISTOGRAM ? "histogram"
                         : f->value == ADMIN_V_GAUGE
                               || f->value == ADMIN_V_HEALTHY
                               || f->value == ADMIN_V_XDS_UP
                               || f->value == ADMIN_V_EDS_ENDPOINTS
                               ? "gauge" : "counter");
        }
        admin_family(ctx, o, f, prom);
    }
}

/* ------------------------------------------------------------------ */

/* Whether the query holds format=json. */
static int
admin_want_json(mg_str_t query)
{
    const char *p = query.data, *last = query.data + query.len, *amp;
    size_t n;

    while (p != NULL && p < last) {
        amp = memchr(p, '&', (size_t)(last - p));
        n = amp ? (size_t)(amp - p) : (size_t)(last - p);
        if (n == 11 && memcmp(p, "format=json", 11) == 0) {
            return 1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

int
mg_admin_handle(mg_ctx_t *ctx, mg_str_t path, mg_str_t query,
                mg_admin_reply_t *ar)
{
    admin_out_t o = { NULL, 0, 0, 0 };
    unsigned i;

    ar->status = 200;
    ar->ctype = "application/json";
    for (i = 0; i < ctx->snap->nclusters; i++) {
        if (ctx->snap->clusters[i].eds_name != NULL) {
            mg_eds_refresh(ctx, &ctx->snap->clusters[i]);
        }
    }
    if (mg_str_eq(path, mg_str_lit("/ready"))) {
        ar->ctype = "text/plain";
        if (ctx->draining) {
            ar->status = 503;
            admin_puts(&o, "draining\n");
        } else if (ctx->snap->xds != NULL && ctx->snap->xds->ready_wait
                   && !mg_eds_all_ready(ctx->snap)) {
            ar->status = 503;
            admin_puts(&o, "waiting for the first endpoints from the xds "
                           "server\n");
        } else {
            admin_puts(&o, "ready\n");
        }
    } else if (mg_str_eq(path, mg_str_lit("/server_info"))) {
        admin_server_info(ctx, &o);
    } else if (mg_str_eq(path, mg_str_lit("/clusters"))) {
        if (admin_want_json(query)) {
            admin_clusters_json(ctx, &o);
        } else {
            ar->ctype = "text/plain";
            admin_clusters_text(ctx, &o);
        }
    } else if (mg_str_eq(path, mg_str_lit("/config_dump"))) {
        admin_config_dump(ctx, &o);
    } else if (mg_str_eq(path, mg_str_lit("/stats"))) {
        ar->ctype = "text/plain";
        admin_stats(ctx, &o, 0);
    } else if (mg_str_eq(path, mg_str_lit("/stats/prometheus"))) {
        ar->ctype = "text/plain; version=0.0.4; charset=utf-8";
        admin_stats(ctx, &o, 1);
    } else {
        ar->status = 404;
        ar->ctype = "text/plain";
        admin_puts(&o, "not found\n");
        admin_puts(&o, admin_index);
    }
    if (o.failed) {
        free(o.p);
        ar->body = NULL;
        ar->len = 0;
        return MG_ERROR;
    }
    ar->body = o.p;
    ar->len = o.len;
    return MG_OK;
}

void
mg_admin_reply_free(mg_admin_reply_t *ar)
{
    free(ar->body);
    ar->body = NULL;
    ar->len = 0;
}
