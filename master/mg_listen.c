#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mg_listen.h"
#include "mg_log.h"
#include "mg_pool.h"
#include "mg_snapshot.h"

#define LISTEN_MAX 256

typedef struct listen_sock_s {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int fd;
} listen_sock_t;

/* Every socket the master holds, across generations. */
static listen_sock_t listen_socks[LISTEN_MAX];
static int listen_fds[LISTEN_MAX];
static unsigned listen_nsocks;

static int
listen_addr_eq(const struct sockaddr_storage *a, socklen_t alen,
               const struct sockaddr_storage *b, socklen_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

static int
listen_find(const mg_listener_conf_t *l)
{
    unsigned i;

    for (i = 0; i < listen_nsocks; i++) {
        if (listen_addr_eq(&listen_socks[i].addr, listen_socks[i].addrlen,
                           &l->addr, l->addrlen)) {
            return listen_socks[i].fd;
        }
    }
    return -1;
}

static int
listen_bind(const mg_listener_conf_t *l)
{
    int fd, on = 1;

    fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd == -1) {
        mg_log_error(MG_LOG_EMERG, &mg_log, errno, "%s:%d: socket() for %s",
                     l->file, l->line, l->listen);
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1) {
        goto failed;
    }
    if (l->addr.ss_family == AF_INET6
        && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1) {
        goto failed;
    }
    /* Accepted sockets inherit it, which saves a setsockopt() per
     * connection. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == -1) {
        goto failed;
    }
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) == -1) {
        goto failed;
    }
    if (listen(fd, l->backlog) == -1) {
        goto failed;
    }
    return fd;

failed:
    mg_log_error(MG_LOG_EMERG, &mg_log, errno, "%s:%d: cannot listen on %s",
                 l->file ? l->file : "?", l->line, l->listen);
    close(fd);
    return -1;
}

int *
mg_listen_open(const mg_snapshot_t *snap)
{
    int *fds = mg_xcalloc(snap->nlisteners ? snap->nlisteners : 1,
                          sizeof(int));
    unsigned i, first_new = listen_nsocks;
    const mg_listener_conf_t *l;

    for (i = 0; i < snap->nlisteners; i++) {
        l = &snap->listeners[i];
        fds[i] = listen_find(l);
        if (fds[i] != -1) {
            continue;
        }
        if (listen_nsocks == LISTEN_MAX) {
            mg_log_error(MG_LOG_EMERG, &mg_log, 0,
                         "%s:%d: more than %d listening sockets", l->file,
                         l->line, LISTEN_MAX);
            goto failed;
        }
        fds[i] = listen_bind(l);
        if (fds[i] == -1) {
            goto failed;
        }
        listen_socks[listen_nsocks].addr = l->addr;
        listen_socks[listen_nsocks].addrlen = l->addrlen;
        listen_socks[listen_nsocks].fd = fds[i];
        listen_fds[listen_nsocks] = fds[i];
        listen_nsocks++;
    }
    return fds;

failed:
    /* Only the sockets this call bound go: the running config keeps its. */
    while (listen_nsocks > first_new) {
        listen_nsocks--;
        close(listen_socks[listen_nsocks].fd);
    }
    free(fds);
    return NULL;
}

void
mg_listen_close_unused(const mg_snapshot_t **snaps, int **fds, unsigned n)
{
    unsigned i, j, k, used;

    for (i = 0; i < listen_nsocks;) {
        used = 0;
        for (j = 0; j < n && !used; j++) {
            for (k = 0; k < snaps[j]->nlisteners; k++) {
                if (fds[j][k] == listen_socks[i].fd) {
                    used = 1;
                    break;
                }
            }
        }
        if (used) {
            i++;
            continue;
        }
        close(listen_socks[i].fd);
        listen_nsocks--;
        listen_socks[i] = listen_socks[listen_nsocks];
        listen_fds[i] = listen_fds[listen_nsocks];
    }
}

void
mg_listen_close_all(void)
{
    while (listen_nsocks > 0) {
        listen_nsocks--;
        close(listen_socks[listen_nsocks].fd);
    }
}

unsigned
mg_listen_all_fds(const int **out)
{
    *out = listen_fds;
    return listen_nsocks;
}
