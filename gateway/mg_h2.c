#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <nghttp2/nghttp2.h>

#include "mg_buf.h"
#include "mg_h1.h"
#include "mg_h2.h"
#include "mg_io.h"
#include "mg_log.h"
#include "mg_metrics.h"
#include "mg_proxy.h"
#include "mg_snapshot.h"
#include "mg_str.h"
#include "mg_upstream.h"

#define H2_MAX_CONCURRENT_STREAMS 128
#define H2_CONN_WINDOW            (1 << 20)
#define H2_MAX_NV                 (MG_H1_MAX_HEADERS + 8)
#define H2_EARLY_WINDOW           65536   /* the default initial window */

struct mg_h2_conn_s {
    nghttp2_session *session;
    mg_client_t *c;               /* the connection */
    mg_client_t *streams;         /* open streams */
    unsigned nstreams;
    const uint8_t *pending;       /* session output not yet copied out */
    size_t npending;
    unsigned in_session:1;        /* inside mem_recv/mem_send: no flush */
    unsigned flush_wanted:1;
    unsigned dirty:1;             /* on the list flushed before the loop
                                   * sleeps */
    mg_h2_conn_t *dnext;
    mg_h2_conn_t *dprev;
    unsigned goaway:1;
    unsigned closing:1;
    /* The header block being received: blocks of different streams never
     * interleave (RFC 9113 §4.3), so one set of fields serves. */
    unsigned hdr_too_large:1;
    unsigned hdr_bad:1;
    unsigned ncookies;
    int64_t content_length;       /* -1 when absent */
};

/* nghttp2 setup shared by every connection of the worker. */
static nghttp2_session_callbacks *h2_callbacks;
static nghttp2_option *h2_option;

static void h2_flush(mg_client_t *c);
static void h2_nv(nghttp2_nv *nv, const char *name, size_t namelen,
                  const char *value, size_t valuelen);

/* Connections with output waiting, flushed once per loop iteration just
 * before it sleeps: the responses that several upstreams delivered in one
 * pass leave in one write (and one TLS record run) instead of one each.
 * It also keeps flushing out of stream events, where closing the
 * connection could free the stream under their feet. */
static mg_h2_conn_t *h2_dirty;
static ev_prepare h2_prepare;

static void
h2_dirty_unlink(mg_h2_conn_t *h2)
{
    if (!h2->dirty) {
        return;
    }
    if (h2->dprev != NULL) {
        h2->dprev->dnext = h2->dnext;
    } else {
        h2_dirty = h2->dnext;
    }
    if (h2->dnext != NULL) {
        h2->dnext->dprev = h2->dprev;
    }
    h2->dnext = h2->dprev = NULL;
    h2->dirty = 0;
}

static void
h2_on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    mg_h2_conn_t *h2;

    while ((h2 = h2_dirty) != NULL) {
        h2_dirty_unlink(h2);
        h2_flush(h2->c);   /* may close it: it is off the list already */
    }
}

static void
h2_schedule_flush(mg_client_t *c)
{
    mg_h2_conn_t *h2 = c->h2;

    if (h2 == NULL || h2->dirty) {
        return;
    }
    if (!ev_is_active(&h2_prepare)) {
        ev_prepare_init(&h2_prepare, h2_on_prepare);
        ev_prepare_start(c->ctx->loop, &h2_prepare);
        ev_unref(c->ctx->loop);   /* it alone must not keep the loop up */
    }
    h2->dirty = 1;
    h2->dprev = NULL;
    h2->dnext = h2_dirty;
    if (h2_dirty != NULL) {
        h2_dirty->dprev = h2;
    }
    h2_dirty = h2;
}

/* ------------------------------------------------------------------ */

static void
h2_stream_link(mg_h2_conn_t *h2, mg_client_t *s)
{
    s->sprev = NULL;
    s->snext = h2->streams;
    if (h2->streams != NULL) {
        h2->streams->sprev = s;
    }
    h2->streams = s;
    h2->nstreams++;
}

static void
h2_stream_unlink(mg_h2_conn_t *h2, mg_client_t *s)
{
    if (s->sprev != NULL) {
        s->sprev->snext = s->snext;
    } else {
        h2->streams = s->snext;
    }
    if (s->snext != NULL) {
        s->snext->sprev = s->sprev;
    }
    s->snext = s->sprev = NULL;
    h2->nstreams--;
}

/* Moves the header storage to a block of |size| bytes, keeping the
 * request's strings pointing at their bytes. */
