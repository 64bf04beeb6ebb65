#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mg_buf.h"
#include "mg_conf.h"
#include "mg_h1.h"
#include "mg_snapshot.h"
#include "mg_trace.h"
#include "tap.h"

/*
 * Unit tests of the trace context: the incoming header parsers (W3C
 * traceparent, B3 single and multi, in that order of precedence, strict
 * about what they accept), the trace header names, the headers written
 * upstream in each format, and the `tracing` section's defaults and
 * checks.
 */

static mg_h1_request_t rq;
static char rq_buf[4096];

/* Parses a request carrying the header lines |hdrs| ("Name: v\r\n"...)
 * into rq. */
static int
request(const char *hdrs)
{
    int n = snprintf(rq_buf, sizeof(rq_buf),
                     "GET / HTTP/1.1\r\nHost: a\r\n%s\r\n", hdrs);

    return mg_h1_parse_request(&rq, rq_buf, (size_t)n, NULL) > 0 ? 0 : -1;
}

/* The format |hdrs| gives, MG_TRACE_FROM_*, with |in| filled. */
static unsigned
extract(const char *hdrs, mg_trace_in_t *in)
{
    if (request(hdrs) != 0) {
        return 99;
    }
    return mg_trace_extract(&rq, in);
}

#define TP(s) "traceparent: " s "\r\n"
#define B3(s) "b3: " s "\r\n"
#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID "00f067aa0ba902b7"

static void
test_traceparent(void)
{
    mg_trace_in_t in;

    is_int(extract(TP("00-" TID "-" SID "-01"), &in), MG_TRACE_FROM_W3C,
           "traceparent: a valid one is taken");
    ok(in.trace_hi == 0x4bf92f3577b34da6ULL
       && in.trace_lo == 0xa3ce929d0e0e4736ULL && in.trace128,
       "traceparent: the 128-bit trace id");
    ok(in.span_id == 0x00f067aa0ba902b7ULL, "traceparent: the parent id");
    is_int(in.sampled, 1, "traceparent: flags 01 is sampled");
    extract(TP("00-" TID "-" SID "-00"), &in);
    is_int(in.sampled, 0, "traceparent: flags 00 is not sampled");
    extract(TP("00-" TID "-" SID "-03"), &in);
    is_int(in.sampled, 1, "traceparent: only bit 0 decides");

    is_int(extract(TP("00-4BF92F3577B34DA6A3CE929D0E0E4736-" SID "-01"), &in),
           MG_TRACE_FROM_NONE, "traceparent: upper-case hex is refused");
    is_int(extract(TP("00-00000000000000000000000000000000-" SID "-01"), &in),
           MG_TRACE_FROM_NONE, "traceparent: a zero trace id is refused");
    is_int(extract(TP("00-" TID "-0000000000000000-01"), &in),
           MG_TRACE_FROM_NONE, "traceparent: a zero parent id is refused");
    is_int(extract(TP("01-" TID "-" SID "-01"), &in), MG_TRACE_FROM_NONE,
           "traceparent: a version other than 00 is refused");
    is_int(extract(TP("ff-" TID "-" SID "-01"), &in), MG_TRACE_FROM_NONE,
           "traceparent: version ff is refused");
    is_int(extract(TP("00-" TID "-" SID "-01-00"), &in), MG_TRACE_FROM_NONE,
           "traceparent: version 00 with more fields is refused");
    is_int(extract(TP("00-" TID "-" SID "-1"), &in), MG_TRACE_FROM_NONE,
           "traceparent: short flags are refused");
    is_int(extract(TP("00-4bf92f3577b34da6a3ce929d0e0e473-" SID "0-01"), &in),
           MG_TRACE_FROM_NONE, "traceparent: misplaced dashes are refused");
    is_int(extract(TP("00_" TID "-" SID "-01"), &in), MG_TRACE_FROM_NONE,
           "traceparent: another separator is refused");
    is_int(extract(TP("00-" TID "-" SID "-0g"), &in), MG_TRACE_FROM_NONE,
           "traceparent: flags must be hex");
    is_int(extract(TP("00-" TID "-" SID "-01") TP("00-" TID "-" SID "-01"),
                   &in),
           MG_TRACE_FROM_NONE, "traceparent: two of them count as none");
    is_int(extract("TraceParent: 00-" TID "-" SID "-01\r\n", &in),
           MG_TRACE_FROM_W3C, "traceparent: the name is case-insensitive");
}

