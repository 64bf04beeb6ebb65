/*
 * HTTP/2 on client connections (RFC 9113), with nghttp2 doing the framing:
 * the connection object feeds bytes in and out of the session; every
 * stream becomes a request on the same path as HTTP/1.1 ones (routing,
 * direct answers, upstream clusters). Flow control follows the upstream: a
 * stream's window opens only as its body bytes leave for the upstream, and
 * a response body is taken from the upstream only as the session can send
 * it.
 */
#ifndef MG_H2_H
#define MG_H2_H

#include <stdint.h>
#include <sys/types.h>

#include "mg_buf.h"
#include "mg_core.h"
#include "mg_io.h"

/* The client connection preface, which h2c clients start with. */
#define MG_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define MG_H2_PREFACE_LEN 24

/* Starts HTTP/2 on connection |c| (after ALPN "h2", or on an h2c listener
 * after the preface); bytes already read wait in c->in. On failure the
 * connection is closed. */
void mg_h2_start(mg_client_t *c);

/* Event handlers of an HTTP/2 connection. */
void mg_h2_on_read(mg_client_t *c);
void mg_h2_on_write(mg_client_t *c);
void mg_h2_on_timer(mg_client_t *c);

/* Sends GOAWAY: streams in progress finish, no new ones start, and the
 * connection closes when the last one is done. */
void mg_h2_drain(mg_client_t *c);

/* Frees the session and every stream still open (connection close). */
void mg_h2_free(mg_client_t *c);

/* Stream side. Sends the response head translated from an upstream
 * HTTP/1.1 |resp|, with the body to follow. MG_OK or MG_ERROR. */
int mg_h2_submit_response(mg_client_t *s, const mg_h1_response_t *resp);

/* Answers stream |s| with a response we make (|extra|: more header lines
 * "Name: value\r\n", or NULL). */
void mg_h2_respond(mg_client_t *s, unsigned status, const char *ctype,
                   const char *body, size_t blen, const char *extra);

/* More response body is waiting for stream |s|. */
void mg_h2_resume(mg_client_t *s);

/* |n| request body bytes of stream |s| went upstream: open its window. */
void mg_h2_consume(mg_client_t *s, size_t n);

/* Resets stream |s| (its response cannot be completed). */
void mg_h2_reset(mg_client_t *s);

struct nghttp2_session;

/*
 * Moves a session's output to its socket, client or upstream side alike:
 * through the block |*out| (taken from |bufs|, given back once all went),
 * keeping in |*pending|/|*npending| what the session handed over but did
 * not fit yet. MG_OK (all written), MG_AGAIN (wait until the socket is
 * writable) or MG_ERROR: |*rc| is the nghttp2 error (< 0), or 0 with
 * errno telling the socket's (or ENOMEM).
 */
int mg_h2_send(struct nghttp2_session *session, mg_io_t *io,
               mg_buf_cache_t *bufs, mg_buf_t **out, const uint8_t **pending,
               size_t *npending, ssize_t *rc);

#endif /* MG_H2_H */
