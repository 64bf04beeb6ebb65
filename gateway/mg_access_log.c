#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "mg_access_log.h"
#include "mg_log.h"

static void
access_log_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_access_log_t *al = (mg_access_log_t *)((char *)w
                          - offsetof(mg_access_log_t, flush_timer));

    mg_access_log_flush(al);
}

int
mg_access_log_open(mg_access_log_t *al, struct ev_loop *loop,
                   const char *path)
{
    al->fd = -1;
    al->path = path;
    al->len = 0;
    al->loop = loop;
    ev_timer_init(&al->flush_timer, access_log_on_timer, 1., 0.);
    if (path == NULL) {
        return MG_OK;
    }
    al->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (al->fd == -1) {
        mg_log_error(MG_LOG_ERROR, &mg_log, errno,
                     "cannot open access log \"%s\"", path);
        return MG_ERROR;
    }
    return MG_OK;
}

void
mg_access_log_flush(mg_access_log_t *al)
{
    ssize_t n;

    if (al->len == 0 || al->fd == -1) {
        al->len = 0;
        return;
    }
    /* Whole lines in one write: O_APPEND keeps them intact among
     * processes. */
    do {
        n = write(al->fd, al->buf, al->len);
    } while (n == -1 && errno == EINTR);
    if (n == -1) {
        mg_log_error(MG_LOG_ERROR, &mg_log, errno,
                     "cannot write access log \"%s\"", al->path);
    }
    al->len = 0;
    ev_timer_stop(al->loop, &al->flush_timer);
}

/* Appends |s| with quotes, backslashes and control bytes escaped. */
static size_t
access_log_escape(char *out, size_t room, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, n = 0;
    unsigned char ch;

    for (i = 0; i < len && n + 4 < room; i++) {
        ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f) {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        } else {
            out[n++] = (char)ch;
        }
    }
    return n;
}

void
mg_access_log_write(mg_access_log_t *al, const mg_access_entry_t *e)
{
    char line[4096];
    size_t n = 0, room = sizeof(line) - 2;
    struct timeval tv;
    struct tm tm;
    int rc;

    if (al->fd == -1) {
        return;
    }
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    n += strftime(line, room, "%Y-%m-%dT%H:%M:%S", &tm);
    rc = snprintf(line + n, room - n, ".%03d", (int)(tv.tv_usec / 1000));
    n += rc > 0 ? (size_t)rc : 0;
    n += strftime(line + n, room - n, "%z", &tm);
    rc = snprintf(line + n, room - n, " %s %s \"", e->client, e->listener);
    n += rc > 0 ? (size_t)rc : 0;
    n += access_log_escape(line + n, room - n - 600, e->method, e->method_len);
    line[n++] = ' ';
    n += access_log_escape(line + n, room - n - 600, e->path, e->path_len);
    rc = snprintf(line + n, room - n, " %s\" %u %llu %.3f host=\"",
                  e->protocol, e->status,
                  (unsigned long long)e->bytes_sent, e->duration);
    n += rc > 0 ? (size_t)rc : 0;
    n += access_log_escape(line + n, room - n - 200, e->host, e->host_len);
    rc = snprintf(line + n, room - n,
                  "\" upstream=\"%s\" request_id=\"%s\" pid=%d",
                  e->upstream ? e->upstream : "-", e->request_id,
                  (int)getpid());
    n += rc > 0 ? (size_t)rc : 0;
    if (n > room) {
        n = room;
    }
    line[n++] = '\n';

    if (al->len + n > sizeof(al->buf)) {
        mg_access_log_flush(al);
    }
    memcpy(al->buf + al->len, line, n);
    al->len += n;
    if (!ev_is_active(&al->flush_timer)) {
        ev_timer_set(&al->flush_timer, 1., 0.);
        ev_timer_start(al->loop, &al->flush_timer);
    }
}

void
mg_access_log_reopen(mg_access_log_t *al)
{
    int fd;

    if (al->path == NULL) {
        return;
    }
    mg_access_log_flush(al);
    fd = open(al->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        mg_log_error(MG_LOG_ERROR, &mg_log, errno,
                     "cannot reopen access log \"%s\"", al->path);
        return;
    }
    if (al->fd != -1) {
        close(al->fd);
    }
    al->fd = fd;
}

void
mg_access_log_close(mg_access_log_t *al)
{
    mg_access_log_flush(al);
    ev_timer_stop(al->loop, &al->flush_timer);
    if (al->fd != -1) {
        close(al->fd);
        al->fd = -1;
    }
}
