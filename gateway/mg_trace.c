#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "mg_buf.h"
#include "mg_ctx.h"
#include "mg_h1.h"
#include "mg_log.h"
#include "mg_metrics.h"
#include "mg_proxy.h"
#include "mg_snapshot.h"
#include "mg_str.h"
#include "mg_trace.h"

/* Record fields are cut to these sizes (NUL included), so that a record
 * fits in 1 KiB and a ring in 256 KiB. */
#define TRACE_METHOD_LEN   16
#define TRACE_IP_LEN       46     /* INET6_ADDRSTRLEN */
#define TRACE_PATH_LEN     168
#define TRACE_HOST_LEN     88
#define TRACE_RID_LEN      72     /* mg_client_t.request_id */
#define TRACE_NAME_LEN     64     /* listener, cluster, regions */
#define TRACE_ROUTE_LEN    96
#define TRACE_ADDR_LEN     96     /* an endpoint as configured */

#define TRACE_POLL         0.05   /* seconds between looks at the rings */
#define TRACE_LOG_EVERY    10.0   /* seconds between two failure logs */
#define TRACE_RESP_MAX     16384  /* a collector's response head */

/*
 * One sampled request: its SERVER span and, when |client_start_us| is not
 * 0, its CLIENT span. Everything a span shows is copied in, since the
 * control process may serve another configuration than the worker that
 * wrote it.
 */
typedef struct trace_rec_s {
    uint64_t trace_hi;
    uint64_t trace_lo;
    uint64_t parent_id;
    uint64_t server_id;
    uint64_t client_id;
    int64_t start_us;             /* wall clock */
    int64_t end_us;
    int64_t client_start_us;
    uint16_t status;              /* to the client; 0 = none */
    uint16_t upstream_status;     /* from the upstream; 0 = none */
    uint16_t local_port;          /* the listener's */
    uint16_t ep_port;
    uint16_t priority;
    uint16_t retries;
    uint8_t trace128;
    uint8_t debug;
    char method[TRACE_METHOD_LEN];
    char client_ip[TRACE_IP_LEN];
    char local_ip[TRACE_IP_LEN];  /* "" for a wildcard listener */
    char ep_ip[TRACE_IP_LEN];
    char path[TRACE_PATH_LEN];
    char host[TRACE_HOST_LEN];
    char request_id[TRACE_RID_LEN];
    char listener[TRACE_NAME_LEN];
    char route[TRACE_ROUTE_LEN];
    char region[TRACE_NAME_LEN];
    char cluster[TRACE_NAME_LEN];
    char endpoint[TRACE_ADDR_LEN];
    char ep_region[TRACE_NAME_LEN];
} trace_rec_t;

_Static_assert(sizeof(trace_rec_t) <= 1024, "a span record outgrew 1 KiB");

/*
 * A process slot's ring. Its worker is the only producer: it writes the
 * record at |head| once |head| - |tail| < MG_TRACE_RING, then publishes
 * it by moving |head|. Consumers copy the record at |tail| and then move
 * |tail| by compare-and-swap, so when the old and the new control process
 * overlap during a reload, each record goes out once: the loser of the
 * swap drops its copy.
 */
typedef struct trace_ring_s {
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(64) trace_rec_t recs[MG_TRACE_RING];
} trace_ring_t;

/* MG_MET_PROCS rings, or NULL: mapped by the master, then only used. */
static trace_ring_t *trace_rings;

static const char trace_hex[] = "0123456789abcdef";

int
mg_trace_shm_create(void)
{
    void *p;

    if (trace_rings != NULL) {
        return MG_OK;
    }
    /* Pages are only touched by slots that trace: most of it never is. */
    p = mmap(NULL, (size_t)MG_MET_PROCS * sizeof(trace_ring_t),
             PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS
             | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        return MG_ERROR;
    }
    trace_rings = p;
    return MG_OK;
}

/* ------------------------------------------------------------------ */
/* Ids                                                                 */

/* xorshift128+: cheap, and unpredictable enough for ids and sampling
 * once seeded from the kernel. */
static uint64_t
trace_rand(mg_ctx_t *ctx)
{
    uint64_t *s = ctx->trace_rng, x, y;

    if (mg_unlikely(s[0] == 0 && s[1] == 0)) {
        if (getrandom(s, 2 * sizeof(uint64_t), GRND_NONBLOCK)
            != (ssize_t)(2 * sizeof(uint64_t)) || (s[0] | s[1]) == 0) {
            s[0] = (uint64_t)time(NULL) ^ 0x9E3779B97F4A7C15ULL;
            s[1] = ((uint64_t)getpid() << 32) ^ (uint64_t)clock();
            s[1] |= 1;
        }
    }
    x = s[0];
    y = s[1];
    s[0] = y;
    x ^= x << 23;
    s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return s[1] + y;
}

static uint64_t
trace_span_id(mg_ctx_t *ctx)
{
    uint64_t id;

    do {
        id = trace_rand(ctx);
    } while (id == 0);
    return id;
}

static void
trace_hex64(char *p, uint64_t v)
{
    int k;

    for (k = 15; k >= 0; k--) {
        p[k] = trace_hex[v & 0xf];
        v >>= 4;
    }
}

/* The trace id in hex: 32 digits, or 16 for a 64-bit one. Returns the
 * length; |buf| holds 33 bytes and ends NUL-terminated. */
static size_t
trace_id_text(uint64_t hi, uint64_t lo, int trace128, char *buf)
{
    if (trace128) {
        trace_hex64(buf, hi);
        trace_hex64(buf + 16, lo);
        buf[32] = '\0';
        return 32;
    }
    trace_hex64(buf, lo);
    buf[16] = '\0';
    return 16;
}

/* Exactly |n| (1..16) lower-case hex digits at |p|. MG_OK or
 * MG_DECLINED. */
static int
trace_parse_hex(const char *p, size_t n, uint64_t *v)
{
    uint64_t r = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        if (p[i] >= '0' && p[i] <= '9') {
            r = r << 4 | (uint64_t)(p[i] - '0');
        } else if (p[i] >= 'a' && p[i] <= 'f') {
            r = r << 4 | (uint64_t)(p[i] - 'a' + 10);
        } else {
            return MG_DECLINED;
        }
    }
    *v = r;
    return MG_OK;
}

