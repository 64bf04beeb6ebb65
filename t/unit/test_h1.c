#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_h1.h"
#include "tap.h"

/*
 * Unit tests of the HTTP/1.1 parser: request and response heads, the
 * search for the end of a head, and the chunked decoder fed in every split.
 */

static mg_h1_request_t rq;
static mg_h1_response_t rs;

static int
str_is(mg_str_t s, const char *want)
{
    size_t n = strlen(want);

    return s.len == n && (n == 0 || memcmp(s.data, want, n) == 0);
}

static int
req_lim(const char *s, const mg_h1_limits_t *lim)
{
    return mg_h1_parse_request(&rq, s, strlen(s), lim);
}

static int
req(const char *s)
{
    return req_lim(s, NULL);
}

static int
resp(const char *s, unsigned method)
{
    return mg_h1_parse_response(&rs, s, strlen(s), method, 0);
}

static const mg_h1_header_t *
req_header(const char *name)
{
    unsigned i;

    for (i = 0; i < rq.nheaders; i++) {
        if (mg_str_caseeq(rq.headers[i].name, mg_str(name))) {
            return &rq.headers[i];
        }
    }
    return NULL;
}

/* Request head expected to be rejected with |err|. */
#define req_err(s, err, name) is_int(req(s), (err), "%s", (name))
#define BAD MG_H1_ERR_BAD_REQUEST

