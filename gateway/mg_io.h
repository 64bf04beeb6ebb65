/*
 * Socket I/O that may run over TLS: the request path reads and writes
 * through these so that HTTP/1.1, HTTP/2 and tunnels need not care whether
 * a connection is encrypted. Non-blocking throughout: -1 with errno EAGAIN
 * means wait for readiness (|want_write| says which way).
 */
#ifndef MG_IO_H
#define MG_IO_H

#include <sys/types.h>
#include <sys/uio.h>

#include <openssl/ssl.h>

#include "mg_core.h"

typedef struct mg_io_s {
    int fd;
    SSL *ssl;                     /* NULL for cleartext */
    unsigned want_write:1;        /* TLS needs the socket writable */
    unsigned handshake_done:1;
} mg_io_t;

/* Reads up to |len| bytes. Returns > 0, 0 at end of stream, or -1 with
 * errno set (EAGAIN: wait; anything else: the connection failed). */
ssize_t mg_io_recv(mg_io_t *io, char *buf, size_t len);

/* Writes from |iov|. Returns the bytes written (maybe fewer than asked) or
 * -1 with errno set as for mg_io_recv(). */
ssize_t mg_io_sendv(mg_io_t *io, const struct iovec *iov, int iovcnt);

/* Runs the TLS handshake. MG_OK when done, MG_AGAIN (wait for readiness,
 * see |want_write|) or MG_ERROR. */
int mg_io_handshake(mg_io_t *io);

/* Decrypted bytes already buffered inside TLS, which no readiness event
 * will announce. */
int mg_io_pending(const mg_io_t *io);

/* Ends our direction of the stream (close_notify or FIN). */
void mg_io_shutdown_write(mg_io_t *io);

/* Frees the TLS state (sending close_notify when it can) and closes the
 * socket. */
void mg_io_close(mg_io_t *io);

/* The OpenSSL error queue as text, drained; for logs. */
const char *mg_io_ssl_error(void);

#endif /* MG_IO_H */