/* A trace id of 16 or 32 digits, not zero. */
static int
trace_parse_trace_id(const char *p, size_t n, mg_trace_in_t *in)
{
    if (n == 32) {
        if (trace_parse_hex(p, 16, &in->trace_hi) != MG_OK
            || trace_parse_hex(p + 16, 16, &in->trace_lo) != MG_OK) {
            return MG_DECLINED;
        }
        in->trace128 = 1;
    } else if (n == 16) {
        in->trace_hi = 0;
        if (trace_parse_hex(p, 16, &in->trace_lo) != MG_OK) {
            return MG_DECLINED;
        }
        in->trace128 = 0;
    } else {
        return MG_DECLINED;
    }
    return (in->trace_hi | in->trace_lo) != 0 ? MG_OK : MG_DECLINED;
}

/* ------------------------------------------------------------------ */
/* Incoming context                                                    */

/* traceparent, version 00 only: "00-" 32 hex "-" 16 hex "-" 2 hex, and
 * nothing else (W3C Trace Context §3.2). */
static int
trace_parse_traceparent(mg_str_t v, mg_trace_in_t *in)
{
    const char *p = v.data;
    uint64_t flags;

    if (v.len != 55 || p[0] != '0' || p[1] != '0' || p[2] != '-'
        || p[35] != '-' || p[52] != '-'
        || trace_parse_trace_id(p + 3, 32, in) != MG_OK
        || trace_parse_hex(p + 36, 16, &in->span_id) != MG_OK
        || in->span_id == 0
        || trace_parse_hex(p + 53, 2, &flags) != MG_OK) {
        return MG_DECLINED;
    }
    in->sampled = (flags & 1) != 0;
    return MG_OK;
}

/* The sampling state of B3: "1", "0", or "d" (debug, which samples). */
static int
trace_parse_b3_sampled(char ch, mg_trace_in_t *in)
{
    switch (ch) {
    case '0':
        in->sampled = 0;
        return MG_OK;
    case '1':
        in->sampled = 1;
        return MG_OK;
    case 'd':
        in->sampled = 1;
        in->debug = 1;
        return MG_OK;
    }
    return MG_DECLINED;
}

/* b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]], or the sampling
 * state alone. */
static int
trace_parse_b3(mg_str_t v, mg_trace_in_t *in)
{
    const char *p = v.data, *last = v.data + v.len, *dash;
    uint64_t parent;

    if (v.len == 1) {
        return trace_parse_b3_sampled(p[0], in);
    }
    dash = memchr(p, '-', v.len);
    if (dash == NULL || trace_parse_trace_id(p, (size_t)(dash - p), in)
                        != MG_OK) {
        return MG_DECLINED;
    }
    p = dash + 1;
    if (last - p < 16 || trace_parse_hex(p, 16, &in->span_id) != MG_OK
        || in->span_id == 0) {
        return MG_DECLINED;
    }
    p += 16;
    if (p == last) {
        return MG_OK;
    }
    if (last - p < 2 || p[0] != '-' || trace_parse_b3_sampled(p[1], in)
                                       != MG_OK) {
        return MG_DECLINED;
    }
    p += 2;
    if (p == last) {
        return MG_OK;
    }
    /* The caller's parent says nothing to us, but must be well-formed. */
    if (last - p != 17 || p[0] != '-'
        || trace_parse_hex(p + 1, 16, &parent) != MG_OK || parent == 0) {
        return MG_DECLINED;
    }
    return MG_OK;
}

static void
trace_in_reset(mg_trace_in_t *in)
{
    memset(in, 0, sizeof(*in));
    in->sampled = -1;
}

unsigned
mg_trace_extract(const mg_h1_request_t *r, mg_trace_in_t *in)
{
    const mg_h1_header_t *h, *tp = NULL, *b3 = NULL;
    mg_str_t tid = mg_str_null, sid = mg_str_null, sampled = mg_str_null;
    mg_str_t flags = mg_str_null;
    unsigned i, ntp = 0, nb3 = 0;
    mg_trace_in_t ids;

    trace_in_reset(in);
    for (i = 0; i < r->nheaders; i++) {
        h = &r->headers[i];
        switch (h->name.len) {
        case 2:
            if (mg_str_caseeq_lit(h->name, "b3")) {
                b3 = h;
                nb3++;
            }
            break;
        case 10:
            if (mg_str_caseeq_lit(h->name, "x-b3-flags")) {
                flags = h->value;
            }
            break;
        case 11:
            if (mg_str_caseeq_lit(h->name, "traceparent")) {
                tp = h;
                ntp++;
            } else if (mg_str_caseeq_lit(h->name, "x-b3-spanid")) {
                sid = h->value;
            }
            break;
        case 12:
            if (mg_str_caseeq_lit(h->name, "x-b3-traceid")) {
                tid = h->value;
            } else if (mg_str_caseeq_lit(h->name, "x-b3-sampled")) {
                sampled = h->value;
            }
            break;
        }
    }
    /* Two of a field that may appear once are as good as none. */
    if (ntp == 1 && trace_parse_traceparent(tp->value, in) == MG_OK) {
        return MG_TRACE_FROM_W3C;
    }
    trace_in_reset(in);
    if (nb3 == 1 && trace_parse_b3(b3->value, in) == MG_OK) {
        return MG_TRACE_FROM_B3;
    }
    trace_in_reset(in);
    if (mg_str_eq(sampled, mg_str_lit("1"))
        || mg_str_eq(sampled, mg_str_lit("0"))) {
        in->sampled = sampled.data[0] == '1';
    } else if (mg_str_eq(sampled, mg_str_lit("true"))) {
        in->sampled = 1;   /* what early B3 clients sent */
    } else if (mg_str_eq(sampled, mg_str_lit("false"))) {
        in->sampled = 0;
    }
    if (mg_str_eq(flags, mg_str_lit("1"))) {
        in->sampled = 1;
        in->debug = 1;
    }
    trace_in_reset(&ids);
    if (tid.data != NULL && sid.data != NULL
        && trace_parse_trace_id(tid.data, tid.len, &ids) == MG_OK
        && sid.len == 16 && trace_parse_hex(sid.data, 16, &ids.span_id)
                            == MG_OK
        && ids.span_id != 0) {
        in->trace_hi = ids.trace_hi;
        in->trace_lo = ids.trace_lo;
        in->trace128 = ids.trace128;
        in->span_id = ids.span_id;
    }
    return in->span_id != 0 || in->sampled != -1 ? MG_TRACE_FROM_B3_MULTI
                                                 : MG_TRACE_FROM_NONE;
}