static void
test_request_valid(void)
{
    const char *s;
    int rc;

    s = "GET /index.html?a=1&b=2 HTTP/1.1\r\nHost: example.com\r\n"
        "User-Agent: t\r\n\r\n";
    rc = req(s);
    is_int(rc, strlen(s), "GET: returns the head length");
    is_int(rq.head_len, strlen(s), "GET: head_len");
    ok(str_is(rq.method, "GET"), "GET: method");
    is_int(rq.method_id, MG_H1_METHOD_GET, "GET: method_id");
    ok(str_is(rq.target, "/index.html?a=1&b=2"), "GET: target as sent");
    ok(str_is(rq.path, "/index.html"), "GET: path without query");
    ok(str_is(rq.query, "a=1&b=2"), "GET: query without '?'");
    ok(str_is(rq.host, "example.com"), "GET: host from Host");
    is_int(rq.version_minor, 1, "GET: HTTP/1.1");
    is_int(rq.body_kind, MG_H1_BODY_NONE, "GET: no body");
    is_int(rq.content_length, -1, "GET: content_length absent");
    is_int(rq.keep_alive, 1, "GET: 1.1 keeps alive");
    is_int(rq.expect_continue, 0, "GET: no expect");
    is_int(rq.upgrade, 0, "GET: no upgrade");
    is_int(rq.nheaders, 2, "GET: two fields");
    ok(str_is(rq.headers[1].name, "User-Agent") &&
           str_is(rq.headers[1].value, "t"),
       "GET: field name and value");

    rc = req("GET /p? HTTP/1.1\r\nHost: a\r\n\r\n");
    ok(rc > 0 && str_is(rq.path, "/p") && str_is(rq.query, ""),
       "empty query after '?'");

    s = "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
    rc = req(s);
    is_int(rc, strlen(s), "POST: head length");
    is_int(rq.method_id, MG_H1_METHOD_POST, "POST: method_id");
    is_int(rq.body_kind, MG_H1_BODY_LENGTH, "POST: body by length");
    is_int(rq.content_length, 5, "POST: content_length");

    rc = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    ok(rc > 0 && rq.body_kind == MG_H1_BODY_NONE && rq.content_length == 0,
       "Content-Length 0: no body, content_length 0");

    rc =
        req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    ok(rc > 0, "chunked POST parses");
    is_int(rq.body_kind, MG_H1_BODY_CHUNKED, "chunked POST: body_kind");
    is_int(rq.content_length, -1, "chunked POST: no content_length");
    rc =
        req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n");
    ok(rc > 0 && rq.body_kind == MG_H1_BODY_CHUNKED,
       "chunked is case-insensitive");

    rc = req("GET http://Origin.example:8080/a/b?x=y HTTP/1.1\r\n"
             "Host: other.example\r\n\r\n");
    ok(rc > 0, "absolute-form parses");
    ok(str_is(rq.host, "Origin.example:8080"),
       "absolute-form: authority overrides Host");
    ok(str_is(rq.path, "/a/b"), "absolute-form: path");
    ok(str_is(rq.query, "x=y"), "absolute-form: query");
    ok(str_is(rq.target, "http://Origin.example:8080/a/b?x=y"),
       "absolute-form: target as sent");
    rc = req("GET HTTPS://h.example HTTP/1.1\r\nHost: h.example\r\n\r\n");
    ok(rc > 0 && str_is(rq.host, "h.example") && str_is(rq.path, "/") &&
           str_is(rq.query, ""),
       "absolute-form without path gets '/'");
    ok(rc > 0 && rq.path.data >= rq.target.data &&
           rq.path.data < rq.target.data + rq.target.len,
       "absolute-form: '/' points into the buffer");
    rc = req("GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n");
    ok(rc > 0 && str_is(rq.path, "/") && str_is(rq.query, "q"),
       "absolute-form: query without path");

    s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    rc = req(s);
    is_int(rc, strlen(s), "leading empty lines count in the head length");
    ok(str_is(rq.method, "GET"), "leading empty lines: method after them");

    s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    rc = req(s);
    is_int(rc, 28, "pipelined: first head only");
    ok(str_is(rq.path, "/1"), "pipelined: first path");
    rc = mg_h1_parse_request(&rq, s + 28, strlen(s) - 28, NULL);
    is_int(rc, 28, "pipelined: second head");
    ok(str_is(rq.path, "/2"), "pipelined: second path");
    s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET";
    is_int(req(s), strlen(s) - 6, "body bytes are not part of the head");

    rc = req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    ok(rc > 0 && rq.method_id == MG_H1_METHOD_OPTIONS && str_is(rq.path, "*"),
       "OPTIONS * accepted");

    rc = req("CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n"
             "Content-Length: 10\r\n\r\n");
    ok(rc > 0, "CONNECT authority-form accepted");
    ok(str_is(rq.host, "db.example:5432"), "CONNECT: host is the authority");
    is_int(rq.body_kind, MG_H1_BODY_NONE, "CONNECT: no body, tunnel bytes");
    rc = req("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    ok(rc > 0, "CONNECT to an IPv6 literal");

    rc = req("GET / HTTP/1.0\r\n\r\n");
    ok(rc > 0, "HTTP/1.0 may omit Host");
    is_int(rq.version_minor, 0, "HTTP/1.0: version_minor");
    is_int(rq.keep_alive, 0, "HTTP/1.0: closes by default");
    ok(rq.host.len == 0, "HTTP/1.0 without Host: empty host");
    rc = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    ok(rc > 0 && rq.keep_alive == 1, "HTTP/1.0 with keep-alive");
    rc = req("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    ok(rc > 0 && rq.keep_alive == 0, "HTTP/1.0 keep-alive and close: close");

    rc = req("GET / HTTP/1.1\r\nHost: a\r\nX-A: \t v a l \t \r\n"
             "X-B:\r\nX-C: caf\xc3\xa9\r\n\r\n");
    ok(rc > 0, "OWS, empty value and obs-text parse");
    ok(str_is(req_header("x-a")->value, "v a l"), "OWS trimmed, inner kept");
    ok(str_is(req_header("x-b")->value, ""), "empty field value");
    ok(str_is(req_header("x-c")->value, "caf\xc3\xa9"), "obs-text in value");

    rc = req("GET / HTTP/1.1\r\nHost:\r\n\r\n");
    ok(rc > 0 && rq.host.len == 0, "empty Host is allowed");
    rc = req("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    ok(rc > 0 && str_is(rq.host, "[::1]:8080"), "IPv6 Host with port");
    rc = req("GET / HTTP/1.1\r\nHost: a%41.b-c_d~e:1\r\n\r\n");
    ok(rc > 0, "Host with pct-encoding and unreserved bytes");
    rc = req("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n");
    is_int(rc, BAD, "asterisk-form with another method");
    rc = req("PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n");
    ok(rc > 0 && rq.method_id == MG_H1_METHOD_OTHER, "extension method");
}

/*
 * Puts each bad byte at each position of a long target, field value and
 * reason, so the word-at-a-time scans are checked at every alignment.
 */
static void
test_bad_byte_positions(void)
{
    static const unsigned char value_bad[] = {0x00, 0x01, 0x0a,
                                              0x0d, 0x1f, 0x7f};
    static const unsigned char target_bad[] = {0x00, 0x09, 0x0d, 0x20,
                                               0x23, 0x7f, 0x80, 0xff};
    char buf[128], good[128];
    unsigned i, pos, bad = 0, fine = 0;
    size_t n;
    int rc;

    for (pos = 0; pos < 24; pos++) {
        for (i = 0; i < sizeof(value_bad); i++) {
            n = (size_t)snprintf(buf, sizeof(buf),
                                 "GET / HTTP/1.1\r\n"
                                 "Host: a\r\nX: %s\r\n\r\n",
                                 "abcdefghijklmnopqrstuvwx");
            buf[28 + pos] = (char)value_bad[i];
            if (mg_h1_parse_request(&rq, buf, n, NULL) != BAD) {
                bad++;
            }
            n = (size_t)snprintf(buf, sizeof(buf), "HTTP/1.1 200 %s\r\n\r\n",
                                 "abcdefghijklmnopqrstuvwx");
            buf[13 + pos] = (char)value_bad[i];
            if (mg_h1_parse_response(&rs, buf, n, 0, 0) !=
                MG_H1_ERR_BAD_RESPONSE) {
                bad++;
            }
        }
        for (i = 0; i < sizeof(target_bad); i++) {
            n = (size_t)snprintf(buf, sizeof(buf),
                                 "GET /%s HTTP/1.1\r\n"
                                 "Host: a\r\n\r\n",
                                 "abcdefghijklmnopqrstuvwx");
            buf[5 + pos] = (char)target_bad[i];
            if (mg_h1_parse_request(&rq, buf, n, NULL) != BAD) {
                bad++;
            }
        }
        /* The same positions with allowed bytes: HTAB and obs-text in a
         * value, '~' in a target. */
        n = (size_t)snprintf(good, sizeof(good),
                             "GET /%s HTTP/1.1\r\n"
                             "Host: a\r\nX: %s\r\n\r\n",
                             "abcdefghijklmnopqrstuvwx",
                             "abcdefghijklmnopqrstuvwx");
        good[5 + pos] = '~';
        good[52 + pos] = (pos & 1) && pos < 23 ? '\t' : (char)0xe9;
        rc = mg_h1_parse_request(&rq, good, n, NULL);
        if (rc == (int)n && rq.headers[1].value.len == 24) {
            fine++;
        }
    }
    is_int(bad, 0, "bad bytes refused at every position");
    is_int(fine, 24, "allowed bytes accepted at every position");
}

static void
test_request_reject(void)
{

    /* request line */
    req_err("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "two SP after method");
    req_err("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "two SP after target");
    req_err("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", BAD, "SP after version");
    req_err(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "SP before method");
    req_err("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "HTAB as separator");
    req_err("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "method not a token");
    req_err("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "target byte 0x80");
    req_err("GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "target byte 0xff");
    req_err("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "target CTL");
    req_err("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "target DEL");
    req_err("GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "target fragment");
    req_err("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "target not origin");
    req_err("GET ftp://h/ HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "ftp scheme");
    req_err("GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", BAD,
            "absolute-form without host");
    req_err("GET http://u@h/p HTTP/1.1\r\nHost: a\r\n\r\n", BAD,
            "absolute-form with userinfo");
    req_err("GET * HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "GET *");
    req_err("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "OPTIONS *x");
    req_err("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", BAD,
            "CONNECT origin-form");
    req_err("CONNECT h.example HTTP/1.1\r\nHost: a\r\n\r\n", BAD,
            "CONNECT without port");
    req_err("CONNECT http://h:80/ HTTP/1.1\r\nHost: a\r\n\r\n", BAD,
            "CONNECT absolute-form");
    req_err("GET /\r\nHost: a\r\n\r\n", BAD, "no version (HTTP/0.9)");
    req_err("GET / \r\nHost: a\r\n\r\n", BAD, "empty version");
    req_err("GET / HTTX/1.1\r\nHost: a\r\n\r\n", BAD, "version garbage");
    req_err("GET / http/1.1\r\nHost: a\r\n\r\n", BAD, "lowercase HTTP");
    req_err("GET / HTTP/1.10\r\nHost: a\r\n\r\n", BAD, "HTTP/1.10");
    req_err("GET / HTTP/11.1\r\nHost: a\r\n\r\n", BAD, "HTTP/11.1");
    req_err("GET / HTTP/1\r\nHost: a\r\n\r\n", BAD, "HTTP/1");
    req_err("GET / HTTP/2.0\r\nHost: a\r\n\r\n", MG_H1_ERR_VERSION,
            "HTTP/2.0 is 505");
    req_err("GET / HTTP/1.2\r\nHost: a\r\n\r\n", MG_H1_ERR_VERSION,
            "HTTP/1.2 is 505");
    req_err("GET / HTTP/0.9\r\nHost: a\r\n\r\n", MG_H1_ERR_VERSION,
            "HTTP/0.9 is 505");
    req_err("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", MG_H1_ERR_VERSION,
            "HTTP/2 preface is 505");

    /* line endings */
    req_err("GET / HTTP/1.1\nHost: a\r\n\r\n", BAD, "bare LF after line");
    req_err("GET / HTTP/1.1\r\nHost: a\n\r\n", BAD, "bare LF after field");
    req_err("GET / HTTP/1.1\r\nHost: a\r\n\n", BAD, "bare LF ends head");
    req_err("GET / HTTP/1.1\rHost: a\r\n\r\n", BAD, "bare CR after line");
    req_err("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", BAD, "bare CR in value");
    req_err("GET / HTTP/1.1\r\nHost: a\r\n\rX", BAD, "bare CR ends head");
    req_err("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "leading bare LF");
    req_err("\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", BAD, "leading bare CR");
    req_err("GET / HTTP/1.1\r\nX: a\nb\r\nHost: a\r\n\r\n", BAD,
            "bare LF inside value");

    /* field syntax */
    req_err("GET / HTTP/1.1\r\nHost : a\r\n\r\n", BAD, "SP before colon");
    req_err("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", BAD, "HTAB before colon");
    req_err("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", BAD, "obs-fold");
    req_err("GET / HTTP/1.1\r\nX: b\r\n\tc\r\nHost: a\r\n\r\n", BAD,
            "obs-fold with HTAB");
    req_err("GET / HTTP/1.1\r\n Host: a\r\n\r\n", BAD,
            "whitespace before the first field");
    req_err("GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", BAD, "empty name");
    req_err("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", BAD, "name not a token");
    req_err("GET / HTTP/1.1\r\nHost a\r\n\r\n", BAD, "no colon");
    is_int(mg_h1_parse_request(
               &rq, "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35, NULL),
           BAD, "NUL in value");
    req_err("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", BAD,
            "CTL in value");
    req_err("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", BAD,
            "DEL in value");
    req_err("GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n", BAD,
            "ESC in value");
    req_err("GET / HTTP/1.1\r\nHost: a\r\nX\x80: a\r\n\r\n", BAD,
            "obs-text in name");

    /* Content-Length */
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", BAD,
            "CL not digits");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", BAD,
            "CL negative");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", BAD,
            "CL with plus sign");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", BAD,
            "CL with inner space");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", BAD,
            "CL in hex");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", BAD,
            "CL empty");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", BAD,
            "CL with empty list element");
    req_err("POST / HTTP/1.1\r\nHost: a\r\n"
            "Content-Length: 1234567890123456789\r\n\r\n",
            BAD, "CL of 19 digits");
    req_err("POST / HTTP/1.1\r\nHost: a\r\n"
            "Content-Length: 99999999999999999999999\r\n\r\n",
            BAD, "CL overflow");
    is_int(req("POST / HTTP/1.1\r\nHost: a\r\n"
               "Content-Length: 999999999999999999\r\n\r\n") > 0,
           1, "CL of 18 digits");
    is_int(rq.content_length, 999999999999999999LL, "CL of 18 digits value");
    is_int(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7,7\r\n\r\n") >
                   0 &&
               rq.content_length == 7,
           1, "CL list of identical values");
    is_int(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n"
               "Content-Length: 7\r\n\r\n") > 0 &&
               rq.content_length == 7,
           1, "identical CL fields");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 8\r\n\r\n", BAD,
            "CL list of different values");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n"
            "Content-Length: 8\r\n\r\n",
            BAD, "different CL fields");

    /* Transfer-Encoding */
    req_err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            BAD, "CL with TE");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            "Content-Length: 5\r\n\r\n",
            BAD, "TE with CL");
    req_err("POST / HTTP/1.1\r\nHost: a\r\n"
            "Transfer-Encoding: gzip, chunked\r\n\r\n",
            MG_H1_ERR_NOT_IMPLEMENTED, "gzip, chunked is 501");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            MG_H1_ERR_NOT_IMPLEMENTED, "gzip then chunked fields is 501");
    req_err("POST / HTTP/1.1\r\nHost: a\r\n"
            "Transfer-Encoding: chunked, gzip\r\n\r\n",
            BAD, "chunked not last");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            BAD, "no chunked at all");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n"
            "\r\n",
            BAD, "identity");
    req_err("POST / HTTP/1.1\r\nHost: a\r\n"
            "Transfer-Encoding: chunked, chunked\r\n\r\n",
            BAD, "chunked twice");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            BAD, "chunked twice in two fields");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", BAD,
            "empty TE");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n"
            "\r\n",
            BAD, "TE with empty element");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;a=b\r\n"
            "\r\n",
            BAD, "chunked with a parameter");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n"
            "\r\n",
            BAD, "quoted chunked");
    req_err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n"
            "\r\n",
            BAD, "xchunked");
    req_err("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", BAD,
            "TE on HTTP/1.0");

    /* Host */
    req_err("GET / HTTP/1.1\r\n\r\n", BAD, "HTTP/1.1 without Host");
    req_err("GET http://h/ HTTP/1.1\r\n\r\n", BAD,
            "absolute-form still needs Host on 1.1");
    req_err("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", BAD,
            "two Host fields");
    req_err("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", BAD,
            "two Host fields on 1.0");
    req_err("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", BAD, "Host with SP");
    req_err("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", BAD, "Host with '/'");
    req_err("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", BAD, "Host with '@'");
    req_err("GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", BAD, "Host port not digits");
    req_err("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", BAD,
            "Host port too long");
    req_err("GET / HTTP/1.1\r\nHost: a:\r\n\r\n", BAD, "Host empty port");
    req_err("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", BAD, "Host only a port");
    req_err("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", BAD, "unclosed IPv6");
    req_err("GET / HTTP/1.1\r\nHost: []\r\n\r\n", BAD, "empty IP-literal");
    req_err("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", BAD, "bad pct-encoding");
    req_err("GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", BAD, "short pct-encoding");
    req_err("GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", BAD,
            "Host with obs-text");

    /* Connection */
    req_err("GET / HTTP/1.1\r\nHost: a\r\nConnection: close, @\r\n\r\n", BAD,
            "Connection with a non-token");
    req_err("GET / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\n"
            "Content-Length: 1\r\n\r\n",
            BAD, "Connection naming Content-Length");
    req_err("GET / HTTP/1.1\r\nHost: a\r\nConnection: HOST\r\n\r\n", BAD,
            "Connection naming Host");

    test_bad_byte_positions();
}

