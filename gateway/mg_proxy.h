/*
 * The HTTP/1.1 request path of a worker: client connections, routing,
 * direct responses, proxying to upstream clusters with streamed bodies and
 * back-pressure, and tunnels (Upgrade, CONNECT).
 */
#ifndef MG_PROXY_H
#define MG_PROXY_H

#include <sys/socket.h>

#include <ev.h>

#include "mg_core.h"
#include "mg_ctx.h"
#include "mg_dns.h"
#include "mg_h1.h"
#include "mg_io.h"
#include "mg_trace.h"
#include "mg_upstream.h"

typedef struct mg_h2_conn_s mg_h2_conn_t;

/* Takes over the accepted, non-blocking |fd| of listener |lc|. */
void mg_proxy_accept(mg_ctx_t *ctx, int fd, const mg_listener_conf_t *lc,
                     const struct sockaddr *peer, socklen_t peerlen);

/* Starts draining: each keep-alive connection gets Connection: close with
 * its next response; idle ones stay open until mg_proxy_close_all(). */
void mg_proxy_drain(mg_ctx_t *ctx);

/* Closes every client connection (drain deadline or fast stop). */
void mg_proxy_close_all(mg_ctx_t *ctx);

/* Frees the recycled connection objects. */
void mg_proxy_free_cache(mg_ctx_t *ctx);

/* ------------------------------------------------------------------ */
/* Internals shared with mg_h2.c, the HTTP/2 side of the same path.    */

/* Client connection states. */
enum {
    CS_HANDSHAKE = 1, /* TLS handshake */
    CS_HEAD,          /* reading a request head (or idle between requests) */
    CS_PROXY,         /* a request is with an upstream */
    CS_DIRECT,        /* writing a response we made ourselves */
    CS_TUNNEL,        /* Upgrade or CONNECT: raw bytes both ways */
    CS_H2             /* an HTTP/2 connection: its streams do the rest */
};

#define PROXY_RESP_HEAD_MAX  65536  /* upstream response head bound */
#define PROXY_LOG_FIELD_MAX  512    /* bytes of target/host kept for logs */

struct mg_client_s {
    mg_ctx_t *ctx;
    mg_io_t io;                   /* the socket, maybe with TLS */
    ev_io rev;
    ev_io wev;
    ev_timer timer;
    ev_timer retry_timer;         /* backoff before the next try */
    const mg_listener_conf_t *lc;
    mg_client_t *next;            /* ctx->clients list */
    mg_client_t *prev;
    mg_buf_t *in;                 /* request bytes: head, body, pipelined */
    mg_buf_t *out;                /* response head or direct response */
    mg_buf_t *uhead;              /* upstream request head, kept until the
                                   * response starts so it can be replayed */
    mg_uconn_t *u;
    unsigned state;
    size_t head_scanned;          /* request head search position */
    size_t uhead_scanned;         /* response head search position */

    /* The current request. */
    ev_tstamp start;
    ev_tstamp try_start;          /* the last upstream try's */
    const mg_route_t *route;
    const mg_endpoint_conf_t *ep;
    char upstream_addr[MG_DNS_PEER_LEN]; /* where |ep| was reached, when
                                   * it has a host name: u->peer.text */
    unsigned method_id;
    unsigned version_minor;
    unsigned status;
    uint64_t bytes_sent;
    uint64_t tried;               /* endpoints tried, by position */
    unsigned attempts;
    unsigned refusals;            /* streams the upstream refused */
    size_t uhead_mark;            /* where our cross-region fields start in
                                   * uhead, 0 = not there */
    int last_err;
    mg_trace_t trace;             /* zero unless tracing is configured */

    unsigned req_keep_alive:1;    /* the client wants to keep the conn */
    unsigned keep_alive:1;        /* we will keep it after this response */
    unsigned pipelined:1;         /* parse buffered bytes before reading */
    unsigned req_body_done:1;
    unsigned req_ck_done:1;
    unsigned replayable:1;        /* request bytes still all in |in| */
    unsigned no_pool:1;           /* retry on a fresh connection */
    unsigned upgrade:1;           /* Upgrade allowed and requested */
    unsigned connect:1;           /* CONNECT tunnel */
    unsigned resp_head_done:1;
    unsigned resp_done:1;
    unsigned resp_decode:1;       /* de-chunk for an HTTP/1.0 client */
    unsigned resp_keep_alive:1;   /* upstream conn reusable */
    unsigned resp_eof:1;
    unsigned resp_seen:1;         /* any byte came from upstream */
    unsigned c_eof:1;             /* tunnel: client finished sending */
    unsigned u_eof:1;             /* tunnel: upstream finished sending */
    unsigned closing:1;
    unsigned grpc:1;              /* a gRPC call: errors as grpc-status */
    unsigned local_only:1;        /* from another region: local endpoints
                                   * only, never forwarded again */
    unsigned retried:1;           /* counted in ctx->retrying */
    unsigned pending:1;           /* counted in ctx->pending */
    unsigned counted:1;           /* a request started and not ended yet
                                   * (proxy_request_end()) */
    unsigned to_cluster:1;        /* counted active in its cluster */
    unsigned replaying:1;         /* the next try replays the last one */
    int body_err;                 /* MG_H1_ERR_* of a malformed body that an
                                   * HTTP/2 upstream stream was reset for */

