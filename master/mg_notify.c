#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mg_log.h"
#include "mg_notify.h"

static struct sockaddr_un notify_addr;
static socklen_t notify_len;
static int notify_failed;

void
mg_notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t n;

    notify_len = 0;
    if (path == NULL || (path[0] != '/' && path[0] != '@')) {
        return;
    }
    n = strlen(path);
    if (n >= sizeof(notify_addr.sun_path)) {
        mg_log_error(MG_LOG_WARN, &mg_log, 0, "NOTIFY_SOCKET too long: "
                     "readiness is not reported");
        return;
    }
    memset(&notify_addr, 0, sizeof(notify_addr));
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, path, n);
    if (path[0] == '@') {
        notify_addr.sun_path[0] = '\0';   /* the abstract namespace */
    }
    notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    /* Workers must not report for the master. */
    unsetenv("NOTIFY_SOCKET");
}

void
mg_notify(const char *state)
{
    int fd;
    ssize_t n;

    if (notify_len == 0) {
        return;
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        n = -1;
    } else {
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                   (struct sockaddr *)&notify_addr, notify_len);
        close(fd);
    }
    if (n == -1 && !notify_failed) {
        notify_failed = 1;
        mg_log_error(MG_LOG_WARN, &mg_log, errno, "cannot notify the "
                     "service manager (NOTIFY_SOCKET)");
    }
}