static void
test_request_limits(void)
{
    mg_h1_limits_t lim;
    char buf[70000];
    int rc, i;
    size_t n;

    memset(&lim, 0, sizeof(lim));
    lim.max_request_line = 20;
    /* "GET /123456 HTTP/1.1" is exactly 20 bytes */
    rc = req_lim("GET /123456 HTTP/1.1\r\nHost: a\r\n\r\n", &lim);
    ok(rc > 0, "request line at the limit");
    rc = req_lim("GET /1234567 HTTP/1.1\r\nHost: a\r\n\r\n", &lim);
    is_int(rc, MG_H1_ERR_URI_TOO_LONG, "request line over the limit: 414");
    rc = req_lim("GET /1234567890123456789", &lim);
    is_int(rc, MG_H1_ERR_URI_TOO_LONG, "incomplete long line: 414 early");
    rc = req_lim("GET /123456 HTTP/1.1", &lim);
    is_int(rc, MG_AGAIN, "incomplete line at the limit: again");
    rc = req_lim("GET /123456 HTTP/1.1\r", &lim);
    is_int(rc, MG_AGAIN, "line at the limit plus CR: again");
    rc = req_lim("GET /123456 HTTP/1.1x", &lim);
    ok(rc == MG_H1_ERR_URI_TOO_LONG || rc == BAD,
       "one byte past the limit: refused");
    rc = req_lim("\r\n\r\nGET /123456 HTTP/1.1\r\nHost: a\r\n\r\n", &lim);
    ok(rc > 0, "leading empty lines don't count in the request line");

    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "GET /", 5);
    n = 5 + 8192 - 14; /* "GET " + target + " HTTP/1.1" = 8192 */
    memcpy(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 23);
    rc = mg_h1_parse_request(&rq, buf, n + 23, NULL);
    ok(rc > 0, "default request line limit: 8192 accepted");
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "GET /", 5);
    n = 5 + 8193 - 14;
    memcpy(buf + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 23);
    rc = mg_h1_parse_request(&rq, buf, n + 23, NULL);
    is_int(rc, MG_H1_ERR_URI_TOO_LONG, "default request line limit: 8193");

    memset(&lim, 0, sizeof(lim));
    lim.max_header_size = 40;
    rc = req_lim("GET / HTTP/1.1\r\nHost: a\r\nX: 12345678\r\n\r\n", &lim);
    is_int(rc, 40, "head at max_header_size");
    rc = req_lim("GET / HTTP/1.1\r\nHost: a\r\nX: 123456789\r\n\r\n", &lim);
    is_int(rc, MG_H1_ERR_HEADERS_TOO_LARGE, "head over max_header_size");
    rc = req_lim("GET / HTTP/1.1\r\nHost: a\r\nX: 123456789012345", &lim);
    is_int(rc, MG_H1_ERR_HEADERS_TOO_LARGE, "incomplete head already over");
    rc = req_lim("GET / HTTP/1.1\r\nHost: a\r\nX: 1234", &lim);
    is_int(rc, MG_AGAIN, "incomplete head under the limit");
    rc = req_lim("\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nX: 12345678\r\n\r\n",
                 &lim);
    is_int(rc, MG_H1_ERR_HEADERS_TOO_LARGE,
           "leading empty lines count in the head size");

    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (i = 0; i < 40000 / 10; i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%03d: 12\r\n",
                              i % 1000);
    }
    rc = mg_h1_parse_request(&rq, buf, n, NULL);
    is_int(rc, MG_H1_ERR_HEADERS_TOO_LARGE, "default limits: 431");

    memset(&lim, 0, sizeof(lim));
    lim.max_headers = 3;
    rc = req_lim("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", &lim);
    ok(rc > 0 && rq.nheaders == 3, "max_headers fields accepted");
    rc = req_lim("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                 &lim);
    is_int(rc, MG_H1_ERR_HEADERS_TOO_LARGE, "one field over max_headers");
    rc = req_lim("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC:", &lim);
    is_int(rc, MG_H1_ERR_HEADERS_TOO_LARGE,
           "field over max_headers fails before the head ends");

    memset(&lim, 0, sizeof(lim));
    lim.max_headers = 1000;
    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (i = 0; i < MG_H1_MAX_HEADERS - 1; i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%d: 1\r\n", i);
    }
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    rc = mg_h1_parse_request(&rq, buf, n, &lim);
    ok(rc > 0 && rq.nheaders == MG_H1_MAX_HEADERS,
       "MG_H1_MAX_HEADERS fields with a higher limit");
    n -= 2;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Y: 1\r\n\r\n");
    rc = mg_h1_parse_request(&rq, buf, n, &lim);
    is_int(rc, MG_H1_ERR_HEADERS_TOO_LARGE,
           "max_headers is capped at MG_H1_MAX_HEADERS");
    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (i = 0; i < 100; i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%d: 1\r\n", i);
    }
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    rc = mg_h1_parse_request(&rq, buf, n, NULL);
    is_int(rc, MG_H1_ERR_HEADERS_TOO_LARGE, "default max_headers is 100");

    memset(&lim, 0, sizeof(lim));
    lim.max_body_size = 100;
    rc = req_lim("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n",
                 &lim);
    ok(rc > 0 && rq.content_length == 100, "CL at max_body_size");
    rc = req_lim("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n",
                 &lim);
    is_int(rc, MG_H1_ERR_BODY_TOO_LARGE, "CL over max_body_size: 413");
    rc = req_lim("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n"
                 "Content-Length: 102\r\n\r\n",
                 &lim);
    is_int(rc, BAD, "conflicting CL is 400 before 413");
    rc = req("POST / HTTP/1.1\r\nHost: a\r\n"
             "Content-Length: 999999999999999999\r\n\r\n");
    ok(rc > 0, "max_body_size 0: no body limit");
}

