#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "mg_dns.h"
#include "mg_log.h"
#include "mg_pool.h"
#include "mg_snapshot.h"

#define DNS_WORDS      5          /* an address: family, then 16 bytes */
#define DNS_READ_TRIES 8          /* reads lapped by a writer in a row
                                   * before giving up; a list changes at
                                   * most once per lookup */
#define DNS_JITTER     0.1        /* of dns_refresh, at most, added */
#define DNS_POLL_FIRST 0.002      /* a hosts file answers in microseconds */
#define DNS_POLL_MAX   0.1
#define DNS_SLOW       10.0       /* seconds without an answer: a failure */
#define DNS_RETRY      0.1        /* publishing raced another writer */
#define DNS_LIST_TEXT  (MG_DNS_ADDRS * (INET6_ADDRSTRLEN + 2))

/* One copy of a name's list. Words rather than bytes, so that readers
 * copy it with atomic loads while a writer may be storing into it. */
typedef struct dns_list_s {
    _Atomic uint32_t n;
    _Atomic uint32_t w[MG_DNS_ADDRS][DNS_WORDS];
} dns_list_t;

typedef struct dns_slot_s {
    char name[MG_DNS_NAME_MAX];   /* lower case; "" = free (master only) */
    unsigned long generation;     /* last generation using it (master) */
    /* Twice the number of lists published, plus one while the next one is
     * written. The current list is lists[seq / 2 % 2] and a writer fills
     * the other, so a reader never waits: it retries only when a second
     * writer started on the copy it was reading. */
    _Atomic uint32_t seq;
    _Atomic uint32_t writer;      /* pid of the process writing, 0 = none */
    _Atomic uint32_t rr;          /* connections made: the round robin of
                                   * every process at once */
    _Atomic uint32_t failing;     /* the last lookup failed (logged once) */
    dns_list_t lists[2];
} dns_slot_t;

struct mg_dns_table_s {
    dns_slot_t slots[MG_DNS_SLOTS];
};

/* A lookup given to getaddrinfo_a(): an allocation of its own, because a
 * resolver thread may still write into it when the process exits. */
typedef struct dns_lookup_s {
    struct gaicb req;
    struct addrinfo hints;
    char name[MG_DNS_NAME_MAX];
} dns_lookup_t;

typedef struct dns_name_s {
    mg_dns_t *d;
    const char *host;             /* as configured */
    unsigned slot;
    double refresh;               /* the smallest of its endpoints' */
    ev_timer timer;               /* the next lookup */
    dns_lookup_t *lookup;         /* in flight, or NULL */
    ev_tstamp started;
    unsigned slow:1;              /* the lookup in flight was reported */
} dns_name_t;

struct mg_dns_s {
    struct ev_loop *loop;
    mg_pool_t *pool;
    dns_name_t *names;
    unsigned nnames;
    ev_timer poll;                /* runs while lookups are in flight */
    ev_tstamp poll_every;         /* doubles while they stay there */
    uint64_t rand;                /* xorshift state for the jitter */
};

mg_dns_table_t *mg_dns_table;

/* ------------------------------------------------------------------ */
/* The shared table                                                    */

int
mg_dns_table_create(void)
{
    void *p;

    if (mg_dns_table != NULL) {
        return MG_OK;
    }
    p = mmap(NULL, sizeof(mg_dns_table_t), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return MG_ERROR;
    }
    mg_dns_table = p;   /* zero-filled: every entry free, no address */
    return MG_OK;
}

/* The table key of |host|: DNS names ignore case. */
static void
dns_key(const char *host, char *key)
{
    size_t i;

    for (i = 0; host[i] != '\0' && i < MG_DNS_NAME_MAX - 1; i++) {
        key[i] = (host[i] >= 'A' && host[i] <= 'Z') ? host[i] - 'A' + 'a'
                                                     : host[i];
    }
    key[i] = '\0';
}

/* A free entry starts over: no generation of its previous name is left,
 * so nobody reads or writes it. */