int
mg_trace_is_header(const char *name, size_t len)
{
    switch (len) {
    case 2:
        return strncasecmp(name, "b3", 2) == 0;
    case 10:
        return strncasecmp(name, "tracestate", 10) == 0
               || strncasecmp(name, "x-b3-flags", 10) == 0;
    case 11:
        return strncasecmp(name, "traceparent", 11) == 0
               || strncasecmp(name, "x-b3-spanid", 11) == 0;
    case 12:
        return strncasecmp(name, "x-b3-traceid", 12) == 0
               || strncasecmp(name, "x-b3-sampled", 12) == 0;
    case 17:
        return strncasecmp(name, "x-b3-parentspanid", 17) == 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Outgoing context                                                    */

#define trace_put_lit(p, s)                                                  \
    (memcpy((p), (s), sizeof(s) - 1), (p) + sizeof(s) - 1)

static char *
trace_put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

int
mg_trace_add_headers(const mg_trace_t *t, const mg_tracing_conf_t *conf,
                     const mg_h1_request_t *r, mg_buf_t *b)
{
    char buf[MG_TRACE_HEADERS_MAX], tid[33], cid[16], sid[16], *p = buf;
    const mg_h1_header_t *h;
    size_t tl;
    unsigned i;

    tl = trace_id_text(t->trace_hi, t->trace_lo, t->trace128, tid);
    trace_hex64(cid, t->client_id);
    trace_hex64(sid, t->server_id);
    if (conf->propagate & MG_TRACE_PROP_W3C) {
        /* A 64-bit B3 trace id is the low half of a W3C one. */
        p = trace_put_lit(p, "traceparent: 00-");
        if (tl == 16) {
            p = trace_put_lit(p, "0000000000000000");
        }
        p = trace_put(p, tid, tl);
        *p++ = '-';
        p = trace_put(p, cid, 16);
        p = t->sampled ? trace_put_lit(p, "-01\r\n")
                       : trace_put_lit(p, "-00\r\n");
    }
    if (conf->propagate & MG_TRACE_PROP_B3_SINGLE) {
        p = trace_put_lit(p, "b3: ");
        p = trace_put(p, tid, tl);
        *p++ = '-';
        p = trace_put(p, cid, 16);
        *p++ = '-';
        *p++ = t->debug ? 'd' : t->sampled ? '1' : '0';
        *p++ = '-';
        p = trace_put(p, sid, 16);
        p = trace_put_lit(p, "\r\n");
    }
    if (conf->propagate & MG_TRACE_PROP_B3) {
        p = trace_put_lit(p, "X-B3-TraceId: ");
        p = trace_put(p, tid, tl);
        p = trace_put_lit(p, "\r\nX-B3-SpanId: ");
        p = trace_put(p, cid, 16);
        p = trace_put_lit(p, "\r\nX-B3-ParentSpanId: ");
        p = trace_put(p, sid, 16);
        /* Debug implies the accept decision (B3: X-B3-Flags). */
        p = t->debug ? trace_put_lit(p, "\r\nX-B3-Flags: 1\r\n")
            : t->sampled ? trace_put_lit(p, "\r\nX-B3-Sampled: 1\r\n")
                         : trace_put_lit(p, "\r\nX-B3-Sampled: 0\r\n");
    }
    if (mg_buf_room(b) < (size_t)(p - buf)) {
        return MG_ERROR;
    }
    memcpy(b->last, buf, (size_t)(p - buf));
    b->last += p - buf;
    if (!t->from_w3c || !(conf->propagate & MG_TRACE_PROP_W3C)) {
        return MG_OK;
    }
    /* Vendor state belongs with the traceparent it came with. */
    for (i = 0; i < r->nheaders; i++) {
        h = &r->headers[i];
        if (!mg_str_caseeq_lit(h->name, "tracestate")) {
            continue;
        }
        if (mg_buf_room(b) < h->value.len + 14) {
            return MG_ERROR;
        }
        b->last = trace_put_lit(b->last, "tracestate: ");
        b->last = trace_put(b->last, h->value.data, h->value.len);
        b->last = trace_put_lit(b->last, "\r\n");
    }
    return MG_OK;
}

/* ------------------------------------------------------------------ */
/* Request hooks                                                       */

void
mg_trace_request_start(mg_client_t *c, const mg_h1_request_t *r)
{
    const mg_tracing_conf_t *conf = c->ctx->snap->tracing;
    mg_trace_t *t = &c->trace;
    mg_trace_in_t in;
    unsigned from;

    memset(t, 0, sizeof(*t));
    if (c->lc->admin) {
        return;   /* its pages are ours, not part of any trace */
    }
    from = mg_trace_extract(r, &in);
    t->active = 1;
    t->from_w3c = from == MG_TRACE_FROM_W3C;
    if (in.span_id != 0) {
        t->trace_hi = in.trace_hi;
        t->trace_lo = in.trace_lo;
        t->trace128 = in.trace128;
        t->parent_id = in.span_id;
    } else {
        do {
            t->trace_hi = trace_rand(c->ctx);
            t->trace_lo = trace_rand(c->ctx);
        } while ((t->trace_hi | t->trace_lo) == 0);
        t->trace128 = 1;
    }
    t->server_id = trace_span_id(c->ctx);
    do {
        t->client_id = trace_span_id(c->ctx);
    } while (t->client_id == t->server_id);
    t->debug = in.debug;
    if (in.sampled != -1) {
        t->sampled = in.sampled;
    } else {
        t->sampled = trace_rand(c->ctx) >> 32 < conf->sample_below;
    }
}

/* Copies |n| bytes of |s| into |dst| of |size| bytes, cut to fit and
 * NUL-terminated. */
static void
trace_copy(char *dst, size_t size, const char *s, size_t n)
{
    n = mg_min(n, size - 1);
    memcpy(dst, s, n);
    dst[n] = '\0';
}

#define trace_copy_str(dst, s) trace_copy((dst), sizeof(dst), (s), strlen(s))

/* The address of |ss| as text and its port; "" for no address or a
 * wildcard one. */
static void
trace_sockaddr(const struct sockaddr_storage *ss, char *ip, uint16_t *port)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

    ip[0] = '\0';
    *port = 0;
    if (ss->ss_family == AF_INET) {
        *port = ntohs(sin->sin_port);
        if (sin->sin_addr.s_addr != htonl(INADDR_ANY)) {
            inet_ntop(AF_INET, &sin->sin_addr, ip, TRACE_IP_LEN);
        }
    } else if (ss->ss_family == AF_INET6) {
        *port = ntohs(sin6->sin6_port);
        if (!IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)) {
            inet_ntop(AF_INET6, &sin6->sin6_addr, ip, TRACE_IP_LEN);
        }
    }
}

