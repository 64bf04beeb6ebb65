#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "mg_log.h"

mg_log_t mg_log = { 2, MG_LOG_NOTICE, 0, NULL, "master" };

static const char *log_level_names[] = {
    "", "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"
};

int
mg_log_level_parse(const char *name)
{
    size_t i;

    for (i = 1; i < mg_countof(log_level_names); i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

const char *
mg_log_level_name(int level)
{
    if (level < 1 || level >= (int)mg_countof(log_level_names)) {
        return "?";
    }
    return log_level_names[level];
}

int
mg_log_open_file(const char *path)
{
    if (path == NULL || strcmp(path, "stderr") == 0) {
        return 2;
    }
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

void
mg_log_set_fd(mg_log_t *log, int fd, const char *path)
{
    if (log->owns_fd && log->fd != fd) {
        close(log->fd);
    }
    log->fd = fd;
    log->owns_fd = fd != 2;
    log->path = (char *)path;
}

void
mg_log_write(mg_log_t *log, int level, int err, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    size_t n;
    int rc;

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    rc = snprintf(line, sizeof(line),
                  "%04d/%02d/%02d %02d:%02d:%02d.%03d [%s] %d %s: ",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                  tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
                  mg_log_level_name(level), (int)getpid(),
                  log->role ? log->role : "-");
    n = rc > 0 ? (size_t)rc : 0;

    va_start(ap, fmt);
    rc = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (rc > 0) {
        n += (size_t)rc;
    }
    if (n >= sizeof(line) - 64) {
        n = sizeof(line) - 64;   /* truncated, but still one line */
    }
    if (err != 0) {
        rc = snprintf(line + n, sizeof(line) - n, " (%d: %s)", err,
                      strerror(err));
        if (rc > 0) {
            n += (size_t)rc;
        }
    }
    if (n > sizeof(line) - 2) {
        n = sizeof(line) - 2;
    }
    line[n++] = '\n';
    /* One write per line: O_APPEND makes it atomic among processes. */
    while (write(log->fd, line, n) == -1 && errno == EINTR) {
    }
}