static void
dns_slot_reset(dns_slot_t *s, const char *key)
{
    memcpy(s->name, key, sizeof(s->name));
    atomic_store(&s->seq, 0);
    atomic_store(&s->writer, 0);
    atomic_store(&s->rr, 0);
    atomic_store(&s->failing, 0);
    atomic_store(&s->lists[0].n, 0);
    atomic_store(&s->lists[1].n, 0);
}

int
mg_dns_assign(mg_snapshot_t *snap, unsigned long generation,
              unsigned long oldest_live)
{
    mg_endpoint_conf_t *ep;
    mg_priority_t *pr;
    dns_slot_t *s;
    char key[MG_DNS_NAME_MAX];
    unsigned c, p, j, i, free_slot;
    int rc = MG_OK;

    if (mg_dns_table == NULL) {
        return MG_OK;
    }
    for (i = 0; i < MG_DNS_SLOTS; i++) {
        s = &mg_dns_table->slots[i];
        if (s->name[0] != '\0' && s->generation < oldest_live) {
            s->name[0] = '\0';
        }
    }
    for (c = 0; c < snap->nclusters; c++) {
        for (p = 0; p < snap->clusters[c].npriorities; p++) {
            pr = &snap->clusters[c].priorities[p];
            for (j = 0; j < pr->nendpoints; j++) {
                ep = pr->eps[j];
                if (ep->host == NULL) {
                    continue;
                }
                dns_key(ep->host, key);
                free_slot = MG_DNS_SLOTS;
                for (i = 0; i < MG_DNS_SLOTS; i++) {
                    s = &mg_dns_table->slots[i];
                    if (s->name[0] == '\0') {
                        if (free_slot == MG_DNS_SLOTS) {
                            free_slot = i;
                        }
                    } else if (strcmp(s->name, key) == 0) {
                        break;
                    }
                }
                if (i == MG_DNS_SLOTS) {
                    if (free_slot == MG_DNS_SLOTS) {
                        mg_log_error(MG_LOG_ERROR, &mg_log, 0,
                                     "DNS table full (%d names): %s is "
                                     "not resolved", MG_DNS_SLOTS, key);
                        ep->dns_slot = MG_DNS_NO_SLOT;
                        rc = MG_ERROR;
                        continue;
                    }
                    i = free_slot;
                    dns_slot_reset(&mg_dns_table->slots[i], key);
                }
                mg_dns_table->slots[i].generation = generation;
                ep->dns_slot = i;
            }
        }
    }
    return rc;
}

static void
dns_load(_Atomic uint32_t *w, mg_dns_ip_t *ip)
{
    uint32_t x;
    unsigned k;

    ip->family = atomic_load_explicit(&w[0], memory_order_relaxed);
    for (k = 0; k < 4; k++) {
        x = atomic_load_explicit(&w[k + 1], memory_order_relaxed);
        memcpy(ip->addr + 4 * k, &x, 4);
    }
}

static void
dns_store(_Atomic uint32_t *w, const mg_dns_ip_t *ip)
{
    uint32_t x;
    unsigned k;

    atomic_store_explicit(&w[0], ip->family, memory_order_relaxed);
    for (k = 0; k < 4; k++) {
        memcpy(&x, ip->addr + 4 * k, 4);
        atomic_store_explicit(&w[k + 1], x, memory_order_relaxed);
    }
}

/*
 * Copies the current list of |s|: all of it into |ips|, or, with |ips|
 * NULL, only the address at |pick| modulo its length into |one|. Returns
 * its length (0: nothing known, or writers kept lapping us) and its
 * |*version|.
 */
