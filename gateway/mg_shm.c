#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>

#include "mg_log.h"
#include "mg_shm.h"

mg_shm_t *mg_shm;

int
mg_shm_create(void)
{
    void *p;

    if (mg_shm != NULL) {
        return MG_OK;
    }
    p = mmap(NULL, sizeof(mg_shm_t), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return MG_ERROR;
    }
    mg_shm = p;   /* zero-filled: every slot free, health unknown */
    return MG_OK;
}

static void
shm_key(const mg_endpoint_conf_t *ep, char *key)
{
    if (ep->region != NULL) {
        snprintf(key, MG_SHM_KEY_MAX, "@%s/%s", ep->region->name,
                 ep->address);
    } else {
        snprintf(key, MG_SHM_KEY_MAX, "%s/%s", ep->cluster->name,
                 ep->address);
    }
}

int
mg_shm_assign(mg_snapshot_t *snap, unsigned long generation,
              unsigned long oldest_live)
{
    mg_shm_slot_t *slot;
    mg_endpoint_conf_t *ep;
    char key[MG_SHM_KEY_MAX];
    unsigned c, p, j, i, free_slot;
    int rc = MG_OK;

    if (mg_shm == NULL) {
        return MG_OK;
    }
    /* Slots of generations that are all gone start over. */
    for (i = 0; i < MG_SHM_SLOTS; i++) {
        slot = &mg_shm->slots[i];
        if (slot->key[0] != '\0' && slot->generation < oldest_live) {
            slot->key[0] = '\0';
            atomic_store(&slot->health, MG_HEALTH_UNKNOWN);
        }
    }
    for (c = 0; c < snap->nclusters; c++) {
        for (p = 0; p < snap->clusters[c].npriorities; p++) {
            for (j = 0; j < snap->clusters[c].priorities[p].nendpoints; j++) {
                ep = snap->clusters[c].priorities[p].eps[j];
                if (ep->health_check == NULL) {
                    continue;
                }
                shm_key(ep, key);
                free_slot = MG_SHM_SLOTS;
                for (i = 0; i < MG_SHM_SLOTS; i++) {
                    slot = &mg_shm->slots[i];
                    if (slot->key[0] == '\0') {
                        if (free_slot == MG_SHM_SLOTS) {
                            free_slot = i;
                        }
                    } else if (strcmp(slot->key, key) == 0) {
                        break;
                    }
                }
                if (i == MG_SHM_SLOTS) {
                    if (free_slot == MG_SHM_SLOTS) {
                        mg_log_error(MG_LOG_ERROR, &mg_log, 0,
                                     "health table full (%d endpoints): "
                                     "%s is not checked", MG_SHM_SLOTS,
                                     key);
                        ep->health_check = NULL;
                        rc = MG_ERROR;
                        continue;
                    }
                    i = free_slot;
                    slot = &mg_shm->slots[i];
                    memcpy(slot->key, key, sizeof(slot->key));
                    atomic_store(&slot->health, MG_HEALTH_UNKNOWN);
                }
                slot->generation = generation;
                ep->health_slot = i;
            }
        }
    }
    return rc;
}

void
mg_shm_set_health(unsigned slot, unsigned health)
{
    struct timeval tv;

    if (mg_shm == NULL || slot >= MG_SHM_SLOTS) {
        return;
    }
    gettimeofday(&tv, NULL);
    atomic_store_explicit(&mg_shm->slots[slot].changed_ms,
                          (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec
                              / 1000, memory_order_relaxed);
    atomic_store_explicit(&mg_shm->slots[slot].health, health,
                          memory_order_release);
}

/* The high half of a peering word for |generation|: never 0, which marks
 * a free slot; generations 2^32 - 1 apart share it, which no two live
 * generations are. */
static uint64_t
shm_peering_tag(unsigned long generation)
{
    return (uint64_t)(generation % UINT32_MAX + 1) << 32;
}

void
mg_shm_peering_start(unsigned slot, unsigned long generation, int taking)
{
    if (mg_shm == NULL || slot >= MG_SHM_WORKERS) {
        return;
    }
    atomic_store(&mg_shm->peering[slot], shm_peering_tag(generation)
                                         | (taking ? MG_SHM_PEERING_TAKING
                                                   : 0));
}

/* Changes the word of |slot| while it belongs to |generation|: its count
 * by |delta| (saturating both ways: a count never leaves its bits), its
 * taking bit to |taking| unless that is -1. */
static void
shm_peering_change(unsigned slot, unsigned long generation, int delta,
                   int taking)
{
    _Atomic uint64_t *w;
    uint64_t v, n, t, tag = shm_peering_tag(generation);

    if (mg_shm == NULL || slot >= MG_SHM_WORKERS) {
        return;
    }
    w = &mg_shm->peering[slot];
    v = atomic_load_explicit(w, memory_order_relaxed);
    do {
        if ((v & ~(uint64_t)UINT32_MAX) != tag) {
            return;   /* a newer generation's worker has the slot now */
        }
        n = v & MG_SHM_PEERING_COUNT;
        if (delta < 0) {
            n = n > 0 ? n - 1 : 0;
        } else if (delta > 0 && n < MG_SHM_PEERING_COUNT) {
            n++;
        }
        t = taking == -1 ? v & MG_SHM_PEERING_TAKING
                         : taking ? MG_SHM_PEERING_TAKING : 0;
    } while (!atomic_compare_exchange_weak_explicit(
                 w, &v, tag | t | n, memory_order_relaxed,
                 memory_order_relaxed));
}

void
mg_shm__peering_add(unsigned slot, unsigned long generation, int delta)
{
    shm_peering_change(slot, generation, delta, -1);
}

void
mg_shm_peering_taking(unsigned slot, unsigned long generation, int taking)
{
    shm_peering_change(slot, generation, 0, taking != 0);
}

void
mg_shm_peering_gone(unsigned slot, unsigned long generation)
{
    uint64_t v, tag = shm_peering_tag(generation);

    if (mg_shm == NULL || slot >= MG_SHM_WORKERS) {
        return;
    }
    v = atomic_load_explicit(&mg_shm->peering[slot], memory_order_relaxed);
    while ((v & ~(uint64_t)UINT32_MAX) == tag
           && !atomic_compare_exchange_weak_explicit(
                  &mg_shm->peering[slot], &v, 0, memory_order_relaxed,
                  memory_order_relaxed)) {
        /* v was reloaded: try again while it is still that worker's */
    }
}

int
mg_shm_peering_scan(unsigned slot, unsigned long generation,
                    unsigned nworkers, mg_shm_peering_view_t *v)
{
    uint64_t w, tag = shm_peering_tag(generation);
    unsigned i, n;

    if (mg_shm == NULL) {
        return MG_DECLINED;
    }
    memset(v, 0, sizeof(*v));
    v->min = UINT32_MAX;
    for (i = 0; i < nworkers && i < MG_SHM_WORKERS; i++) {
        w = atomic_load_explicit(&mg_shm->peering[i], memory_order_relaxed);
        if ((w & ~(uint64_t)UINT32_MAX) != tag) {
            continue;
        }
        n = (unsigned)(w & MG_SHM_PEERING_COUNT);
        v->live++;
        v->taking += (w & MG_SHM_PEERING_TAKING) != 0;
        v->min = mg_min(v->min, n);
        if (i == slot) {
            v->mine = n;
        }
    }
    if (v->live == 0) {
        v->min = 0;
    }
    return MG_OK;
}
