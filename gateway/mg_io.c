#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "mg_io.h"

/* Maps a failed TLS call to the errno convention of plain sockets. */
static ssize_t
io_ssl_fail(mg_io_t *io, int rc)
{
    int err = SSL_get_error(io->ssl, rc);

    switch (err) {
    case SSL_ERROR_WANT_READ:
        io->want_write = 0;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        io->want_write = 1;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0 || ERR_peek_error() == 0) {
            /* The peer closed without close_notify: treat as the end. */
            if (errno == 0) {
                return 0;
            }
            return -1;
        }
        /* fall through */
    default:
        ERR_clear_error();
        errno = ECONNRESET;
        return -1;
    }
}

ssize_t
mg_io_recv(mg_io_t *io, char *buf, size_t len)
{
    int rc;

    if (io->ssl == NULL) {
        return read(io->fd, buf, len);
    }
    errno = 0;
    rc = SSL_read(io->ssl, buf, len > 0x7fffffff ? 0x7fffffff : (int)len);
    if (rc > 0) {
        return rc;
    }
    return io_ssl_fail(io, rc);
}

ssize_t
mg_io_sendv(mg_io_t *io, const struct iovec *iov, int iovcnt)
{
    size_t done = 0, len;
    int i, rc;

    if (io->ssl == NULL) {
        return writev(io->fd, iov, iovcnt);
    }
    for (i = 0; i < iovcnt; i++) {
        len = iov[i].iov_len > 0x7fffffff ? 0x7fffffff : iov[i].iov_len;
        if (len == 0) {
            continue;
        }
        errno = 0;
        rc = SSL_write(io->ssl, iov[i].iov_base, (int)len);
        if (rc <= 0) {
            if (done > 0) {
                /* Report what went; the caller comes back for the rest. */
                ERR_clear_error();
                return (ssize_t)done;
            }
            return io_ssl_fail(io, rc);
        }
        done += (size_t)rc;
        if ((size_t)rc < len) {
            break;
        }
    }
    return (ssize_t)done;
}

int
mg_io_handshake(mg_io_t *io)
{
    int rc;

    errno = 0;
    rc = SSL_do_handshake(io->ssl);
    if (rc == 1) {
        io->handshake_done = 1;
        io->want_write = 0;
        return MG_OK;
    }
    /* Not io_ssl_fail(): the error queue must survive for the log line
     * that says why the handshake failed. */
    switch (SSL_get_error(io->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        io->want_write = 0;
        return MG_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        io->want_write = 1;
        return MG_AGAIN;
    default:
        return MG_ERROR;
    }
}

int
mg_io_pending(const mg_io_t *io)
{
    return io->ssl != NULL && SSL_pending(io->ssl) > 0;
}

void
mg_io_shutdown_write(mg_io_t *io)
{
    if (io->ssl != NULL) {
        (void)SSL_shutdown(io->ssl);
        ERR_clear_error();
        return;
    }
    (void)shutdown(io->fd, SHUT_WR);
}

void
mg_io_close(mg_io_t *io)
{
    if (io->ssl != NULL) {
        if (io->handshake_done) {
            /* One non-blocking attempt at close_notify; never wait. */
            SSL_set_quiet_shutdown(io->ssl, 0);
            (void)SSL_shutdown(io->ssl);
        }
        ERR_clear_error();
        SSL_free(io->ssl);
        io->ssl = NULL;
    }
    if (io->fd != -1) {
        close(io->fd);
        io->fd = -1;
    }
}

const char *
mg_io_ssl_error(void)
{
    static char text[256];
    unsigned long e;
    size_t n = 0;

    text[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        if (n < sizeof(text) - 2) {
            if (n > 0) {
                text[n++] = ';';
                text[n++] = ' ';
            }
            ERR_error_string_n(e, text + n, sizeof(text) - n);
            n = strlen(text);
        }
    }
    return text;
}