static void
test_request_headers(void)
{
    static const struct {
        const char *name;
        unsigned id;
        unsigned hop;
    } ids[] = {
        {"host", MG_H1_HDR_HOST, 0},
        {"CONNECTION", MG_H1_HDR_CONNECTION, 1},
        {"Content-Length", MG_H1_HDR_CONTENT_LENGTH, 0},
        {"Transfer-Encoding", MG_H1_HDR_TRANSFER_ENCODING, 1},
        {"Upgrade", MG_H1_HDR_UPGRADE, 1},
        {"Expect", MG_H1_HDR_EXPECT, 0},
        {"Keep-Alive", MG_H1_HDR_KEEP_ALIVE, 1},
        {"Proxy-Connection", MG_H1_HDR_PROXY_CONNECTION, 1},
        {"TE", MG_H1_HDR_TE, 1},
        {"Trailer", MG_H1_HDR_TRAILER, 1},
        {"Proxy-Authorization", MG_H1_HDR_PROXY_AUTHORIZATION, 0},
        {"Proxy-Authenticate", MG_H1_HDR_PROXY_AUTHENTICATE, 0},
        {"X-Forwarded-For", MG_H1_HDR_X_FORWARDED_FOR, 0},
        {"x-forwarded-proto", MG_H1_HDR_X_FORWARDED_PROTO, 0},
        {"Via", MG_H1_HDR_VIA, 0},
        {"X-Request-Id", MG_H1_HDR_X_REQUEST_ID, 0},
        {"X-Other", MG_H1_HDR_OTHER, 0},
        {"Hosts", MG_H1_HDR_OTHER, 0},
        {"Tf", MG_H1_HDR_OTHER, 0},
    };
    const mg_h1_header_t *h;
    char buf[256];
    unsigned i;
    int rc;

    for (i = 0; i < mg_countof(ids); i++) {
        if (ids[i].id == MG_H1_HDR_HOST) {
            snprintf(buf, sizeof(buf), "GET / HTTP/1.0\r\n%s: a\r\n\r\n",
                     ids[i].name);
        } else if (ids[i].id == MG_H1_HDR_CONTENT_LENGTH) {
            snprintf(buf, sizeof(buf), "GET / HTTP/1.0\r\n%s: 0\r\n\r\n",
                     ids[i].name);
        } else if (ids[i].id == MG_H1_HDR_TRANSFER_ENCODING) {
            snprintf(buf, sizeof(buf),
                     "GET / HTTP/1.1\r\nHost: a\r\n%s: chunked\r\n\r\n",
                     ids[i].name);
        } else {
            snprintf(buf, sizeof(buf), "GET / HTTP/1.0\r\n%s: a\r\n\r\n",
                     ids[i].name);
        }
        rc = req(buf);
        h = req_header(ids[i].name);
        ok(rc > 0 && h != NULL && h->id == ids[i].id &&
               h->hop_by_hop == ids[i].hop,
           "%s: id %u, hop-by-hop %u", ids[i].name, ids[i].id, ids[i].hop);
    }

    rc = req("GET / HTTP/1.1\r\nX-Early: 1\r\nHost: a\r\nX-Other: 2\r\n"
             "Connection: keep-alive, x-early,\r\nconnection: X-Late\r\n"
             "X-Late: 3\r\nKeep-Alive: 5\r\n\r\n");
    ok(rc > 0, "Connection naming fields parses");
    ok(req_header("x-early")->hop_by_hop,
       "field named by a later Connection is hop-by-hop");
    ok(req_header("x-late")->hop_by_hop,
       "field named by an earlier Connection is hop-by-hop");
    ok(!req_header("x-other")->hop_by_hop, "unnamed field stays end-to-end");
    ok(!req_header("host")->hop_by_hop, "Host stays end-to-end");
    ok(req_header("keep-alive")->hop_by_hop, "Keep-Alive is hop-by-hop");
    is_int(rq.keep_alive, 1, "keep-alive token keeps alive");
}

