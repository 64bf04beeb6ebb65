#include "config.h"

#include <string.h>

#include "mg_h1.h"

/*
 * Strict HTTP/1.1 parsing (RFC 9110, RFC 9112).
 *
 * The head parsers make one pass over the bytes and classify each byte with
 * one lookup in h1_class[], so the common path has no per-byte calls and no
 * allocation. Whatever can be ambiguous between two HTTP implementations
 * (framing, line endings, whitespace around names) is refused rather than
 * repaired: a front proxy that guesses differently from the upstream is how
 * requests get smuggled.
 *
 * Choices the header leaves open:
 * - "Content-Length: 0" gives body_kind MG_H1_BODY_NONE with
 *   content_length 0, so callers test body_kind alone to know whether a body
 *   follows.
 * - For CONNECT the host is the authority-form target (RFC 9110 §7.1).
 * - An absolute-form target without a path gets path "/" (RFC 9112 §3.2.1);
 *   it points at the last '/' of "http://", so every string stays inside
 *   the caller's buffer.
 * - A Connection header that names Host or Content-Length is refused: those
 *   fields are end-to-end, and stripping them as hop-by-hop would change the
 *   framing or the target the upstream sees.
 */

/* Byte classes for h1_class[]. */
#define H1_TCHAR 0x01  /* tchar (RFC 9110 §5.6.2) */
#define H1_VALUE 0x02  /* field-value byte: VCHAR, obs-text, SP, HTAB */
#define H1_TARGET 0x04 /* request-target byte: VCHAR but '#' */
#define H1_HOST 0x08   /* reg-name: unreserved, sub-delims, '%' */
#define H1_QDTEXT 0x10 /* qdtext (RFC 9110 §5.6.4) */
#define H1_HEX 0x20
#define H1_DIGIT 0x40

static const unsigned char h1_class[256] = {
    /* 00 */ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* 08 */ 0x00, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* 10 */ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* 18 */ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* 20 */ 0x12, 0x1f, 0x06, 0x13, 0x1f, 0x1f, 0x1f, 0x1f,
    /* 28 */ 0x1e, 0x1e, 0x1f, 0x1f, 0x1e, 0x1f, 0x1f, 0x16,
    /* 30 */ 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f,
    /* 38 */ 0x7f, 0x7f, 0x16, 0x1e, 0x16, 0x1e, 0x16, 0x16,
    /* 40 */ 0x16, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x1f,
    /* 48 */ 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,
    /* 50 */ 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,
    /* 58 */ 0x1f, 0x1f, 0x1f, 0x16, 0x06, 0x16, 0x17, 0x1f,
    /* 60 */ 0x17, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x1f,
    /* 68 */ 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,
    /* 70 */ 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,
    /* 78 */ 0x1f, 0x1f, 0x1f, 0x16, 0x17, 0x16, 0x1f, 0x00,
    /* 80 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* 88 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* 90 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* 98 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* a0 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* a8 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* b0 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* b8 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* c0 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* c8 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* d0 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* d8 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* e0 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* e8 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* f0 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    /* f8 */ 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
};

#define h1_is(c, cls) (h1_class[(unsigned char)(c)] & (cls))
#define h1_is_ws(c) ((c) == ' ' || (c) == '\t')

#define H1_DEFAULT_REQUEST_LINE 8192
#define H1_DEFAULT_HEADER_SIZE 32768
#define H1_DEFAULT_HEADERS 100
#define H1_DEFAULT_RESPONSE 65536

/* chunk-size is at most 16 hex digits and below 2^62, so sums of sizes
 * cannot overflow and a size never passes for a negative int64_t. */
#define H1_CHUNK_DIGITS 16
#define H1_CHUNK_SIZE_MAX ((uint64_t)1 << 62)
/* A size line with extensions longer than this is an attack, not a client. */
#define H1_CHUNK_LINE_MAX 4096
#define H1_TRAILER_MAX 16384

/* Content-Length has at most 18 digits, which always fits in int64_t. */
#define H1_CL_DIGITS 18

/* Connection options, as bits. */
#define H1_CONN_CLOSE 0x01
#define H1_CONN_KEEPALIVE 0x02
#define H1_CONN_UPGRADE 0x04
#define H1_CONN_OTHER 0x08 /* names another field: second pass */

/* Transfer-Encoding list, over all TE fields of a message. */
typedef struct h1_te_s {
    unsigned codings; /* elements seen */
    unsigned chunked; /* how many of them are "chunked" */
    unsigned last_chunked : 1;
} h1_te_t;

/* What the semantic pass learns from the fields of a message. */
typedef struct h1_fields_s {
    int64_t cl; /* -1 when absent */
    unsigned te_seen : 1;
    unsigned expect_100 : 1;
    unsigned upgrade_seen : 1;
    unsigned conn; /* H1_CONN_* */
    unsigned hosts;
    h1_te_t te;
    mg_str_t host;
    mg_str_t upgrade;
} h1_fields_t;

/*
 * Word-at-a-time tests (the classic "has a byte less than n" trick): exact
 * about whether any byte of |x| matches, which is all the fast paths need.
 */
#define H1_ONES 0x0101010101010101ULL
#define H1_HIGHS 0x8080808080808080ULL

static inline uint64_t
h1_has_less(uint64_t x, uint64_t n)
{
    return (x - H1_ONES * n) & ~x & H1_HIGHS;
}

static inline uint64_t
h1_has_byte(uint64_t x, uint64_t b)
{
    return h1_has_less(x ^ (H1_ONES * b), 1);
}

/*
 * Skips field-value bytes 8 at a time while none is a CTL or DEL; the byte
 * loop after it finds exactly where the run ends. Long values (cookies,
 * user agents) are most of a head's bytes.
 */
static inline const char *
h1_skip_value(const char *p, const char *end)
{
    uint64_t x;

    while (end - p >= 8) {
        memcpy(&x, p, 8);
        if (h1_has_less(x, 0x20) | h1_has_byte(x, 0x7f)) {
            break;
        }
        p += 8;
    }
    while (p < end && h1_is(*p, H1_VALUE)) {
        p++;
    }
    return p;
}

