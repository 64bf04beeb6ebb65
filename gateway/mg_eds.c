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

static int
eds_blocks_free(unsigned b, unsigned n)
{
    unsigned i;

    for (i = b; i < b + n; i++) {
        if (eds_shm->block_busy[i / 64] & ((uint64_t)1 << (i % 64))) {
            return 0;
        }
    }
    return 1;
}

static void
eds_blocks_mark(unsigned b, unsigned n, int busy)
{
    unsigned i;

    for (i = b; i < b + n; i++) {
        if (busy) {
            eds_shm->block_busy[i / 64] |= (uint64_t)1 << (i % 64);
        } else {
            eds_shm->block_busy[i / 64] &= ~((uint64_t)1 << (i % 64));
        }
    }
}

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
            eds_blocks_mark(e->first / EDS_BLOCK,
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
        for (b = 0; free_e != NULL && b + n <= EDS_BLOCKS; b++) {
            if (eds_blocks_free(b, n)) {
                break;
            }
        }
        if (free_e == NULL || b + n > EDS_BLOCKS) {
            mg_log_error(MG_LOG_ERROR, &mg_log, 0, "discovery table full: "
                         "cluster %s gets no endpoints", cl->name);
            rc = MG_ERROR;
            continue;
        }
        eds_blocks_mark(b, n, 1);
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
eds_write_begin(const mg_cluster_conf_t *cl)
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
            break;
        }
        if (kill(owner, 0) == -1 && errno == ESRCH) {
            (void)atomic_compare_exchange_strong(&e->writer, &owner, 0);
            continue;
        }
        sched_yield();
    }
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_acq_rel);
    atomic_thread_fence(memory_order_release);
    return e;
}

static void
eds_write_end(eds_entry_t *e)
{
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_release);
    atomic_store(&e->writer, 0);
}

static int
eds_addr_eq(const struct sockaddr_storage *a, socklen_t alen,
            const struct sockaddr_storage *b, socklen_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

void
mg_eds_publish(const mg_cluster_conf_t *cl, const mg_eds_endpoint_t *eps,
               unsigned n, const char *version)
{
    eds_entry_t *e = eds_write_begin(cl);
    mg_eds_slot_t *slots, *s;
    unsigned char *taken;
    unsigned i, k, best, used = 0;
    uint64_t now = eds_now_ms();

    if (e == NULL) {
        return;
    }
    slots = &eds_shm->slots[e->first];
    n = mg_min(n, e->capacity);
    taken = calloc(e->capacity, 1);
    if (taken == NULL) {
        eds_write_end(e);
        return;
    }
    /* Addresses that stay keep their slots. */
    for (i = 0; i < n; i++) {
        for (k = 0; k < e->capacity; k++) {
            s = &slots[k];
            if (s->in_use && !taken[k]
                && eds_addr_eq(&s->addr, s->addrlen, &eps[i].addr,
                               eps[i].addrlen)) {
                taken[k] = 2 + (i & 0x3f);   /* matched */
                break;
            }
        }
    }
    for (k = 0; k < e->capacity; k++) {
        if (slots[k].in_use && !taken[k]) {
            slots[k].in_use = 0;
            slots[k].freed_ms = now;
        }
    }
    for (i = 0; i < n; i++) {
        for (k = 0; k < e->capacity; k++) {
            s = &slots[k];
            if (s->in_use && eds_addr_eq(&s->addr, s->addrlen, &eps[i].addr,
                                         eps[i].addrlen)) {
                break;
            }
        }
        if (k < e->capacity && taken[k] == 1) {
            continue;   /* listed twice */
        }
        if (k == e->capacity) {
            /* A new one: the free slot left longest ago (never used
             * first), so requests still on a removed endpoint finish
             * before its slot means another. */
            best = e->capacity;
            for (k = 0; k < e->capacity; k++) {
                if (!slots[k].in_use && !taken[k]
                    && (best == e->capacity
                        || slots[k].freed_ms < slots[best].freed_ms)) {
                    best = k;
                }
            }
            if (best == e->capacity) {
                continue;
            }
            k = best;
            s = &slots[k];
            s->addr = eps[i].addr;
            s->addrlen = eps[i].addrlen;
            memcpy(s->text, eps[i].text, sizeof(s->text));
        }
        taken[k] = 1;
        s->in_use = 1;
        s->weight = eps[i].weight ? eps[i].weight : 1;
        s->priority = mg_min(eps[i].priority, MG_EDS_LEVELS - 1u);
        s->health = eps[i].health;
        memcpy(s->zone, eps[i].zone, sizeof(s->zone));
        used++;
    }
    free(taken);
    snprintf(e->status.version, sizeof(e->status.version), "%s",
             version ? version : "");
    e->status.nack[0] = '\0';
    e->status.last_update_ms = now;
    e->status.updates++;
    e->status.nendpoints = used;
    e->status.got_first = 1;
    eds_write_end(e);
}

void
mg_eds_reject(const mg_cluster_conf_t *cl, const char *why)
{
    eds_entry_t *e = eds_write_begin(cl);

    if (e == NULL) {
        return;
    }
    snprintf(e->status.nack, sizeof(e->status.nack), "%s", why);
    e->status.rejections++;
    eds_write_end(e);
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