/* "10.0.0.1:80" or "[::1]:80" (mg_dns_peer_t.text) into its parts. */
static void
trace_peer_text(const char *text, char *ip, uint16_t *port)
{
    const char *colon;
    size_t n;

    ip[0] = '\0';
    *port = 0;
    if (text[0] == '[') {
        colon = strstr(text, "]:");
        if (colon == NULL) {
            return;
        }
        n = (size_t)(colon - text - 1);
        trace_copy(ip, TRACE_IP_LEN, text + 1, n);
        colon++;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            return;
        }
        trace_copy(ip, TRACE_IP_LEN, text, (size_t)(colon - text));
    }
    *port = (uint16_t)atoi(colon + 1);
}

static int64_t
trace_us(double t)
{
    return (int64_t)(t * 1e6);
}

static void
trace_rec_fill(trace_rec_t *rec, const mg_client_t *c)
{
    const mg_trace_t *t = &c->trace;
    const mg_snapshot_t *snap = c->ctx->snap;
    const mg_route_t *rt = c->route;
    const mg_endpoint_conf_t *ep = c->ep;
    const char *q;

    memset(rec, 0, sizeof(*rec));
    rec->trace_hi = t->trace_hi;
    rec->trace_lo = t->trace_lo;
    rec->trace128 = t->trace128;
    rec->debug = t->debug;
    rec->parent_id = t->parent_id;
    rec->server_id = t->server_id;
    rec->client_id = t->client_id;
    rec->start_us = trace_us(c->start);
    rec->end_us = trace_us(ev_time());
    rec->status = (uint16_t)c->status;
    trace_copy(rec->method, sizeof(rec->method), c->method, c->method_len);
    q = memchr(c->target, '?', c->target_len);
    trace_copy(rec->path, sizeof(rec->path), c->target,
               q != NULL ? (size_t)(q - c->target) : c->target_len);
    trace_copy(rec->host, sizeof(rec->host), c->host, c->host_len);
    trace_copy_str(rec->request_id, c->request_id);
    trace_copy_str(rec->client_ip, c->client_ip);
    trace_copy_str(rec->listener, c->lc->name);
    trace_sockaddr(&c->lc->addr, rec->local_ip, &rec->local_port);
    if (rt != NULL) {
        if (rt->name != NULL) {
            trace_copy_str(rec->route, rt->name);
        } else {
            trace_copy(rec->route, sizeof(rec->route), rt->path.data,
                       rt->path.len);
        }
    }
    trace_copy_str(rec->region, snap->gateway.region);
    if (t->client_start == 0 || rt == NULL || rt->cluster == NULL) {
        return;
    }
    rec->client_start_us = trace_us(t->client_start);
    rec->upstream_status = c->resp_head_done ? (uint16_t)c->status : 0;
    rec->retries = (uint16_t)(c->attempts > 1 ? c->attempts - 1 : 0);
    trace_copy_str(rec->cluster, rt->cluster->name);
    if (ep == NULL) {
        return;
    }
    rec->priority = (uint16_t)ep->priority;
    trace_copy_str(rec->endpoint, ep->address);
    trace_copy_str(rec->ep_region, ep->region != NULL ? ep->region->name
                                                      : snap->gateway.region);
    if (c->upstream_addr[0] != '\0') {
        trace_peer_text(c->upstream_addr, rec->ep_ip, &rec->ep_port);
    } else {
        trace_sockaddr(&ep->addr, rec->ep_ip, &rec->ep_port);
    }
}

void
mg_trace_request_end(mg_client_t *c)
{
    mg_trace_t *t = &c->trace;
    unsigned met = c->ctx->snap->met, nspans, slot;
    trace_ring_t *ring;
    uint64_t head, tail;

    if (!t->active) {
        return;
    }
    t->active = 0;
    if (!t->sampled) {
        return;
    }
    nspans = t->client_start != 0 ? 2 : 1;
    mg_met_add(met + MG_MET_G_SPANS_SAMPLED, nspans);
    slot = mg_metrics_slot();
    if (trace_rings == NULL || slot >= MG_MET_PROCS) {
        mg_met_add(met + MG_MET_G_SPANS_DROPPED, nspans);
        return;
    }
    ring = &trace_rings[slot];
    head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    /* Acquire: a consumer's copy of the record we overwrite is done. */
    tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    if (head - tail >= MG_TRACE_RING) {
        mg_met_add(met + MG_MET_G_SPANS_DROPPED, nspans);
        return;
    }
    trace_rec_fill(&ring->recs[head % MG_TRACE_RING], c);
    atomic_store_explicit(&ring->head, head + 1, memory_order_release);
}

