/*
 * HTTP/1.1 message parsing (RFC 9110, RFC 9112): request and response heads,
 * and the chunked transfer coding. Strict by design: every request smuggling
 * vector is an error, never a guess.
 *
 * The head parsers are stateless: they are given the whole buffered head from
 * its first byte each time and either parse all of it or report MG_AGAIN. To
 * keep that linear under byte-at-a-time senders, callers first look for the
 * end of the head with mg_h1_find_head_end(), which resumes where it stopped.
 * Parsed strings point into the caller's buffer.
 */
#ifndef MG_H1_H
#define MG_H1_H

#include <stdint.h>

#include "mg_core.h"
#include "mg_str.h"

/* Hard upper bound on header fields per message; the configured limit may
 * be lower. */
#define MG_H1_MAX_HEADERS 128

/* Parse errors. mg_h1_error_status() maps each to its HTTP status. */
enum {
    MG_H1_ERR_BAD_REQUEST = -100,  /* 400: malformed or ambiguous message */
    MG_H1_ERR_URI_TOO_LONG,        /* 414: request line over the limit */
    MG_H1_ERR_HEADERS_TOO_LARGE,   /* 431: head bytes or field count over */
    MG_H1_ERR_BODY_TOO_LARGE,      /* 413: Content-Length over the limit */
    MG_H1_ERR_NOT_IMPLEMENTED,     /* 501: a transfer coding we don't do */
    MG_H1_ERR_VERSION,             /* 505: not HTTP/1.x */
    MG_H1_ERR_BAD_RESPONSE         /* upstream sent a malformed response */
};

/* Well-known methods, so the proxy compares integers. */
enum {
    MG_H1_METHOD_OTHER = 1,
    MG_H1_METHOD_GET,
    MG_H1_METHOD_HEAD,
    MG_H1_METHOD_POST,
    MG_H1_METHOD_PUT,
    MG_H1_METHOD_DELETE,
    MG_H1_METHOD_OPTIONS,
    MG_H1_METHOD_PATCH,
    MG_H1_METHOD_CONNECT,
    MG_H1_METHOD_TRACE
};

/* How the body of a message is delimited (RFC 9112 §6.3). */
enum {
    MG_H1_BODY_NONE = 1,
    MG_H1_BODY_LENGTH,     /* content_length bytes */
    MG_H1_BODY_CHUNKED,
    MG_H1_BODY_CLOSE       /* responses only: until the connection closes */
};

/* Header names the proxy acts on, found while parsing. */
enum {
    MG_H1_HDR_OTHER = 0,
    MG_H1_HDR_HOST,
    MG_H1_HDR_CONNECTION,
    MG_H1_HDR_CONTENT_LENGTH,
    MG_H1_HDR_TRANSFER_ENCODING,
    MG_H1_HDR_UPGRADE,
    MG_H1_HDR_EXPECT,
    MG_H1_HDR_KEEP_ALIVE,
    MG_H1_HDR_PROXY_CONNECTION,
    MG_H1_HDR_TE,
    MG_H1_HDR_TRAILER,
    MG_H1_HDR_PROXY_AUTHORIZATION,
    MG_H1_HDR_PROXY_AUTHENTICATE,
    MG_H1_HDR_X_FORWARDED_FOR,
    MG_H1_HDR_X_FORWARDED_PROTO,
    MG_H1_HDR_VIA,
    MG_H1_HDR_X_REQUEST_ID
};

typedef struct mg_h1_header_s {
    mg_str_t name;
    mg_str_t value;        /* leading and trailing OWS removed */
    unsigned id;           /* MG_H1_HDR_* */
    unsigned hop_by_hop:1; /* hop-by-hop by nature, or named in Connection */
} mg_h1_header_t;

/* Limits for parsing requests; 0 in a field means the built-in default. */
typedef struct mg_h1_limits_s {
    size_t max_request_line;   /* default 8192; over it -> 414 */
    size_t max_header_size;    /* whole head in bytes; default 32768 -> 431 */
    unsigned max_headers;      /* default 100, at most MG_H1_MAX_HEADERS */
    int64_t max_body_size;     /* Content-Length bound; 0 = no limit -> 413 */
} mg_h1_limits_t;

