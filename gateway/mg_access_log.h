/*
 * Access logs: one line per request, buffered per worker and written with
 * whole lines only (O_APPEND), so several workers can share one file
 * without torn lines. Flushed when the buffer fills and once a second.
 */
#ifndef MG_ACCESS_LOG_H
#define MG_ACCESS_LOG_H

#include <ev.h>

#include "mg_core.h"

#define MG_ACCESS_LOG_BUF 32768

struct mg_access_log_s {
    int fd;                       /* -1 when off */
    const char *path;
    size_t len;                   /* bytes pending in buf */
    ev_timer flush_timer;
    struct ev_loop *loop;
    char buf[MG_ACCESS_LOG_BUF];
};

/* The fields of one line. Strings may be empty; they are escaped. */
typedef struct mg_access_entry_s {
    const char *client;
    const char *listener;
    const char *method;
    size_t method_len;
    const char *path;             /* the request target */
    size_t path_len;
    const char *protocol;         /* "HTTP/1.1", "HTTP/2.0", ... */
    unsigned status;
    uint64_t bytes_sent;
    double duration;              /* seconds */
    const char *host;
    size_t host_len;
    const char *upstream;         /* NULL when none */
    const char *request_id;
} mg_access_entry_t;

/* Opens |path| (NULL = off). MG_OK or MG_ERROR (logged). */
int mg_access_log_open(mg_access_log_t *al, struct ev_loop *loop,
                       const char *path);

void mg_access_log_write(mg_access_log_t *al, const mg_access_entry_t *e);

void mg_access_log_flush(mg_access_log_t *al);

/* Flushes, then reopens the same path. */
void mg_access_log_reopen(mg_access_log_t *al);

/* Flushes and closes. */
void mg_access_log_close(mg_access_log_t *al);

#endif /* MG_ACCESS_LOG_H */