/* Same for request-target bytes: VCHAR but '#'. */
static inline const char *
h1_skip_target(const char *p, const char *end)
{
    uint64_t x;

    while (end - p >= 8) {
        memcpy(&x, p, 8);
        if (h1_has_less(x, 0x21) | (x & H1_HIGHS) | h1_has_byte(x, 0x7f) |
            h1_has_byte(x, '#')) {
            break;
        }
        p += 8;
    }
    while (p < end && h1_is(*p, H1_TARGET)) {
        p++;
    }
    return p;
}

/* Compares a header name or token against a lowercase literal. */
static inline int
h1_lower_eq(const char *s, const char *lit, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (mg_tolower(s[i]) != lit[i]) {
            return 0;
        }
    }
    return 1;
}

#define h1_lower_eq_lit(s, n, lit)                                             \
    ((n) == sizeof(lit) - 1 && h1_lower_eq((s), (lit), sizeof(lit) - 1))

/* Maps a field name (a valid token) to its MG_H1_HDR_* id. */
static unsigned
h1_header_id(const char *s, size_t n)
{
    switch (n) {
    case 2:
        if (h1_lower_eq(s, "te", 2)) {
            return MG_H1_HDR_TE;
        }
        break;
    case 3:
        if (h1_lower_eq(s, "via", 3)) {
            return MG_H1_HDR_VIA;
        }
        break;
    case 4:
        if (h1_lower_eq(s, "host", 4)) {
            return MG_H1_HDR_HOST;
        }
        break;
    case 6:
        if (h1_lower_eq(s, "expect", 6)) {
            return MG_H1_HDR_EXPECT;
        }
        break;
    case 7:
        if (h1_lower_eq(s, "upgrade", 7)) {
            return MG_H1_HDR_UPGRADE;
        }
        if (h1_lower_eq(s, "trailer", 7)) {
            return MG_H1_HDR_TRAILER;
        }
        break;
    case 10:
        if (h1_lower_eq(s, "connection", 10)) {
            return MG_H1_HDR_CONNECTION;
        }
        if (h1_lower_eq(s, "keep-alive", 10)) {
            return MG_H1_HDR_KEEP_ALIVE;
        }
        break;
    case 12:
        if (h1_lower_eq(s, "x-request-id", 12)) {
            return MG_H1_HDR_X_REQUEST_ID;
        }
        break;
    case 14:
        if (h1_lower_eq(s, "content-length", 14)) {
            return MG_H1_HDR_CONTENT_LENGTH;
        }
        break;
    case 15:
        if (h1_lower_eq(s, "x-forwarded-for", 15)) {
            return MG_H1_HDR_X_FORWARDED_FOR;
        }
        break;
    case 16:
        if (h1_lower_eq(s, "proxy-connection", 16)) {
            return MG_H1_HDR_PROXY_CONNECTION;
        }
        break;
    case 17:
        if (h1_lower_eq(s, "transfer-encoding", 17)) {
            return MG_H1_HDR_TRANSFER_ENCODING;
        }
        if (h1_lower_eq(s, "x-forwarded-proto", 17)) {
            return MG_H1_HDR_X_FORWARDED_PROTO;
        }
        break;
    case 18:
        if (h1_lower_eq(s, "proxy-authenticate", 18)) {
            return MG_H1_HDR_PROXY_AUTHENTICATE;
        }
        break;
    case 19:
        if (h1_lower_eq(s, "proxy-authorization", 19)) {
            return MG_H1_HDR_PROXY_AUTHORIZATION;
        }
        break;
    }
    return MG_H1_HDR_OTHER;
}

/*
 * Hop-by-hop by nature (RFC 9110 §7.6.1, RFC 9112 §6.1, §7.4, §7.8).
 * Proxy-Authorization and Proxy-Authenticate are also meant for the next
 * hop, but the proxy handles them itself, so they are left end-to-end here.
 */
static inline unsigned
h1_header_hop(unsigned id)
{
    switch (id) {
    case MG_H1_HDR_CONNECTION:
    case MG_H1_HDR_KEEP_ALIVE:
    case MG_H1_HDR_PROXY_CONNECTION:
    case MG_H1_HDR_TE:
    case MG_H1_HDR_TRAILER:
    case MG_H1_HDR_TRANSFER_ENCODING:
    case MG_H1_HDR_UPGRADE:
        return 1;
    }
    return 0;
}

/*
 * Parses field lines from |*pp| through the empty line that ends the
 * section (RFC 9112 §5). Every byte is checked as it is met, so garbage in
 * a still incomplete head fails at once. Returns 1 when the section is
 * complete (|*pp| is then past its final CRLF), MG_AGAIN when the data ends
 * first, |bad| on a syntax error, or |many| when a field beyond |max| starts.
 */
static int
h1_parse_fields(const char **pp, const char *end, mg_h1_header_t *hdrs,
                unsigned *nh, unsigned max, int bad, int many)
{
    const char *p = *pp, *name, *v, *ve;
    mg_h1_header_t *h;
    unsigned n = *nh;
    int rc = MG_AGAIN;

    for (;;) {
        if (p == end) {
            break;
        }
        if (*p == '\r') {
            if (p + 1 == end) {
                break;
            }
            if (p[1] != '\n') {
                return bad;
            }
            p += 2;
            rc = 1;
            break;
        }

        /* A line starting with SP or HTAB is obs-fold, and whitespace
         * before the colon is forbidden (RFC 9112 §5.1, §5.2): both stop
         * the name scan on something other than ':'. */
        name = p;
        while (p < end && h1_is(*p, H1_TCHAR)) {
            p++;
        }
        if (p == end) {
            break;
        }
        if (*p != ':' || p == name) {
            return bad;
        }
        if (n >= max) {
            return many;
        }
        h = &hdrs[n];
        h->name.data = name;
        h->name.len = (size_t)(p - name);
        p++;

        while (p < end && h1_is_ws(*p)) {
            p++;
        }
        v = p;
        p = h1_skip_value(p, end);
        if (p == end) {
            break;
        }
        /* NUL, CTLs, DEL and a bare LF end the scan here; a CR must be
         * followed by LF (RFC 9112 §2.2). */
        if (*p != '\r') {
            return bad;
        }
        if (p + 1 == end) {
            break;
        }
        if (p[1] != '\n') {
            return bad;
        }
        ve = p;
        while (ve > v && h1_is_ws(ve[-1])) {
            ve--;
        }
        h->value.data = v;
        h->value.len = (size_t)(ve - v);
        h->id = h1_header_id(h->name.data, h->name.len);
        h->hop_by_hop = h1_header_hop(h->id);
        n++;
        p += 2;
    }

    *pp = p;
    *nh = n;
    return rc;
}

