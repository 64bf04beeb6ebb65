#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "mg_log.h"
#include "mg_metrics.h"
#include "mg_pool.h"
#include "mg_router.h"
#include "mg_snapshot.h"

/* Cells are handed out in blocks, so that a series table entry needs no
 * more than a block number and a length. */
#define MET_BLOCK   16
#define MET_BLOCKS  (MG_MET_CELLS / MET_BLOCK)

/* The last blocks are never handed out: series that find the table full
 * count into them, and nothing reads them. */
#define MET_SINK_BLOCKS ((MG_MET_P_N + MET_BLOCK - 1) / MET_BLOCK)
_Static_assert((unsigned)MG_MET_R_N <= (unsigned)MG_MET_P_N, "the sink holds the largest series");
#define MET_SINK        ((MET_BLOCKS - MET_SINK_BLOCKS) * MET_BLOCK)

typedef struct met_series_s {
    char key[MG_MET_KEY_MAX];     /* "" never used, "\1" freed */
    unsigned first;               /* first cell */
    unsigned ncells;
    unsigned long generation;     /* last generation using it */
} met_series_t;

typedef struct met_shm_s {
    _Atomic unsigned slots_used;  /* slots ever handed out */
    unsigned char slot_busy[MG_MET_PROCS];      /* master only */
    uint64_t block_busy[MET_BLOCKS / 64];       /* master only */
    met_series_t series[MG_MET_SERIES];         /* master only */
    _Atomic uint64_t cells[MG_MET_PROCS][MG_MET_CELLS];
} met_shm_t;

_Atomic uint64_t *mg_met;

static met_shm_t *met_shm;
static unsigned met_slot = MG_MET_NO_SLOT;

/* Bucket bounds in microseconds: 1..9 x 10^k, k = 1..6, then 10-60 s. */
static const uint64_t met_tail[] = { 10000000, 20000000, 30000000,
                                     60000000 };

unsigned
mg_met_hist_bucket(uint64_t us)
{
    uint64_t unit = 10;
    unsigned decade = 0, i;

    if (us <= 10) {
        return 0;
    }
    while (decade < 6) {
        if (us <= 9 * unit) {
            return decade * 9 + (unsigned)((us + unit - 1) / unit) - 1;
        }
        unit *= 10;
        decade++;
    }
    for (i = 0; i < sizeof(met_tail) / sizeof(met_tail[0]); i++) {
        if (us <= met_tail[i]) {
            return 54 + i;
        }
    }
    return MG_MET_HIST_BOUNDS;
}

uint64_t
mg_met_hist_bound(unsigned i)
{
    uint64_t unit = 10;

    if (i >= 54) {
        return met_tail[i - 54];
    }
    while (i >= 9) {
        unit *= 10;
        i -= 9;
    }
    return unit * (i + 1);
}

int
mg_metrics_create(void)
{
    void *p;

    if (met_shm != NULL) {
        return MG_OK;
    }
    /* Most of it is never touched: pages come as cells are written. */
    p = mmap(NULL, sizeof(met_shm_t), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        return MG_ERROR;
    }
    met_shm = p;
    met_shm->slot_busy[0] = 1;
    atomic_store(&met_shm->slots_used, 1);
    met_slot = 0;
    mg_met = met_shm->cells[0];
    return MG_OK;
}

int
mg_metrics_available(void)
{
    return met_shm != NULL;
}

unsigned
mg_metrics_slot(void)
{
    return met_slot;
}

unsigned
mg_metrics_slots_used(void)
{
    return met_shm == NULL ? 0 : atomic_load(&met_shm->slots_used);
}

unsigned
mg_metrics_slot_take(void)
{
    unsigned i;

    if (met_shm == NULL) {
        return MG_MET_NO_SLOT;
    }
    for (i = 1; i < MG_MET_PROCS; i++) {
        if (!met_shm->slot_busy[i]) {
            met_shm->slot_busy[i] = 1;
            if (i >= atomic_load(&met_shm->slots_used)) {
                atomic_store(&met_shm->slots_used, i + 1);
            }
            return i;
        }
    }
    mg_log_error(MG_LOG_ERROR, &mg_log, 0, "all %d metrics slots are taken: "
                 "a process runs without counting", MG_MET_PROCS);
    return MG_MET_NO_SLOT;
}

static void
met_zero(_Atomic uint64_t *cells, unsigned cell)
{
    atomic_store_explicit(&cells[cell], 0, memory_order_relaxed);
}