static int
h2_store_grow(mg_client_t *s, mg_h1_request_t *r, size_t size)
{
    mg_buf_t *nb = mg_buf_get_large(size);
    const char *old = s->in->start, *old_end = s->in->last;
    ptrdiff_t d;
    unsigned i;

    if (nb == NULL) {
        return MG_ERROR;
    }
    memcpy(nb->start, s->in->start, (size_t)(s->in->last - s->in->start));
    nb->pos = nb->start + (s->in->pos - s->in->start);
    nb->last = nb->start + (s->in->last - s->in->start);
    d = nb->start - old;
#define H2_REBASE(str)                                                       \
    if ((str).data >= old && (str).data < old_end) {                         \
        (str).data += d;                                                     \
    }
    H2_REBASE(r->method);
    H2_REBASE(r->target);
    H2_REBASE(r->host);
    for (i = 0; i < r->nheaders; i++) {
        H2_REBASE(r->headers[i].name);
        H2_REBASE(r->headers[i].value);
    }
#undef H2_REBASE
    mg_buf_put(&s->ctx->bufs, s->in);
    s->in = nb;
    return MG_OK;
}

/* Copies |len| bytes into the stream's header storage, which grows up to
 * the listener's max_header_size (what our SETTINGS announced). */
static const char *
h2_store(mg_client_t *s, const uint8_t *p, size_t len)
{
    const mg_h1_limits_t *lim = &s->lc->limits;
    size_t max_head = lim->max_header_size ? lim->max_header_size : 32768;
    size_t used = (size_t)(s->in->last - s->in->start);
    char *dst;

    if (mg_buf_room(s->in) < len) {
        if (used + len > max_head + 1024
            || (size_t)(s->in->end - s->in->start) >= max_head + 1024
            || h2_store_grow(s, s->ctx->req, max_head + 1024) != MG_OK) {
            return NULL;
        }
    }
    dst = s->in->last;
    memcpy(dst, p, len);
    s->in->last += len;
    return dst;
}

