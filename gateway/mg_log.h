/*
 * The error log: levels, one write(2) per line so that several processes can
 * append to one file without tearing lines.
 */
#ifndef MG_LOG_H
#define MG_LOG_H

#include "mg_core.h"

enum {
    MG_LOG_EMERG = 1,  /* cannot start */
    MG_LOG_ALERT,      /* a bug: tests fail on it */
    MG_LOG_CRIT,
    MG_LOG_ERROR,      /* our side failed */
    MG_LOG_WARN,
    MG_LOG_NOTICE,     /* start, reload, generation, worker exit */
    MG_LOG_INFO,       /* the client's fault */
    MG_LOG_DEBUG
};

struct mg_log_s {
    int fd;          /* 2 (stderr) until a file is configured */
    int level;       /* lines above this level are skipped before formatting */
    int owns_fd;
    char *path;      /* NULL for stderr */
    const char *role; /* "master", "worker 3", ... */
};

/* The process-wide error log (one per process). */
extern mg_log_t mg_log;

/* Parses "emerg".."debug"; returns the level or -1. */
int mg_log_level_parse(const char *name);
const char *mg_log_level_name(int level);

/* Opens |path| for appending ("stderr" or NULL keeps fd 2). Returns the fd or
 * -1 with errno set. */
int mg_log_open_file(const char *path);

/* Switches the process log to |fd| (taking ownership) and |path|. */
void mg_log_set_fd(mg_log_t *log, int fd, const char *path);

/* Writes one line: time, level, pid, role, the message and, when |err| is not
 * 0, strerror(err). Use the macro, which skips formatting when filtered. */
void mg_log_write(mg_log_t *log, int level, int err, const char *fmt, ...)
    MG_PRINTF(4, 5);

#define mg_log_error(lvl_, log_, err_, ...)                                  \
    do {                                                                     \
        if ((lvl_) <= (log_)->level) {                                       \
            mg_log_write((log_), (lvl_), (err_), __VA_ARGS__);               \
        }                                                                    \
    } while (0)

#endif /* MG_LOG_H */