struct mg_h1_request_s {
    mg_str_t method;
    mg_str_t target;           /* as sent: origin-form, absolute-form, ... */
    mg_str_t path;             /* target without the query, origin-form */
    mg_str_t query;            /* after '?', without it; may be empty */
    mg_str_t host;             /* Host header, or the authority of an
                                * absolute-form target (RFC 9112 §3.2.2) */
    unsigned method_id;        /* MG_H1_METHOD_* */
    unsigned version_minor;    /* 0 or 1 */
    unsigned body_kind;        /* MG_H1_BODY_NONE, _LENGTH or _CHUNKED */
    int64_t content_length;    /* -1 when absent */
    unsigned keep_alive:1;     /* 1.1 without close, or 1.0 with keep-alive */
    unsigned expect_continue:1;
    unsigned upgrade:1;        /* Upgrade header listed in Connection */
    mg_str_t upgrade_protocol; /* the Upgrade header value */
    size_t head_len;           /* bytes of the request line and headers */
    mg_h1_header_t headers[MG_H1_MAX_HEADERS];
    unsigned nheaders;
};

struct mg_h1_response_s {
    unsigned status;           /* 100..999 */
    mg_str_t reason;
    unsigned version_minor;
    unsigned body_kind;        /* MG_H1_BODY_* given the request method */
    int64_t content_length;    /* -1 when absent */
    unsigned keep_alive:1;     /* the upstream connection may be reused */
    unsigned upgrade:1;        /* 101 Switching Protocols */
    size_t head_len;
    mg_h1_header_t headers[MG_H1_MAX_HEADERS];
    unsigned nheaders;
};

/*
 * Looks for the blank line that ends a message head in [buf, buf+len).
 * |*scanned| holds how many bytes earlier calls already looked at (start
 * with 0); it is updated so the next call resumes there. Returns the head
 * length including the final CRLF CRLF, or MG_AGAIN when not found yet.
 * A bare LF also ends the search early (the length ends at it), so that the
 * parser, which refuses it, runs at once instead of at a timeout.
 */
long mg_h1_find_head_end(const char *buf, size_t len, size_t *scanned);

/*
 * Parses a request head from [buf, buf+len), which must start at the
 * request line. Leading empty lines are skipped (RFC 9112 §2.2). Returns the
 * head length (> 0), MG_AGAIN when the head is incomplete and no limit is
 * exceeded yet, or one of MG_H1_ERR_*. |lim| may be NULL for defaults.
 * Refuses: CL and TE together, differing or invalid Content-Length values,
 * a Transfer-Encoding other than a final "chunked" (501 for unknown codings),
 * obs-fold, whitespace before a colon, bare CR or LF, NUL and control bytes,
 * a missing or repeated Host on HTTP/1.1, invalid method or target bytes.
 */
int mg_h1_parse_request(mg_h1_request_t *r, const char *buf, size_t len,
                        const mg_h1_limits_t *lim);

/*
 * Parses a response head, as strictly. |method_id| is that of the request it
 * answers (HEAD and CONNECT change the body rules). 1xx responses other than
 * 101 are returned like any other; the caller skips them. Returns the head
 * length, MG_AGAIN, or MG_H1_ERR_BAD_RESPONSE (also when the head exceeds
 * |max_head| bytes; 0 means 65536).
 */
int mg_h1_parse_response(mg_h1_response_t *resp, const char *buf, size_t len,
                         unsigned method_id, size_t max_head);

/* The HTTP status for an MG_H1_ERR_* code (400 for anything unknown). */
unsigned mg_h1_error_status(int err);

/* State of the chunked decoder (RFC 9112 §7.1). Zero it to start. */
typedef struct mg_h1_chunked_s {
    unsigned state;
    uint64_t chunk_left;       /* data bytes left in the current chunk */
    uint64_t data_total;       /* data bytes seen so far in the message */
    unsigned size_digits;
    unsigned line_len;         /* bytes of the current size/trailer line */
    unsigned trailer_bytes;
} mg_h1_chunked_t;

/*
 * Runs the chunked decoder over [p, p+len). It stops at the end of the
 * message, so pipelined bytes after it are not consumed.
 * |*consumed|: bytes of the range that belong to this message.
 * With |decode| == 0 the range is left untouched (the framing is forwarded
 * as is); otherwise the chunk data is moved to the front of the range and
 * |*out_len| is its length (trailers are dropped). |out_len| may be NULL when
 * not decoding.
 * Returns MG_AGAIN (message not complete: call again with more bytes),
 * MG_OK (message complete, trailers included) or MG_H1_ERR_BAD_REQUEST
 * (malformed size, overflow, bad extension or line ending, trailer section
 * over 16 KiB). |max_body| > 0 bounds data_total: MG_H1_ERR_BODY_TOO_LARGE.
 */
int mg_h1_chunked_parse(mg_h1_chunked_t *st, char *p, size_t len,
                        size_t *consumed, size_t *out_len, int decode,
                        int64_t max_body);

/* Method id for a method token. */
unsigned mg_h1_method_id(mg_str_t method);

#endif /* MG_H1_H */
