/*
 * Metrics: counters, gauges and latency histograms in one shared mapping
 * that the master makes before its first fork, so they outlive reloads and
 * worker restarts and never go backwards.
 *
 * Every process (master, control process, each worker of each live
 * generation) gets a process slot from the master and is the only writer
 * of its slot's cells: an increment is a relaxed load and store, no lock,
 * no atomic read-modify-write. A scrape sums a cell over every slot ever
 * used, so it is exact across workers and never blocks traffic.
 *
 * A series (a listener, a route of a listener, a cluster, a priority level,
 * an endpoint, ...) is a run of cells keyed by what it is, assigned by the
 * master when it loads a configuration: a series a new generation keeps
 * (same key) keeps its cells and counts on. Gauges are cells that the
 * master zeroes in the slot of a process that exited, so a crashed worker
 * leaves no active request behind.
 */
#ifndef MG_METRICS_H
#define MG_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "mg_core.h"

#define MG_MET_PROCS     1026     /* process slots: 2 x MG_SHM_WORKERS + 2 */
#define MG_MET_CELLS     65536    /* cells per process slot */
#define MG_MET_SERIES    8192     /* keyed series */
#define MG_MET_KEY_MAX   200
#define MG_MET_NO_SLOT   ((unsigned)-1)

/* Latency histograms: log-linear buckets, 1..9 x 10^k for every decade
 * from 10 us to 9 s, then 10, 20, 30 and 60 s, then +Inf; a histogram is
 * its bucket counts (not cumulative) followed by the sum in microseconds. */
#define MG_MET_HIST_BOUNDS  58
#define MG_MET_HIST_BUCKETS (MG_MET_HIST_BOUNDS + 1)
#define MG_MET_HIST_CELLS   (MG_MET_HIST_BUCKETS + 1)

/* Status classes: cell offset + (status / 100 - 1), 1xx..5xx. */
#define MG_MET_CLASSES 5

/* The instance: one series. */
enum {
    MG_MET_G_RELOADS,             /* master: configurations applied */
    MG_MET_G_RELOAD_FAILURES,     /* master: reloads refused */
    MG_MET_G_RESTARTS,            /* master: workers respawned after a crash */
    MG_MET_G_SPANS_SENT,          /* control: spans the collector took */
    MG_MET_G_SPANS_DROPPED,       /* worker: span ring full; control:
                                   * export failed */
    MG_MET_G_SPANS_SAMPLED,       /* worker: spans recorded */
    MG_MET_G_N
};

/* A listener. */
enum {
    MG_MET_L_CX_TOTAL,
    MG_MET_L_CX_ACTIVE,           /* gauge */
    MG_MET_L_RQ_ACTIVE,           /* gauge */
    MG_MET_L_BYTES_IN,            /* request bytes read (heads and bodies) */
    MG_MET_L_BYTES_OUT,           /* response bytes sent */
    MG_MET_L_N
};

/* A route of a listener, or the listener's requests with no route. */
enum {
    MG_MET_R_RQ,                  /* + class */
    MG_MET_R_TIME = MG_MET_R_RQ + MG_MET_CLASSES, /* histogram */
    MG_MET_R_N = MG_MET_R_TIME + MG_MET_HIST_CELLS
};

/* A cluster. */
enum {
    MG_MET_C_RETRIES,
    MG_MET_C_TIMEOUTS,            /* requests that timed out upstream */
    MG_MET_C_OVERFLOWS,           /* circuit breakers that turned one away */
    MG_MET_C_RQ_ACTIVE,           /* gauge */
    MG_MET_C_PENDING,             /* gauge: waiting for a connection */
    MG_MET_C_N
};

/* A priority level of a cluster (0 local, then one per region). */
enum {
    MG_MET_P_RQ,                  /* + class: responses from the level */
    MG_MET_P_ATTEMPTS = MG_MET_P_RQ + MG_MET_CLASSES, /* tries sent to it */
    MG_MET_P_TIME,                /* histogram: try start to response end */
    MG_MET_P_N = MG_MET_P_TIME + MG_MET_HIST_CELLS
};