static void
test_request_flags(void)
{
    int rc;

    rc = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n");
    ok(rc > 0 && rq.keep_alive == 0, "Connection: Close");
    rc = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n");
    ok(rc > 0 && rq.keep_alive == 0, "close anywhere in the list");
    rc = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n");
    ok(rc > 0 && rq.keep_alive == 1, "closed is not close");
    rc = req("GET / HTTP/1.1\r\nHost: a\r\nConnection:\r\n\r\n");
    ok(rc > 0 && rq.keep_alive == 1, "empty Connection");

    rc = req("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\n\r\n");
    ok(rc > 0 && rq.upgrade == 1, "upgrade with Connection: Upgrade");
    ok(str_is(rq.upgrade_protocol, "websocket"), "upgrade_protocol");
    rc = req("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
    ok(rc > 0 && rq.upgrade == 0, "Upgrade not listed in Connection");
    rc = req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n");
    ok(rc > 0 && rq.upgrade == 0, "Connection upgrade without Upgrade");
    rc = req("GET /ws HTTP/1.0\r\nUpgrade: websocket\r\n"
             "Connection: upgrade\r\n\r\n");
    ok(rc > 0 && rq.upgrade == 0, "no upgrade on HTTP/1.0");

    rc = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
             "Expect: 100-continue\r\n\r\n");
    ok(rc > 0 && rq.expect_continue == 1, "Expect: 100-continue with body");
    rc = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
             "Expect: 100-Continue\r\n\r\n");
    ok(rc > 0 && rq.expect_continue == 1, "100-continue case-insensitive");
    rc = req("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
    ok(rc > 0 && rq.expect_continue == 0, "100-continue without a body");
    rc = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
             "Expect: 200-ok\r\n\r\n");
    ok(rc > 0 && rq.expect_continue == 0, "other Expect value ignored");
    rc = req("POST / HTTP/1.0\r\nContent-Length: 5\r\n"
             "Expect: 100-continue\r\n\r\n");
    ok(rc > 0 && rq.expect_continue == 0, "100-continue ignored on 1.0");
}

