/*
 * Active health checks, run by the control process: one schedule per
 * shared-memory slot (an endpoint, or a region's front proxy that several
 * clusters share), a check every interval (+ jitter) that must finish
 * within its timeout. TCP checks connect (and complete TLS); HTTP checks
 * send GET path and accept the statuses configured, over HTTP/1.1, or
 * HTTP/2 for h2/h2c endpoints. Verdicts go to shared memory (mg_shm),
 * where every worker reads them; each transition is logged once.
 *
 * Everything runs non-blocking on the caller's libev loop; a check holds
 * only its connection (socket, TLS, HTTP/2 session) while it runs.
 */
#ifndef MG_HEALTH_H
#define MG_HEALTH_H

#include <ev.h>

#include "mg_core.h"

typedef struct mg_health_s mg_health_t;

/* The number of distinct checks |snap| asks for (0: nothing to check).
 * Endpoints are told apart by their shared-memory slot, so |snap| must
 * have been through mg_shm_assign(). */
unsigned mg_health_count(const mg_snapshot_t *snap);

/*
 * Starts checking every health-checked endpoint of |snap| on |loop|, the
 * first check of each at once (+ its jitter). The state already in shared
 * memory is kept, so a new generation neither forgets nor repeats a
 * verdict. |snap| must outlive the checker. Returns the checker, or NULL
 * when out of memory.
 */
mg_health_t *mg_health_start(struct ev_loop *loop, const mg_snapshot_t *snap);

/* Stops every check, closes the connections in progress and frees |h|. */
void mg_health_stop(mg_health_t *h);

#endif /* MG_HEALTH_H */