    unsigned req_body_kind;
    int64_t content_length;
    int64_t body_left;
    size_t body_scanned;          /* body bytes at in->pos already framed */
    char *body_start;
    mg_h1_chunked_t req_ck;

    unsigned resp_body_kind;
    int64_t resp_left;
    size_t resp_scanned;
    mg_h1_chunked_t resp_ck;

    /* HTTP/2. A connection object has |h2| set; each of its streams is an
     * object of this type too, with |parent| pointing at the connection
     * and no socket of its own. */
    mg_h2_conn_t *h2;             /* connection: its HTTP/2 session */
    mg_client_t *parent;          /* stream: its connection */
    mg_client_t *snext;           /* stream: the connection's list */
    mg_client_t *sprev;
    int32_t stream_id;
    unsigned is_stream:1;
    unsigned body_eof:1;          /* stream: the client ended its body */
    unsigned gen_chunked:1;       /* stream: frame the body as chunked */
    unsigned chunk_final:1;       /* stream: last chunk written */
    unsigned resp_submitted:1;    /* stream: response headers handed over */
    unsigned resp_eof_given:1;    /* stream: the whole body handed over */
    unsigned logged:1;
    uint64_t chunk_left;          /* data bytes left in the current chunk */
    size_t bytes_unconsumed;      /* stream: received, window not given back */
    mg_buf_t *trailers;           /* stream: upstream response trailers */

    /* Response compression. */
    struct mg_gzip_s *gz;         /* encoder while compressing */
    mg_buf_t *gz_out;             /* compressed bytes (framed for HTTP/1.1) */
    unsigned accept_gzip:1;       /* the client accepts gzip */
    unsigned gzip_on:1;           /* this response is compressed */
    unsigned gzip_vary:1;         /* it varies with Accept-Encoding */
    char chunk_hdr[24];           /* chunk size line or chunk end, pending */
    unsigned chunk_hdr_len;
    unsigned chunk_hdr_pos;

    /* Copies for the access log: the head they came from is gone by the
     * time the line is written. */
    char client_ip[48];
    char method[24];
    char target[PROXY_LOG_FIELD_MAX];
    char host[256];
    char request_id[72];
    char origin[64];              /* peering: the region it came from */
    char user_agent[256];
    char referer[PROXY_LOG_FIELD_MAX];
    size_t method_len, target_len, host_len;
    size_t user_agent_len, referer_len;
    unsigned has_user_agent:1;    /* the header was sent (may be empty) */
    unsigned has_referer:1;
};


/* A new stream object of HTTP/2 connection |conn|, or NULL. */
mg_client_t *mg_proxy__stream_new(mg_client_t *conn, int32_t stream_id);

/* Releases a stream: its upstream (closed unless the response finished
 * cleanly), buffers, and the object. Logs it if not yet logged. */
void mg_proxy__stream_free(mg_client_t *s);

/* Handles a complete request head (routing, direct answers, proxying). */
void mg_proxy__handle_request(mg_client_t *c, const mg_h1_request_t *r);

/* Forwards buffered request body bytes when the upstream can take them. */
void mg_proxy__send_upstream(mg_client_t *c);

/* Bytes of response body at c->u->in->pos that may be handed on now. */
size_t mg_proxy__resp_body_avail(mg_client_t *c, int *err);

/* |n| bytes of response body were handed on: account for them, finish the
 * upstream side when the response is complete, read more otherwise. */
void mg_proxy__resp_body_sent(mg_client_t *c, size_t n);

/* Whether the response body is complete and all handed on. */
int mg_proxy__resp_complete(const mg_client_t *c);

/* Compressed response bytes for a DATA frame of stream |c|: the count
 * copied into |buf|, with |*eof| at the end; 0 without eof means wait for
 * the upstream; -1 on error. */
ssize_t mg_proxy__gzip_read(mg_client_t *c, char *buf, size_t length,
                            int *eof);

/* Writes the access log line of |c|'s request once. */
void mg_proxy__log(mg_client_t *c);

/* Closes a client connection (HTTP/1.1 or HTTP/2) and everything on it. */
void mg_proxy__close(mg_client_t *c);

/* Reads from a connection's socket when TLS may hold bytes already. */
void mg_proxy__want_read(mg_client_t *c);

/* Events of an HTTP/2 upstream stream (see mg_h2up.h): response bytes
 * arrived in c->u->in; the stream failed (MG_UP_*, errno or 0); the
 * session wants up to |len| request body bytes (returns the count, with
 * |*eof| at the end, or -1 when the body is malformed). */
void mg_proxy__up_input(mg_client_t *c);
void mg_proxy__up_failed(mg_client_t *c, unsigned how, int err);
ssize_t mg_proxy__up_body_read(mg_client_t *c, char *buf, size_t len,
                               int *eof);

/* Reason phrase for |status|. */
const char *mg_proxy__reason(unsigned status);

#endif /* MG_PROXY_H */