/* Takes the oldest record of |ring| into |rec|. 1, or 0 when empty. */
static int
trace_ring_take(trace_ring_t *ring, trace_rec_t *rec)
{
    uint64_t head, tail;

    tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    for (;;) {
        head = atomic_load_explicit(&ring->head, memory_order_acquire);
        if (tail >= head) {
            return 0;
        }
        memcpy(rec, &ring->recs[tail % MG_TRACE_RING], sizeof(*rec));
        /* On failure |tail| is reloaded: another consumer took it. */
        if (atomic_compare_exchange_strong_explicit(
                &ring->tail, &tail, tail + 1, memory_order_acq_rel,
                memory_order_acquire)) {
            return 1;
        }
    }
}

static uint64_t
trace_ring_pending(trace_ring_t *ring)
{
    uint64_t head, tail;

    tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    return head > tail ? head - tail : 0;
}

/* ------------------------------------------------------------------ */
/* Zipkin v2 JSON                                                      */

/* A growing output buffer; |failed| once an allocation failed. */
typedef struct trace_out_s {
    char *p;
    size_t len;
    size_t cap;
    int failed;
} trace_out_t;

static int
trace_out_reserve(trace_out_t *o, size_t more)
{
    size_t cap;
    char *p;

    if (o->failed) {
        return MG_ERROR;
    }
    if (o->len + more <= o->cap) {
        return MG_OK;
    }
    cap = mg_max(o->cap * 2, o->len + more + 4096);
    p = realloc(o->p, cap);
    if (p == NULL) {
        o->failed = 1;
        return MG_ERROR;
    }
    o->p = p;
    o->cap = cap;
    return MG_OK;
}

static void
trace_out_raw(trace_out_t *o, const char *s, size_t n)
{
    if (trace_out_reserve(o, n) == MG_OK) {
        memcpy(o->p + o->len, s, n);
        o->len += n;
    }
}

#define trace_out_lit(o, s) trace_out_raw((o), (s), sizeof(s) - 1)

static void
trace_out_uint(trace_out_t *o, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)v);

    trace_out_raw(o, num, (size_t)n);
}

/* The length of the UTF-8 sequence at |s| (|n| bytes left), or 0 when it
 * is not one (RFC 3629 §4). */
static size_t
trace_utf8_len(const unsigned char *s, size_t n)
{
    size_t len, i;

    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f)
        || (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f)) {
        return 0;   /* overlong, a surrogate, or past U+10FFFF */
    }
    return len;
}

/*
 * |s| as a JSON string. Bytes that are not UTF-8 (a value cut short, a
 * client's Latin-1) become U+FFFD: a collector refuses a whole batch for
 * one bad byte.
 */
static void
trace_out_str(trace_out_t *o, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), len;
    char esc[8];

    /* Worst case: every byte becomes \ufffd (6). */
    if (trace_out_reserve(o, n * 6 + 2) != MG_OK) {
        return;
    }
    o->p[o->len++] = '"';
    while (n > 0) {
        if (*p == '"' || *p == '\\') {
            o->p[o->len++] = '\\';
            o->p[o->len++] = (char)*p;
            len = 1;
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            memcpy(o->p + o->len, esc, 6);
            o->len += 6;
            len = 1;
        } else if ((len = trace_utf8_len(p, n)) == 0) {
            memcpy(o->p + o->len, "\\ufffd", 6);
            o->len += 6;
            len = 1;
        } else {
            memcpy(o->p + o->len, p, len);
            o->len += len;
        }
        p += len;
        n -= len;
    }
    o->p[o->len++] = '"';
}

static void
trace_out_key(trace_out_t *o, int *first, const char *key)
{
    if (!*first) {
        trace_out_lit(o, ",");
    }
    *first = 0;
    trace_out_str(o, key);
    trace_out_lit(o, ":");
}

static void
trace_out_kv(trace_out_t *o, int *first, const char *key, const char *v)
{
    trace_out_key(o, first, key);
    trace_out_str(o, v);
}

static void
trace_out_kv_uint(trace_out_t *o, int *first, const char *key, uint64_t v)
{
    char num[24];

    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    trace_out_kv(o, first, key, num);
}

static void
trace_out_id(trace_out_t *o, int *first, const char *key, uint64_t id)
{
    char hex[17];

    trace_hex64(hex, id);
    hex[16] = '\0';
    trace_out_kv(o, first, key, hex);
}

/* {"serviceName":..,"ipv4"|"ipv6":..,"port":..}, each part when known. */
static void
trace_out_endpoint(trace_out_t *o, const char *service, const char *ip,
                   unsigned port)
{
    int f = 1;

    trace_out_lit(o, "{");
    if (service != NULL && service[0] != '\0') {
        trace_out_kv(o, &f, "serviceName", service);
    }
    if (ip[0] != '\0') {
        trace_out_kv(o, &f, strchr(ip, ':') ? "ipv6" : "ipv4", ip);
    }
    if (port != 0) {
        trace_out_key(o, &f, "port");
        trace_out_uint(o, port);
    }
    trace_out_lit(o, "}");
}

/* The members every span of |rec| starts with. */
static void
trace_out_span_head(trace_out_t *o, const trace_rec_t *rec, uint64_t id,
                    uint64_t parent, const char *kind, const char *what,
                    int64_t start, int64_t end)
{
    char tid[33], name[TRACE_METHOD_LEN + TRACE_ROUTE_LEN + 2];
    size_t i, n;
    int f = 1;

    trace_out_lit(o, "{");
    trace_id_text(rec->trace_hi, rec->trace_lo, rec->trace128, tid);
    trace_out_kv(o, &f, "traceId", tid);
    trace_out_id(o, &f, "id", id);
    if (parent != 0) {
        trace_out_id(o, &f, "parentId", parent);
    }
    trace_out_kv(o, &f, "kind", kind);
    /* "get users": lower case, as Zipkin shows names. */
    n = strlen(rec->method);
    for (i = 0; i < n; i++) {
        name[i] = mg_tolower(rec->method[i]);
    }
    if (what[0] != '\0') {
        name[n++] = ' ';
        memcpy(name + n, what, strlen(what) + 1);
    } else {
        name[n] = '\0';
    }
    trace_out_kv(o, &f, "name", name);
    trace_out_key(o, &f, "timestamp");
    trace_out_uint(o, (uint64_t)mg_max(start, 0));
    /* Zipkin wants at least 1 us. */
    trace_out_key(o, &f, "duration");
    trace_out_uint(o, (uint64_t)mg_max(end - start, 1));
    if (rec->debug) {
        trace_out_lit(o, ",\"debug\":true");
    }
}

