#include "config.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include "mg_ctx.h"
#include "mg_eds.h"
#include "mg_log.h"
#include "mg_upstream.h"

#define EDS_BLOCK  64             /* slots are handed out in blocks */
#define EDS_BLOCKS (MG_EDS_SLOTS / EDS_BLOCK)

typedef struct eds_entry_s {
    char key[MG_EDS_KEY_MAX];     /* "" free; master only */
    unsigned long generation;     /* master only */
    unsigned first;               /* first slot */
    unsigned capacity;
    _Atomic uint64_t seq;         /* odd while written */
    _Atomic int32_t writer;       /* pid of the control process writing */
    mg_eds_status_t status;
} eds_entry_t;

typedef struct eds_shm_s {
    _Atomic uint32_t connected;
    uint64_t block_busy[EDS_BLOCKS / 64];        /* master only */
    eds_entry_t entries[MG_EDS_ENTRIES];
    mg_eds_slot_t slots[MG_EDS_SLOTS];
} eds_shm_t;

static eds_shm_t *eds_shm;

int
mg_eds_create(void)
{
    void *p;

    if (eds_shm != NULL) {
        return MG_OK;
    }
    p = mmap(NULL, sizeof(eds_shm_t), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        return MG_ERROR;
    }
    eds_shm = p;
    return MG_OK;
}

static uint64_t
eds_now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* ------------------------------------------------------------------ */
/* Entries (master)                                                    */

int
mg_eds_assign(mg_snapshot_t *snap, unsigned long generation,
              unsigned long oldest_live)
{
    mg_cluster_conf_t *cl;
    eds_entry_t *e, *free_e;
    char key[MG_EDS_KEY_MAX];
    unsigned i, j, b, n;
    int rc = MG_OK;

    if (eds_shm == NULL) {
        return MG_OK;
    }
    for (i = 0; i < MG_EDS_ENTRIES; i++) {
        e = &eds_shm->entries[i];
        if (e->key[0] != '\0' && e->generation < oldest_live) {
            mg_bits_set(eds_shm->block_busy, e->first / EDS_BLOCK,
                        (e->capacity + EDS_BLOCK - 1) / EDS_BLOCK, 0);
            e->key[0] = '\0';
        }
    }
    for (i = 0; i < snap->nclusters; i++) {
        cl = &snap->clusters[i];
        if (cl->eds_name == NULL) {
            continue;
        }
        cl->eds_entry = MG_EDS_NO_ENTRY;
        snprintf(key, sizeof(key), "%s/%s/%u", cl->name, cl->eds_name,
                 cl->max_endpoints);
        free_e = NULL;
        for (j = 0; j < MG_EDS_ENTRIES; j++) {
            e = &eds_shm->entries[j];
            if (e->key[0] == '\0') {
                if (free_e == NULL) {
                    free_e = e;
                }
            } else if (strcmp(e->key, key) == 0) {
                break;
            }
        }
        if (j < MG_EDS_ENTRIES) {
            e->generation = generation;
            cl->eds_entry = j;
            continue;
        }
        n = (cl->max_endpoints + EDS_BLOCK - 1) / EDS_BLOCK;
        b = free_e != NULL ? mg_bits_find_clear(eds_shm->block_busy,
                                                EDS_BLOCKS, n)
                           : EDS_BLOCKS;
        if (b == EDS_BLOCKS) {
            mg_log_error(MG_LOG_ERROR, &mg_log, 0, "discovery table full: "
                         "cluster %s gets no endpoints", cl->name);
            rc = MG_ERROR;
            continue;
        }
        mg_bits_set(eds_shm->block_busy, b, n, 1);
        memset(&eds_shm->slots[b * EDS_BLOCK], 0,
               (size_t)n * EDS_BLOCK * sizeof(mg_eds_slot_t));
        e = free_e;
        memset(&e->status, 0, sizeof(e->status));
        atomic_store(&e->seq, 2);
        atomic_store(&e->writer, 0);
        e->first = b * EDS_BLOCK;
        e->capacity = cl->max_endpoints;
        e->generation = generation;
        memcpy(e->key, key, sizeof(key));
        cl->eds_entry = (unsigned)(e - eds_shm->entries);
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* Writing (control process)                                           */

/*
 * Entries have one writer at a time: during a reload the old control
 * process may still be at work while the new one starts, so they take
 * turns; one that died holding the turn gives it up.
 */
static eds_entry_t *
eds_lock(const mg_cluster_conf_t *cl)
{
    eds_entry_t *e;
    int32_t me = (int32_t)getpid(), owner;

    if (eds_shm == NULL || cl->eds_entry >= MG_EDS_ENTRIES) {
        return NULL;
    }
    e = &eds_shm->entries[cl->eds_entry];
    for (;;) {
        owner = 0;
        if (atomic_compare_exchange_strong(&e->writer, &owner, me)) {
            return e;
        }
        if (kill(owner, 0) == -1 && errno == ESRCH) {
            (void)atomic_compare_exchange_strong(&e->writer, &owner, 0);
            continue;
        }
        sched_yield();
    }
}

static void
eds_unlock(eds_entry_t *e)
{
    atomic_store(&e->writer, 0);
}

/* Between these two the entry is being written: workers keep the view
 * they have. Only copies go in between, so that window is short. */
static void
eds_seq_begin(eds_entry_t *e)
{
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_acq_rel);
    atomic_thread_fence(memory_order_release);
}

static void
eds_seq_end(eds_entry_t *e)
{
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_release);
}

