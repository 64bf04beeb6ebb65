/*
 * libFuzzer harness for the HTTP/1.1 parser (gateway/mg_h1.c). Built and run
 * by t/fuzz/run. Every input goes through the request and response parsers
 * and through the chunked decoder in both modes, split at a point taken from
 * the data, and the results are checked against invariants that hold for
 * any input: lengths within the buffer, strings inside it, the same answer
 * for any split, and prefixes of a valid head being incomplete.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_h1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_assert(c)                                                         \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,         \
                    __LINE__, #c);                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

static mg_h1_request_t fuzz_rq;
static mg_h1_response_t fuzz_rs;

static void
fuzz_str_inside(mg_str_t s, const char *buf, size_t len)
{
    if (s.data == NULL) {
        fuzz_assert(s.len == 0);
        return;
    }
    fuzz_assert(s.data >= buf && s.data <= buf + len);
    fuzz_assert(s.len <= (size_t)(buf + len - s.data));
}

static void
fuzz_headers(const mg_h1_header_t *h, unsigned n, const char *buf, size_t len)
{
    unsigned i;

    fuzz_assert(n <= MG_H1_MAX_HEADERS);
    for (i = 0; i < n; i++) {
        fuzz_str_inside(h[i].name, buf, len);
        fuzz_str_inside(h[i].value, buf, len);
        fuzz_assert(h[i].name.len > 0);
    }
}

static int
fuzz_is_request_err(int rc)
{
    return rc == MG_H1_ERR_BAD_REQUEST || rc == MG_H1_ERR_URI_TOO_LONG ||
           rc == MG_H1_ERR_HEADERS_TOO_LARGE ||
           rc == MG_H1_ERR_BODY_TOO_LARGE || rc == MG_H1_ERR_NOT_IMPLEMENTED ||
           rc == MG_H1_ERR_VERSION;
}

static void
fuzz_request(const char *buf, size_t len, const mg_h1_limits_t *lim, unsigned k)
{
    size_t scanned = 0, i;
    long end, step;
    int rc, rc2;

    rc = mg_h1_parse_request(&fuzz_rq, buf, len, lim);
    fuzz_assert(rc > 0 || rc == MG_AGAIN || fuzz_is_request_err(rc));
    if (rc <= 0) {
        goto find;
    }
    fuzz_assert((size_t)rc == fuzz_rq.head_len && fuzz_rq.head_len <= len);
    fuzz_headers(fuzz_rq.headers, fuzz_rq.nheaders, buf, len);
    fuzz_str_inside(fuzz_rq.method, buf, len);
    fuzz_str_inside(fuzz_rq.target, buf, len);
    fuzz_str_inside(fuzz_rq.path, buf, len);
    fuzz_str_inside(fuzz_rq.query, buf, len);
    fuzz_str_inside(fuzz_rq.host, buf, len);
    fuzz_str_inside(fuzz_rq.upgrade_protocol, buf, len);
    fuzz_assert(fuzz_rq.version_minor <= 1);
    fuzz_assert(fuzz_rq.method_id >= MG_H1_METHOD_OTHER &&
                fuzz_rq.method_id <= MG_H1_METHOD_TRACE);
    fuzz_assert(fuzz_rq.body_kind == MG_H1_BODY_NONE ||
                fuzz_rq.body_kind == MG_H1_BODY_LENGTH ||
                fuzz_rq.body_kind == MG_H1_BODY_CHUNKED);
    fuzz_assert(fuzz_rq.body_kind != MG_H1_BODY_LENGTH ||
                fuzz_rq.content_length > 0);
    fuzz_assert(fuzz_rq.content_length >= -1);
    fuzz_assert(!fuzz_rq.upgrade || fuzz_rq.version_minor == 1);
    fuzz_assert(!fuzz_rq.expect_continue ||
                fuzz_rq.body_kind != MG_H1_BODY_NONE);

    /* The head alone parses the same; a strict prefix of it is incomplete,
     * since nothing in a valid head can be an error early. */
    rc2 = mg_h1_parse_request(&fuzz_rq, buf, (size_t)rc, lim);
    fuzz_assert(rc2 == rc);
    rc2 = mg_h1_parse_request(&fuzz_rq, buf, k % (size_t)rc, lim);
    fuzz_assert(rc2 == MG_AGAIN);
    rc2 = mg_h1_parse_request(&fuzz_rq, buf, (size_t)rc - 1, lim);
    fuzz_assert(rc2 == MG_AGAIN);

    /* The head ends where the parser says it does. */
    scanned = 0;
    end = mg_h1_find_head_end(buf, (size_t)rc, &scanned);
    fuzz_assert(end == rc);

find:
    /* find_head_end gives one answer whatever the feeding pattern. */
    scanned = 0;
    end = mg_h1_find_head_end(buf, len, &scanned);
    fuzz_assert(end == MG_AGAIN || (end > 0 && (size_t)end <= len));
    fuzz_assert(scanned == len);
    scanned = 0;
    step = MG_AGAIN;
    for (i = 1 + k % 7; step == MG_AGAIN; i += 1 + k % 7) {
        if (i > len) {
            i = len;
        }
        step = mg_h1_find_head_end(buf, i, &scanned);
        if (i == len) {
            break;
        }
    }
    fuzz_assert(step == end);
    if (end > 0 && rc > 0) {
        fuzz_assert(end == rc);
    }
}

