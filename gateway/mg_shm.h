/*
 * State shared by the master, the proxy workers and the control process,
 * in one anonymous shared mapping that the master makes before its first
 * fork, so it outlives reloads: a new generation starts with the health
 * its predecessor saw.
 *
 * Health: one slot per checked endpoint, keyed by what it is ("cluster/
 * address", or "@region/address" for a region's front proxy, which every
 * cluster shares). The master assigns slots when it loads a configuration;
 * the control process writes the results; workers read them with relaxed
 * atomic loads on every pick.
 */
#ifndef MG_SHM_H
#define MG_SHM_H

#include <stdatomic.h>
#include <stdint.h>

#include "mg_core.h"
#include "mg_snapshot.h"

#define MG_SHM_SLOTS   4096
#define MG_SHM_KEY_MAX 192

enum {
    MG_HEALTH_UNKNOWN = 0,        /* not checked yet: taken as healthy */
    MG_HEALTH_HEALTHY,
    MG_HEALTH_UNHEALTHY
};

typedef struct mg_shm_slot_s {
    char key[MG_SHM_KEY_MAX];     /* "" = free; written by the master only */
    _Atomic uint32_t health;      /* MG_HEALTH_* */
    _Atomic uint64_t changed_ms;  /* wall clock of the last change */
    unsigned long generation;     /* last generation using it (master) */
} mg_shm_slot_t;

typedef struct mg_shm_s {
    mg_shm_slot_t slots[MG_SHM_SLOTS];
} mg_shm_t;

/* NULL until mg_shm_create(): then every endpoint counts as healthy. */
extern mg_shm_t *mg_shm;

/* Maps the shared memory. Master, once, before forking. MG_OK/MG_ERROR. */
int mg_shm_create(void);

/*
 * Gives every health-checked endpoint of |snap| its slot (ep->health_slot),
 * keeping the state of endpoints the previous generation had, and frees the
 * slots no generation since |oldest_live| uses. MG_OK, or MG_ERROR when the
 * table is full (the endpoints past it stay unchecked).
 */
int mg_shm_assign(mg_snapshot_t *snap, unsigned long generation,
                  unsigned long oldest_live);

/* Records a health check verdict (control process). */
void mg_shm_set_health(unsigned slot, unsigned health);

/* Whether |ep| may take requests as far as active checks know. */
static inline int
mg_shm_healthy(const mg_endpoint_conf_t *ep)
{
    if (mg_shm == NULL || ep->health_check == NULL) {
        return 1;
    }
    return atomic_load_explicit(&mg_shm->slots[ep->health_slot].health,
                                memory_order_relaxed)
           != MG_HEALTH_UNHEALTHY;
}

#endif /* MG_SHM_H */
