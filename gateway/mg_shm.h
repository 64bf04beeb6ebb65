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
 *
 * Peering balance: per worker slot, the connections its worker holds on
 * peering listeners, so that each worker can tell whether it holds more
 * than the others and should let them take the next one (mg_worker.c).
 */
#ifndef MG_SHM_H
#define MG_SHM_H

#include <stdatomic.h>
#include <stdint.h>

#include "mg_core.h"
#include "mg_snapshot.h"

#define MG_SHM_SLOTS   4096
#define MG_SHM_KEY_MAX 192
#define MG_SHM_WORKERS 512        /* CONF_MAX_WORKERS in mg_conf.c */

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

/*
 * A worker slot's peering word: the generation of the worker running in
 * it (bits 32-63, 0 = none), whether that worker takes peering
 * connections now (bit 31) and how many it holds (bits 0-30). One word,
 * changed by compare-and-swap only when its generation matches, so a
 * draining worker's closes never touch its successor's count.
 */
#define MG_SHM_PEERING_TAKING (UINT64_C(1) << 31)
#define MG_SHM_PEERING_COUNT  (MG_SHM_PEERING_TAKING - 1)

typedef struct mg_shm_s {
    mg_shm_slot_t slots[MG_SHM_SLOTS];
    _Atomic uint64_t peering[MG_SHM_WORKERS];
} mg_shm_t;

/* What one worker sees of its generation (mg_shm_peering_scan()). */
typedef struct mg_shm_peering_view_s {
    unsigned mine;                /* connections this worker holds */
    unsigned min;                 /* the fewest any live worker holds */
    unsigned live;                /* workers of the generation running */
    unsigned taking;              /* ... of which take connections now */
} mg_shm_peering_view_t;

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

/* Claims worker slot |slot| for |generation| with no connections, taking
 * them when |taking|: a worker, once, at start. */
void mg_shm_peering_start(unsigned slot, unsigned long generation,
                          int taking);

/* Releases |slot| if |generation| still holds it: the master, when that
 * worker exited, so a dead worker's count never holds the others back. */
void mg_shm_peering_gone(unsigned slot, unsigned long generation);

/* Records whether the worker in |slot| takes peering connections now. */
void mg_shm_peering_taking(unsigned slot, unsigned long generation,
                           int taking);

/* Adds |delta| (+1/-1) to the count of |slot| while |generation| holds
 * it; mg_shm_peering_conn() is the call to use. */
void mg_shm__peering_add(unsigned slot, unsigned long generation, int delta);

/*
 * Fills |v| for the worker in |slot| of |generation|, looking at slots
 * 0..|nworkers|-1: only slots that |generation| holds count. MG_OK, or
 * MG_DECLINED when the table is not there (no balancing).
 */
int mg_shm_peering_scan(unsigned slot, unsigned long generation,
                        unsigned nworkers, mg_shm_peering_view_t *v);

/* Counts a connection on listener |lc| that opened (|delta| 1) or closed
 * (-1) in the worker in |slot|; nothing unless |lc| is a peering
 * listener, so other listeners pay one test. */
static inline void
mg_shm_peering_conn(const mg_listener_conf_t *lc, unsigned slot,
                    unsigned long generation, int delta)
{
    if (lc->peering) {
        mg_shm__peering_add(slot, generation, delta);
    }
}

#endif /* MG_SHM_H */
