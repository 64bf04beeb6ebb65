/*
 * The HTTP/1.1 request path of a worker: client connections, routing,
 * direct responses, proxying to upstream clusters with streamed bodies and
 * back-pressure, and tunnels (Upgrade, CONNECT).
 */
#ifndef MG_PROXY_H
#define MG_PROXY_H

#include <sys/socket.h>

#include "mg_core.h"
#include "mg_ctx.h"

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

#endif /* MG_PROXY_H */