static unsigned
h2_header_id(const uint8_t *name, size_t len)
{
    mg_str_t n = { (const char *)name, len };

    switch (len) {
    case 2:
        return mg_str_eq(n, mg_str_lit("te")) ? MG_H1_HDR_TE : 0;
    case 3:
        return mg_str_eq(n, mg_str_lit("via")) ? MG_H1_HDR_VIA : 0;
    case 4:
        return mg_str_eq(n, mg_str_lit("host")) ? MG_H1_HDR_HOST : 0;
    case 12:
        return mg_str_eq(n, mg_str_lit("x-request-id")) ? MG_H1_HDR_X_REQUEST_ID
                                                        : 0;
    case 14:
        return mg_str_eq(n, mg_str_lit("content-length"))
                   ? MG_H1_HDR_CONTENT_LENGTH : 0;
    case 15:
        return mg_str_eq(n, mg_str_lit("x-forwarded-for"))
                   ? MG_H1_HDR_X_FORWARDED_FOR : 0;
    case 17:
        return mg_str_eq(n, mg_str_lit("x-forwarded-proto"))
                   ? MG_H1_HDR_X_FORWARDED_PROTO : 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Session callbacks                                                   */

static int
h2_on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
                    void *user_data)
{
    mg_client_t *c = user_data;
    mg_h2_conn_t *h2 = c->h2;
    mg_h1_request_t *r = c->ctx->req;
    mg_client_t *s;

    if (frame->hd.type != NGHTTP2_HEADERS
        || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    s = mg_proxy__stream_new(c, frame->hd.stream_id);
    if (s == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->in = mg_buf_get(&c->ctx->bufs);
    if (s->in == NULL) {
        mg_proxy__stream_free(s);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->start = ev_now(c->ctx->loop);
    s->chunk_left = 0;
    h2_stream_link(h2, s);
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    memset(r, 0, offsetof(mg_h1_request_t, headers));
    r->nheaders = 0;
    r->content_length = -1;
    h2->hdr_too_large = 0;
    h2->hdr_bad = 0;
    h2->ncookies = 0;
    h2->content_length = -1;
    return 0;
}

static int
h2_on_header(nghttp2_session *session, const nghttp2_frame *frame,
             const uint8_t *name, size_t namelen, const uint8_t *value,
             size_t valuelen, uint8_t flags, void *user_data)
{
    mg_client_t *c = user_data;
    mg_h2_conn_t *h2 = c->h2;
    mg_h1_request_t *r = c->ctx->req;
    const mg_h1_limits_t *lim = &c->lc->limits;
    unsigned max_headers = lim->max_headers ? lim->max_headers : 100;
    mg_client_t *s;
    mg_h1_header_t *h;
    const char *n, *v;

    if (frame->hd.type != NGHTTP2_HEADERS
        || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;   /* trailers of a request body: not forwarded */
    }
    s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL || h2->hdr_too_large) {
        return 0;
    }
    v = h2_store(s, value, valuelen);
    if (v == NULL) {
        h2->hdr_too_large = 1;
        return 0;
    }
    if (name[0] == ':') {
        mg_str_t pv = { v, valuelen };

        if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
            r->method = pv;
        } else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
            r->target = pv;
        } else if (namelen == 10 && memcmp(name, ":authority", 10) == 0) {
            r->host = pv;
        }
        return 0;
    }
    if (r->nheaders >= max_headers) {
        h2->hdr_too_large = 1;
        return 0;
    }
    n = h2_store(s, name, namelen);
    if (n == NULL) {
        h2->hdr_too_large = 1;
        return 0;
    }
    h = &r->headers[r->nheaders++];
    h->name.data = n;
    h->name.len = namelen;
    h->value.data = v;
    h->value.len = valuelen;
    h->id = h2_header_id(name, namelen);
    /* TE (only "trailers" gets this far) is hop-by-hop. */
    h->hop_by_hop = h->id == MG_H1_HDR_TE;
    if (h->id == MG_H1_HDR_HOST) {
        /* RFC 9113 §8.3.1: :authority wins; a Host beside it must not
         * reach the upstream, which would then serve another host than
         * the one routed. */
        if (r->host.len == 0) {
            r->host = h->value;
        } else {
            h->hop_by_hop = 1;
        }
    } else if (h->id == MG_H1_HDR_CONTENT_LENGTH) {
        char num[24];
        char *end;

        if (valuelen == 0 || valuelen >= sizeof(num)) {
            h2->hdr_bad = 1;
            return 0;
        }
        memcpy(num, v, valuelen);
        num[valuelen] = '\0';
        h2->content_length = strtoll(num, &end, 10);
        if (*end != '\0' || h2->content_length < 0) {
            h2->hdr_bad = 1;
        }
    } else if (namelen == 6 && memcmp(name, "cookie", 6) == 0) {
        h2->ncookies++;
    }
    return 0;
}

/* RFC 9113 §8.2.3: cookie fields split for compression are joined with
 * "; " before they go to an HTTP/1.1 upstream. */
static int
h2_join_cookies(mg_client_t *s, mg_h1_request_t *r)
{
    unsigned i, first = 1;
    char *start = s->in->last;
    mg_h1_header_t *h;

    for (i = 0; i < r->nheaders; i++) {
        h = &r->headers[i];
        if (h->name.len != 6 || memcmp(h->name.data, "cookie", 6) != 0) {
            continue;
        }
        if (mg_buf_room(s->in) < h->value.len + 2) {
            return MG_ERROR;
        }
        if (!first) {
            *s->in->last++ = ';';
            *s->in->last++ = ' ';
        }
        memcpy(s->in->last, h->value.data, h->value.len);
        s->in->last += h->value.len;
        first = 0;
        h->hop_by_hop = 1;   /* dropped; the joined field replaces them */
    }
    if (r->nheaders >= MG_H1_MAX_HEADERS) {
        return MG_ERROR;
    }
    h = &r->headers[r->nheaders++];
    h->name = mg_str_lit("cookie");
    h->value.data = start;
    h->value.len = (size_t)(s->in->last - start);
    h->id = 0;
    h->hop_by_hop = 0;
    return MG_OK;
}

static void
h2_request_complete(mg_client_t *c, mg_client_t *s, int end_stream)
{
    mg_h2_conn_t *h2 = c->h2;
    mg_h1_request_t *r = c->ctx->req;
    const char *q;

    if (h2->hdr_too_large) {
        mg_h2_respond(s, 431, "text/plain", "request headers too large\n",
                      26, NULL);
        return;
    }
    if (h2->hdr_bad || r->method.len == 0 || r->target.len == 0) {
        nghttp2_submit_rst_stream(h2->session, NGHTTP2_FLAG_NONE,
                                  s->stream_id, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    if (h2->ncookies > 1 && h2_join_cookies(s, r) != MG_OK) {
        mg_h2_respond(s, 431, "text/plain", "request headers too large\n",
                      26, NULL);
        return;
    }
    r->method_id = mg_h1_method_id(r->method);
    r->version_minor = 1;
    r->keep_alive = 1;
    q = memchr(r->target.data, '?', r->target.len);
    r->path.data = r->target.data;
    r->path.len = q ? (size_t)(q - r->target.data) : r->target.len;
    if (q != NULL) {
        r->query.data = q + 1;
        r->query.len = r->target.len - r->path.len - 1;
    }
    r->content_length = h2->content_length;
    if (end_stream || h2->content_length == 0) {
        r->body_kind = MG_H1_BODY_NONE;
    } else if (h2->content_length > 0) {
        r->body_kind = MG_H1_BODY_LENGTH;
    } else {
        r->body_kind = MG_H1_BODY_CHUNKED;
    }
    if (c->lc->limits.max_body_size > 0
        && h2->content_length > c->lc->limits.max_body_size) {
        mg_h2_respond(s, 413, "text/plain", "request body too large\n", 23,
                      NULL);
        return;
    }
    r->head_len = (size_t)(s->in->last - s->in->start) + 64;
    s->gen_chunked = r->body_kind == MG_H1_BODY_CHUNKED;
    s->body_eof = end_stream;
    /* The strings stay where they are until the head is handled; body
     * bytes go after them. */
    s->in->pos = s->in->last;
    mg_proxy__handle_request(s, r);
    if (r->body_kind != MG_H1_BODY_NONE) {
        s->replayable = 0;
    }
}

static int
h2_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                 void *user_data)
{
    mg_client_t *c = user_data;
    mg_client_t *s;
    int end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (s == NULL) {
            return 0;
        }
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            h2_request_complete(c, s, end_stream);
            return 0;
        }
        if (end_stream) {   /* request trailers end the body */
            s->body_eof = 1;
            mg_proxy__send_upstream(s);
        }
        return 0;
    case NGHTTP2_DATA:
        if (!end_stream) {
            return 0;
        }
        s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (s != NULL) {
            s->body_eof = 1;
            mg_proxy__send_upstream(s);
        }
        return 0;
    }
    return 0;
}