static unsigned
dns_read(dns_slot_t *s, mg_dns_ip_t *ips, uint32_t pick, mg_dns_ip_t *one,
         uint32_t *version)
{
    dns_list_t *l;
    uint32_t s1, s2, n, i;
    unsigned tries;

    for (tries = 0; tries < DNS_READ_TRIES; tries++) {
        s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        l = &s->lists[s1 / 2 % 2];
        n = atomic_load_explicit(&l->n, memory_order_relaxed);
        n = mg_min(n, MG_DNS_ADDRS);
        if (ips != NULL) {
            for (i = 0; i < n; i++) {
                dns_load(l->w[i], &ips[i]);
            }
        } else if (n > 0) {
            dns_load(l->w[pick % n], one);
        }
        atomic_thread_fence(memory_order_acquire);
        s2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
        /* Our copy is rewritten only from seq (s1 & ~1) + 3 on: by the
         * writer after the next one. */
        if (s2 - (s1 & ~1u) < 3) {
            *version = s1 / 2;
            return n;
        }
    }
    return 0;
}

unsigned
mg_dns_read(unsigned slot, mg_dns_ip_t *ips)
{
    uint32_t version;

    if (mg_dns_table == NULL || slot >= MG_DNS_SLOTS) {
        return 0;
    }
    return dns_read(&mg_dns_table->slots[slot], ips, 0, NULL, &version);
}

/* Takes the entry for writing. A control process killed between the
 * stores of a publish would hold it for ever, so a dead owner's hold is
 * taken over. */
static int
dns_lock(dns_slot_t *s)
{
    uint32_t owner = 0, me = (uint32_t)getpid();

    if (atomic_compare_exchange_strong_explicit(&s->writer, &owner, me,
                                                memory_order_acquire,
                                                memory_order_relaxed)) {
        return MG_OK;
    }
    if (owner != me && kill((pid_t)owner, 0) == -1 && errno == ESRCH
        && atomic_compare_exchange_strong_explicit(&s->writer, &owner, me,
                                                   memory_order_acquire,
                                                   memory_order_relaxed)) {
        return MG_OK;
    }
    return MG_AGAIN;
}

int
mg_dns_publish(unsigned slot, const mg_dns_ip_t *ips, unsigned n)
{
    dns_slot_t *s;
    dns_list_t *l;
    uint32_t seq;
    unsigned i;

    if (mg_dns_table == NULL || slot >= MG_DNS_SLOTS) {
        return MG_ERROR;
    }
    s = &mg_dns_table->slots[slot];
    if (dns_lock(s) != MG_OK) {
        return MG_AGAIN;
    }
    n = mg_min(n, MG_DNS_ADDRS);
    seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    /* Odd: a writer died half way, and its list was never published;
     * ours goes into the same copy. */
    if ((seq & 1) == 0) {
        seq++;
        atomic_store_explicit(&s->seq, seq, memory_order_relaxed);
    }
    /* Readers that see any store below also see the odd seq. */
    atomic_thread_fence(memory_order_release);
    l = &s->lists[(seq / 2 + 1) % 2];
    for (i = 0; i < n; i++) {
        dns_store(l->w[i], &ips[i]);
    }
    atomic_store_explicit(&l->n, n, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_release);
    atomic_store_explicit(&s->writer, 0, memory_order_release);
    return MG_OK;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

void
mg_dns_ip_text(const mg_dns_ip_t *ip, uint16_t port, char *buf, size_t len)
{
    char a[INET6_ADDRSTRLEN];

    if (inet_ntop((int)ip->family, ip->addr, a, sizeof(a)) == NULL) {
        snprintf(a, sizeof(a), "?");
    }
    if (port == 0) {
        snprintf(buf, len, "%s", a);
    } else if (ip->family == AF_INET6) {
        snprintf(buf, len, "[%s]:%u", a, (unsigned)port);
    } else {
        snprintf(buf, len, "%s:%u", a, (unsigned)port);
    }
}

int
mg_dns_addr(const mg_endpoint_conf_t *ep, mg_dns_peer_t *peer)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&peer->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&peer->addr;
    dns_slot_t *s;
    mg_dns_ip_t ip;
    uint32_t pick;

    peer->text[0] = '\0';
    peer->version = 0;
    if (ep->host == NULL) {
        memcpy(&peer->addr, &ep->addr, ep->addrlen);
        peer->addrlen = ep->addrlen;
        return MG_OK;
    }
    peer->addrlen = 0;
    if (mg_dns_table == NULL || ep->dns_slot >= MG_DNS_SLOTS) {
        return MG_AGAIN;
    }
    s = &mg_dns_table->slots[ep->dns_slot];
    pick = atomic_fetch_add_explicit(&s->rr, 1, memory_order_relaxed);
    if (dns_read(s, NULL, pick, &ip, &peer->version) == 0) {
        return MG_AGAIN;
    }
    if (ip.family == AF_INET6) {
        memset(sin6, 0, sizeof(*sin6));
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(ep->port);
        memcpy(&sin6->sin6_addr, ip.addr, 16);
        peer->addrlen = sizeof(*sin6);
    } else {
        memset(sin, 0, sizeof(*sin));
        sin->sin_family = AF_INET;
        sin->sin_port = htons(ep->port);
        memcpy(&sin->sin_addr, ip.addr, 4);
        peer->addrlen = sizeof(*sin);
    }
    mg_dns_ip_text(&ip, ep->port, peer->text, sizeof(peer->text));
    return MG_OK;
}