static void
test_b3_single(void)
{
    mg_trace_in_t in;

    is_int(extract(B3(TID "-" SID "-1-05e3ac9a4f6e3b90"), &in),
           MG_TRACE_FROM_B3, "b3: all four fields");
    ok(in.trace128 && in.trace_lo == 0xa3ce929d0e0e4736ULL
       && in.span_id == 0x00f067aa0ba902b7ULL && in.sampled == 1,
       "b3: trace id, span id, sampled");
    is_int(extract(B3("a3ce929d0e0e4736-" SID), &in), MG_TRACE_FROM_B3,
           "b3: a 64-bit trace id without a decision");
    ok(!in.trace128 && in.trace_hi == 0 && in.trace_lo == 0xa3ce929d0e0e4736ULL
       && in.sampled == -1, "b3: 64 bits, no decision");
    is_int(extract(B3(TID "-" SID "-0"), &in), MG_TRACE_FROM_B3,
           "b3: not sampled");
    is_int(in.sampled, 0, "b3: -0 says no");
    extract(B3(TID "-" SID "-d"), &in);
    ok(in.debug && in.sampled == 1, "b3: d is debug, and sampled");
    is_int(extract(B3("0"), &in), MG_TRACE_FROM_B3, "b3: 0 alone");
    ok(in.sampled == 0 && in.span_id == 0, "b3: 0 alone has no ids");
    extract(B3("d"), &in);
    ok(in.debug && in.sampled == 1 && in.span_id == 0, "b3: d alone");
    is_int(extract(B3("x"), &in), MG_TRACE_FROM_NONE,
           "b3: another single character is refused");
    is_int(extract(B3(TID "-" SID "-x"), &in), MG_TRACE_FROM_NONE,
           "b3: a bad sampling state is refused");
    is_int(extract(B3(TID "-" SID "-1-05e3ac9a4f6e3b9"), &in),
           MG_TRACE_FROM_NONE, "b3: a short parent id is refused");
    is_int(extract(B3(TID "-" SID "-1-05e3ac9a4f6e3b90-"), &in),
           MG_TRACE_FROM_NONE, "b3: trailing bytes are refused");
    is_int(extract(B3(TID "-" SID "-1-0000000000000000"), &in),
           MG_TRACE_FROM_NONE, "b3: a zero parent id is refused");
    is_int(extract(B3(TID "-" SID "1"), &in), MG_TRACE_FROM_NONE,
           "b3: a missing dash is refused");
    is_int(extract(B3("4bf92f3577b34da6a3ce-" SID), &in), MG_TRACE_FROM_NONE,
           "b3: a 20-digit trace id is refused");
    is_int(extract(B3(TID "-00f067aa0ba902b"), &in), MG_TRACE_FROM_NONE,
           "b3: a 15-digit span id is refused");
    is_int(extract(B3(TID "-0000000000000000"), &in), MG_TRACE_FROM_NONE,
           "b3: a zero span id is refused");
    is_int(extract(B3("4BF92F3577B34DA6A3CE929D0E0E4736-" SID), &in),
           MG_TRACE_FROM_NONE, "b3: upper-case hex is refused");
    is_int(extract(TP("00-" TID "-" SID "-01") B3("a3ce929d0e0e4736-" SID),
                   &in),
           MG_TRACE_FROM_W3C, "a valid traceparent wins over b3");
    is_int(extract(TP("00-" TID "-" SID "-zz") B3("a3ce929d0e0e4736-" SID),
                   &in),
           MG_TRACE_FROM_B3, "b3 is next when traceparent is invalid");
    ok(!in.trace128, "... and its ids are b3's");
}

static void
test_b3_multi(void)
{
    mg_trace_in_t in;

    is_int(extract("X-B3-TraceId: " TID "\r\nX-B3-SpanId: " SID
                   "\r\nX-B3-ParentSpanId: 05e3ac9a4f6e3b90\r\n"
                   "X-B3-Sampled: 1\r\n", &in),
           MG_TRACE_FROM_B3_MULTI, "X-B3: all headers");
    ok(in.trace128 && in.span_id == 0x00f067aa0ba902b7ULL && in.sampled == 1,
       "X-B3: ids and decision");
    is_int(extract("x-b3-traceid: a3ce929d0e0e4736\r\nx-b3-spanid: " SID
                   "\r\n", &in),
           MG_TRACE_FROM_B3_MULTI, "X-B3: lower-case names, 64-bit id");
    ok(!in.trace128 && in.sampled == -1, "X-B3: no decision");
    is_int(extract("X-B3-Sampled: 0\r\n", &in), MG_TRACE_FROM_B3_MULTI,
           "X-B3: a decision alone");
    ok(in.sampled == 0 && in.span_id == 0, "X-B3: no ids, not sampled");
    extract("X-B3-Sampled: true\r\n", &in);
    is_int(in.sampled, 1, "X-B3: \"true\" is sampled");
    extract("X-B3-Flags: 1\r\nX-B3-Sampled: 0\r\n", &in);
    ok(in.debug && in.sampled == 1, "X-B3-Flags: 1 is debug, and sampled");
    is_int(extract("X-B3-TraceId: " TID "\r\n", &in), MG_TRACE_FROM_NONE,
           "X-B3: a trace id without a span id is nothing");
    is_int(extract("X-B3-TraceId: " TID "\r\nX-B3-SpanId: 00f067aa\r\n", &in),
           MG_TRACE_FROM_NONE, "X-B3: a short span id is refused");
    is_int(extract("X-B3-TraceId: xyz\r\nX-B3-SpanId: " SID
                   "\r\nX-B3-Sampled: 1\r\n", &in),
           MG_TRACE_FROM_B3_MULTI, "X-B3: bad ids, a good decision");
    ok(in.span_id == 0 && in.sampled == 1, "... keeps the decision only");
    extract("X-B3-Sampled: yes\r\n", &in);
    is_int(in.sampled, -1, "X-B3: an unknown decision is none");
    is_int(extract("X-Other: 1\r\n", &in), MG_TRACE_FROM_NONE,
           "no trace header: nothing");
    ok(in.sampled == -1 && in.span_id == 0, "nothing: no ids, no decision");
}