static int
h2_on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                 const uint8_t *data, size_t len, void *user_data)
{
    mg_client_t *s = nghttp2_session_get_stream_user_data(session, stream_id);

    /* A response under way does not end the request body: gRPC streams
     * both ways at once. */
    if (s == NULL || s->req_body_done || (s->u == NULL && s->status != 0)
        || (s->resp_submitted && s->u == NULL)) {
        /* Nobody will read it: give the window back at once. */
        nghttp2_session_consume(session, stream_id, len);
        return 0;
    }
    if (s->in == NULL) {
        s->in = mg_buf_get(&s->ctx->bufs);
        if (s->in == NULL) {
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id,
                                      NGHTTP2_INTERNAL_ERROR);
            return 0;
        }
    }
    if (mg_buf_room(s->in) < len) {
        mg_buf_compact(s->in);
    }
    if (mg_buf_room(s->in) < len
        && (size_t)(s->in->end - s->in->start) < H2_EARLY_WINDOW) {
        /* Until the client has our SETTINGS, its window is the default
         * 65535, not ours: make room for that much once. */
        mg_buf_t *nb = mg_buf_get_large(H2_EARLY_WINDOW);

        if (nb != NULL) {
            memcpy(nb->last, s->in->pos, mg_buf_pending(s->in));
            nb->last += mg_buf_pending(s->in);
            mg_buf_put(&s->ctx->bufs, s->in);
            s->in = nb;
        }
    }
    if (mg_buf_room(s->in) < len) {
        /* More than the window we gave: the peer broke flow control. */
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id,
                                  NGHTTP2_FLOW_CONTROL_ERROR);
        return 0;
    }
    memcpy(s->in->last, data, len);
    s->in->last += len;
    s->bytes_unconsumed += len;
    mg_proxy__send_upstream(s);
    return 0;
}

static int
h2_on_stream_close(nghttp2_session *session, int32_t stream_id,
                   uint32_t error_code, void *user_data)
{
    mg_client_t *c = user_data;
    mg_client_t *s = nghttp2_session_get_stream_user_data(session, stream_id);

    if (s == NULL) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    h2_stream_unlink(c->h2, s);
    if (s->bytes_unconsumed > 0) {
        nghttp2_session_consume_connection(session, s->bytes_unconsumed);
        s->bytes_unconsumed = 0;
    }
    if (error_code != NGHTTP2_NO_ERROR && !s->resp_eof_given) {
        /* Reset before the response was complete: 499 as nginx logs a
         * client that went away, unless an error status was chosen. */
        if (s->status == 0 || s->resp_submitted) {
            s->status = s->status && !s->resp_submitted ? s->status : 499;
        }
    }
    mg_proxy__stream_free(s);
    return 0;
}

/* The response body ends here: with the upstream's trailers, if any
 * (gRPC's grpc-status travels in them). */
static void
h2_body_end(nghttp2_session *session, mg_client_t *s, uint32_t *data_flags)
{
    nghttp2_nv nv[64];
    size_t nvlen = 0;
    char *p, *end, *colon, *eol, *v;

    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    s->resp_eof_given = 1;
    if (s->trailers == NULL) {
        return;
    }
    /* "name: value\r\n" lines, names already lower case (HTTP/2). */
    p = s->trailers->pos;
    end = s->trailers->last;
    while (p < end && nvlen < mg_countof(nv)) {
        eol = memchr(p, '\r', (size_t)(end - p));
        colon = memchr(p, ':', (size_t)(end - p));
        if (eol == NULL || colon == NULL || colon > eol) {
            break;
        }
        v = colon + 2 <= eol ? colon + 2 : eol;
        h2_nv(&nv[nvlen++], p, (size_t)(colon - p), v, (size_t)(eol - v));
        p = eol + 2;
    }
    if (nvlen > 0
        && nghttp2_submit_trailer(session, s->stream_id, nv, nvlen) == 0) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
}