int
mg_dns_peer_valid(const mg_endpoint_conf_t *ep, mg_dns_peer_t *peer)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&peer->addr;
    const struct sockaddr_in6 *sin6 =
        (const struct sockaddr_in6 *)&peer->addr;
    mg_dns_ip_t ips[MG_DNS_ADDRS];
    dns_slot_t *s;
    uint32_t version;
    unsigned n, i;

    if (ep->host == NULL || mg_dns_table == NULL
        || ep->dns_slot >= MG_DNS_SLOTS || peer->addrlen == 0) {
        return 1;
    }
    s = &mg_dns_table->slots[ep->dns_slot];
    if (atomic_load_explicit(&s->seq, memory_order_acquire) / 2
        == peer->version) {
        return 1;
    }
    n = dns_read(s, ips, 0, NULL, &version);
    if (n == 0) {
        return 1;
    }
    for (i = 0; i < n; i++) {
        if (ips[i].family != peer->addr.ss_family) {
            continue;
        }
        if (ips[i].family == AF_INET6
                ? memcmp(ips[i].addr, &sin6->sin6_addr, 16) == 0
                : memcmp(ips[i].addr, &sin->sin_addr, 4) == 0) {
            peer->version = version;
            return 1;
        }
    }
    return 0;
}

int
mg_dns_pending(const mg_endpoint_conf_t *ep)
{
    dns_slot_t *s;

    if (ep->host == NULL || mg_dns_table == NULL
        || ep->dns_slot >= MG_DNS_SLOTS) {
        return 0;
    }
    s = &mg_dns_table->slots[ep->dns_slot];
    /* Nothing ever published (seq 0 since the entry was given out), and no
     * failure either. */
    return atomic_load_explicit(&s->seq, memory_order_acquire) == 0
           && atomic_load_explicit(&s->failing, memory_order_relaxed) == 0;
}

const char *
mg_dns_log_name(const mg_endpoint_conf_t *ep, const mg_dns_peer_t *peer,
                char *buf, size_t len)
{
    if (ep->host == NULL || peer == NULL || peer->text[0] == '\0') {
        return ep->address;
    }
    snprintf(buf, len, "%s (%s)", ep->address, peer->text);
    return buf;
}

/* ------------------------------------------------------------------ */
/* The resolver (control process)                                      */

/* Its entry in the DNS table, or MG_DNS_SLOTS for none. */
static unsigned
dns_slot(const mg_endpoint_conf_t *ep)
{
    return ep->host != NULL ? ep->dns_slot : MG_DNS_SLOTS;
}

