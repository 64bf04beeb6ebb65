/*
 * HTTP/2 to upstreams (RFC 9113), client side, with nghttp2 framing: each
 * worker keeps a few long-lived connections per endpoint and multiplexes
 * requests on them, opening another only when the peer's
 * MAX_CONCURRENT_STREAMS is reached. A connection sends PINGs while it is
 * quiet and is dropped when they go unanswered; after a GOAWAY it takes no
 * new streams, and the streams the peer refused are tried again elsewhere.
 *
 * A request's stream is an mg_uconn_t (is_h2 set). Its response reaches the
 * request path as HTTP/1.1 bytes in u->in: a head, then the body, framed as
 * chunks (trailers included) when it has no content-length. That lets one
 * response path serve both upstream protocols; the trailers are also kept
 * in u->trailers for HTTP/2 clients. The stream's window opens only as the
 * client takes the body (mg_h2up_read_again()).
 */
#ifndef MG_H2UP_H
#define MG_H2UP_H

#include "mg_core.h"
#include "mg_upstream.h"

/* How a stream failed, for mg_proxy__up_failed(). */
enum {
    MG_UP_CONNECT = 1,  /* the connection never came up: nothing was sent */
    MG_UP_REFUSED,      /* the peer did not process it (GOAWAY, REFUSED) */
    MG_UP_RESET,        /* the peer reset the stream */
    MG_UP_LOST          /* the connection failed after it was sent */
};

/*
 * A new stream to |ep| for client request |owner|, on a connection with
 * room or a new one (|fresh|: never one that served requests before).
 * NULL with *err set when no connection can be started.
 */
mg_uconn_t *mg_h2up_open(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep,
                         void *owner, int fresh, int *err);

/*
 * Sends the request whose HTTP/1.1 head we built is in |head| (kept, field
 * names folded to lower case, so it can be sent again after a refusal).
 * |has_body|: a body follows, pulled with mg_proxy__up_body_read().
 * MG_OK or MG_ERROR.
 */
int mg_h2up_submit(mg_uconn_t *u, mg_buf_t *head, int has_body);

/* More request body is waiting for the stream. */
void mg_h2up_resume_send(mg_uconn_t *u);

/* The client took the response bytes in u->in: give the window back. */
void mg_h2up_read_again(mg_uconn_t *u);

/* Ends the request's use of the stream (cancelling it if the response is
 * not complete) and frees |u|. */
void mg_h2up_stream_close(mg_uconn_t *u);

/* Drain: idle connections close now, busy ones after their last stream. */
void mg_h2up_drain(mg_ctx_t *ctx);

/* The same for the connections of one pool. */
void mg_h2up_retire_pool(mg_ctx_t *ctx, unsigned pool);

/* Frees every connection at once (the worker is exiting). */
void mg_h2up_close_all(mg_ctx_t *ctx);

#endif /* MG_H2UP_H */