static void
test_is_header(void)
{
    static const char *const yes[] = {
        "traceparent", "TraceState", "b3", "B3", "x-b3-traceid",
        "X-B3-SpanId", "x-b3-parentspanid", "X-B3-Sampled", "x-b3-flags"
    };
    static const char *const no[] = {
        "b4", "traceparents", "tracestat", "x-b3-trace", "x-request-id",
        "b", "x-b3-parentspanidx"
    };
    unsigned i;

    for (i = 0; i < mg_countof(yes); i++) {
        ok(mg_trace_is_header(yes[i], strlen(yes[i])), "%s is a trace header",
           yes[i]);
    }
    for (i = 0; i < mg_countof(no); i++) {
        ok(!mg_trace_is_header(no[i], strlen(no[i])),
           "%s is not a trace header", no[i]);
    }
}

/* The headers of |t| in the formats |propagate|, for the request in rq. */
static const char *
headers(const mg_trace_t *t, unsigned propagate, size_t room, int *rc)
{
    static char out[1024];
    mg_tracing_conf_t conf;
    mg_buf_t b;

    memset(&conf, 0, sizeof(conf));
    conf.propagate = propagate;
    memset(out, 0, sizeof(out));
    b.start = b.pos = b.last = out;
    b.end = out + room;
    *rc = mg_trace_add_headers(t, &conf, &rq, &b);
    return out;
}

static void
test_add_headers(void)
{
    mg_trace_t t;
    const char *s;
    int rc;

    memset(&t, 0, sizeof(t));
    t.trace_hi = 0x4bf92f3577b34da6ULL;
    t.trace_lo = 0xa3ce929d0e0e4736ULL;
    t.trace128 = 1;
    t.server_id = 0x1111111111111111ULL;
    t.client_id = 0x2222222222222222ULL;
    t.sampled = 1;
    t.active = 1;
    request("tracestate: a=1\r\nX-Other: x\r\ntracestate: b=2\r\n");

    s = headers(&t, MG_TRACE_PROP_W3C | MG_TRACE_PROP_B3
                | MG_TRACE_PROP_B3_SINGLE, 1024, &rc);
    is_int(rc, MG_OK, "every format fits");
    ok(strcmp(s, "traceparent: 00-" TID "-2222222222222222-01\r\n"
                 "b3: " TID "-2222222222222222-1-1111111111111111\r\n"
                 "X-B3-TraceId: " TID "\r\n"
                 "X-B3-SpanId: 2222222222222222\r\n"
                 "X-B3-ParentSpanId: 1111111111111111\r\n"
                 "X-B3-Sampled: 1\r\n") == 0,
       "sampled, 128 bits: every format, the CLIENT span as parent");
    t.from_w3c = 1;
    s = headers(&t, MG_TRACE_PROP_W3C, 1024, &rc);
    ok(strcmp(s, "traceparent: 00-" TID "-2222222222222222-01\r\n"
                 "tracestate: a=1\r\ntracestate: b=2\r\n") == 0,
       "a context from traceparent takes its tracestate fields along");
    s = headers(&t, MG_TRACE_PROP_B3, 1024, &rc);
    ok(strstr(s, "tracestate") == NULL, "... but not without W3C");

    t.from_w3c = 0;
    t.trace_hi = 0;
    t.trace128 = 0;
    t.sampled = 0;
    s = headers(&t, MG_TRACE_PROP_W3C | MG_TRACE_PROP_B3_SINGLE, 1024, &rc);
    ok(strcmp(s, "traceparent: 00-0000000000000000a3ce929d0e0e4736"
                 "-2222222222222222-00\r\n"
                 "b3: a3ce929d0e0e4736-2222222222222222-0-1111111111111111"
                 "\r\n") == 0,
       "not sampled, 64 bits: padded in traceparent, 16 digits in b3");
    s = headers(&t, MG_TRACE_PROP_B3, 1024, &rc);
    ok(strstr(s, "X-B3-Sampled: 0\r\n") != NULL, "X-B3-Sampled: 0");

    t.sampled = 1;
    t.debug = 1;
    s = headers(&t, MG_TRACE_PROP_B3 | MG_TRACE_PROP_B3_SINGLE, 1024, &rc);
    ok(strstr(s, "-d-1111111111111111\r\n") != NULL
       && strstr(s, "X-B3-Flags: 1\r\n") != NULL
       && strstr(s, "X-B3-Sampled") == NULL,
       "debug: b3 says d, X-B3-Flags: 1 without X-B3-Sampled");

    s = headers(&t, MG_TRACE_PROP_W3C, 20, &rc);
    is_int(rc, MG_ERROR, "a full buffer is an error");
    ok(s[0] == '\0', "... and nothing was written");
}