unsigned
mg_dns_count(const mg_snapshot_t *snap)
{
    uint64_t seen[MG_DNS_SLOTS / 64];
    mg_endpoint_walk_t w = { 0, 0, 0 };
    unsigned n = 0;

    memset(seen, 0, sizeof(seen));
    while (mg_snapshot_next_slot(snap, &w, seen, MG_DNS_SLOTS,
                                 dns_slot) != NULL) {
        n++;
    }
    return n;
}

static double
dns_rand01(mg_dns_t *d)
{
    uint64_t x = d->rand;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    d->rand = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static int
dns_ip_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(mg_dns_ip_t));
}

/* "127.0.0.2, ::1" */
static void
dns_list_text(const mg_dns_ip_t *ips, unsigned n, char *buf, size_t len)
{
    size_t used = 0;
    unsigned i;

    buf[0] = '\0';
    for (i = 0; i < n && used + INET6_ADDRSTRLEN + 3 < len; i++) {
        if (i > 0) {
            memcpy(buf + used, ", ", 3);
            used += 2;
        }
        mg_dns_ip_text(&ips[i], 0, buf + used, len - used);
        used += strlen(buf + used);
    }
}

static void
dns_schedule(dns_name_t *nm, ev_tstamp after)
{
    ev_timer_stop(nm->d->loop, &nm->timer);
    ev_timer_set(&nm->timer, after, 0.);
    ev_timer_start(nm->d->loop, &nm->timer);
}

/* A lookup failed: the last good list stays. Logged once per outage, by
 * whichever control process sees it first, across reloads. */
static void
dns_failed(dns_name_t *nm, const char *why)
{
    dns_slot_t *s = &mg_dns_table->slots[nm->slot];
    mg_dns_ip_t ips[MG_DNS_ADDRS];
    char text[DNS_LIST_TEXT];
    unsigned n;

    if (atomic_exchange(&s->failing, 1) != 0) {
        mg_log_error(MG_LOG_DEBUG, &mg_log, 0, "dns: cannot resolve %s: %s",
                     nm->host, why);
        return;
    }
    n = mg_dns_read(nm->slot, ips);
    if (n == 0) {
        mg_log_error(MG_LOG_WARN, &mg_log, 0, "dns: cannot resolve %s: %s; "
                     "no address known yet, connections to it fail",
                     nm->host, why);
        return;
    }
    dns_list_text(ips, n, text, sizeof(text));
    mg_log_error(MG_LOG_WARN, &mg_log, 0, "dns: cannot resolve %s: %s; "
                 "keeping its last addresses: %s", nm->host, why, text);
}

/* Publishes a good answer when it differs from the list in the table.
 * MG_OK, or MG_AGAIN when another process held the entry. */