static void
fuzz_response(const char *buf, size_t len, unsigned method, size_t max)
{
    int rc, rc2;

    rc = mg_h1_parse_response(&fuzz_rs, buf, len, method, max);
    fuzz_assert(rc > 0 || rc == MG_AGAIN || rc == MG_H1_ERR_BAD_RESPONSE);
    if (rc <= 0) {
        return;
    }
    fuzz_assert((size_t)rc == fuzz_rs.head_len && fuzz_rs.head_len <= len);
    fuzz_assert(max == 0 || fuzz_rs.head_len <= max);
    fuzz_headers(fuzz_rs.headers, fuzz_rs.nheaders, buf, len);
    fuzz_str_inside(fuzz_rs.reason, buf, len);
    fuzz_assert(fuzz_rs.status >= 100 && fuzz_rs.status <= 999);
    fuzz_assert(fuzz_rs.body_kind >= MG_H1_BODY_NONE &&
                fuzz_rs.body_kind <= MG_H1_BODY_CLOSE);
    fuzz_assert(fuzz_rs.body_kind != MG_H1_BODY_CLOSE || !fuzz_rs.keep_alive);
    fuzz_assert(fuzz_rs.body_kind != MG_H1_BODY_LENGTH ||
                fuzz_rs.content_length >= 0);
    rc2 = mg_h1_parse_response(&fuzz_rs, buf, (size_t)rc - 1, method, max);
    fuzz_assert(rc2 == MG_AGAIN);
}

/*
 * Runs the decoder over [in, in+len) in pieces ending at |cut| and |len|.
 * Returns the result; |*total| gets the bytes consumed and |out| the
 * decoded data (when |decode|).
 */
static int
fuzz_chunked_run(const char *in, size_t len, size_t cut, int decode,
                 int64_t max_body, char *out, size_t *out_total, size_t *total)
{
    mg_h1_chunked_t st;
    size_t pos = 0, ends[2], c, o;
    unsigned i;
    char *work;
    int rc = MG_AGAIN;

    work = malloc(len ? len : 1);
    fuzz_assert(work != NULL);
    memcpy(work, in, len);
    memset(&st, 0, sizeof(st));
    ends[0] = cut;
    ends[1] = len;
    *total = 0;
    *out_total = 0;
    for (i = 0; i < 2 && rc == MG_AGAIN; i++) {
        if (ends[i] < pos) {
            continue;
        }
        o = 0;
        rc = mg_h1_chunked_parse(&st, work + pos, ends[i] - pos, &c,
                                 decode ? &o : NULL, decode, max_body);
        fuzz_assert(c <= ends[i] - pos);
        fuzz_assert(o <= c);
        fuzz_assert(rc != MG_AGAIN || c == ends[i] - pos);
        fuzz_assert(rc == MG_AGAIN || rc == MG_OK ||
                    rc == MG_H1_ERR_BAD_REQUEST ||
                    rc == MG_H1_ERR_BODY_TOO_LARGE);
        fuzz_assert(decode || o == 0);
        if (decode) {
            memcpy(out + *out_total, work + pos, o);
            *out_total += o;
        }
        *total += c;
        pos = ends[i];
    }
    fuzz_assert(max_body <= 0 || st.data_total <= (uint64_t)max_body);
    if (!decode && rc == MG_OK) {
        /* Forwarded framing is left untouched. */
        fuzz_assert(memcmp(work, in, *total) == 0);
    }
    free(work);
    return rc;
}

static void
fuzz_chunked(const char *in, size_t len, size_t cut, int64_t max_body)
{
    size_t t1, t2, t3, o1, o2, o3;
    char *out1, *out2;
    int rc1, rc2, rc3;

    out1 = malloc(len + 1);
    out2 = malloc(len + 1);
    fuzz_assert(out1 != NULL && out2 != NULL);

    rc1 = fuzz_chunked_run(in, len, len, 1, max_body, out1, &o1, &t1);
    rc2 = fuzz_chunked_run(in, len, cut, 1, max_body, out2, &o2, &t2);
    rc3 = fuzz_chunked_run(in, len, cut, 0, max_body, out2 + len, &o3, &t3);

    /* Splitting never changes the outcome, the bytes consumed (up to an
     * error too) or the data; decoding never changes what is consumed. */
    fuzz_assert(rc1 == rc2 && rc1 == rc3);
    fuzz_assert(o3 == 0);
    fuzz_assert(t1 == t2 && t1 == t3);
    fuzz_assert(o1 == o2 && memcmp(out1, out2, o1) == 0);
    fuzz_assert(o1 <= t1);
    free(out1);
    free(out2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mg_h1_limits_t lim;
    unsigned k = 0;
    char *buf;
    size_t cut;

    if (size > 0) {
        k = data[size - 1];
    }
    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data, size);

    fuzz_request(buf, size, NULL, k);
    /* Small limits, so the 414/431/413 paths are reached with small
     * inputs. */
    memset(&lim, 0, sizeof(lim));
    lim.max_request_line = 16 + (k & 0x3f);
    lim.max_header_size = 64 + (k << 2);
    lim.max_headers = 1 + (k & 0x7);
    lim.max_body_size = k & 0x1f;
    fuzz_request(buf, size, &lim, k >> 3);

    fuzz_response(buf, size, k % 12, 0);
    fuzz_response(buf, size, MG_H1_METHOD_HEAD, 64 + k);

    cut = size ? k * 131u % (size + 1) : 0;
    fuzz_chunked(buf, size, cut, 0);
    fuzz_chunked(buf, size, cut, k & 0x3f);

    free(buf);
    return 0;
}