/* Loads |text| as a whole configuration; the snapshot, or NULL with the
 * first error in |err|. */
static mg_snapshot_t *
load(const char *text, char *err, size_t errlen)
{
    char path[] = "/tmp/mg-test-trace-XXXXXX";
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    int fd = mkstemp(path);

    if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        perror(path);
        exit(2);
    }
    close(fd);
    snap = mg_conf_load(path, &errs);
    unlink(path);
    snprintf(err, errlen, "%s", errs.n > 0 ? strchr(errs.msgs[0], ':') + 1
                                           : "");
    mg_conf_errors_free(&errs);
    return snap;
}

static void
test_conf(void)
{
    const mg_tracing_conf_t *tc;
    mg_snapshot_t *snap;
    char err[512];

    snap = load("gateway = { region = \"eu-1\"; };\n"
                "tracing = { zipkin = \"localhost:9411\"; };\n",
                err, sizeof(err));
    tc = snap != NULL ? snap->tracing : NULL;
    ok(tc != NULL, "tracing with only a collector loads");
    if (tc == NULL) {
        printf("# %s\n", err);
        return;
    }
    ok(strcmp(tc->service_name, "meshgate-eu-1") == 0,
       "the service is named after the region by default");
    is_int(tc->propagate, MG_TRACE_PROP_W3C | MG_TRACE_PROP_B3,
           "W3C and B3 are written by default");
    ok(tc->sampling_percent == 100 && tc->sample_below == 4294967296ULL,
       "every new trace is sampled by default");
    ok(tc->batch == 100 && tc->flush_interval == 1 && tc->timeout == 5,
       "batch 100, flush_interval 1 s, timeout 5 s by default");
    ok(tc->addr.ss_family == AF_INET && tc->line == 2,
       "localhost is 127.0.0.1; the section's line is kept");
    mg_snapshot_free(snap);

    snap = load("tracing = { zipkin = \"[::1]:9411\"; sampling_percent = 0;"
                " propagate = []; };\n", err, sizeof(err));
    ok(snap != NULL && snap->tracing->addr.ss_family == AF_INET6
       && snap->tracing->sample_below == 0 && snap->tracing->propagate == 0,
       "an IPv6 collector, no sampling, no format");
    mg_snapshot_free(snap);
    snap = load("gateway = { workers = 1; };\n", err, sizeof(err));
    ok(snap != NULL && snap->tracing == NULL, "no section: tracing is off");
    mg_snapshot_free(snap);

    snap = load("tracing = { zipkin = \"*:9411\"; };\n", err, sizeof(err));
    ok(snap == NULL && strstr(err, "1: bad zipkin address \"*:9411\"") != NULL,
       "a wildcard collector is refused");
    snap = load("tracing = { zipkin = \"127.0.0.1:9411\";\n"
                "            colour = 1; };\n", err, sizeof(err));
    ok(snap == NULL
       && strstr(err, "2: unknown key \"colour\" in tracing") != NULL,
       "an unknown key in tracing: its line");
    snap = load("tracing = { sampling_percent = 5.0; };\n", err, sizeof(err));
    ok(snap == NULL
       && strstr(err, "1: missing key \"zipkin\" in tracing") != NULL,
       "zipkin is required");
    snap = load("tracing = { zipkin = \"127.0.0.1:9411\"; };\n"
                "tracing = { zipkin = \"127.0.0.1:9412\"; };\n",
                err, sizeof(err));
    ok(snap == NULL && strstr(err, "2: duplicate") != NULL,
       "tracing appears once");
    snap = load("tracing = { zipkin = \"127.0.0.1:9411\"; "
                "service_name = \"\"; flush_interval = 0; };\n",
                err, sizeof(err));
    ok(snap == NULL, "an empty service name or a zero interval is refused");
}

int
main(void)
{
    test_traceparent();
    test_b3_single();
    test_b3_multi();
    test_is_header();
    test_add_headers();
    test_conf();
    return done_testing();
}