void
mg_metrics_slot_release(unsigned slot, const mg_snapshot_t *snap)
{
    _Atomic uint64_t *cells;
    const mg_cluster_conf_t *cl;
    unsigned i, p, j;

    if (met_shm == NULL || slot == 0 || slot >= MG_MET_PROCS) {
        return;
    }
    /* Its counters stay (the next process of the slot counts on); what it
     * held open died with it. */
    cells = met_shm->cells[slot];
    for (i = 0; i < snap->nlisteners; i++) {
        met_zero(cells, snap->listeners[i].met + MG_MET_L_CX_ACTIVE);
        met_zero(cells, snap->listeners[i].met + MG_MET_L_RQ_ACTIVE);
    }
    for (i = 0; i < snap->nclusters; i++) {
        cl = &snap->clusters[i];
        met_zero(cells, cl->met + MG_MET_C_RQ_ACTIVE);
        met_zero(cells, cl->met + MG_MET_C_PENDING);
        for (p = 0; p < cl->npriorities; p++) {
            for (j = 0; j < cl->priorities[p].nendpoints; j++) {
                met_zero(cells, cl->priorities[p].eps[j]->met
                                    + MG_MET_E_CX_ACTIVE);
            }
        }
        for (j = 0; cl->eds_name != NULL && j < cl->max_endpoints; j++) {
            met_zero(cells, cl->eds_slots[j].met + MG_MET_E_CX_ACTIVE);
        }
    }
    met_shm->slot_busy[slot] = 0;
}

void
mg_metrics_use(unsigned slot, int on)
{
    met_slot = slot;
    mg_met = met_shm != NULL && on && slot < MG_MET_PROCS
                 ? met_shm->cells[slot] : NULL;
}

uint64_t
mg_metrics_sum(unsigned cell)
{
    unsigned i, n;
    uint64_t sum = 0;

    if (met_shm == NULL || cell >= MG_MET_CELLS) {
        return 0;
    }
    n = atomic_load(&met_shm->slots_used);
    for (i = 0; i < n; i++) {
        sum += atomic_load_explicit(&met_shm->cells[i][cell],
                                    memory_order_relaxed);
    }
    return sum;
}

/* ------------------------------------------------------------------ */
/* Series assignment (master)                                          */

static uint32_t
met_hash(const char *s)
{
    uint32_t h = 2166136261u;

    while (*s) {
        h = (h ^ (unsigned char)*s++) * 16777619u;
    }
    return h;
}

/* Cells for |n| blocks, zeroed in every slot, or MG_MET_CELLS when full. */
static unsigned
met_alloc(unsigned ncells)
{
    unsigned n = (ncells + MET_BLOCK - 1) / MET_BLOCK, b, s, used;

    b = mg_bits_find_clear(met_shm->block_busy, MET_BLOCKS - MET_SINK_BLOCKS,
                           n);
    if (b == MET_BLOCKS - MET_SINK_BLOCKS) {
        return MG_MET_CELLS;
    }
    mg_bits_set(met_shm->block_busy, b, n, 1);
    used = atomic_load(&met_shm->slots_used);
    for (s = 0; s < used; s++) {
        memset((void *)&met_shm->cells[s][b * MET_BLOCK], 0,
               (size_t)n * MET_BLOCK * sizeof(uint64_t));
    }
    return b * MET_BLOCK;
}

static unsigned met_full;         /* series not counted in this assign */

/* The first cell of series |key| of |ncells| cells for |generation|, or
 * the sink when the table is full. */