static int
dns_answer(dns_name_t *nm, const struct addrinfo *res)
{
    dns_slot_t *s = &mg_dns_table->slots[nm->slot];
    mg_dns_ip_t ips[MG_DNS_ADDRS], cur[MG_DNS_ADDRS];
    char text[DNS_LIST_TEXT], was[DNS_LIST_TEXT];
    const struct addrinfo *ai;
    mg_dns_ip_t ip;
    unsigned n = 0, ncur, i;

    for (ai = res; ai != NULL && n < MG_DNS_ADDRS; ai = ai->ai_next) {
        memset(&ip, 0, sizeof(ip));
        if (ai->ai_family == AF_INET
            && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
            memcpy(ip.addr, &((struct sockaddr_in *)ai->ai_addr)->sin_addr,
                   4);
        } else if (ai->ai_family == AF_INET6
                   && ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
            memcpy(ip.addr,
                   &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
        } else {
            continue;
        }
        ip.family = (uint32_t)ai->ai_family;
        for (i = 0; i < n && memcmp(&ips[i], &ip, sizeof(ip)) != 0; i++) {
            /* one entry per address, whatever the resolver repeats */
        }
        if (i == n) {
            ips[n++] = ip;
        }
    }
    if (n == 0) {
        dns_failed(nm, "no IPv4 or IPv6 address");
        return MG_OK;
    }
    /* Sorted, so that an answer in another order is not a change. */
    qsort(ips, n, sizeof(ips[0]), dns_ip_cmp);
    ncur = mg_dns_read(nm->slot, cur);
    if (ncur != n || memcmp(cur, ips, n * sizeof(ips[0])) != 0) {
        if (mg_dns_publish(nm->slot, ips, n) != MG_OK) {
            return MG_AGAIN;
        }
        dns_list_text(ips, n, text, sizeof(text));
        if (ncur == 0) {
            mg_log_error(MG_LOG_INFO, &mg_log, 0, "dns: %s resolves to %s",
                         nm->host, text);
        } else {
            dns_list_text(cur, ncur, was, sizeof(was));
            mg_log_error(MG_LOG_INFO, &mg_log, 0, "dns: %s now resolves to "
                         "%s (was %s)", nm->host, text, was);
        }
    }
    if (atomic_exchange(&s->failing, 0) != 0) {
        dns_list_text(ips, n, text, sizeof(text));
        mg_log_error(MG_LOG_NOTICE, &mg_log, 0, "dns: %s resolves again: %s",
                     nm->host, text);
    }
    return MG_OK;
}

/* The lookup in flight is over. */
static void
dns_done(dns_name_t *nm)
{
    dns_lookup_t *lk = nm->lookup;
    int rc = gai_error(&lk->req);

    nm->lookup = NULL;
    if (rc == 0) {
        if (dns_answer(nm, lk->req.ar_result) != MG_OK) {
            /* The previous generation's control process, on its way out,
             * was writing the same entry. */
            dns_schedule(nm, DNS_RETRY);
        }
        freeaddrinfo(lk->req.ar_result);
    } else {
        dns_failed(nm, gai_strerror(rc));
    }
    free(lk);
}

/* getaddrinfo_a() can tell of an answer through a signal or a thread of
 * its own; polling keeps everything of ours on the loop's thread, and a
 * hosts file or a nearby resolver answers before the second poll. */
static void
dns_on_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_dns_t *d = w->data;
    dns_name_t *nm;
    unsigned i, pending = 0;

    for (i = 0; i < d->nnames; i++) {
        nm = &d->names[i];
        if (nm->lookup == NULL) {
            continue;
        }
        if (gai_error(&nm->lookup->req) != EAI_INPROGRESS) {
            dns_done(nm);
            continue;
        }
        pending++;
        if (!nm->slow && ev_now(loop) - nm->started >= DNS_SLOW) {
            /* It cannot be cancelled once a thread runs it: report it, and
             * the next lookup of this name waits for it. */
            nm->slow = 1;
            dns_failed(nm, "no answer within 10 s");
        }
    }
    if (pending > 0) {
        d->poll_every = mg_min(d->poll_every * 2, DNS_POLL_MAX);
        ev_timer_set(w, d->poll_every, 0.);
        ev_timer_start(loop, w);
    }
}

static void
dns_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    dns_name_t *nm = w->data;
    mg_dns_t *d = nm->d;
    struct gaicb *list[1];
    dns_lookup_t *lk;
    int rc;

    dns_schedule(nm, nm->refresh * (1. + DNS_JITTER * dns_rand01(d)));
    if (nm->lookup != NULL) {
        return;   /* one lookup per name at a time */
    }
    lk = calloc(1, sizeof(*lk));
    if (lk == NULL) {
        dns_failed(nm, "out of memory");
        return;
    }
    snprintf(lk->name, sizeof(lk->name), "%s", nm->host);
    /* Every address is used: no AI_ADDRCONFIG, which would also drop ::1
     * on a host whose only IPv6 address is loopback. */
    lk->hints.ai_family = AF_UNSPEC;
    lk->hints.ai_socktype = SOCK_STREAM;
    lk->req.ar_name = lk->name;
    lk->req.ar_request = &lk->hints;
    list[0] = &lk->req;
    rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (rc != 0) {
        free(lk);
        dns_failed(nm, gai_strerror(rc));
        return;
    }
    nm->lookup = lk;
    nm->started = ev_now(loop);
    nm->slow = 0;
    d->poll_every = DNS_POLL_FIRST;
    ev_timer_stop(loop, &d->poll);
    ev_timer_set(&d->poll, DNS_POLL_FIRST, 0.);
    ev_timer_start(loop, &d->poll);
}