static ssize_t
h2_read_upstream_body(nghttp2_session *session, int32_t stream_id,
                      uint8_t *buf, size_t length, uint32_t *data_flags,
                      nghttp2_data_source *source, void *user_data)
{
    mg_client_t *s = source->ptr;
    size_t avail, n;
    ssize_t got;
    int err, eof;

    if (s->u != NULL && s->u->end_stream && s->u->trailers != NULL) {
        /* Taken now: the upstream side is released with the last byte. */
        s->trailers = s->u->trailers;
        s->u->trailers = NULL;
    }
    if (s->gzip_on) {
        got = mg_proxy__gzip_read(s, (char *)buf, length, &eof);
        if (got < 0) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        if (eof) {
            h2_body_end(session, s, data_flags);
            return got;
        }
        return got > 0 ? got : NGHTTP2_ERR_DEFERRED;
    }
    avail = mg_proxy__resp_body_avail(s, &err);
    if (err != 0) {
        mg_log_error(MG_LOG_ERROR, &mg_log, 0,
                     "upstream %s sent an invalid chunked body, client: %s",
                     s->ep ? s->ep->address : "-", s->client_ip);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    n = mg_min(avail, length);
    if (n > 0) {
        memcpy(buf, s->u->in->pos, n);
    }
    mg_proxy__resp_body_sent(s, n);
    if (mg_proxy__resp_complete(s)) {
        h2_body_end(session, s, data_flags);
        return (ssize_t)n;
    }
    if (n == 0) {
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static ssize_t
h2_read_direct_body(nghttp2_session *session, int32_t stream_id,
                    uint8_t *buf, size_t length, uint32_t *data_flags,
                    nghttp2_data_source *source, void *user_data)
{
    mg_client_t *s = source->ptr;
    size_t n = s->out ? mg_min(mg_buf_pending(s->out), length) : 0;

    if (n > 0) {
        memcpy(buf, s->out->pos, n);
        s->out->pos += n;
        s->bytes_sent += n;
    }
    if (s->out == NULL || mg_buf_pending(s->out) == 0) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        s->resp_eof_given = 1;
    }
    return (ssize_t)n;
}

static int
h2_setup(void)
{
    nghttp2_session_callbacks *cb;

    if (h2_callbacks != NULL) {
        return MG_OK;
    }
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        return MG_ERROR;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb,
                                                            h2_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb,
                                                              h2_on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb,
                                                           h2_on_stream_close);
    if (nghttp2_option_new(&h2_option) != 0) {
        nghttp2_session_callbacks_del(cb);
        return MG_ERROR;
    }
    /* Windows open only as bodies leave for the upstream. */
    nghttp2_option_set_no_auto_window_update(h2_option, 1);
    /* CVE-2023-44487 (rapid reset) and CVE-2024-27316 (CONTINUATION
     * flood): bound what a peer may make us do for nothing. */
    nghttp2_option_set_stream_reset_rate_limit(h2_option, 200, 50);
    nghttp2_option_set_max_continuations(h2_option, 8);
    nghttp2_option_set_max_outbound_ack(h2_option, 1000);
    nghttp2_option_set_max_settings(h2_option, 32);
    h2_callbacks = cb;
    return MG_OK;
}

/* ------------------------------------------------------------------ */
/* Connection                                                          */

static void
h2_close(mg_client_t *c)
{
    mg_proxy__close(c);
}

void
mg_h2_start(mg_client_t *c)
{
    mg_h2_conn_t *h2;
    nghttp2_settings_entry iv[3];
    size_t max_head = c->lc->limits.max_header_size
                          ? c->lc->limits.max_header_size : 32768;

    if (h2_setup() != MG_OK || (h2 = calloc(1, sizeof(*h2))) == NULL) {
        h2_close(c);
        return;
    }
    if (nghttp2_session_server_new2(&h2->session, h2_callbacks, c, h2_option)
        != 0) {
        free(h2);
        h2_close(c);
        return;
    }
    h2->c = c;
    c->h2 = h2;
    c->state = CS_H2;
    iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
    iv[0].value = H2_MAX_CONCURRENT_STREAMS;
    iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[1].value = MG_BUF_SIZE;
    iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
    iv[2].value = (uint32_t)max_head;
    if (nghttp2_submit_settings(h2->session, NGHTTP2_FLAG_NONE, iv, 3) != 0
        || nghttp2_session_set_local_window_size(h2->session,
                                                 NGHTTP2_FLAG_NONE, 0,
                                                 H2_CONN_WINDOW) != 0) {
        h2_close(c);
        return;
    }
    if (c->ctx->draining) {
        mg_h2_drain(c);
        if (c->h2 == NULL) {
            return;
        }
    }
    /* Bytes read before we knew it was HTTP/2 (the h2c preface). */
    mg_h2_on_read(c);
}

void
mg_h2_free(mg_client_t *c)
{
    mg_h2_conn_t *h2 = c->h2;
    mg_client_t *s;

    if (h2 == NULL) {
        return;
    }
    h2_dirty_unlink(h2);
    while ((s = h2->streams) != NULL) {
        h2_stream_unlink(h2, s);
        if (!s->resp_eof_given && (s->status == 0 || s->resp_submitted)) {
            s->status = 499;
        }
        mg_proxy__stream_free(s);
    }
    nghttp2_session_del(h2->session);
    free(h2);
    c->h2 = NULL;
}

static void
h2_arm_timer(mg_client_t *c)
{
    mg_h2_conn_t *h2 = c->h2;
    struct ev_loop *loop = c->ctx->loop;

    ev_timer_stop(loop, &c->timer);
    if (h2->nstreams == 0) {
        ev_timer_set(&c->timer, c->lc->idle_timeout, 0.);
        ev_timer_start(loop, &c->timer);
    }
}

int
mg_h2_send(struct nghttp2_session *session, mg_io_t *io, mg_buf_cache_t *bufs,
           mg_buf_t **out, const uint8_t **pending, size_t *npending,
           ssize_t *rc)
{
    struct iovec iov;
    ssize_t n, got;
    size_t k;

    *rc = 0;
    for (;;) {
        /* Fill the output block from the session. */
        if (*out == NULL) {
            *out = mg_buf_get(bufs);
            if (*out == NULL) {
                errno = ENOMEM;
                return MG_ERROR;
            }
        }
        while (mg_buf_room(*out) > 0) {
            if (*npending == 0) {
                got = nghttp2_session_mem_send(session, pending);
                if (got < 0) {
                    *rc = got;
                    return MG_ERROR;
                }
                if (got == 0) {
                    break;
                }
                *npending = (size_t)got;
            }
            k = mg_min(*npending, mg_buf_room(*out));
            memcpy((*out)->last, *pending, k);
            (*out)->last += k;
            *pending += k;
            *npending -= k;
        }
        if (mg_buf_pending(*out) == 0) {
            break;
        }
        iov.iov_base = (*out)->pos;
        iov.iov_len = mg_buf_pending(*out);
        n = mg_io_sendv(io, &iov, 1);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN ? MG_AGAIN : MG_ERROR;
        }
        (*out)->pos += n;
        if (mg_buf_pending(*out) == 0) {
            (*out)->pos = (*out)->last = (*out)->start;
        }
    }
    /* Everything went: an idle connection holds no output block. */
    mg_buf_put(bufs, *out);
    *out = NULL;
    return MG_OK;
}

