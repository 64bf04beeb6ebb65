/*
 * Distributed tracing: W3C Trace Context and B3 propagation, Zipkin v2
 * spans.
 *
 * Request path (workers). With `tracing` configured, each proxied request
 * gets a trace context: the caller's, from a valid traceparent, b3 or
 * X-B3-* header (in that order), or a new one. The upstream request
 * carries the configured formats instead of the incoming ones, with the
 * same trace id, the id of our CLIENT span and the sampling decision. A
 * sampled request ends as one record (its SERVER span, and its CLIENT span
 * when it went to a cluster) in this process's ring of a shared mapping:
 * no lock, no system call, and a full ring drops the record.
 *
 * Export (control process). A timer drains every ring, turns the records
 * into a Zipkin v2 JSON array and POSTs it to the collector over one
 * keep-alive HTTP/1.1 connection, one POST at a time. A failed POST drops
 * its batch; what arrives meanwhile waits in the rings, whose size bounds
 * what tracing may hold.
 */
#ifndef MG_TRACE_H
#define MG_TRACE_H

#include <stdint.h>

#include <ev.h>

#include "mg_core.h"

struct mg_tracing_conf_s;          /* mg_snapshot.h */

#define MG_TRACE_RING        256  /* records per process slot */
#define MG_TRACE_HEADERS_MAX 384  /* head bytes our headers may add */

/* A request's trace context (mg_client_t.trace), zero when tracing is
 * off: every hook then tests one bit. */
typedef struct mg_trace_s {
    uint64_t trace_hi;            /* 0 with a 64-bit trace id */
    uint64_t trace_lo;
    uint64_t parent_id;           /* the caller's span; 0 = a new trace */
    uint64_t server_id;           /* our SERVER span */
    uint64_t client_id;           /* our CLIENT span: upstream's parent */
    double client_start;          /* the first upstream try (ev_time());
                                   * 0 = none, and no CLIENT span */
    unsigned active:1;            /* propagated upstream */
    unsigned sampled:1;           /* recorded and exported */
    unsigned debug:1;             /* B3 debug flag: sampled, and said so */
    unsigned trace128:1;          /* the trace id has 128 bits */
    unsigned from_w3c:1;          /* from a valid traceparent: its
                                   * tracestate passes on */
} mg_trace_t;

/* What the incoming headers say (mg_trace_extract()). */
enum {
    MG_TRACE_FROM_NONE = 0,
    MG_TRACE_FROM_W3C,            /* traceparent */
    MG_TRACE_FROM_B3,             /* b3 */
    MG_TRACE_FROM_B3_MULTI        /* X-B3-* */
};

typedef struct mg_trace_in_s {
    uint64_t trace_hi;
    uint64_t trace_lo;
    uint64_t span_id;             /* 0 when no ids came */
    int sampled;                  /* 1, 0, or -1 for no decision */
    unsigned debug:1;
    unsigned trace128:1;
} mg_trace_in_t;

/*
 * Reads the trace context of |r| into |in|: a traceparent of version 00
 * (lower-case hex, non-zero ids; one header only) first, else a b3
 * header, else X-B3-* headers. Invalid headers count as absent. Returns
 * MG_TRACE_FROM_*; with MG_TRACE_FROM_NONE, |in| has no ids and no
 * decision.
 */
unsigned mg_trace_extract(const mg_h1_request_t *r, mg_trace_in_t *in);

/* Whether |name| is a trace header of any format (traceparent,
 * tracestate, b3, x-b3-*), which the upstream gets from us only. */
int mg_trace_is_header(const char *name, size_t len);

/*
 * Appends the headers of |t| in the formats of |conf| to the upstream head
 * in |b|, and the tracestate fields of |r| when the context came from its
 * traceparent. MG_OK, or MG_ERROR when |b| is full.
 */
int mg_trace_add_headers(const mg_trace_t *t,
                         const struct mg_tracing_conf_s *conf,
                         const mg_h1_request_t *r, mg_buf_t *b);

/* Sets up the trace context of the request |r| of |c| (a configuration
 * with tracing only). */
void mg_trace_request_start(mg_client_t *c, const mg_h1_request_t *r);

/* The request of |c| ended: records its spans when sampled, once. */
void mg_trace_request_end(mg_client_t *c);

/* An upstream try starts at |now| (ev_time()): the first one opens the
 * CLIENT span. */
static inline void
mg_trace_upstream_try(mg_trace_t *t, double now)
{
    if (t->sampled && t->client_start == 0) {
        t->client_start = now;
    }
}

/* Maps the span rings, one per metrics process slot. Master, once,
 * before forking. MG_OK or MG_ERROR. */
int mg_trace_shm_create(void);

typedef struct mg_trace_export_s mg_trace_export_t;

/* Starts exporting the spans of every ring to the collector of
 * |snap->tracing| (not NULL) on |loop|. |snap| must outlive it. Returns
 * the exporter, or NULL when out of memory. Control process. */
mg_trace_export_t *mg_trace_export_start(struct ev_loop *loop,
                                         const mg_snapshot_t *snap);

/* Stops exporting: a POST in flight is abandoned (its spans count as
 * dropped), and |x| is freed. */
void mg_trace_export_stop(mg_trace_export_t *x);

#endif /* MG_TRACE_H */