static void
test_request_incremental(void)
{
    static const char *heads[] = {
        "GET /a?b HTTP/1.1\r\nHost: a\r\nX: y \r\n\r\n",
        "\r\n\r\nPOST http://h:1/ HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
        "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    };
    unsigned i, bad;
    size_t n, k;
    int rc;

    for (i = 0; i < mg_countof(heads); i++) {
        n = strlen(heads[i]);
        bad = 0;
        for (k = 0; k < n; k++) {
            rc = mg_h1_parse_request(&rq, heads[i], k, NULL);
            if (rc != MG_AGAIN) {
                bad++;
            }
        }
        is_int(bad, 0, "every prefix of request %u is incomplete", i);
        is_int(mg_h1_parse_request(&rq, heads[i], n, NULL), n,
               "request %u parses whole", i);
    }

    is_int(req("GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n"), BAD,
           "garbage in a complete line fails before the head ends");
    is_int(req("G\x01"), BAD, "garbage in the method fails at once");
    is_int(req("GET / HTTP/1.1\r\nX: \x01"), BAD, "CTL in a partial value");
    is_int(req("GET / HTTP/x"), BAD, "bad version prefix fails at once");
    is_int(req("GET / HTTP/1.1\r\nHost: a\r\n\r"), MG_AGAIN,
           "final CR without LF yet");
    is_int(req("\r"), MG_AGAIN, "lone CR");
    is_int(req("\r\n"), MG_AGAIN, "one empty line");
    is_int(req(""), MG_AGAIN, "nothing");
}

static void
test_find_head_end(void)
{
    static const char *heads[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\n\r\n",
        "X\r\n\r\n",
    };
    char buf[128];
    size_t scanned, n, k;
    unsigned i;
    long rc, got;

    for (i = 0; i < mg_countof(heads); i++) {
        n = strlen(heads[i]);
        memcpy(buf, heads[i], n);
        memcpy(buf + n, "GET /next", 9);
        scanned = 0;
        rc = mg_h1_find_head_end(buf, n + 9, &scanned);
        is_int(rc, n, "head end of %u in one call", i);

        scanned = 0;
        got = MG_AGAIN;
        for (k = 1; k <= n + 9 && got == MG_AGAIN; k++) {
            got = mg_h1_find_head_end(buf, k, &scanned);
        }
        is_int(got, n, "head end of %u fed byte by byte", i);

        scanned = 0;
        got = mg_h1_find_head_end(buf, n - 2, &scanned);
        if (got == MG_AGAIN) {
            got = mg_h1_find_head_end(buf, n + 9, &scanned);
        }
        is_int(got, n, "head end of %u with CRLF CRLF split", i);
    }

    scanned = 0;
    is_int(mg_h1_find_head_end("\r\n\r\n\r\n", 6, &scanned), MG_AGAIN,
           "only empty lines: no head");
    scanned = 0;
    is_int(mg_h1_find_head_end("\r\n\r\nG", 5, &scanned), MG_AGAIN,
           "empty lines then a request: not at offset 2 or 4");
    scanned = 0;
    rc = mg_h1_find_head_end("GET / HTTP/1.1\nHost: a\n\n", 24, &scanned);
    ok(rc > 0, "bare LF: a head is reported so the parser can refuse it");
    is_int(mg_h1_parse_request(&rq, "GET / HTTP/1.1\nHost: a\n\n", (size_t)rc,
                               NULL),
           BAD, "bare LF head is refused by the parser");
    scanned = 0;
    is_int(
        mg_h1_find_head_end("GET / HTTP/1.1\r\n\rX: a\r\n\r\n", 25, &scanned),
        25, "CRLF CR is not the end of a head");
    scanned = 0;
    is_int(mg_h1_find_head_end("GET / HTTP/1.1\r\nHost: a\r\n", 26, &scanned),
           MG_AGAIN, "head not complete");
    is_int(scanned, 26, "scanned advances");
}

static void
test_response(void)
{
    const char *s;
    char buf[8192];
    size_t n;
    int rc, i;

    s = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: x\r\n\r\n";
    rc = resp(s, MG_H1_METHOD_GET);
    is_int(rc, strlen(s), "200: head length");
    is_int(rs.status, 200, "200: status");
    ok(str_is(rs.reason, "OK"), "200: reason");
    is_int(rs.version_minor, 1, "200: version");
    is_int(rs.body_kind, MG_H1_BODY_LENGTH, "200: body by length");
    is_int(rs.content_length, 12, "200: content_length");
    is_int(rs.keep_alive, 1, "200: keep-alive");
    is_int(rs.upgrade, 0, "200: no upgrade");
    is_int(rs.nheaders, 2, "200: two fields");
    is_int(rs.head_len, strlen(s), "200: head_len");

    rc = resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", MG_H1_METHOD_GET);
    ok(rc > 0 && rs.status == 200 && rs.reason.len == 0,
       "status line without SP and reason");
    rc = resp("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", MG_H1_METHOD_GET);
    ok(rc > 0 && rs.status == 404 && rs.reason.len == 0, "empty reason");
    rc = resp("HTTP/1.1 500 Internal  Server\tError\r\n\r\n", MG_H1_METHOD_GET);
    ok(rc > 0 && str_is(rs.reason, "Internal  Server\tError"),
       "reason with SP and HTAB");

    rc = resp("HTTP/1.1 200 OK\r\n\r\n", MG_H1_METHOD_GET);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_CLOSE && rs.keep_alive == 0,
       "no length: close-delimited, not reusable");
    rc = resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", MG_H1_METHOD_GET);
    ok(rc > 0 && rs.keep_alive == 0, "HTTP/1.0: close by default");
    rc = resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n"
              "Connection: keep-alive\r\n\r\n",
              MG_H1_METHOD_GET);
    ok(rc > 0 && rs.keep_alive == 1, "HTTP/1.0 with keep-alive");
    rc = resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n"
              "\r\n",
              MG_H1_METHOD_GET);
    ok(rc > 0 && rs.keep_alive == 0, "Connection: close");

    rc = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
              MG_H1_METHOD_GET);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_CHUNKED && rs.keep_alive == 1,
       "chunked response");
    rc = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
              MG_H1_METHOD_GET);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_CHUNKED,
       "gzip, chunked response is chunked");
    rc = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
              MG_H1_METHOD_GET);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_CLOSE && rs.keep_alive == 0,
       "chunked not final: read until close");
    is_int(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                "Content-Length: 5\r\n\r\n",
                MG_H1_METHOD_GET),
           MG_H1_ERR_BAD_RESPONSE, "CL with TE");
    is_int(resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                MG_H1_METHOD_GET),
           MG_H1_ERR_BAD_RESPONSE, "TE in an HTTP/1.0 response");
    is_int(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n"
                "\r\n",
                MG_H1_METHOD_GET),
           MG_H1_ERR_BAD_RESPONSE, "chunked twice");
    is_int(resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                "Content-Length: 6\r\n\r\n",
                MG_H1_METHOD_GET),
           MG_H1_ERR_BAD_RESPONSE, "different CL values");
    is_int(
        resp("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", MG_H1_METHOD_GET),
        MG_H1_ERR_BAD_RESPONSE, "invalid CL");
    rc = resp("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n"
              "Content-Length: 5\r\n\r\n",
              MG_H1_METHOD_GET);
    ok(rc > 0 && rs.content_length == 5, "identical CL values");

    rc = resp("HTTP/1.1 204 No Content\r\n\r\n", MG_H1_METHOD_GET);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_NONE && rs.keep_alive == 1,
       "204: no body, reusable");
    rc = resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
              MG_H1_METHOD_GET);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_NONE && rs.content_length == 99,
       "304: no body despite CL");
    rc = resp("HTTP/1.1 100 Continue\r\n\r\n", MG_H1_METHOD_POST);
    ok(rc > 0 && rs.status == 100 && rs.body_kind == MG_H1_BODY_NONE,
       "100 Continue");
    rc = resp("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
              MG_H1_METHOD_GET);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_NONE && rs.upgrade == 0,
       "103 Early Hints");
    rc = resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\n\r\n",
              MG_H1_METHOD_GET);
    ok(rc > 0 && rs.upgrade == 1 && rs.body_kind == MG_H1_BODY_NONE,
       "101: upgrade");
    rc = resp("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
              MG_H1_METHOD_HEAD);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_NONE && rs.content_length == 99,
       "HEAD: no body");
    rc = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
              MG_H1_METHOD_HEAD);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_NONE, "HEAD chunked: no body");
    rc = resp("HTTP/1.1 200 Connection established\r\n\r\n",
              MG_H1_METHOD_CONNECT);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_NONE, "2xx to CONNECT: tunnel");
    rc = resp("HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n",
              MG_H1_METHOD_CONNECT);
    ok(rc > 0 && rs.body_kind == MG_H1_BODY_LENGTH,
       "non-2xx to CONNECT has a body");

    rc = resp("HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: x-a\r\n"
              "Keep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
              MG_H1_METHOD_GET);
    ok(rc > 0 && rs.headers[0].hop_by_hop && rs.headers[2].hop_by_hop &&
           !rs.headers[3].hop_by_hop,
       "response hop-by-hop fields");

    is_int(resp("HTTP/1.1 200OK\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "no SP after status");
    is_int(resp("HTTP/1.1 20 OK\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "two-digit status");
    is_int(resp("HTTP/1.1 2000 OK\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "four-digit status");
    is_int(resp("HTTP/1.1 099 X\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "status below 100");
    is_int(resp("HTTP/1.1  200 OK\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "two SP before status");
    is_int(resp("HTTP/2 200 OK\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE, "HTTP/2");
    is_int(resp("HTTP/1.2 200 OK\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "HTTP/1.2");
    is_int(resp("HTTP/2.0 200 OK\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "HTTP/2.0");
    is_int(resp("ICY 200 OK\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE, "not HTTP");
    is_int(resp("\r\nHTTP/1.1 200 OK\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "leading empty line");
    is_int(resp("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", 0),
           MG_H1_ERR_BAD_RESPONSE, "bare LF after the status line");
    is_int(resp("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", 0),
           MG_H1_ERR_BAD_RESPONSE, "bare LF after a field");
    is_int(resp("HTTP/1.1 200 O\rK\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "bare CR in reason");
    is_int(resp("HTTP/1.1 200 O\x01K\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "CTL in reason");
    is_int(resp("HTTP/1.1 200 OK\r\nX : 1\r\n\r\n", 0), MG_H1_ERR_BAD_RESPONSE,
           "SP before colon");
    is_int(resp("HTTP/1.1 200 OK\r\nX: 1\r\n 2\r\n\r\n", 0),
           MG_H1_ERR_BAD_RESPONSE, "obs-fold");
    is_int(resp("HTTP/1.1 200 OK\r\nX: \x7f\r\n\r\n", 0),
           MG_H1_ERR_BAD_RESPONSE, "DEL in value");

    s = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
    n = strlen(s);
    for (i = 0, rc = 0; i < (int)n; i++) {
        if (mg_h1_parse_response(&rs, s, (size_t)i, 0, 0) != MG_AGAIN) {
            rc++;
        }
    }
    is_int(rc, 0, "every prefix of a response is incomplete");
    is_int(mg_h1_parse_response(&rs, s, n, 0, n), n, "head at max_head");
    is_int(mg_h1_parse_response(&rs, s, n, 0, n - 1), MG_H1_ERR_BAD_RESPONSE,
           "head over max_head");
    is_int(mg_h1_parse_response(&rs, s, n - 1, 0, n - 3),
           MG_H1_ERR_BAD_RESPONSE, "incomplete head over max_head");
    is_int(resp("HTTP/1.1 200 OK\r\nX: \x01", 0), MG_H1_ERR_BAD_RESPONSE,
           "garbage in an incomplete response fails at once");

    n = (size_t)snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\n");
    for (i = 0; i < MG_H1_MAX_HEADERS; i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%d: 1\r\n", i);
    }
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    rc = mg_h1_parse_response(&rs, buf, n, 0, 0);
    ok(rc > 0 && rs.nheaders == MG_H1_MAX_HEADERS,
       "MG_H1_MAX_HEADERS response fields");
    n -= 2;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Y: 1\r\n\r\n");
    is_int(mg_h1_parse_response(&rs, buf, n, 0, 0), MG_H1_ERR_BAD_RESPONSE,
           "too many response fields");
}

/*
 * Runs the chunked decoder over |in| cut into pieces at the offsets in
 * |cuts| (ascending, ending with 0), the way a connection would deliver it:
 * after MG_AGAIN everything was consumed, so the next call starts with the
 * next piece. Decoded data is collected in |out|.
 */
typedef struct chunk_run_s {
    int rc;
    size_t consumed;
    size_t out_len;
    char out[40000];
    uint64_t data_total;
} chunk_run_t;

static void
chunk_feed(chunk_run_t *cr, const char *in, size_t len, const size_t *cuts,
           size_t step, int decode, int64_t max_body)
{
    mg_h1_chunked_t st;
    size_t pos = 0, next, c, o;
    unsigned k = 0;
    char *work;

    /* Exactly |len| bytes, so ASan sees any read past the input. */
    work = malloc(len ? len : 1);
    if (work == NULL) {
        abort();
    }
    memset(&st, 0, sizeof(st));
    memcpy(work, in, len);
    cr->rc = MG_AGAIN;
    cr->consumed = 0;
    cr->out_len = 0;
    while (cr->rc == MG_AGAIN && pos < len) {
        if (step) {
            next = pos + step;
        } else if (cuts != NULL && cuts[k] != 0) {
            next = cuts[k++];
        } else {
            next = len;
        }
        if (next > len) {
            next = len;
        }
        o = 0;
        cr->rc = mg_h1_chunked_parse(&st, work + pos, next - pos, &c,
                                     decode ? &o : NULL, decode, max_body);
        if (decode) {
            memcpy(cr->out + cr->out_len, work + pos, o);
            cr->out_len += o;
        }
        cr->consumed += c;
        if (cr->rc == MG_AGAIN && c != next - pos) {
            cr->rc = 999; /* MG_AGAIN must consume everything */
        }
        pos = next;
    }
    cr->data_total = st.data_total;
    free(work);
}

static int
chunk_one(const char *in, int decode, int64_t max_body, size_t *consumed)
{
    static chunk_run_t cr;

    chunk_feed(&cr, in, strlen(in), NULL, 0, decode, max_body);
    if (consumed != NULL) {
        *consumed = cr.consumed;
    }
    return cr.rc;
}

static void
test_chunked_splits(const char *msg, const char *data, size_t tail)
{
    static chunk_run_t whole, part;
    size_t len = strlen(msg), cuts[3], i, j;
    unsigned bad2 = 0, bad3 = 0, bad1 = 0;
    int decode;

    for (decode = 0; decode <= 1; decode++) {
        chunk_feed(&whole, msg, len, NULL, 0, decode, 0);
        ok(whole.rc == MG_OK && whole.consumed == len - tail,
           "%s: whole message (%s)", data, decode ? "decode" : "forward");
        if (decode) {
            ok(whole.out_len == strlen(data) &&
                   memcmp(whole.out, data, whole.out_len) == 0,
               "%s: decoded data", data);
        }
        is_int(whole.data_total, strlen(data), "%s: data_total", data);

        for (i = 1; i < len; i++) {
            cuts[0] = i;
            cuts[1] = 0;
            chunk_feed(&part, msg, len, cuts, 0, decode, 0);
            if (part.rc != whole.rc || part.consumed != whole.consumed ||
                part.out_len != whole.out_len ||
                memcmp(part.out, whole.out, whole.out_len) != 0) {
                bad2++;
            }
            for (j = i + 1; j < len; j += 3) {
                cuts[1] = j;
                cuts[2] = 0;
                chunk_feed(&part, msg, len, cuts, 0, decode, 0);
                if (part.rc != whole.rc || part.consumed != whole.consumed ||
                    part.out_len != whole.out_len ||
                    memcmp(part.out, whole.out, whole.out_len) != 0) {
                    bad3++;
                }
            }
        }
        chunk_feed(&part, msg, len, NULL, 1, decode, 0);
        if (part.rc != whole.rc || part.consumed != whole.consumed ||
            part.out_len != whole.out_len ||
            memcmp(part.out, whole.out, whole.out_len) != 0) {
            bad1++;
        }
    }
    is_int(bad2, 0, "%s: every split in two pieces", data);
    is_int(bad3, 0, "%s: splits in three pieces", data);
    is_int(bad1, 0, "%s: byte by byte", data);
}

static void
test_chunked(void)
{
    mg_h1_chunked_t st;
    char buf[32768];
    size_t consumed, out_len, n;
    int rc;

    test_chunked_splits("5\r\nhello\r\n0\r\n\r\n", "hello", 0);
    test_chunked_splits("5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nGET / HTTP",
                        "hello, world", 10);
    test_chunked_splits("A;name=value;q=\"a \\\"b\\\" c\"\r\n0123456789\r\n"
                        "1 ; x = y\r\n!\r\n0;last\r\nX-Trailer: t\r\n"
                        "Y: \r\n\r\nnext",
                        "0123456789!", 4);
    test_chunked_splits("000000000000002F\r\n"
                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU\r\n"
                        "0\r\n\r\n",
                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU", 0);

    memset(&st, 0, sizeof(st));
    strcpy(buf, "3\r\nabc\r\n0\r\n\r\n");
    rc = mg_h1_chunked_parse(&st, buf, strlen(buf), &consumed, &out_len, 1, 0);
    ok(rc == MG_OK && out_len == 3 && memcmp(buf, "abc", 3) == 0,
       "decode moves the data to the front");
    rc = mg_h1_chunked_parse(&st, buf, 3, &consumed, &out_len, 1, 0);
    ok(rc == MG_OK && consumed == 0 && out_len == 0,
       "after the end nothing more is consumed");
    memset(&st, 0, sizeof(st));
    strcpy(buf, "3\r\nabc\r\n0\r\n\r\n");
    rc = mg_h1_chunked_parse(&st, buf, strlen(buf), &consumed, NULL, 0, 0);
    ok(rc == MG_OK && memcmp(buf, "3\r\nabc", 6) == 0,
       "forward mode leaves the bytes alone");
    memset(&st, 0, sizeof(st));
    rc = mg_h1_chunked_parse(&st, buf, 0, &consumed, NULL, 0, 0);
    ok(rc == MG_AGAIN && consumed == 0, "empty input: again");

    is_int(chunk_one("\r\n", 0, 0, NULL), BAD, "empty size line");
    is_int(chunk_one("g\r\n", 0, 0, NULL), BAD, "size not hex");
    is_int(chunk_one("-1\r\n", 0, 0, NULL), BAD, "negative size");
    is_int(chunk_one("0x5\r\n", 0, 0, NULL), BAD, "0x prefix");
    is_int(chunk_one(" 5\r\n", 0, 0, NULL), BAD, "SP before size");
    is_int(chunk_one("5 \r\n", 0, 0, NULL), BAD, "SP after size");
    is_int(chunk_one("5\nhello\r\n", 0, 0, NULL), BAD, "bare LF after size");
    is_int(chunk_one("5\rhello\r\n", 0, 0, NULL), BAD, "bare CR after size");
    is_int(chunk_one("5\r\nhelloX\r\n0\r\n\r\n", 0, 0, NULL), BAD,
           "data longer than its size");
    is_int(chunk_one("5\r\nhello\n0\r\n\r\n", 0, 0, NULL), BAD,
           "bare LF after data");
    is_int(chunk_one("5\r\nhello\rX0\r\n\r\n", 0, 0, NULL), BAD,
           "CR without LF after data");
    is_int(chunk_one("5\r\nhelloX\n0\r\n\r\n", 0, 0, NULL), BAD,
           "LF without CR after data");
    is_int(chunk_one("5\r\nhello\n\n0\r\n\r\n", 0, 0, NULL), BAD,
           "LF LF after data");
    is_int(chunk_one("5\r\nhello0\r\n\r\n", 1, 0, NULL), BAD,
           "no CRLF after data (decode)");
    is_int(chunk_one("10000000000000000\r\n", 0, 0, NULL), BAD,
           "17 hex digits");
    is_int(chunk_one("00000000000000001\r\n", 0, 0, NULL), BAD,
           "17 digits with leading zeros");
    is_int(chunk_one("4000000000000000\r\n", 0, 0, NULL), BAD,
           "size 2^62 overflows");
    is_int(chunk_one("ffffffffffffffff\r\n", 0, 0, NULL), BAD,
           "size 2^64-1 overflows");
    is_int(chunk_one("3fffffffffffffff\r\nab", 0, 0, NULL), MG_AGAIN,
           "size 2^62-1 accepted");
    is_int(chunk_one("5;\r\n", 0, 0, NULL), BAD, "empty extension name");
    is_int(chunk_one("5;a \r\n", 0, 0, NULL), BAD, "BWS before CRLF");
    is_int(chunk_one("5;a b\r\n", 0, 0, NULL), BAD, "two extension names");
    is_int(chunk_one("5;a=\r\n", 0, 0, NULL), BAD, "empty extension value");
    is_int(chunk_one("5;a=\"x\r\n", 0, 0, NULL), BAD, "unclosed quote");
    is_int(chunk_one("5;a=\"x\"y\r\n", 0, 0, NULL), BAD,
           "garbage after quoted-string");
    is_int(chunk_one("5;a=b\x01\r\n", 0, 0, NULL), BAD, "CTL in extension");
    is_int(chunk_one("5;a=\"\x01\"\r\n", 0, 0, NULL), BAD,
           "CTL in quoted extension");
    is_int(chunk_one("5;a=b\nhello", 0, 0, NULL), BAD,
           "bare LF after extension");
    is_int(chunk_one("5;a=\"b\\\r\n", 0, 0, NULL), BAD, "quoted-pair with CR");
    is_int(chunk_one("5;a@b\r\n", 0, 0, NULL), BAD, "extension name '@'");
    is_int(chunk_one("0\r\nX: 1\n\r\n", 0, 0, NULL), BAD, "bare LF in trailer");
    is_int(chunk_one("0\r\n X: 1\r\n\r\n", 0, 0, NULL), BAD,
           "trailer starts with SP");
    is_int(chunk_one("0\r\nX : 1\r\n\r\n", 0, 0, NULL), BAD,
           "SP before colon in trailer");
    is_int(chunk_one("0\r\nX 1\r\n\r\n", 0, 0, NULL), BAD,
           "trailer without colon");
    is_int(chunk_one("0\r\nX: \x01\r\n\r\n", 0, 0, NULL), BAD,
           "CTL in trailer value");
    is_int(chunk_one("0\r\nX: 1\r\n\rX", 0, 0, NULL), BAD, "bad final CRLF");
    is_int(chunk_one("0\r\n\n", 0, 0, NULL), BAD, "final bare LF");

    n = (size_t)snprintf(buf, sizeof(buf), "0\r\n");
    while (n < 16384) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-Pad: %090d\r\n", 0);
    }
    snprintf(buf + n, sizeof(buf) - n, "\r\n");
    is_int(chunk_one(buf, 0, 0, NULL), BAD, "trailer section over 16 KiB");
    n = (size_t)snprintf(buf, sizeof(buf), "0\r\n");
    while (n < 16000) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-Pad: %090d\r\n", 0);
    }
    snprintf(buf + n, sizeof(buf) - n, "\r\n");
    is_int(chunk_one(buf, 0, 0, NULL), MG_OK, "trailer section under 16 KiB");

    n = (size_t)snprintf(buf, sizeof(buf), "1");
    while (n < 5000) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, ";a=b");
    }
    snprintf(buf + n, sizeof(buf) - n, "\r\nx\r\n0\r\n\r\n");
    is_int(chunk_one(buf, 0, 0, NULL), BAD, "size line over 4 KiB");

    is_int(chunk_one("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 0, 10, NULL),
           MG_OK, "max_body reached exactly");
    is_int(chunk_one("5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", 0, 10, NULL),
           MG_H1_ERR_BODY_TOO_LARGE, "max_body exceeded by the second chunk");
    is_int(chunk_one("b\r\n", 1, 10, NULL), MG_H1_ERR_BODY_TOO_LARGE,
           "max_body exceeded before the data arrives");

    is_int(chunk_one("5\r\nhello\r\n0\r\n\r\nrest", 0, 0, &consumed), MG_OK,
           "pipelined bytes after the message");
    is_int(consumed, 15, "pipelined bytes are not consumed");
}

static void
test_misc(void)
{
    static const struct {
        const char *m;
        unsigned id;
    } methods[] = {
        {"GET", MG_H1_METHOD_GET},       {"HEAD", MG_H1_METHOD_HEAD},
        {"POST", MG_H1_METHOD_POST},     {"PUT", MG_H1_METHOD_PUT},
        {"DELETE", MG_H1_METHOD_DELETE}, {"OPTIONS", MG_H1_METHOD_OPTIONS},
        {"PATCH", MG_H1_METHOD_PATCH},   {"CONNECT", MG_H1_METHOD_CONNECT},
        {"TRACE", MG_H1_METHOD_TRACE},   {"get", MG_H1_METHOD_OTHER},
        {"GETS", MG_H1_METHOD_OTHER},    {"PROPFIND", MG_H1_METHOD_OTHER},
    };
    unsigned i;

    for (i = 0; i < mg_countof(methods); i++) {
        is_int(mg_h1_method_id(mg_str(methods[i].m)), methods[i].id,
               "method id of %s", methods[i].m);
    }

    is_int(mg_h1_error_status(MG_H1_ERR_BAD_REQUEST), 400, "400");
    is_int(mg_h1_error_status(MG_H1_ERR_URI_TOO_LONG), 414, "414");
    is_int(mg_h1_error_status(MG_H1_ERR_HEADERS_TOO_LARGE), 431, "431");
    is_int(mg_h1_error_status(MG_H1_ERR_BODY_TOO_LARGE), 413, "413");
    is_int(mg_h1_error_status(MG_H1_ERR_NOT_IMPLEMENTED), 501, "501");
    is_int(mg_h1_error_status(MG_H1_ERR_VERSION), 505, "505");
    is_int(mg_h1_error_status(MG_H1_ERR_BAD_RESPONSE), 502, "502");
    is_int(mg_h1_error_status(-1), 400, "unknown error is 400");
}

int
main(void)
{
    test_request_valid();
    test_request_reject();
    test_request_limits();
    test_request_headers();
    test_request_flags();
    test_request_incremental();
    test_find_head_end();
    test_response();
    test_chunked();
    test_misc();
    return done_testing();
}