/* Appends the spans of |rec| to the array in |o|; returns how many. */
static unsigned
trace_out_rec(trace_out_t *o, const trace_rec_t *rec,
              const mg_tracing_conf_t *conf)
{
    int f;

    trace_out_span_head(o, rec, rec->server_id, rec->parent_id, "SERVER",
                        rec->route, rec->start_us, rec->end_us);
    trace_out_lit(o, ",\"localEndpoint\":");
    trace_out_endpoint(o, conf->service_name, rec->local_ip, rec->local_port);
    trace_out_lit(o, ",\"remoteEndpoint\":");
    trace_out_endpoint(o, NULL, rec->client_ip, 0);
    trace_out_lit(o, ",\"tags\":{");
    f = 1;
    trace_out_kv(o, &f, "http.method", rec->method);
    trace_out_kv(o, &f, "http.path", rec->path);
    if (rec->status != 0) {
        trace_out_kv_uint(o, &f, "http.status_code", rec->status);
    }
    if (rec->status == 0 || rec->status >= 500) {
        trace_out_kv(o, &f, "error", rec->status == 0 ? "no response"
                                                      : "server error");
    }
    trace_out_kv(o, &f, "http.host", rec->host);
    trace_out_kv(o, &f, "request_id", rec->request_id);
    trace_out_kv(o, &f, "listener", rec->listener);
    if (rec->route[0] != '\0') {
        trace_out_kv(o, &f, "route", rec->route);
    }
    trace_out_kv(o, &f, "region", rec->region);
    trace_out_lit(o, "}}");
    if (rec->client_start_us == 0) {
        return 1;
    }

    trace_out_lit(o, ",");
    trace_out_span_head(o, rec, rec->client_id, rec->server_id, "CLIENT",
                        rec->cluster, rec->client_start_us, rec->end_us);
    trace_out_lit(o, ",\"localEndpoint\":");
    trace_out_endpoint(o, conf->service_name, rec->local_ip, rec->local_port);
    trace_out_lit(o, ",\"remoteEndpoint\":");
    trace_out_endpoint(o, rec->cluster, rec->ep_ip, rec->ep_port);
    trace_out_lit(o, ",\"tags\":{");
    f = 1;
    trace_out_kv(o, &f, "cluster", rec->cluster);
    if (rec->endpoint[0] != '\0') {
        trace_out_kv(o, &f, "endpoint", rec->endpoint);
        trace_out_kv(o, &f, "region", rec->ep_region);
        trace_out_kv_uint(o, &f, "priority", rec->priority);
    }
    trace_out_kv_uint(o, &f, "retries", rec->retries);
    if (rec->upstream_status != 0) {
        trace_out_kv_uint(o, &f, "http.status_code", rec->upstream_status);
    }
    if (rec->upstream_status == 0 || rec->upstream_status >= 500) {
        trace_out_kv(o, &f, "error", rec->upstream_status == 0
                                         ? "no response" : "server error");
    }
    trace_out_lit(o, "}}");
    return 2;
}

/* ------------------------------------------------------------------ */
/* Export (control process)                                            */

enum {
    EXPORT_IDLE = 0,              /* no POST in flight */
    EXPORT_CONNECTING,
    EXPORT_SENDING,
    EXPORT_HEAD,                  /* reading the response head */
    EXPORT_BODY                   /* ... and skipping its body */
};

struct mg_trace_export_s {
    struct ev_loop *loop;
    const mg_snapshot_t *snap;
    const mg_tracing_conf_t *conf;
    ev_timer tick;                /* looks at the rings */
    ev_timer deadline;            /* the POST in flight: conf->timeout */
    ev_io io;
    int fd;                       /* -1, or the (kept) connection */
    unsigned state;               /* EXPORT_* */
    unsigned reused:1;            /* the POST went on a kept connection */
    unsigned retried:1;           /* ... and then on a fresh one */
    unsigned keep_alive:1;        /* the response lets us keep it */
    unsigned nspans;              /* in the POST in flight */
    unsigned next_slot;           /* where the next batch starts taking */
    trace_out_t body;             /* the JSON array */
    char head[512];
    size_t head_len;
    size_t sent;                  /* bytes of head and body written */
    char *in;                     /* response bytes, TRACE_RESP_MAX */
    size_t in_len;
    size_t in_total;              /* response bytes of this POST */
    mg_h1_response_t *resp;
    unsigned status;
    unsigned body_kind;
    int64_t body_left;
    mg_h1_chunked_t ck;
    ev_tstamp last_post;          /* the rings were last empty or drained */
    ev_tstamp last_log;
    unsigned quiet;               /* failures not logged since |last_log| */
    uint64_t quiet_spans;
    trace_rec_t rec;              /* the record being taken */
};

static void export_post(mg_trace_export_t *x);
static void export_connect(mg_trace_export_t *x);
static void export_send(mg_trace_export_t *x);

/* Records waiting in every ring. */
static uint64_t
export_pending(void)
{
    unsigned i, used = mg_min(mg_metrics_slots_used(), MG_MET_PROCS);
    uint64_t n = 0;

    if (trace_rings == NULL) {
        return 0;
    }
    for (i = 0; i < used; i++) {
        n += trace_ring_pending(&trace_rings[i]);
    }
    return n;
}

static void
export_watch(mg_trace_export_t *x, int events)
{
    ev_io_stop(x->loop, &x->io);
    ev_io_set(&x->io, x->fd, events);
    ev_io_start(x->loop, &x->io);
}

static void
export_close(mg_trace_export_t *x)
{
    ev_io_stop(x->loop, &x->io);
    if (x->fd != -1) {
        close(x->fd);
        x->fd = -1;
    }
}

