/*
 * The control process: one per generation, beside the proxy workers, for
 * the work that must run once per meshgate instance rather than once per
 * worker. It runs the active health checks (gateway/mg_health) and the
 * lookups of endpoints' host names (gateway/mg_dns), and publishes the
 * verdicts and addresses in shared memory; with tracing, it sends the
 * workers' spans to the collector (gateway/mg_trace). The master talks to
 * it over a socketpair with the workers' one-byte commands.
 */
#ifndef MG_CONTROL_H
#define MG_CONTROL_H

#include "mg_worker.h"

/*
 * Runs the control process in the freshly forked child; |ws| as for a
 * worker, without listening sockets (every inherited one is in
 * |close_fds|). Never returns: exits 0 on drain, quit or when the master
 * is gone, 2 when it cannot start.
 */
void mg_control_run(const mg_worker_start_t *ws) __attribute__((noreturn));

#endif /* MG_CONTROL_H */
