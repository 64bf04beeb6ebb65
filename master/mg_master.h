/*
 * The master process: owns the listening sockets, forks one worker
 * generation per configuration snapshot, reloads on SIGHUP, supervises and
 * respawns workers, stops on TERM/INT (graceful) or QUIT (fast).
 */
#ifndef MG_MASTER_H
#define MG_MASTER_H

#include "mg_core.h"

typedef struct mg_master_opts_s {
    const char *conf_file;
    const char *pid_file;         /* -p; overrides gateway.pid_file */
} mg_master_opts_t;

/* Runs the master with an already loaded |snap| (taking ownership). Returns
 * the process exit code. */
int mg_master_run(const mg_master_opts_t *opts, mg_snapshot_t *snap);

#endif /* MG_MASTER_H */