/*
 * Checks "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3) in the bytes available.
 * Returns MG_OK with the digits, MG_AGAIN when a valid prefix ends early, or
 * MG_ERROR. HTTP-name is case-sensitive.
 */
static int
h1_parse_version(const char *p, const char *end, unsigned *major,
                 unsigned *minor)
{
    static const char pat[] = "HTTP/#.#";
    size_t i, n = (size_t)(end - p);

    if (n >= 8 && memcmp(p, "HTTP/1.1", 8) == 0) {
        *major = 1;
        *minor = 1;
        return MG_OK;
    }
    if (n > 8) {
        n = 8;
    }
    for (i = 0; i < n; i++) {
        if (pat[i] == '#' ? !h1_is(p[i], H1_DIGIT) : p[i] != pat[i]) {
            return MG_ERROR;
        }
    }
    if (n < 8) {
        return MG_AGAIN;
    }
    *major = (unsigned)(p[5] - '0');
    *minor = (unsigned)(p[7] - '0');
    return MG_OK;
}

/*
 * Validates uri-host [ ":" port ] (RFC 3986 §3.2.2, RFC 9110 §7.2): a
 * reg-name or IP-literal, then at most 5 port digits. |need_port| is for
 * CONNECT's authority-form. An empty string is not valid here.
 */
static int
h1_host_valid(const char *s, size_t n, int need_port)
{
    const char *p = s, *end = s + n, *ps;

    if (n == 0) {
        return 0;
    }
    if (*p == '[') {
        /* IP-literal: IPv6address or IPvFuture, checked by alphabet. */
        p++;
        while (p < end && (h1_is(*p, H1_HOST) || *p == ':') && *p != '%') {
            p++;
        }
        if (p == end || *p != ']' || p == s + 1) {
            return 0;
        }
        p++;
    } else {
        while (p < end && h1_is(*p, H1_HOST)) {
            if (*p == '%') {
                /* pct-encoded = "%" HEXDIG HEXDIG */
                if (end - p < 3 || !h1_is(p[1], H1_HEX) ||
                    !h1_is(p[2], H1_HEX)) {
                    return 0;
                }
                p += 2;
            }
            p++;
        }
        if (p == s) {
            return 0;
        }
    }
    if (p == end) {
        return !need_port;
    }
    if (*p != ':') {
        return 0;
    }
    ps = ++p;
    while (p < end && h1_is(*p, H1_DIGIT)) {
        p++;
    }
    return p == end && p > ps && p - ps <= 5;
}

/*
 * Adds one Content-Length field to |*cl|. The value is 1*DIGIT, or a list
 * of identical values, which RFC 9110 §8.6 lets a recipient collapse; any
 * other value, or a value different from an earlier field, is an error.
 */
static int
h1_parse_cl(mg_str_t v, int64_t *cl)
{
    const char *p = v.data, *end = v.data + v.len, *d;
    int64_t n;

    if (v.len == 0) {
        return MG_ERROR;
    }
    for (;;) {
        d = p;
        n = 0;
        while (p < end && h1_is(*p, H1_DIGIT)) {
            if (p - d == H1_CL_DIGITS) {
                return MG_ERROR;
            }
            n = n * 10 + (*p - '0');
            p++;
        }
        if (p == d || (*cl >= 0 && *cl != n)) {
            return MG_ERROR;
        }
        *cl = n;
        while (p < end && h1_is_ws(*p)) {
            p++;
        }
        if (p == end) {
            return MG_OK;
        }
        if (*p != ',') {
            return MG_ERROR;
        }
        p++;
        while (p < end && h1_is_ws(*p)) {
            p++;
        }
    }
}

/*
 * Adds one Transfer-Encoding field to |te| (RFC 9112 §6.1): a list of
 * transfer-coding = token *( OWS ";" OWS transfer-parameter ). Parameters
 * are accepted as tokens, '=' and ';' only, which is all that real codings
 * use; "chunked" takes none. Empty elements are refused: they only appear
 * in requests crafted to confuse a parser.
 */
static int
h1_parse_te(mg_str_t v, h1_te_t *te)
{
    const char *p = v.data, *end = v.data + v.len, *t;
    int chunked;

    for (;;) {
        while (p < end && h1_is_ws(*p)) {
            p++;
        }
        t = p;
        while (p < end && h1_is(*p, H1_TCHAR)) {
            p++;
        }
        if (p == t) {
            return MG_ERROR;
        }
        chunked = h1_lower_eq_lit(t, (size_t)(p - t), "chunked");
        while (p < end && h1_is_ws(*p)) {
            p++;
        }
        if (p < end && *p == ';') {
            if (chunked) {
                return MG_ERROR;
            }
            while (p < end && *p != ',' &&
                   (h1_is(*p, H1_TCHAR) || *p == '=' || *p == ';' ||
                    h1_is_ws(*p))) {
                p++;
            }
        }
        te->codings++;
        te->chunked += chunked;
        te->last_chunked = chunked;
        if (p == end) {
            return MG_OK;
        }
        if (*p != ',') {
            return MG_ERROR;
        }
        p++;
    }
}

/*
 * Scans one Connection field: a list of tokens (RFC 9110 §7.6.1), empty
 * elements allowed (§5.6.1). Sets H1_CONN_* bits in |*conn|.
 */