static unsigned
met_series(const char *full, unsigned ncells, unsigned long generation)
{
    met_series_t *s, *free_s = NULL;
    unsigned i, h, first;
    char key[MG_MET_KEY_MAX];
    size_t len = strlen(full);
    uint64_t fnv = 14695981039346656037ull;

    /* A key too long for the table keeps its head and a hash of the
     * whole, so that long names never share cells. */
    if (len < sizeof(key)) {
        memcpy(key, full, len + 1);
    } else {
        for (i = 0; i < len; i++) {
            fnv = (fnv ^ (unsigned char)full[i]) * 1099511628211ull;
        }
        snprintf(key, sizeof(key), "%.*s#%016llx",
                 (int)(sizeof(key) - 18), full, (unsigned long long)fnv);
    }
    h = met_hash(key) % MG_MET_SERIES;

    for (i = 0; i < MG_MET_SERIES; i++) {
        s = &met_shm->series[(h + i) % MG_MET_SERIES];
        if (s->key[0] == '\0') {
            if (free_s == NULL) {
                free_s = s;
            }
            break;
        }
        if (s->key[0] == '\1') {
            if (free_s == NULL) {
                free_s = s;
            }
            continue;
        }
        if (strcmp(s->key, key) == 0 && s->ncells == ncells) {
            s->generation = generation;
            return s->first;
        }
    }
    first = free_s == NULL ? MG_MET_CELLS : met_alloc(ncells);
    if (first == MG_MET_CELLS) {
        met_full++;
        return MET_SINK;
    }
    snprintf(free_s->key, sizeof(free_s->key), "%s", key);
    free_s->first = first;
    free_s->ncells = ncells;
    free_s->generation = generation;
    return first;
}

int
mg_metrics_assign(mg_snapshot_t *snap, unsigned long generation,
                  unsigned long oldest_live)
{
    char key[1024];
    mg_listener_conf_t *lc;
    mg_cluster_conf_t *cl;
    mg_priority_t *pr;
    mg_endpoint_conf_t *ep;
    met_series_t *s;
    unsigned i, r, p, j, nroutes;

    if (met_shm == NULL) {
        return MG_OK;
    }
    /* Series of generations that are all gone give their cells back. */
    for (i = 0; i < MG_MET_SERIES; i++) {
        s = &met_shm->series[i];
        if (s->key[0] > '\1' && s->generation < oldest_live) {
            mg_bits_set(met_shm->block_busy, s->first / MET_BLOCK,
                        (s->ncells + MET_BLOCK - 1) / MET_BLOCK, 0);
            s->key[0] = '\1';
        }
    }
    met_full = 0;
    snap->met = met_series("instance", MG_MET_G_N, generation);
    for (i = 0; i < snap->nlisteners; i++) {
        lc = &snap->listeners[i];
        snprintf(key, sizeof(key), "l/%s", lc->name);
        lc->met = met_series(key, MG_MET_L_N, generation);
        nroutes = lc->routes != NULL ? lc->routes->nroutes : 0;
        lc->route_met = mg_palloc(snap->pool,
                                      (nroutes + 1) * sizeof(unsigned));
        if (lc->route_met == NULL) {
            return MG_ERROR;
        }
        for (r = 0; r <= nroutes; r++) {
            snprintf(key, sizeof(key), "r/%s/%s", lc->name,
                     r < nroutes ? lc->routes->all[r]->name : "");
            lc->route_met[r] = met_series(key, MG_MET_R_N, generation);
        }
    }
    for (i = 0; i < snap->nclusters; i++) {
        cl = &snap->clusters[i];
        snprintf(key, sizeof(key), "c/%s", cl->name);
        cl->met = met_series(key, MG_MET_C_N, generation);
        for (p = 0; p < cl->npriorities; p++) {
            pr = &cl->priorities[p];
            snprintf(key, sizeof(key), "p/%s/%u/%s", cl->name, p,
                     pr->region != NULL ? pr->region->name : "");
            pr->met = met_series(key, MG_MET_P_N, generation);
            for (j = 0; j < pr->nendpoints; j++) {
                ep = pr->eps[j];
                snprintf(key, sizeof(key), "e/%s/%s", cl->name,
                         ep->address);
                ep->met = met_series(key, MG_MET_E_N, generation);
                if (ep->region != NULL) {
                    snprintf(key, sizeof(key), "h/@%s/%s", ep->region->name,
                             ep->address);
                } else {
                    snprintf(key, sizeof(key), "h/%s/%s", cl->name,
                             ep->address);
                }
                ep->met_health = met_series(key, MG_MET_H_N, generation);
            }
        }
        /* Discovery slots count for whichever endpoint holds them. */
        for (j = 0; cl->eds_name != NULL && j < cl->max_endpoints; j++) {
            ep = &cl->eds_slots[j];
            snprintf(key, sizeof(key), "e/%s/#%u", cl->name, j);
            ep->met = met_series(key, MG_MET_E_N, generation);
            ep->met_health = MET_SINK;
        }
    }
    if (met_full > 0) {
        mg_log_error(MG_LOG_ERROR, &mg_log, 0, "metrics table full: %u "
                     "series are not counted", met_full);
        return MG_ERROR;
    }
    return MG_OK;
}