/* The POST in flight is over: its spans were taken or are dropped. */
static void
export_end(mg_trace_export_t *x, int taken)
{
    ev_timer_stop(x->loop, &x->deadline);
    mg_met_add(x->snap->met + (taken ? MG_MET_G_SPANS_SENT
                                     : MG_MET_G_SPANS_DROPPED),
               x->nspans);
    x->nspans = 0;
    x->state = EXPORT_IDLE;
    x->last_post = ev_now(x->loop);
}

/* Logs why spans were dropped, once per TRACE_LOG_EVERY at most: a
 * collector that is down would otherwise fill the log. */
static void
export_log(mg_trace_export_t *x, unsigned nspans, int err, const char *why)
{
    ev_tstamp now = ev_now(x->loop);
    char more[96];

    if (x->last_log != 0 && now - x->last_log < TRACE_LOG_EVERY) {
        x->quiet++;
        x->quiet_spans += nspans;
        return;
    }
    more[0] = '\0';
    if (x->quiet > 0) {
        snprintf(more, sizeof(more), " (and %llu spans in %u failures not "
                 "logged since)", (unsigned long long)x->quiet_spans,
                 x->quiet);
    }
    mg_log_error(MG_LOG_WARN, &mg_log, err, "tracing: %u spans dropped: %s, "
                 "collector: %s%s", nspans, why, x->conf->zipkin, more);
    x->last_log = now;
    x->quiet = 0;
    x->quiet_spans = 0;
}

/* The POST failed. A kept connection the collector closed before we used
 * it fails without an answer: the batch goes once more, on a fresh one. */
static void
export_fail(mg_trace_export_t *x, int err, const char *why, int may_retry)
{
    export_close(x);
    if (may_retry && x->reused && !x->retried && x->in_total == 0) {
        x->retried = 1;
        x->sent = 0;
        export_connect(x);
        return;
    }
    export_log(x, x->nspans, err, why);
    export_end(x, 0);
}

static void
export_on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    export_fail(w->data, 0, "the POST timed out", 0);
}

/* A full response arrived: keep the connection if it may be. */
static void
export_done(mg_trace_export_t *x)
{
    char why[64];
    unsigned n = x->nspans;

    if (!x->keep_alive || x->in_len > 0) {
        export_close(x);
    } else {
        ev_io_stop(x->loop, &x->io);
    }
    if (x->status >= 200 && x->status <= 299) {
        export_end(x, 1);
    } else {
        snprintf(why, sizeof(why), "the collector answered %u", x->status);
        export_log(x, n, 0, why);
        export_end(x, 0);
    }
    /* A full batch is already waiting: no need to wait for the tick. */
    if (export_pending() >= x->conf->batch) {
        export_post(x);
    }
}

/* Skips the response body in x->in. MG_OK when it ended, MG_AGAIN, or
 * MG_ERROR. */
static int
export_skip_body(mg_trace_export_t *x)
{
    size_t used = 0;
    int rc;

    switch (x->body_kind) {
    case MG_H1_BODY_NONE:
        return MG_OK;
    case MG_H1_BODY_LENGTH:
        used = (size_t)mg_min((int64_t)x->in_len, x->body_left);
        x->body_left -= (int64_t)used;
        rc = x->body_left == 0 ? MG_OK : MG_AGAIN;
        break;
    case MG_H1_BODY_CHUNKED:
        rc = mg_h1_chunked_parse(&x->ck, x->in, x->in_len, &used, NULL, 0,
                                 0);
        if (rc != MG_OK && rc != MG_AGAIN) {
            return MG_ERROR;
        }
        break;
    default:
        /* Until the close. */
        used = x->in_len;
        rc = MG_AGAIN;
        break;
    }
    memmove(x->in, x->in + used, x->in_len - used);
    x->in_len -= used;
    return rc;
}

/* Parses what arrived. MG_OK when the response is complete, MG_AGAIN, or
 * MG_ERROR. */
static int
export_parse(mg_trace_export_t *x)
{
    int rc;

    while (x->state == EXPORT_HEAD) {
        rc = mg_h1_parse_response(x->resp, x->in, x->in_len,
                                  MG_H1_METHOD_POST, TRACE_RESP_MAX);
        if (rc == MG_AGAIN) {
            return x->in_len == TRACE_RESP_MAX ? MG_ERROR : MG_AGAIN;
        }
        if (rc < 0) {
            return MG_ERROR;
        }
        memmove(x->in, x->in + rc, x->in_len - (size_t)rc);
        x->in_len -= (size_t)rc;
        if (x->resp->status < 200) {
            continue;   /* 100 Continue and the like */
        }
        x->status = x->resp->status;
        x->keep_alive = x->resp->keep_alive;
        x->body_kind = x->resp->body_kind;
        x->body_left = x->resp->content_length;
        memset(&x->ck, 0, sizeof(x->ck));
        x->state = EXPORT_BODY;
    }
    return export_skip_body(x);
}

static void
export_recv(mg_trace_export_t *x)
{
    ssize_t n;
    int rc;

    for (;;) {
        n = recv(x->fd, x->in + x->in_len, TRACE_RESP_MAX - x->in_len, 0);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return;
            }
            export_fail(x, errno, "cannot read the response", 1);
            return;
        }
        if (n == 0) {
            if (x->state == EXPORT_BODY && x->body_kind == MG_H1_BODY_CLOSE) {
                x->keep_alive = 0;
                export_done(x);
                return;
            }
            export_fail(x, 0, "the collector closed the connection", 1);
            return;
        }
        x->in_len += (size_t)n;
        x->in_total += (size_t)n;
        rc = export_parse(x);
        if (rc == MG_OK) {
            export_done(x);
            return;
        }
        if (rc == MG_ERROR) {
            export_fail(x, 0, "bad response from the collector", 0);
            return;
        }
    }
}