static int
h1_parse_connection(mg_str_t v, unsigned *conn)
{
    const char *p = v.data, *end = v.data + v.len, *t;
    size_t n;

    for (;;) {
        while (p < end && h1_is_ws(*p)) {
            p++;
        }
        t = p;
        while (p < end && h1_is(*p, H1_TCHAR)) {
            p++;
        }
        n = (size_t)(p - t);
        if (n == 0) {
            /* empty element */
        } else if (h1_lower_eq_lit(t, n, "close")) {
            *conn |= H1_CONN_CLOSE;
        } else if (h1_lower_eq_lit(t, n, "keep-alive")) {
            *conn |= H1_CONN_KEEPALIVE;
        } else if (h1_lower_eq_lit(t, n, "upgrade")) {
            *conn |= H1_CONN_UPGRADE;
        } else {
            *conn |= H1_CONN_OTHER;
        }
        while (p < end && h1_is_ws(*p)) {
            p++;
        }
        if (p == end) {
            return MG_OK;
        }
        if (*p != ',') {
            return MG_ERROR;
        }
        p++;
    }
}

/* ASCII case-insensitive comparison of two tokens of length |n|. */
static int
h1_token_caseeq(const char *a, const char *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (mg_tolower(a[i]) != mg_tolower(b[i])) {
            return 0;
        }
    }
    return 1;
}

/*
 * Second pass for Connection options that name other fields: those fields
 * are hop-by-hop too (RFC 9110 §7.6.1). It runs after all fields are known
 * because Connection may come after the fields it names. Options naming
 * Host or Content-Length are refused (see the top of this file).
 */
static int
h1_mark_connection(mg_h1_header_t *hdrs, unsigned nh)
{
    const char *p, *end, *t;
    unsigned i, j;
    size_t n;

    for (i = 0; i < nh; i++) {
        if (hdrs[i].id != MG_H1_HDR_CONNECTION) {
            continue;
        }
        p = hdrs[i].value.data;
        end = p + hdrs[i].value.len;
        while (p < end) {
            while (p < end && !h1_is(*p, H1_TCHAR)) {
                p++;
            }
            t = p;
            while (p < end && h1_is(*p, H1_TCHAR)) {
                p++;
            }
            n = (size_t)(p - t);
            if (n == 0) {
                break;
            }
            if (h1_lower_eq_lit(t, n, "host") ||
                h1_lower_eq_lit(t, n, "content-length")) {
                return MG_ERROR;
            }
            for (j = 0; j < nh; j++) {
                if (!hdrs[j].hop_by_hop && hdrs[j].name.len == n &&
                    h1_token_caseeq(hdrs[j].name.data, t, n)) {
                    hdrs[j].hop_by_hop = 1;
                }
            }
        }
    }
    return MG_OK;
}

/*
 * The semantic pass shared by requests and responses: Content-Length,
 * Transfer-Encoding, Connection and the fields the proxy acts on.
 */
static int
h1_scan_fields(mg_h1_header_t *hdrs, unsigned nh, h1_fields_t *f)
{
    mg_h1_header_t *h;
    unsigned i;

    f->cl = -1;
    f->te_seen = 0;
    f->expect_100 = 0;
    f->upgrade_seen = 0;
    f->conn = 0;
    f->hosts = 0;
    f->te.codings = 0;
    f->te.chunked = 0;
    f->te.last_chunked = 0;
    f->host = mg_str_null;
    f->upgrade = mg_str_null;

    for (i = 0; i < nh; i++) {
        h = &hdrs[i];
        switch (h->id) {
        case MG_H1_HDR_OTHER:
            break;
        case MG_H1_HDR_HOST:
            f->hosts++;
            f->host = h->value;
            break;
        case MG_H1_HDR_CONTENT_LENGTH:
            if (h1_parse_cl(h->value, &f->cl) != MG_OK) {
                return MG_ERROR;
            }
            break;
        case MG_H1_HDR_TRANSFER_ENCODING:
            f->te_seen = 1;
            if (h1_parse_te(h->value, &f->te) != MG_OK) {
                return MG_ERROR;
            }
            break;
        case MG_H1_HDR_CONNECTION:
            if (h1_parse_connection(h->value, &f->conn) != MG_OK) {
                return MG_ERROR;
            }
            break;
        case MG_H1_HDR_UPGRADE:
            if (!f->upgrade_seen) {
                f->upgrade_seen = 1;
                f->upgrade = h->value;
            }
            break;
        case MG_H1_HDR_EXPECT:
            if (h1_lower_eq_lit(h->value.data, h->value.len, "100-continue")) {
                f->expect_100 = 1;
            }
            break;
        }
    }

    if ((f->conn & H1_CONN_OTHER) && h1_mark_connection(hdrs, nh) != MG_OK) {
        return MG_ERROR;
    }
    /* A coding applied twice, or none at all, is never valid (§6.1). */
    if (f->te_seen && (f->te.codings == 0 || f->te.chunked > 1)) {
        return MG_ERROR;
    }
    return MG_OK;
}

