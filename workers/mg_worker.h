/*
 * Proxy worker processes: each runs a libev loop, accepts from the shared
 * listening sockets and serves connections through gateway/. The master
 * talks to a worker over a socketpair, one byte per command.
 */
#ifndef MG_WORKER_H
#define MG_WORKER_H

#include <sys/types.h>

#include "mg_core.h"

#define MG_WORKER_CMD_DRAIN  'D'   /* stop accepting, finish, exit 0 */
#define MG_WORKER_CMD_QUIT   'Q'   /* exit now */
#define MG_WORKER_CMD_REOPEN 'R'   /* reopen log files */

typedef struct mg_worker_start_s {
    const mg_snapshot_t *snap;
    const int *listen_fds;        /* one per snap->listeners[]; NULL for
                                   * the control process */
    const int *close_fds;         /* inherited fds this worker must close */
    unsigned nclose_fds;
    unsigned slot;                /* 0..workers-1 */
    unsigned met_slot;            /* its metrics slot, or MG_MET_NO_SLOT */
    unsigned long generation;
    int chan;                     /* the worker's end of the socketpair */
    uid_t uid;                    /* drop to these when |drop_privileges| */
    gid_t gid;
    int drop_privileges;
    const char *user;
    double master_start;          /* for uptime in /server_info */
} mg_worker_start_t;

/* Runs a worker in the freshly forked child. Never returns: exits 0 after a
 * drain or quit, 2 when it cannot start. */
void mg_worker_run(const mg_worker_start_t *ws) __attribute__((noreturn));

/* Drops to ws->user when the master runs as root (exits 2 when it cannot);
 * the control process shares it. */
void mg_worker_drop_privileges(const mg_worker_start_t *ws);

/* Remembers where argv lives so the process title can be rewritten. */
void mg_proc_title_init(int argc, char **argv);

/* Sets the title shown by ps, e.g. "meshgate: worker 0 (gen 3)". */
void mg_proc_title_set(const char *title);

#endif /* MG_WORKER_H */