/* An open-addressing table from address to slot, for one publish. */
typedef struct eds_index_s {
    unsigned *cell;               /* slot + 1, 0 = empty */
    unsigned mask;
} eds_index_t;

static unsigned
eds_addr_hash(const struct sockaddr_storage *a, socklen_t len)
{
    const unsigned char *p = (const unsigned char *)a;
    uint32_t h = 2166136261u;
    socklen_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

/* The slot of |ss| in |ix| over |slots|, or -1; with |insert| >= 0, puts
 * that slot there when the address is not found. */
static int
eds_index_find(eds_index_t *ix, const mg_eds_slot_t *slots,
               const struct sockaddr_storage *ss, socklen_t len, int insert)
{
    unsigned h = eds_addr_hash(ss, len) & ix->mask, c;

    for (;;) {
        c = ix->cell[h];
        if (c == 0) {
            if (insert >= 0) {
                ix->cell[h] = (unsigned)insert + 1;
            }
            return -1;
        }
        if (slots[c - 1].addrlen == len
            && memcmp(&slots[c - 1].addr, ss, len) == 0) {
            return (int)(c - 1);
        }
        h = (h + 1) & ix->mask;
    }
}

static const mg_eds_slot_t *eds_sort_slots;

static int
eds_by_freed(const void *a, const void *b)
{
    const mg_eds_slot_t *x = &eds_sort_slots[*(const unsigned *)a];
    const mg_eds_slot_t *y = &eds_sort_slots[*(const unsigned *)b];

    if (x->freed_ms != y->freed_ms) {
        return x->freed_ms < y->freed_ms ? -1 : 1;
    }
    return *(const unsigned *)a < *(const unsigned *)b ? -1 : 1;
}

void
mg_eds_publish(const mg_cluster_conf_t *cl, const mg_eds_endpoint_t *eps,
               unsigned n, const char *version)
{
    eds_entry_t *e = eds_lock(cl);
    mg_eds_slot_t *next = NULL, *s;
    unsigned *owner = NULL, *pending = NULL, *free_slots = NULL;
    unsigned i, k, cap, npending = 0, nfree = 0, j, used = 0;
    uint64_t now = eds_now_ms();
    eds_index_t ix = { NULL, 0 };
    int found;

    if (e == NULL) {
        return;
    }
    cap = e->capacity;
    n = mg_min(n, cap);
    for (ix.mask = 1; ix.mask < 2 * cap; ix.mask <<= 1) {
        /* a power of two past twice the slots */
    }
    next = malloc(cap * sizeof(*next));
    owner = calloc(cap, sizeof(*owner));     /* endpoint + 1 per slot */
    pending = malloc((n + 1) * sizeof(*pending));
    free_slots = malloc(cap * sizeof(*free_slots));
    ix.cell = calloc(ix.mask, sizeof(*ix.cell));
    ix.mask--;
    if (next == NULL || owner == NULL || pending == NULL
        || free_slots == NULL || ix.cell == NULL) {
        goto done;
    }
    /* The new layout is worked out in a copy; only copying it in makes
     * workers wait. */
    memcpy(next, &eds_shm->slots[e->first], cap * sizeof(*next));
    for (k = 0; k < cap; k++) {
        if (next[k].in_use) {
            (void)eds_index_find(&ix, next, &next[k].addr, next[k].addrlen,
                                 (int)k);
        }
    }
    /* Addresses that stay keep their slots; one listed twice counts
     * once. */
    for (i = 0; i < n; i++) {
        found = eds_index_find(&ix, next, &eps[i].addr, eps[i].addrlen, -1);
        if (found < 0) {
            pending[npending++] = i;
        } else if (owner[found] == 0) {
            owner[found] = i + 1;
        }
    }
    for (k = 0; k < cap; k++) {
        if (next[k].in_use && owner[k] == 0) {
            next[k].in_use = 0;
            next[k].freed_ms = now;
        }
        if (!next[k].in_use) {
            free_slots[nfree++] = k;
        }
    }
    /* New ones take the slots freed longest ago (never used first), so
     * requests still on a removed endpoint finish before its slot means
     * another. */
    eds_sort_slots = next;
    qsort(free_slots, nfree, sizeof(*free_slots), eds_by_freed);
    for (i = 0, j = 0; i < npending && j < nfree; i++) {
        s = &next[free_slots[j]];
        if (eds_index_find(&ix, next, &eps[pending[i]].addr,
                           eps[pending[i]].addrlen, -1) >= 0) {
            continue;   /* a new address listed twice */
        }
        k = free_slots[j++];
        s->addr = eps[pending[i]].addr;
        s->addrlen = eps[pending[i]].addrlen;
        memcpy(s->text, eps[pending[i]].text, sizeof(s->text));
        s->in_use = 1;
        owner[k] = pending[i] + 1;
        (void)eds_index_find(&ix, next, &s->addr, s->addrlen, (int)k);
    }
    for (k = 0; k < cap; k++) {
        if (owner[k] == 0) {
            continue;
        }
        i = owner[k] - 1;
        s = &next[k];
        s->in_use = 1;
        s->weight = eps[i].weight ? eps[i].weight : 1;
        s->priority = mg_min(eps[i].priority, MG_EDS_LEVELS - 1u);
        s->health = eps[i].health;
        memcpy(s->zone, eps[i].zone, sizeof(s->zone));
        used++;
    }

    eds_seq_begin(e);
    memcpy(&eds_shm->slots[e->first], next, cap * sizeof(*next));
    snprintf(e->status.version, sizeof(e->status.version), "%s",
             version ? version : "");
    e->status.nack[0] = '\0';
    e->status.last_update_ms = now;
    e->status.updates++;
    e->status.nendpoints = used;
    e->status.got_first = 1;
    eds_seq_end(e);

done:
    free(next);
    free(owner);
    free(pending);
    free(free_slots);
    free(ix.cell);
    eds_unlock(e);
}

void
mg_eds_reject(const mg_cluster_conf_t *cl, const char *why)
{
    eds_entry_t *e = eds_lock(cl);

    if (e == NULL) {
        return;
    }
    eds_seq_begin(e);
    snprintf(e->status.nack, sizeof(e->status.nack), "%s", why);
    e->status.rejections++;
    eds_seq_end(e);
    eds_unlock(e);
}

void
mg_eds_set_connected(int connected)
{
    if (eds_shm != NULL) {
        atomic_store_explicit(&eds_shm->connected, connected ? 1 : 0,
                              memory_order_relaxed);
    }
}

int
mg_eds_connected(void)
{
    return eds_shm != NULL
           && atomic_load_explicit(&eds_shm->connected, memory_order_relaxed);
}

/* ------------------------------------------------------------------ */
/* Reading (workers)                                                   */

/* Copies entry |e| (slots into |copy| when not NULL) as one consistent
 * state, trying |tries| times; MG_AGAIN when the writer stayed at work.
 * Returns its sequence in |*seq|. */
static int
eds_read(const eds_entry_t *e, mg_eds_slot_t *copy, mg_eds_status_t *st,
         uint64_t *seq, int tries)
{
    uint64_t s1, s2;

    while (tries-- > 0) {
        s1 = atomic_load_explicit(&((eds_entry_t *)e)->seq,
                                  memory_order_acquire);
        if (s1 & 1) {
            sched_yield();
            continue;
        }
        if (copy != NULL) {
            memcpy(copy, &eds_shm->slots[e->first],
                   e->capacity * sizeof(mg_eds_slot_t));
        }
        if (st != NULL) {
            *st = e->status;
        }
        atomic_thread_fence(memory_order_acquire);
        s2 = atomic_load_explicit(&((eds_entry_t *)e)->seq,
                                  memory_order_relaxed);
        if (s1 == s2) {
            *seq = s1;
            return MG_OK;
        }
    }
    return MG_AGAIN;
}

int
mg_eds_status(const mg_cluster_conf_t *cl, mg_eds_status_t *st)
{
    uint64_t seq;

    if (eds_shm == NULL || cl->eds_name == NULL
        || cl->eds_entry >= MG_EDS_ENTRIES) {
        return MG_DECLINED;
    }
    return eds_read(&eds_shm->entries[cl->eds_entry], NULL, st, &seq, 100)
           == MG_OK ? MG_OK : MG_DECLINED;
}

int
mg_eds_all_ready(const mg_snapshot_t *snap)
{
    mg_eds_status_t st;
    unsigned i;

    for (i = 0; i < snap->nclusters; i++) {
        if (snap->clusters[i].eds_name != NULL
            && (mg_eds_status(&snap->clusters[i], &st) != MG_OK
                || !st.got_first)) {
            return 0;
        }
    }
    return 1;
}

/* Connections to an endpoint that left or moved go: idle ones now,
 * busy ones when their request ends (mg_upstream_release()). */
static void
eds_retire(mg_ctx_t *ctx, const mg_endpoint_conf_t *ep)
{
    mg_upstream_retire_pool(ctx, ep->pool);
}

void
mg_eds_refresh(mg_ctx_t *ctx, const mg_cluster_conf_t *ccl)
{
    /* The slots and the local levels are the one part of the snapshot a
     * worker writes: its own copy, since the fork. */
    mg_cluster_conf_t *cl = (mg_cluster_conf_t *)ccl;
    const eds_entry_t *e;
    mg_eds_slot_t *copy, *s;
    mg_endpoint_conf_t *ep;
    mg_priority_t *pr;
    uint64_t seq;
    unsigned k, p, pos = 0;

    if (eds_shm == NULL || cl->eds_entry >= MG_EDS_ENTRIES) {
        return;
    }
    e = &eds_shm->entries[cl->eds_entry];
    seq = atomic_load_explicit(&((eds_entry_t *)e)->seq, memory_order_acquire);
    if (seq == ctx->eds_seq[cl->index] || (seq & 1)) {
        return;   /* unchanged, or being written: the view we have serves */
    }
    copy = malloc(e->capacity * sizeof(mg_eds_slot_t));
    if (copy == NULL) {
        return;
    }
    /* One try: a request never waits for the writer. */
    if (eds_read(e, copy, NULL, &seq, 1) != MG_OK) {
        free(copy);
        return;   /* the writer is busy: the next request looks again */
    }
    for (k = 0; k < cl->max_endpoints && k < e->capacity; k++) {
        s = &copy[k];
        ep = &cl->eds_slots[k];
        if (!s->in_use) {
            if (!ep->eds_gone) {
                ep->eds_gone = 1;
                eds_retire(ctx, ep);
            }
            continue;
        }
        if (ep->eds_gone || ep->addrlen != s->addrlen
            || memcmp(&ep->addr, &s->addr, s->addrlen) != 0) {
            if (!ep->eds_gone) {
                eds_retire(ctx, ep);
            }
            ep->addr = s->addr;
            ep->addrlen = s->addrlen;
            ep->eds_gen++;
            memcpy(ep->eds_text, s->text, MG_EDS_TEXT_LEN);
            ep->eds_text[MG_EDS_TEXT_LEN - 1] = '\0';
            ep->eds_gone = 0;
        }
        ep->weight = s->weight ? s->weight : 1;
        ep->priority = s->priority;
        snprintf(ep->eds_zone, MG_EDS_TEXT_LEN, "%s", s->zone);
        ep->eds_health = s->health & 7;
        ep->eds_down = s->health == MG_EDS_HEALTH_UNHEALTHY
                       || s->health == MG_EDS_HEALTH_DRAINING
                       || s->health == MG_EDS_HEALTH_TIMEOUT;
    }
    /* The local levels, rebuilt in slot order. */
    for (p = 0; p < MG_EDS_LEVELS && p < cl->npriorities; p++) {
        pr = &cl->priorities[p];
        pr->nendpoints = 0;
        pr->total_weight = 0;
        for (k = 0; k < cl->max_endpoints && k < e->capacity; k++) {
            ep = &cl->eds_slots[k];
            if (ep->eds_gone || ep->priority != p) {
                continue;
            }
            ep->pos = pos++;
            pr->eps[pr->nendpoints++] = ep;
            pr->total_weight += ep->weight;
        }
    }
    /* The regions' levels come after, at positions past the slots'. */
    for (; p < cl->npriorities; p++) {
        for (k = 0; k < cl->priorities[p].nendpoints; k++) {
            cl->priorities[p].eps[k]->pos = pos++;
        }
    }
    /* Weighted round robin starts over with the new set. */
    if (ctx->lb[cl->index].current != NULL) {
        memset(ctx->lb[cl->index].current, 0, cl->nendpoints * sizeof(int));
    }
    ctx->eds_seq[cl->index] = seq;
    free(copy);
}
