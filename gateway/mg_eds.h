/*
 * Endpoints from discovery (EDS), shared by the control process, which
 * writes what the xds server assigns, and the workers, which route by it.
 *
 * One table entry per discovery cluster, keyed by its name and eds_name,
 * in a shared mapping the master makes before its first fork: a new
 * generation starts with the endpoints the last one knew. An entry is a
 * run of slots; an address keeps its slot while it stays in the
 * assignment, so a worker's connections, counters and load balancing
 * state follow it, and a freed slot is the last one taken again. A
 * sequence number, odd while the writer is at work, tells a worker that
 * the entry changed and that its copy is whole.
 */
#ifndef MG_EDS_H
#define MG_EDS_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mg_core.h"
#include "mg_snapshot.h"

#define MG_EDS_ENTRIES   256      /* discovery clusters over live generations */
#define MG_EDS_SLOTS     65536    /* slots over every entry */
#define MG_EDS_KEY_MAX   200
#define MG_EDS_ERR_MAX   256
#define MG_EDS_NO_ENTRY  ((unsigned)-1)

/* Health as the server says it (Envoy's HealthStatus values). */
enum {
    MG_EDS_HEALTH_UNKNOWN = 0,
    MG_EDS_HEALTH_HEALTHY,
    MG_EDS_HEALTH_UNHEALTHY,
    MG_EDS_HEALTH_DRAINING,
    MG_EDS_HEALTH_TIMEOUT,
    MG_EDS_HEALTH_DEGRADED
};

typedef struct mg_eds_slot_s {
    uint32_t in_use;
    uint32_t weight;
    uint32_t priority;            /* its locality's, < MG_EDS_LEVELS */
    uint32_t health;              /* MG_EDS_HEALTH_* */
    uint64_t freed_ms;            /* when it left the assignment */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[MG_EDS_TEXT_LEN];   /* "10.1.0.5:8080", "[::1]:8080" */
    char zone[64];
} mg_eds_slot_t;

/* One endpoint of an assignment, as the xDS client hands it over. */
typedef struct mg_eds_endpoint_s {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[MG_EDS_TEXT_LEN];
    char zone[64];
    unsigned weight;
    unsigned priority;
    unsigned health;
} mg_eds_endpoint_t;

/* What the admin pages and metrics show of an entry (a consistent copy). */
typedef struct mg_eds_status_s {
    char version[128];            /* last accepted version_info, "" none */
    char nack[MG_EDS_ERR_MAX];    /* last rejection's reason, "" none */
    uint64_t last_update_ms;      /* wall clock of the last accepted one */
    uint64_t updates;             /* accepted assignments */
    uint64_t rejections;          /* refused ones (NACK) */
    unsigned nendpoints;          /* slots in use */
    int got_first;                /* an assignment arrived */
} mg_eds_status_t;

/* Maps the table. Master, once, before forking. MG_OK/MG_ERROR. */
int mg_eds_create(void);

/*
 * Gives every discovery cluster of |snap| its entry (cl->eds_entry),
 * keeping those the previous generations had, and frees the entries no
 * generation since |oldest_live| uses. MG_OK, or MG_ERROR when the table
 * is full (those clusters get no endpoints).
 */
int mg_eds_assign(mg_snapshot_t *snap, unsigned long generation,
                  unsigned long oldest_live);

/* Control process: ---------------------------------------------------- */

/* Replaces |cl|'s endpoints with |eps| (already filtered to this region,
 * at most cl->max_endpoints) and records |version| as accepted. */
void mg_eds_publish(const mg_cluster_conf_t *cl, const mg_eds_endpoint_t *eps,
                    unsigned n, const char *version);

/* Records that an update for |cl| was refused, and why. */
void mg_eds_reject(const mg_cluster_conf_t *cl, const char *why);

/* Whether the xDS stream is up (a gauge for metrics). */
void mg_eds_set_connected(int connected);
int mg_eds_connected(void);

/* Workers: ------------------------------------------------------------ */

/* Brings this worker's view of |cl|'s endpoints up to date when the
 * assignment changed: one atomic load when it did not. */
void mg_eds_refresh(mg_ctx_t *ctx, const mg_cluster_conf_t *cl);

/* Fills |st| for |cl|; MG_DECLINED when it has no entry. */
int mg_eds_status(const mg_cluster_conf_t *cl, mg_eds_status_t *st);

/* Whether every discovery cluster of |snap| had a first answer (the
 * /ready wait of xds.ready_wait). */
int mg_eds_all_ready(const mg_snapshot_t *snap);

#endif /* MG_EDS_H */