long
mg_h1_find_head_end(const char *buf, size_t len, size_t *scanned)
{
    const char *p, *lf, *end = buf + len;
    size_t c;

    /* Back off 3 bytes so a CRLF CRLF split across calls is still found. */
    p = buf + (*scanned > 3 ? *scanned - 3 : 0);

    while (p < end && (lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (lf == buf || lf[-1] != '\r') {
            /* A bare LF is never valid (RFC 9112 §2.2). Report a head so
             * the caller runs the parser, which refuses it, instead of
             * waiting for a CRLF CRLF that an LF-only client never sends. */
            *scanned = len;
            return (long)(lf - buf + 1);
        }
        if (end - lf < 3) {
            break;
        }
        if (lf[1] == '\r' && lf[2] == '\n') {
            /*
             * CRLF CRLF at offset c. Leading empty lines are not a head
             * (RFC 9112 §2.2): a match at an even offset that follows a
             * CRLF continues a run of them, since a real head end before
             * it would have ended the scan already.
             */
            c = (size_t)(lf - 1 - buf);
            if (!((c & 1) == 0 &&
                  (c == 0 || (buf[c - 2] == '\r' && buf[c - 1] == '\n')))) {
                *scanned = len;
                return (long)(c + 4);
            }
        }
        p = lf + 1;
    }
    *scanned = len;
    return MG_AGAIN;
}

/*
 * Splits an absolute-form target (RFC 9112 §3.2.2) into host, path and
 * query. Only http and https make sense at a front proxy.
 */
static int
h1_absolute_form(mg_h1_request_t *r, const char *t, const char *te)
{
    const char *a, *p;

    if (te - t >= 7 && h1_lower_eq(t, "http://", 7)) {
        a = t + 7;
    } else if (te - t >= 8 && h1_lower_eq(t, "https://", 8)) {
        a = t + 8;
    } else {
        return MG_ERROR;
    }
    p = a;
    while (p < te && *p != '/' && *p != '?') {
        p++;
    }
    /* userinfo ('@') and an empty host are refused here (RFC 9110 §4.2.4,
     * §4.2.1). */
    if (!h1_host_valid(a, (size_t)(p - a), 0)) {
        return MG_ERROR;
    }
    r->host.data = a;
    r->host.len = (size_t)(p - a);
    if (p == te || *p == '?') {
        r->path.data = a - 1;
        r->path.len = 1;
    } else {
        r->path.data = p;
        while (p < te && *p != '?') {
            p++;
        }
        r->path.len = (size_t)(p - r->path.data);
    }
    if (p < te) {
        p++;
    }
    r->query.data = p;
    r->query.len = (size_t)(te - p);
    return MG_OK;
}

int
mg_h1_parse_request(mg_h1_request_t *r, const char *buf, size_t len,
                    const mg_h1_limits_t *lim)
{
    const char *p = buf, *end = buf + len, *line, *t, *te, *q;
    size_t max_line = H1_DEFAULT_REQUEST_LINE;
    size_t max_head = H1_DEFAULT_HEADER_SIZE, n;
    unsigned max_headers = H1_DEFAULT_HEADERS, major = 0, minor = 0;
    int64_t max_body = 0;
    h1_fields_t f;
    int rc;

    if (lim != NULL) {
        if (lim->max_request_line) {
            max_line = lim->max_request_line;
        }
        if (lim->max_header_size) {
            max_head = lim->max_header_size;
        }
        if (lim->max_headers) {
            max_headers = lim->max_headers;
        }
        max_body = lim->max_body_size;
    }
    if (max_headers > MG_H1_MAX_HEADERS) {
        max_headers = MG_H1_MAX_HEADERS;
    }

    r->nheaders = 0;
    r->head_len = 0;
    r->method = mg_str_null;
    r->target = mg_str_null;
    r->path = mg_str_null;
    r->query = mg_str_null;
    r->host = mg_str_null;
    r->upgrade_protocol = mg_str_null;
    r->method_id = 0;
    r->version_minor = 0;
    r->body_kind = MG_H1_BODY_NONE;
    r->content_length = -1;
    r->keep_alive = 0;
    r->expect_continue = 0;
    r->upgrade = 0;

    /* Empty lines before the request line are skipped (RFC 9112 §2.2). */
    while (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
        p += 2;
    }
    line = p;

    /* method SP request-target SP HTTP-version CRLF (RFC 9112 §3) */
    while (p < end && h1_is(*p, H1_TCHAR)) {
        p++;
    }
    if (p == end || (p == line && *p == '\r' && p + 1 == end)) {
        goto incomplete_line;
    }
    if (*p != ' ' || p == line) {
        return MG_H1_ERR_BAD_REQUEST;
    }
    r->method.data = line;
    r->method.len = (size_t)(p - line);
    t = ++p;
    p = h1_skip_target(p, end);
    if (p == end) {
        goto incomplete_line;
    }
    if (*p != ' ' || p == t) {
        return MG_H1_ERR_BAD_REQUEST;
    }
    te = p++;
    rc = h1_parse_version(p, end, &major, &minor);
    if (rc == MG_ERROR) {
        return MG_H1_ERR_BAD_REQUEST;
    }
    if (rc == MG_AGAIN || end - p < 10) {
        if (rc == MG_OK && end - p > 8 && (p[8] != '\r')) {
            return MG_H1_ERR_BAD_REQUEST;
        }
        goto incomplete_line;
    }
    if (p[8] != '\r' || p[9] != '\n') {
        return MG_H1_ERR_BAD_REQUEST;
    }
    if ((size_t)(p + 8 - line) > max_line) {
        return MG_H1_ERR_URI_TOO_LONG;
    }
    p += 10;
    if (major != 1 || minor > 1) {
        return MG_H1_ERR_VERSION;
    }
    r->version_minor = minor;
    r->target.data = t;
    r->target.len = (size_t)(te - t);
    r->method_id = mg_h1_method_id(r->method);

    rc = h1_parse_fields(&p, end, r->headers, &r->nheaders, max_headers,
                         MG_H1_ERR_BAD_REQUEST, MG_H1_ERR_HEADERS_TOO_LARGE);
    if (rc != 1) {
        if (rc == MG_AGAIN) {
            goto incomplete;
        }
        return rc;
    }
    n = (size_t)(p - buf);
    if (n > max_head) {
        return MG_H1_ERR_HEADERS_TOO_LARGE;
    }

    if (h1_scan_fields(r->headers, r->nheaders, &f) != MG_OK) {
        return MG_H1_ERR_BAD_REQUEST;
    }

    /* The request-target form depends on the method (RFC 9112 §3.2). */
    if (r->method_id == MG_H1_METHOD_CONNECT) {
        if (!h1_host_valid(t, (size_t)(te - t), 1)) {
            return MG_H1_ERR_BAD_REQUEST;
        }
        r->host = r->target;
        r->path.data = te;
        r->path.len = 0;
        r->query = r->path;
    } else if (*t == '/') {
        q = t;
        while (q < te && *q != '?') {
            q++;
        }
        r->path.data = t;
        r->path.len = (size_t)(q - t);
        if (q < te) {
            q++;
        }
        r->query.data = q;
        r->query.len = (size_t)(te - q);
    } else if (*t == '*') {
        if (te - t != 1 || r->method_id != MG_H1_METHOD_OPTIONS) {
            return MG_H1_ERR_BAD_REQUEST;
        }
        r->path = r->target;
        r->query.data = te;
        r->query.len = 0;
    } else if (h1_absolute_form(r, t, te) != MG_OK) {
        return MG_H1_ERR_BAD_REQUEST;
    }

    /* Host (RFC 9112 §3.2): exactly one on HTTP/1.1, at most one on 1.0.
     * An empty value is allowed; the proxy decides what it routes to. */
    if (f.hosts > 1 || (f.hosts == 0 && minor == 1)) {
        return MG_H1_ERR_BAD_REQUEST;
    }
    if (f.hosts == 1 && f.host.len > 0 &&
        !h1_host_valid(f.host.data, f.host.len, 0)) {
        return MG_H1_ERR_BAD_REQUEST;
    }
    if (r->host.data == NULL) {
        r->host = f.host;
    }

    /* Message body length (RFC 9112 §6.1, §6.3). */
    if (f.te_seen) {
        if (f.cl >= 0 || minor == 0 || !f.te.last_chunked) {
            return MG_H1_ERR_BAD_REQUEST;
        }
        if (f.te.codings > 1) {
            return MG_H1_ERR_NOT_IMPLEMENTED;
        }
        r->body_kind = MG_H1_BODY_CHUNKED;
    } else if (f.cl >= 0) {
        if (max_body > 0 && f.cl > max_body) {
            return MG_H1_ERR_BODY_TOO_LARGE;
        }
        r->content_length = f.cl;
        r->body_kind = f.cl > 0 ? MG_H1_BODY_LENGTH : MG_H1_BODY_NONE;
    }
    /* CONNECT content has no defined semantics (RFC 9110 §9.3.6): the
     * bytes after the head belong to the tunnel. */
    if (r->method_id == MG_H1_METHOD_CONNECT) {
        r->body_kind = MG_H1_BODY_NONE;
    }

    if (minor == 1) {
        r->keep_alive = !(f.conn & H1_CONN_CLOSE);
        /* 1.0 senders don't know Upgrade or Expect (RFC 9110 §7.8,
         * §10.1.1), so only 1.1 requests get them. */
        r->upgrade = (f.conn & H1_CONN_UPGRADE) && f.upgrade_seen;
        r->expect_continue = f.expect_100 && r->body_kind != MG_H1_BODY_NONE;
    } else {
        r->keep_alive =
            (f.conn & (H1_CONN_KEEPALIVE | H1_CONN_CLOSE)) == H1_CONN_KEEPALIVE;
    }
    if (r->upgrade) {
        r->upgrade_protocol = f.upgrade;
    }

    r->head_len = n;
    return (int)n;

incomplete_line:
    n = (size_t)(end - line);
    if (n > 0 && end[-1] == '\r') {
        n--;
    }
    if (n > max_line) {
        return MG_H1_ERR_URI_TOO_LONG;
    }
incomplete:
    if (len > max_head) {
        return MG_H1_ERR_HEADERS_TOO_LARGE;
    }
    return MG_AGAIN;
}

int
mg_h1_parse_response(mg_h1_response_t *resp, const char *buf, size_t len,
                     unsigned method_id, size_t max_head)
{
    const char *p = buf, *end = buf + len, *s;
    unsigned major = 0, minor = 0, status;
    h1_fields_t f;
    size_t n;
    int rc;

    if (max_head == 0) {
        max_head = H1_DEFAULT_RESPONSE;
    }
    resp->nheaders = 0;
    resp->head_len = 0;
    resp->status = 0;
    resp->reason = mg_str_null;
    resp->version_minor = 0;
    resp->body_kind = MG_H1_BODY_NONE;
    resp->content_length = -1;
    resp->keep_alive = 0;
    resp->upgrade = 0;

    /* HTTP-version SP status-code SP [ reason-phrase ] CRLF (RFC 9112 §4);
     * a missing SP before an empty reason is tolerated. */
    rc = h1_parse_version(p, end, &major, &minor);
    if (rc == MG_ERROR) {
        return MG_H1_ERR_BAD_RESPONSE;
    }
    if (rc == MG_AGAIN) {
        goto incomplete;
    }
    if (major != 1 || minor > 1) {
        return MG_H1_ERR_BAD_RESPONSE;
    }
    p += 8;
    s = p + 1;
    while (p < end && p < s + 3) {
        if (p == s - 1 ? *p != ' ' : !h1_is(*p, H1_DIGIT)) {
            return MG_H1_ERR_BAD_RESPONSE;
        }
        p++;
    }
    if (p == end) {
        goto incomplete;
    }
    status = (unsigned)(s[0] - '0') * 100 + (unsigned)(s[1] - '0') * 10 +
             (unsigned)(s[2] - '0');
    if (status < 100) {
        return MG_H1_ERR_BAD_RESPONSE;
    }
    if (*p == ' ') {
        p++;
    } else if (*p != '\r') {
        return MG_H1_ERR_BAD_RESPONSE;
    }
    s = p;
    p = h1_skip_value(p, end);
    if (p == end) {
        goto incomplete;
    }
    if (*p != '\r') {
        return MG_H1_ERR_BAD_RESPONSE;
    }
    if (p + 1 == end) {
        goto incomplete;
    }
    if (p[1] != '\n') {
        return MG_H1_ERR_BAD_RESPONSE;
    }
    resp->reason.data = s;
    resp->reason.len = (size_t)(p - s);
    resp->status = status;
    resp->version_minor = minor;
    p += 2;

    rc = h1_parse_fields(&p, end, resp->headers, &resp->nheaders,
                         MG_H1_MAX_HEADERS, MG_H1_ERR_BAD_RESPONSE,
                         MG_H1_ERR_BAD_RESPONSE);
    if (rc != 1) {
        if (rc == MG_AGAIN) {
            goto incomplete;
        }
        return rc;
    }
    n = (size_t)(p - buf);
    if (n > max_head) {
        return MG_H1_ERR_BAD_RESPONSE;
    }
    if (h1_scan_fields(resp->headers, resp->nheaders, &f) != MG_OK) {
        return MG_H1_ERR_BAD_RESPONSE;
    }
    /* CL with TE is refused outright rather than letting TE win (RFC 9112
     * §6.3 allows either), and TE in an HTTP/1.0 message means faulty
     * framing (§6.1). */
    if (f.te_seen && (f.cl >= 0 || minor == 0)) {
        return MG_H1_ERR_BAD_RESPONSE;
    }
    resp->content_length = f.cl;

    /* Message body length, RFC 9112 §6.3 in its order. */
    if (method_id == MG_H1_METHOD_HEAD || status < 200 || status == 204 ||
        status == 304) {
        resp->body_kind = MG_H1_BODY_NONE;
    } else if (method_id == MG_H1_METHOD_CONNECT && status < 300) {
        resp->body_kind = MG_H1_BODY_NONE;
    } else if (f.te_seen) {
        resp->body_kind =
            f.te.last_chunked ? MG_H1_BODY_CHUNKED : MG_H1_BODY_CLOSE;
    } else if (f.cl >= 0) {
        resp->body_kind = MG_H1_BODY_LENGTH;
    } else {
        resp->body_kind = MG_H1_BODY_CLOSE;
    }

    if (minor == 1) {
        resp->keep_alive = !(f.conn & H1_CONN_CLOSE);
    } else {
        resp->keep_alive =
            (f.conn & (H1_CONN_KEEPALIVE | H1_CONN_CLOSE)) == H1_CONN_KEEPALIVE;
    }
    if (resp->body_kind == MG_H1_BODY_CLOSE) {
        resp->keep_alive = 0;
    }
    resp->upgrade = status == 101;

    resp->head_len = n;
    return (int)n;

incomplete:
    if (len > max_head) {
        return MG_H1_ERR_BAD_RESPONSE;
    }
    return MG_AGAIN;
}

/*
 * Chunked decoder states (RFC 9112 §7.1). The extension states follow
 * chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ):
 * BWS may only precede ";" or "=", never the CRLF.
 */
enum {
    H1_CH_SIZE_FIRST = 0, /* zeroed state: first HEXDIG of chunk-size */
    H1_CH_SIZE,           /* more HEXDIG, ";", BWS or CR */
    H1_CH_EXT_SEMI,       /* BWS that must end in ";" */
    H1_CH_EXT_NAME_PRE,   /* after ";": BWS, then the name */
    H1_CH_EXT_NAME,
    H1_CH_EXT_NAME_WS, /* BWS after the name: "=" or ";" next */
    H1_CH_EXT_VAL_PRE, /* after "=": BWS, then token or quoted-string */
    H1_CH_EXT_VAL_TOKEN,
    H1_CH_EXT_VAL_QS,
    H1_CH_EXT_VAL_QP, /* after a backslash in the quoted-string */
    H1_CH_EXT_VAL_QEND,
    H1_CH_SIZE_LF,
    H1_CH_DATA,
    H1_CH_DATA_CR,
    H1_CH_DATA_LF,
    H1_CH_TRAILER, /* start of a trailer line, or the final CRLF */
    H1_CH_TRAILER_NAME,
    H1_CH_TRAILER_VALUE,
    H1_CH_TRAILER_LF,
    H1_CH_FINAL_LF,
    H1_CH_DONE,
    H1_CH_ERROR,    /* sticky: the message is malformed */
    H1_CH_TOO_LARGE /* sticky: over max_body */
};

static inline unsigned
h1_hex_value(unsigned char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

int
mg_h1_chunked_parse(mg_h1_chunked_t *st, char *p, size_t len, size_t *consumed,
                    size_t *out_len, int decode, int64_t max_body)
{
    char *start = p, *end = p + len, *out = p;
    unsigned state = st->state;
    unsigned char c;
    size_t n;
    int rc = MG_AGAIN;

    while (p < end && state < H1_CH_DONE) {
        if (state == H1_CH_DATA) {
            /* The hot path: whole runs of data, never byte by byte. */
            n = (size_t)(end - p);
            if (n > st->chunk_left) {
                n = (size_t)st->chunk_left;
            }
            if (decode) {
                if (out != p) {
                    memmove(out, p, n);
                }
                out += n;
            }
            p += n;
            st->chunk_left -= n;
            st->data_total += n;
            if (st->chunk_left == 0) {
                state = H1_CH_DATA_CR;
            }
            continue;
        }

        c = (unsigned char)*p;

        if (state <= H1_CH_SIZE_LF) {
            if (++st->line_len > H1_CHUNK_LINE_MAX) {
                state = H1_CH_ERROR;
                break;
            }
        } else if (state >= H1_CH_TRAILER && state <= H1_CH_FINAL_LF) {
            if (++st->trailer_bytes > H1_TRAILER_MAX) {
                state = H1_CH_ERROR;
                break;
            }
        }

        switch (state) {
        case H1_CH_SIZE_FIRST:
        case H1_CH_SIZE:
            if (h1_is(c, H1_HEX)) {
                /* At most 16 digits, and the value stays below 2^62. */
                if (++st->size_digits > H1_CHUNK_DIGITS ||
                    st->chunk_left >= (H1_CHUNK_SIZE_MAX >> 4)) {
                    state = H1_CH_ERROR;
                    break;
                }
                st->chunk_left = (st->chunk_left << 4) | h1_hex_value(c);
                state = H1_CH_SIZE;
            } else if (state == H1_CH_SIZE_FIRST) {
                state = H1_CH_ERROR;
            } else if (c == '\r') {
                state = H1_CH_SIZE_LF;
            } else if (c == ';') {
                state = H1_CH_EXT_NAME_PRE;
            } else if (h1_is_ws(c)) {
                state = H1_CH_EXT_SEMI;
            } else {
                state = H1_CH_ERROR;
            }
            break;

        case H1_CH_EXT_SEMI:
            if (c == ';') {
                state = H1_CH_EXT_NAME_PRE;
            } else if (!h1_is_ws(c)) {
                state = H1_CH_ERROR;
            }
            break;

        case H1_CH_EXT_NAME_PRE:
            if (h1_is(c, H1_TCHAR)) {
                state = H1_CH_EXT_NAME;
            } else if (!h1_is_ws(c)) {
                state = H1_CH_ERROR;
            }
            break;

        case H1_CH_EXT_NAME:
        case H1_CH_EXT_NAME_WS:
            if (c == '=') {
                state = H1_CH_EXT_VAL_PRE;
            } else if (c == ';') {
                state = H1_CH_EXT_NAME_PRE;
            } else if (h1_is_ws(c)) {
                state = H1_CH_EXT_NAME_WS;
            } else if (state == H1_CH_EXT_NAME_WS) {
                state = H1_CH_ERROR;
            } else if (c == '\r') {
                state = H1_CH_SIZE_LF;
            } else if (!h1_is(c, H1_TCHAR)) {
                state = H1_CH_ERROR;
            }
            break;

        case H1_CH_EXT_VAL_PRE:
            if (c == '"') {
                state = H1_CH_EXT_VAL_QS;
            } else if (h1_is(c, H1_TCHAR)) {
                state = H1_CH_EXT_VAL_TOKEN;
            } else if (!h1_is_ws(c)) {
                state = H1_CH_ERROR;
            }
            break;

        case H1_CH_EXT_VAL_TOKEN:
        case H1_CH_EXT_VAL_QEND:
            if (c == '\r') {
                state = H1_CH_SIZE_LF;
            } else if (c == ';') {
                state = H1_CH_EXT_NAME_PRE;
            } else if (h1_is_ws(c)) {
                state = H1_CH_EXT_SEMI;
            } else if (state == H1_CH_EXT_VAL_QEND || !h1_is(c, H1_TCHAR)) {
                state = H1_CH_ERROR;
            }
            break;

        case H1_CH_EXT_VAL_QS:
            if (c == '"') {
                state = H1_CH_EXT_VAL_QEND;
            } else if (c == '\\') {
                state = H1_CH_EXT_VAL_QP;
            } else if (!h1_is(c, H1_QDTEXT)) {
                state = H1_CH_ERROR;
            }
            break;

        case H1_CH_EXT_VAL_QP:
            /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
            state = h1_is(c, H1_VALUE) ? H1_CH_EXT_VAL_QS : H1_CH_ERROR;
            break;

        case H1_CH_SIZE_LF:
            if (c != '\n') {
                state = H1_CH_ERROR;
                break;
            }
            st->line_len = 0;
            st->size_digits = 0;
            if (st->chunk_left == 0) {
                /* last-chunk: the trailer section follows (§7.1.2). */
                st->trailer_bytes = 0;
                state = H1_CH_TRAILER;
                break;
            }
            if (max_body > 0 &&
                st->data_total + st->chunk_left > (uint64_t)max_body) {
                state = H1_CH_TOO_LARGE;
                break;
            }
            state = H1_CH_DATA;
            break;

        case H1_CH_DATA_CR:
            state = c == '\r' ? H1_CH_DATA_LF : H1_CH_ERROR;
            break;

        case H1_CH_DATA_LF:
            state = c == '\n' ? H1_CH_SIZE_FIRST : H1_CH_ERROR;
            break;

        case H1_CH_TRAILER:
            if (c == '\r') {
                state = H1_CH_FINAL_LF;
            } else if (h1_is(c, H1_TCHAR)) {
                state = H1_CH_TRAILER_NAME;
            } else {
                /* obs-fold, or anything else that can't start a field */
                state = H1_CH_ERROR;
            }
            break;

        case H1_CH_TRAILER_NAME:
            if (c == ':') {
                state = H1_CH_TRAILER_VALUE;
            } else if (!h1_is(c, H1_TCHAR)) {
                state = H1_CH_ERROR;
            }
            break;

        case H1_CH_TRAILER_VALUE:
            if (c == '\r') {
                state = H1_CH_TRAILER_LF;
            } else if (!h1_is(c, H1_VALUE)) {
                state = H1_CH_ERROR;
            }
            break;

        case H1_CH_TRAILER_LF:
            state = c == '\n' ? H1_CH_TRAILER : H1_CH_ERROR;
            break;

        case H1_CH_FINAL_LF:
            state = c == '\n' ? H1_CH_DONE : H1_CH_ERROR;
            break;

        default:
            break;
        }

        if (state >= H1_CH_DONE) {
            if (state == H1_CH_DONE) {
                p++;
            }
            break;
        }
        p++;
    }

    st->state = state;
    if (state == H1_CH_DONE) {
        rc = MG_OK;
    } else if (state == H1_CH_ERROR) {
        rc = MG_H1_ERR_BAD_REQUEST;
    } else if (state == H1_CH_TOO_LARGE) {
        rc = MG_H1_ERR_BODY_TOO_LARGE;
    }
    *consumed = (size_t)(p - start);
    if (out_len != NULL) {
        *out_len = decode ? (size_t)(out - start) : 0;
    }
    return rc;
}

unsigned
mg_h1_error_status(int err)
{
    switch (err) {
    case MG_H1_ERR_URI_TOO_LONG:
        return 414;
    case MG_H1_ERR_HEADERS_TOO_LARGE:
        return 431;
    case MG_H1_ERR_BODY_TOO_LARGE:
        return 413;
    case MG_H1_ERR_NOT_IMPLEMENTED:
        return 501;
    case MG_H1_ERR_VERSION:
        return 505;
    case MG_H1_ERR_BAD_RESPONSE:
        return 502;
    }
    return 400;
}

unsigned
mg_h1_method_id(mg_str_t m)
{
    /* Methods are case-sensitive (RFC 9110 §9.1). */
    switch (m.len) {
    case 3:
        if (memcmp(m.data, "GET", 3) == 0) {
            return MG_H1_METHOD_GET;
        }
        if (memcmp(m.data, "PUT", 3) == 0) {
            return MG_H1_METHOD_PUT;
        }
        break;
    case 4:
        if (memcmp(m.data, "POST", 4) == 0) {
            return MG_H1_METHOD_POST;
        }
        if (memcmp(m.data, "HEAD", 4) == 0) {
            return MG_H1_METHOD_HEAD;
        }
        break;
    case 5:
        if (memcmp(m.data, "PATCH", 5) == 0) {
            return MG_H1_METHOD_PATCH;
        }
        if (memcmp(m.data, "TRACE", 5) == 0) {
            return MG_H1_METHOD_TRACE;
        }
        break;
    case 6:
        if (memcmp(m.data, "DELETE", 6) == 0) {
            return MG_H1_METHOD_DELETE;
        }
        break;
    case 7:
        if (memcmp(m.data, "OPTIONS", 7) == 0) {
            return MG_H1_METHOD_OPTIONS;
        }
        if (memcmp(m.data, "CONNECT", 7) == 0) {
            return MG_H1_METHOD_CONNECT;
        }
        break;
    }
    return MG_H1_METHOD_OTHER;
}
