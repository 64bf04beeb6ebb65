#include "config.h"

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
                ep = &snap->clusters[c].priorities[p].endpoints[j];
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
