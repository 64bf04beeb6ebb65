/*
 * The xDS client of the control process: one gRPC stream over HTTP/2
 * (nghttp2) to the discovery server, EDS or ADS, v3 or v2. It subscribes
 * to every discovery cluster's eds_name, ACKs what it applies and NACKs
 * (with the reason) what it refuses, keeping the last good endpoints, and
 * publishes assignments into shared memory (mg_eds) for the workers. A
 * lost stream is opened again after a backoff with jitter, asking again
 * with the last version it accepted.
 */
#ifndef MG_XDS_H
#define MG_XDS_H

#include <ev.h>

#include "mg_core.h"

typedef struct mg_xds_s mg_xds_t;

/* Starts the client for |snap|'s discovery clusters, or returns NULL when
 * there are none (or out of memory). */
mg_xds_t *mg_xds_start(struct ev_loop *loop, const mg_snapshot_t *snap);

/* Closes the stream and frees the client. */
void mg_xds_stop(mg_xds_t *x);

#endif /* MG_XDS_H */