/* An endpoint of a cluster. */
enum {
    MG_MET_E_RQ,                  /* + class */
    MG_MET_E_CONNECT_FAILURES = MG_MET_E_RQ + MG_MET_CLASSES,
    MG_MET_E_RESETS,              /* lost before the response ended */
    MG_MET_E_CX_TOTAL,            /* connections opened */
    MG_MET_E_CX_ACTIVE,           /* gauge */
    MG_MET_E_EJECTIONS,           /* outlier detection */
    MG_MET_E_N
};

/* A health-checked target (shared by every cluster for a region's front
 * proxy, as its check is). */
enum {
    MG_MET_H_HEALTHY,             /* transitions to healthy */
    MG_MET_H_UNHEALTHY,           /* transitions to unhealthy */
    MG_MET_H_N
};

/* The cells of this process's slot; NULL while metrics are off (no shared
 * mapping, or `gateway.metrics = false`): every update is then one test. */
extern _Atomic uint64_t *mg_met;

static inline void
mg_met_add(unsigned cell, uint64_t n)
{
    _Atomic uint64_t *c;

    if (mg_met == NULL) {
        return;
    }
    c = &mg_met[cell];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed)
                             + n, memory_order_relaxed);
}

static inline void
mg_met_inc(unsigned cell)
{
    mg_met_add(cell, 1);
}

static inline void
mg_met_dec(unsigned cell)
{
    mg_met_add(cell, (uint64_t)-1);
}

/* Counts |status| in the class cells starting at |cell|. */
static inline void
mg_met_status(unsigned cell, unsigned status)
{
    if (status >= 100 && status < 600) {
        mg_met_inc(cell + status / 100 - 1);
    }
}

/* The bucket of a latency of |us| microseconds. */
unsigned mg_met_hist_bucket(uint64_t us);

/* Upper bound of bucket |i| (< MG_MET_HIST_BOUNDS), in microseconds. */
uint64_t mg_met_hist_bound(unsigned i);

/* Records a latency in the histogram at |cell|. */
static inline void
mg_met_observe(unsigned cell, double seconds)
{
    uint64_t us;

    if (mg_met == NULL) {
        return;
    }
    us = seconds <= 0 ? 0 : (uint64_t)(seconds * 1e6 + 0.5);
    mg_met_inc(cell + mg_met_hist_bucket(us));
    mg_met_add(cell + MG_MET_HIST_BUCKETS, us);
}

/* Maps the shared cells and takes process slot 0 for the master. Master,
 * once, before forking. MG_OK, or MG_ERROR (metrics stay off). */
int mg_metrics_create(void);

/*
 * Gives every series of |snap| its cells (the *met fields of the snapshot,
 * listeners, routes, clusters, levels and endpoints), keeping those of
 * series that the previous generations had, and frees the series no
 * generation since |oldest_live| uses. MG_OK, or MG_ERROR when the table is
 * full (the series past it are not counted).
 */
int mg_metrics_assign(mg_snapshot_t *snap, unsigned long generation,
                      unsigned long oldest_live);

/* A free process slot for a process about to be forked (master), or
 * MG_MET_NO_SLOT. */
unsigned mg_metrics_slot_take(void);

/* Slot |slot|'s process exited: zero its gauges of |snap| and free it
 * (master). */
void mg_metrics_slot_release(unsigned slot, const mg_snapshot_t *snap);

/* Makes this process write slot |slot| when |on| (else nothing): a child,
 * at start. */
void mg_metrics_use(unsigned slot, int on);

/* This process's slot (MG_MET_NO_SLOT when none), and how many slots
 * were ever handed out (every slot below that may hold counts). */
unsigned mg_metrics_slot(void);
unsigned mg_metrics_slots_used(void);

/* The sum of |cell| over every process slot, for a scrape. */
uint64_t mg_metrics_sum(unsigned cell);

/* Whether the shared cells exist (a scrape has something to read). */
int mg_metrics_available(void);

#endif /* MG_METRICS_H */