/* Moves session output to the socket until it would block. */
static void
h2_flush(mg_client_t *c)
{
    mg_h2_conn_t *h2 = c->h2;
    mg_ctx_t *ctx = c->ctx;
    ssize_t err;
    int rc;

    if (h2 == NULL) {
        return;
    }
    if (h2->in_session) {
        h2->flush_wanted = 1;
        return;
    }
    h2->in_session = 1;
    rc = mg_h2_send(h2->session, &c->io, &ctx->bufs, &c->out, &h2->pending,
                    &h2->npending, &err);
    h2->in_session = 0;
    if (rc == MG_AGAIN) {
        ev_io_start(ctx->loop, &c->wev);
        return;
    }
    if (rc != MG_OK) {
        if (err < 0) {
            mg_log_error(MG_LOG_INFO, &mg_log, 0,
                         "HTTP/2 session error: %s, client: %s",
                         nghttp2_strerror((int)err), c->client_ip);
        }
        h2_close(c);
        return;
    }
    ev_io_stop(ctx->loop, &c->wev);
    if (!nghttp2_session_want_read(h2->session)
        && !nghttp2_session_want_write(h2->session)) {
        h2_close(c);
        return;
    }
    if (h2->goaway && h2->nstreams == 0) {
        h2_close(c);
        return;
    }
    h2_arm_timer(c);
}

