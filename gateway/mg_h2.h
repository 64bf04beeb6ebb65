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

#include "mg_core.h"

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

#endif /* MG_H2_H */