mg_dns_t *
mg_dns_start(struct ev_loop *loop, const mg_snapshot_t *snap)
{
    uint64_t seen[MG_DNS_SLOTS / 64];
    const mg_endpoint_conf_t *ep;
    const mg_cluster_conf_t *cl;
    dns_name_t *nm, **byslot;
    mg_dns_t *d;
    mg_pool_t *pool;
    mg_endpoint_walk_t w = { 0, 0, 0 };
    unsigned c, p, j, i, n = mg_dns_count(snap);

    pool = mg_pool_create(4096);
    if (pool == NULL) {
        return NULL;
    }
    d = mg_pcalloc(pool, sizeof(*d));
    if (d == NULL) {
        mg_pool_destroy(pool);
        return NULL;
    }
    d->pool = pool;
    d->loop = loop;
    d->rand = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid()
              ^ 0x9E3779B97F4A7C15ULL;
    ev_init(&d->poll, dns_on_poll);
    d->poll.data = d;
    d->names = mg_pcalloc(pool, (n ? n : 1) * sizeof(*d->names));
    byslot = mg_pcalloc(pool, MG_DNS_SLOTS * sizeof(*byslot));
    if (d->names == NULL || byslot == NULL) {
        mg_pool_destroy(pool);
        return NULL;
    }
    memset(seen, 0, sizeof(seen));
    while (d->nnames < n
           && (ep = mg_snapshot_next_slot(snap, &w, seen, MG_DNS_SLOTS,
                                             dns_slot)) != NULL) {
        nm = &d->names[d->nnames++];
        nm->d = d;
        nm->host = ep->host;
        nm->slot = ep->dns_slot;
        nm->refresh = ep->dns_refresh;
        ev_init(&nm->timer, dns_on_timer);
        nm->timer.data = nm;
    }
    /* A name several endpoints share follows the most eager of them. */
    for (i = 0; i < d->nnames; i++) {
        byslot[d->names[i].slot] = &d->names[i];
    }
    for (c = 0; c < snap->nclusters; c++) {
        cl = &snap->clusters[c];
        for (p = 0; p < cl->npriorities; p++) {
            for (j = 0; j < cl->priorities[p].nendpoints; j++) {
                ep = cl->priorities[p].eps[j];
                if (ep->host != NULL && ep->dns_slot < MG_DNS_SLOTS) {
                    nm = byslot[ep->dns_slot];
                    nm->refresh = mg_min(nm->refresh, ep->dns_refresh);
                }
            }
        }
    }
    /* The first lookups go at once: the table may have nothing yet, and a
     * reload should see a changed answer without waiting. */
    for (i = 0; i < d->nnames; i++) {
        dns_schedule(&d->names[i], 0.);
    }
    return d;
}

void
mg_dns_stop(mg_dns_t *d)
{
    dns_lookup_t *lk;
    unsigned i;
    int rc;

    ev_timer_stop(d->loop, &d->poll);
    for (i = 0; i < d->nnames; i++) {
        ev_timer_stop(d->loop, &d->names[i].timer);
        lk = d->names[i].lookup;
        if (lk == NULL) {
            continue;
        }
        rc = gai_cancel(&lk->req);
        if (rc == EAI_ALLDONE && gai_error(&lk->req) == 0) {
            freeaddrinfo(lk->req.ar_result);
        }
        if (rc == EAI_CANCELED || rc == EAI_ALLDONE) {
            free(lk);
        }
        /* EAI_NOTCANCELED: a resolver thread still writes into it. */
    }
    mg_pool_destroy(d->pool);
}