void
mg_h2_on_read(mg_client_t *c)
{
    mg_h2_conn_t *h2 = c->h2;
    mg_ctx_t *ctx = c->ctx;
    ssize_t n, rv;

    for (;;) {
        if (c->in == NULL) {
            c->in = mg_buf_get(&ctx->bufs);
            if (c->in == NULL) {
                h2_close(c);
                return;
            }
        }
        if (mg_buf_pending(c->in) == 0) {
            c->in->pos = c->in->last = c->in->start;
            n = mg_io_recv(&c->io, c->in->last, mg_buf_room(c->in));
            if (n == 0) {
                h2_close(c);
                return;
            }
            if (n > 0) {
                mg_met_add(c->lc->met + MG_MET_L_BYTES_IN, (uint64_t)n);
            }
            if (n == -1) {
                if (errno == EAGAIN || errno == EINTR) {
                    break;
                }
                h2_close(c);
                return;
            }
            c->in->last += n;
        }
        h2->in_session = 1;
        rv = nghttp2_session_mem_recv(h2->session, (const uint8_t *)c->in->pos,
                                      mg_buf_pending(c->in));
        h2->in_session = 0;
        if (c->h2 == NULL) {
            return;
        }
        if (rv < 0) {
            mg_log_error(MG_LOG_INFO, &mg_log, 0,
                         "HTTP/2 protocol error: %s, client: %s, listener: %s",
                         nghttp2_strerror((int)rv), c->client_ip, c->lc->name);
            /* Let the GOAWAY the session queued go out, then close. */
            h2->closing = 1;
            h2_flush(c);
            if (c->h2 != NULL) {
                h2_close(c);
            }
            return;
        }
        c->in->pos += rv;
    }
    if (c->in != NULL && mg_buf_pending(c->in) == 0) {
        mg_buf_put(&ctx->bufs, c->in);
        c->in = NULL;
    }
    h2_flush(c);
}

void
mg_h2_on_write(mg_client_t *c)
{
    h2_flush(c);
}

void
mg_h2_on_timer(mg_client_t *c)
{
    mg_h2_conn_t *h2 = c->h2;

    if (h2->nstreams > 0) {
        return;
    }
    /* Idle: say so, then go. */
    nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h2->session),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2->goaway = 1;
    h2_flush(c);
    if (c->h2 != NULL) {
        h2_close(c);
    }
}

void
mg_h2_drain(mg_client_t *c)
{
    mg_h2_conn_t *h2 = c->h2;

    if (h2 == NULL || h2->goaway) {
        return;
    }
    h2->goaway = 1;
    nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h2->session),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_flush(c);
}

/* ------------------------------------------------------------------ */
/* Stream responses                                                    */

static void
h2_nv(nghttp2_nv *nv, const char *name, size_t namelen, const char *value,
      size_t valuelen)
{
    nv->name = (uint8_t *)name;
    nv->namelen = namelen;
    nv->value = (uint8_t *)value;
    nv->valuelen = valuelen;
    nv->flags = NGHTTP2_NV_FLAG_NONE;
}

int
mg_h2_submit_response(mg_client_t *s, const mg_h1_response_t *resp)
{
    mg_client_t *c = s->parent;
    mg_h2_conn_t *h2 = c->h2;
    nghttp2_nv nv[H2_MAX_NV];
    nghttp2_data_provider prd;
    const mg_h1_header_t *h;
    char status[4], vary[512];
    size_t nvlen = 0, i, k, vary_len;
    char *name;

    snprintf(status, sizeof(status), "%03u", resp->status % 1000);
    h2_nv(&nv[nvlen++], ":status", 7, status, 3);
    for (i = 0; i < resp->nheaders && nvlen < H2_MAX_NV; i++) {
        h = &resp->headers[i];
        if (h->hop_by_hop || h->id == MG_H1_HDR_TRANSFER_ENCODING
            || h->id == MG_H1_HDR_CONNECTION || h->id == MG_H1_HDR_KEEP_ALIVE
            || h->id == MG_H1_HDR_PROXY_CONNECTION
            || h->id == MG_H1_HDR_UPGRADE || h->id == MG_H1_HDR_TE) {
            continue;
        }
        if (h->id == MG_H1_HDR_CONTENT_LENGTH
            && ((s->resp_body_kind != MG_H1_BODY_LENGTH && resp->status != 304
                 && s->method_id != MG_H1_METHOD_HEAD)
                || s->gzip_on)) {
            continue;
        }
        if (s->gzip_vary && mg_str_caseeq_lit(h->name, "vary")) {
            continue;   /* sent again below, with Accept-Encoding */
        }
        /* HTTP/2 field names are lower case; the HTTP/1.1 head they come
         * from is ours and no longer needed, so fold it in place. */
        name = (char *)h->name.data;
        for (k = 0; k < h->name.len; k++) {
            name[k] = mg_tolower(name[k]);
        }
        h2_nv(&nv[nvlen++], name, h->name.len, h->value.data, h->value.len);
    }
    if (s->gzip_on && nvlen < H2_MAX_NV) {
        h2_nv(&nv[nvlen++], "content-encoding", 16, "gzip", 4);
    }
    if (s->gzip_vary && nvlen < H2_MAX_NV) {
        /* One Vary field naming what it had plus Accept-Encoding. */
        vary_len = 0;
        for (i = 0; i < resp->nheaders; i++) {
            h = &resp->headers[i];
            if (mg_str_caseeq_lit(h->name, "vary")
                && vary_len + h->value.len + 2 < sizeof(vary) - 16) {
                memcpy(vary + vary_len, h->value.data, h->value.len);
                vary_len += h->value.len;
                memcpy(vary + vary_len, ", ", 2);
                vary_len += 2;
            }
        }
        memcpy(vary + vary_len, "accept-encoding", 15);
        vary_len += 15;
        h2_nv(&nv[nvlen++], "vary", 4, vary, vary_len);
    }
    prd.source.ptr = s;
    prd.read_callback = h2_read_upstream_body;
    if (nghttp2_submit_response(h2->session, s->stream_id, nv, nvlen,
                                mg_proxy__resp_complete(s) ? NULL : &prd)
        != 0) {
        return MG_ERROR;
    }
    s->resp_submitted = 1;
    if (mg_proxy__resp_complete(s)) {
        s->resp_eof_given = 1;
        mg_proxy__resp_body_sent(s, 0);   /* releases the upstream */
    }
    h2_schedule_flush(c);
    return MG_OK;
}