static void
export_send(mg_trace_export_t *x)
{
    struct iovec iov[2];
    size_t total = x->head_len + x->body.len;
    ssize_t n;
    int cnt;

    while (x->sent < total) {
        cnt = 0;
        if (x->sent < x->head_len) {
            iov[cnt].iov_base = x->head + x->sent;
            iov[cnt++].iov_len = x->head_len - x->sent;
            iov[cnt].iov_base = x->body.p;
            iov[cnt++].iov_len = x->body.len;
        } else {
            iov[cnt].iov_base = x->body.p + (x->sent - x->head_len);
            iov[cnt++].iov_len = total - x->sent;
        }
        n = writev(x->fd, iov, cnt);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                export_watch(x, EV_WRITE);
                return;
            }
            export_fail(x, errno, "cannot send the spans", 1);
            return;
        }
        x->sent += (size_t)n;
    }
    x->state = EXPORT_HEAD;
    export_watch(x, EV_READ);
}

static void
export_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_trace_export_t *x = w->data;
    socklen_t len = sizeof(int);
    int err = 0;

    switch (x->state) {
    case EXPORT_CONNECTING:
        if (getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
            err = errno;
        }
        if (err != 0) {
            export_fail(x, err, "cannot connect", 0);
            return;
        }
        x->state = EXPORT_SENDING;
        export_send(x);
        break;
    case EXPORT_SENDING:
        export_send(x);
        break;
    case EXPORT_HEAD:
    case EXPORT_BODY:
        export_recv(x);
        break;
    default:
        /* A kept connection spoke out of turn, or closed: drop it. */
        export_close(x);
        break;
    }
}

static void
export_connect(mg_trace_export_t *x)
{
    const mg_tracing_conf_t *conf = x->conf;
    char peek;
    ssize_t n;
    int one = 1;

    x->in_len = 0;
    x->in_total = 0;
    if (x->fd != -1) {
        /* A kept connection the collector closed meanwhile reads EOF. */
        n = recv(x->fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            x->reused = 1;
            x->state = EXPORT_SENDING;
            export_send(x);
            return;
        }
        export_close(x);
    }
    x->reused = 0;
    x->fd = socket(conf->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK
                   | SOCK_CLOEXEC, 0);
    if (x->fd == -1) {
        export_fail(x, errno, "socket() failed", 0);
        return;
    }
    (void)setsockopt(x->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(x->fd, (const struct sockaddr *)&conf->addr, conf->addrlen)
        == -1) {
        if (errno != EINPROGRESS) {
            export_fail(x, errno, "cannot connect", 0);
            return;
        }
        x->state = EXPORT_CONNECTING;
        export_watch(x, EV_WRITE);
        return;
    }
    x->state = EXPORT_SENDING;
    export_send(x);
}

/* Takes up to a batch of spans from the rings, a record from each ring in
 * turn, and POSTs them. */
static void
export_post(mg_trace_export_t *x)
{
    const mg_tracing_conf_t *conf = x->conf;
    unsigned used = mg_min(mg_metrics_slots_used(), MG_MET_PROCS);
    unsigned nspans = 0, empty = 0, s;
    int n;

    if (trace_rings == NULL || used == 0) {
        return;
    }
    x->body.len = 0;
    x->body.failed = 0;
    trace_out_lit(&x->body, "[");
    s = x->next_slot % used;
    /* A request's two spans stay together, so a batch may hold one more
     * than conf->batch. */
    while (nspans < conf->batch && empty < used) {
        if (trace_ring_take(&trace_rings[s], &x->rec)) {
            if (nspans > 0) {
                trace_out_lit(&x->body, ",");
            }
            nspans += trace_out_rec(&x->body, &x->rec, conf);
            empty = 0;
        } else {
            empty++;
        }
        s = (s + 1) % used;
    }
    x->next_slot = s;
    trace_out_lit(&x->body, "]");
    x->last_post = ev_now(x->loop);
    if (nspans == 0) {
        return;
    }
    x->nspans = nspans;
    if (x->body.failed) {
        export_log(x, nspans, ENOMEM, "no memory for the batch");
        export_end(x, 0);
        return;
    }
    n = snprintf(x->head, sizeof(x->head),
                 "POST /api/v2/spans HTTP/1.1\r\nHost: %s\r\n"
                 "User-Agent: meshgate/" MG_VERSION_STRING "\r\n"
                 "Content-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n", conf->zipkin, x->body.len);
    x->head_len = (size_t)mg_min(n, (int)sizeof(x->head) - 1);
    x->sent = 0;
    x->retried = 0;
    ev_timer_set(&x->deadline, conf->timeout, 0.);
    ev_timer_start(x->loop, &x->deadline);
    export_connect(x);
}

static void
export_on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_trace_export_t *x = w->data;
    uint64_t pending;

    if (x->state != EXPORT_IDLE) {
        return;   /* spans wait in the rings meanwhile */
    }
    pending = export_pending();
    if (pending == 0) {
        /* The next span waits at most flush_interval from now. */
        x->last_post = ev_now(loop);
        return;
    }
    if (pending >= x->conf->batch
        || ev_now(loop) - x->last_post >= x->conf->flush_interval) {
        export_post(x);
    }
}

mg_trace_export_t *
mg_trace_export_start(struct ev_loop *loop, const mg_snapshot_t *snap)
{
    mg_trace_export_t *x;
    double poll = mg_min(snap->tracing->flush_interval, TRACE_POLL);

    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return NULL;
    }
    x->in = malloc(TRACE_RESP_MAX);
    x->resp = malloc(sizeof(*x->resp));
    if (x->in == NULL || x->resp == NULL) {
        free(x->in);
        free(x->resp);
        free(x);
        return NULL;
    }
    x->loop = loop;
    x->snap = snap;
    x->conf = snap->tracing;
    x->fd = -1;
    x->last_post = ev_now(loop);
    ev_init(&x->io, export_on_io);
    x->io.data = x;
    ev_init(&x->deadline, export_on_deadline);
    x->deadline.data = x;
    ev_timer_init(&x->tick, export_on_tick, poll, poll);
    x->tick.data = x;
    ev_timer_start(loop, &x->tick);
    return x;
}

void
mg_trace_export_stop(mg_trace_export_t *x)
{
    if (x == NULL) {
        return;
    }
    ev_timer_stop(x->loop, &x->tick);
    if (x->state != EXPORT_IDLE) {
        export_close(x);
        export_end(x, 0);
    }
    export_close(x);
    free(x->body.p);
    free(x->in);
    free(x->resp);
    free(x);
}
