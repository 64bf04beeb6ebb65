/*
 * Access logs: one line per request, buffered per worker and written with
 * whole lines only (O_APPEND), so several workers can share one file
 * without torn lines. Flushed when the buffer fills and once a second.
 *
 * A line is the default text line, a text line of a listener's
 * access_log_format, or a JSON object (access_log_json). Formats are
 * compiled once, when the config is loaded, into a list of literals and
 * field ids, so writing a line parses nothing.
 */
#ifndef MG_ACCESS_LOG_H
#define MG_ACCESS_LOG_H

#include <ev.h>

#include "mg_core.h"

#define MG_ACCESS_LOG_BUF 32768

/* The fields a format may name, as "%name%". JSON lines carry all of them,
 * in this order, keyed by the same names. */
enum {
    MG_ACCESS_F_LITERAL = 0,      /* not a field: literal text */
    MG_ACCESS_F_TIME,             /* local, ISO 8601 with milliseconds */
    MG_ACCESS_F_CLIENT,
    MG_ACCESS_F_LISTENER,
    MG_ACCESS_F_METHOD,
    MG_ACCESS_F_PATH,
    MG_ACCESS_F_PROTOCOL,
    MG_ACCESS_F_STATUS,
    MG_ACCESS_F_BYTES,
    MG_ACCESS_F_DURATION,         /* seconds, 3 decimals */
    MG_ACCESS_F_DURATION_MS,      /* milliseconds, 3 decimals */
    MG_ACCESS_F_HOST,
    MG_ACCESS_F_UPSTREAM,
    MG_ACCESS_F_UPSTREAM_ADDR,
    MG_ACCESS_F_CLUSTER,
    MG_ACCESS_F_TABLE,
    MG_ACCESS_F_ROUTE,
    MG_ACCESS_F_USER_AGENT,
    MG_ACCESS_F_REFERER,
    MG_ACCESS_F_REQUEST_ID,
    MG_ACCESS_F_PID,
    MG_ACCESS_F_N
};

/* One piece of a compiled format: literal text or a field. */
typedef struct mg_access_item_s {
    unsigned field;               /* MG_ACCESS_F_* */
    const char *text;             /* MG_ACCESS_F_LITERAL */
    size_t len;
} mg_access_item_t;

struct mg_access_format_s {
    unsigned json:1;              /* JSON lines; |items| unused */
    unsigned need_time:1;         /* a field needs the clock */
    unsigned nitems;
    const mg_access_item_t *items;
};

struct mg_access_log_s {
    int fd;                       /* -1 when off */
    const char *path;
    const mg_access_format_t *fmt;
    size_t len;                   /* bytes pending in buf */
    ev_timer flush_timer;
    struct ev_loop *loop;
    /* Kept between lines: formatting the time and the pid showed up in
     * profiles of every request. */
    char pid[24];
    size_t pid_len;
    time_t time_sec;              /* the second of |time_prefix|, or -1 */
    char time_prefix[24];         /* "2025-01-31T12:00:00" */
    char time_zone[8];            /* "+0100" */
    char buf[MG_ACCESS_LOG_BUF];
};

/* The fields of one line. Strings with a length may be empty; every string
 * is escaped. A NULL string is a missing value: "-" in text, null in
 * JSON. */
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
    const char *upstream;         /* "name:port (addr)" or NULL when none */
    const char *upstream_addr;    /* the address reached, or NULL */
    const char *cluster;          /* the route's cluster, or NULL */
    const char *table;            /* the listener's route table, or NULL */
    const char *route;            /* the route's prefix or path, or NULL */
    size_t route_len;
    const char *user_agent;       /* NULL when the header is absent */
    size_t user_agent_len;
    const char *referer;          /* NULL when the header is absent */
    size_t referer_len;
    const char *request_id;
} mg_access_entry_t;

/*
 * Compiles access_log_format |spec| into |pool|: "%name%" is a field (see
 * MG_ACCESS_F_*), "%%" a percent sign, the rest literal text. Returns the
 * format, or NULL with the reason in |err| (|errlen| bytes) for an unknown
 * field name or an unterminated "%". |pool| NULL fails as out of memory.
 */
const mg_access_format_t *mg_access_format_compile(mg_pool_t *pool,
                                                   const char *spec,
                                                   char *err, size_t errlen);

/* The format of JSON lines; static. */
const mg_access_format_t *mg_access_format_json(void);

/* Opens |path| (NULL = off) to write lines of |fmt| (NULL = the default
 * text line). MG_OK or MG_ERROR (logged). */
int mg_access_log_open(mg_access_log_t *al, struct ev_loop *loop,
                       const char *path, const mg_access_format_t *fmt);

void mg_access_log_write(mg_access_log_t *al, const mg_access_entry_t *e);

void mg_access_log_flush(mg_access_log_t *al);

/* Flushes, then reopens the same path. */
void mg_access_log_reopen(mg_access_log_t *al);

/* Flushes and closes. */
void mg_access_log_close(mg_access_log_t *al);

#endif /* MG_ACCESS_LOG_H */