void
mg_h2_respond(mg_client_t *s, unsigned status, const char *ctype,
              const char *body, size_t blen, const char *extra)
{
    mg_client_t *c = s->parent;
    mg_h2_conn_t *h2 = c->h2;
    nghttp2_nv nv[8];
    nghttp2_data_provider prd;
    char st[4], len[24], names[4][64];
    const char *p, *colon, *eol;
    size_t nvlen = 0, k;
    unsigned nextra = 0;

    snprintf(st, sizeof(st), "%03u", status % 1000);
    snprintf(len, sizeof(len), "%zu", blen);
    h2_nv(&nv[nvlen++], ":status", 7, st, 3);
    h2_nv(&nv[nvlen++], "content-type", 12, ctype, strlen(ctype));
    h2_nv(&nv[nvlen++], "content-length", 14, len, strlen(len));
    /* Extra lines such as "Location: ...\r\n". */
    for (p = extra; p != NULL && *p != '\0' && nextra < 4; p = eol + 2) {
        eol = strstr(p, "\r\n");
        colon = memchr(p, ':', eol ? (size_t)(eol - p) : 0);
        if (eol == NULL || colon == NULL
            || (size_t)(colon - p) >= sizeof(names[0])) {
            break;
        }
        for (k = 0; k < (size_t)(colon - p); k++) {
            names[nextra][k] = mg_tolower(p[k]);
        }
        colon++;
        while (*colon == ' ') {
            colon++;
        }
        h2_nv(&nv[nvlen++], names[nextra], k, colon, (size_t)(eol - colon));
        nextra++;
    }
    s->resp_submitted = 1;
    s->resp_done = 1;
    if (blen > 0 && s->method_id != MG_H1_METHOD_HEAD) {
        s->out = blen <= MG_BUF_SIZE ? mg_buf_get(&s->ctx->bufs)
                                     : mg_buf_get_large(blen);
        if (s->out != NULL) {
            memcpy(s->out->last, body, blen);
            s->out->last += blen;
        }
    }
    prd.source.ptr = s;
    prd.read_callback = h2_read_direct_body;
    if (s->out == NULL) {
        s->resp_eof_given = 1;
    }
    if (nghttp2_submit_response(h2->session, s->stream_id, nv, nvlen,
                                s->out ? &prd : NULL) != 0) {
        nghttp2_submit_rst_stream(h2->session, NGHTTP2_FLAG_NONE,
                                  s->stream_id, NGHTTP2_INTERNAL_ERROR);
    }
    h2_schedule_flush(c);
}

void
mg_h2_resume(mg_client_t *s)
{
    mg_client_t *c = s->parent;

    if (c->h2 == NULL || !s->resp_submitted) {
        return;
    }
    (void)nghttp2_session_resume_data(c->h2->session, s->stream_id);
    h2_schedule_flush(c);
}

void
mg_h2_consume(mg_client_t *s, size_t n)
{
    mg_client_t *c = s->parent;

    if (c->h2 == NULL) {
        return;
    }
    n = mg_min(n, s->bytes_unconsumed);
    s->bytes_unconsumed -= n;
    (void)nghttp2_session_consume(c->h2->session, s->stream_id, n);
    h2_schedule_flush(c);
}

void
mg_h2_reset(mg_client_t *s)
{
    mg_client_t *c = s->parent;

    if (c->h2 == NULL) {
        return;
    }
    nghttp2_submit_rst_stream(c->h2->session, NGHTTP2_FLAG_NONE, s->stream_id,
                              NGHTTP2_INTERNAL_ERROR);
    h2_schedule_flush(c);
}
