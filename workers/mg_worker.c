#include "config.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "mg_ctx.h"
#include "mg_log.h"
#include "mg_metrics.h"
#include "mg_proxy.h"
#include "mg_shm.h"
#include "mg_snapshot.h"
#include "mg_upstream.h"
#include "mg_worker.h"

#define WORKER_ACCEPT_BATCH 32     /* accepts per wake-up, for fairness */
#define WORKER_PEERING_TICK 0.05   /* seconds between balance checks */
#define WORKER_PEERING_LONELY 4    /* ticks with no worker taking peering
                                    * connections before one takes them
                                    * whatever it holds */
#define WORKER_PEERING_BIT 0x80000000u  /* epoll data: a peering listener */

typedef struct worker_s {
    mg_ctx_t ctx;
    const mg_worker_start_t *ws;
    int epfd;                     /* listening sockets, EPOLLEXCLUSIVE */
    ev_io accept_io;
    ev_timer peering_tick;        /* runs while there are peering listeners */
    int peering_in;               /* they are in epfd */
    unsigned lonely;              /* ticks in a row that saw no worker
                                   * taking peering connections */
    ev_io chan_io;
    ev_timer drain_timer;
    char role[48];
} worker_t;

/* The worker process's one global. */
static worker_t mg_worker;

static char *proc_title_start;
static size_t proc_title_len;

void
mg_proc_title_init(int argc, char **argv)
{
    int i;

    if (argc == 0) {
        return;
    }
    /* argv strings are contiguous: their whole span can hold a title. The
     * environment after them is left alone. */
    proc_title_start = argv[0];
    proc_title_len = strlen(argv[0]);
    for (i = 1; i < argc; i++) {
        if (argv[i] == proc_title_start + proc_title_len + 1) {
            proc_title_len += strlen(argv[i]) + 1;
        }
    }
}

void
mg_proc_title_set(const char *title)
{
    char name[16];

    if (proc_title_start != NULL && proc_title_len > 0) {
        memset(proc_title_start, 0, proc_title_len);
        strncpy(proc_title_start, title, proc_title_len);
    }
    snprintf(name, sizeof(name), "%s", title);
#ifdef HAVE_PRCTL
    prctl(PR_SET_NAME, name, 0, 0, 0);
#endif
}

static void worker_exit(int code) __attribute__((noreturn));

static void
worker_exit(int code)
{
    mg_ctx_t *ctx = &mg_worker.ctx;

    mg_proxy_close_all(ctx);
    mg_ctx_destroy(ctx);
    mg_proxy_free_cache(ctx);
    exit(code);
}

static void
worker_stop_accepting(void)
{
    unsigned i;

    if (mg_worker.epfd == -1) {
        return;
    }
    ev_io_stop(mg_worker.ctx.loop, &mg_worker.accept_io);
    ev_timer_stop(mg_worker.ctx.loop, &mg_worker.peering_tick);
    close(mg_worker.epfd);
    mg_worker.epfd = -1;
    mg_worker.peering_in = 0;
    mg_shm_peering_taking(mg_worker.ws->slot, mg_worker.ws->generation, 0);
    /* Our copies go, so a listener the new config dropped closes once
     * every process let go of it. */
    for (i = 0; i < mg_worker.ws->snap->nlisteners; i++) {
        close(mg_worker.ws->listen_fds[i]);
    }
}

static void
worker_on_empty(mg_ctx_t *ctx)
{
    mg_log_error(MG_LOG_INFO, &mg_log, 0, "drained, exiting");
    worker_exit(0);
}

static void
worker_on_drain_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (mg_worker.ctx.nclients > 0) {
        mg_log_error(MG_LOG_NOTICE, &mg_log, 0,
                     "drain timeout: closing %u connections",
                     mg_worker.ctx.nclients);
    }
    worker_exit(0);
}

static void
worker_drain(void)
{
    mg_ctx_t *ctx = &mg_worker.ctx;

    if (ctx->draining) {
        return;
    }
    worker_stop_accepting();
    mg_proxy_drain(ctx);
    mg_proc_title_set("meshgate: worker (draining)");
    if (ctx->nclients == 0) {
        worker_on_empty(ctx);
    }
    ev_timer_set(&mg_worker.drain_timer, ctx->snap->gateway.drain_timeout, 0.);
    ev_timer_start(ctx->loop, &mg_worker.drain_timer);
}

static void
worker_on_chan(struct ev_loop *loop, ev_io *w, int revents)
{
    char cmds[16];
    ssize_t n, i;

    n = read(w->fd, cmds, sizeof(cmds));
    if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
        /* The master is gone: finish what we have, then go. */
        ev_io_stop(loop, w);
        worker_drain();
        return;
    }
    for (i = 0; i < n; i++) {
        switch (cmds[i]) {
        case MG_WORKER_CMD_DRAIN:
            worker_drain();
            break;
        case MG_WORKER_CMD_QUIT:
            worker_exit(0);
            break;
        case MG_WORKER_CMD_REOPEN:
            mg_ctx_reopen_logs(&mg_worker.ctx);
            if (mg_log.path != NULL) {
                int fd = mg_log_open_file(mg_log.path);

                if (fd != -1) {
                    mg_log_set_fd(&mg_log, fd, mg_log.path);
                }
            }
            break;
        }
    }
}

/* Accepts one connection from listener |idx| and hands it over. MG_OK, or
 * MG_AGAIN when there was none (or accept4() failed). Inline: the accept
 * loop of ordinary listeners stays as it was. */
static inline int
worker_accept_one(unsigned idx)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int fd;

    fd = accept4(mg_worker.ws->listen_fds[idx], (struct sockaddr *)&ss,
                 &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd == -1) {
        if (errno == EMFILE || errno == ENFILE) {
            mg_log_error(MG_LOG_CRIT, &mg_log, errno, "accept4()");
        }
        return MG_AGAIN;
    }
    mg_proxy_accept(&mg_worker.ctx, fd, &mg_worker.ctx.snap->listeners[idx],
                    (struct sockaddr *)&ss, sslen);
    return MG_OK;
}

/*
 * Peering connections come from other regions' workers, few and for
 * hours: whichever worker happens to wake first for each would end up
 * with most of them. So a worker takes them only while it holds no more
 * of them than the least loaded worker of its generation (the counts are
 * in shared memory). Above that, it takes the peering listeners out of
 * its epoll set, so their wake-ups go to the others, and a tick brings
 * them back once the others caught up. Nobody stays in the set without
 * accepting, which would spin on a level-triggered listener.
 */

/* Whether this worker should take peering connections now; |*taking|
 * (when not NULL): how many workers take them. */
static int
worker_peering_wanted(unsigned *taking)
{
    mg_shm_peering_view_t v;

    if (mg_shm_peering_scan(mg_worker.ws->slot, mg_worker.ws->generation,
                            mg_worker.ws->snap->gateway.workers, &v)
        != MG_OK) {
        return 1;   /* no shared counts: no balancing */
    }
    if (taking != NULL) {
        *taking = v.taking;
    }
    return v.mine <= v.min;
}

/* Adds peering listener |idx| to the epoll set or deletes it (|op|); both
 * are idempotent. MG_OK or MG_ERROR. */
static int
worker_peering_ctl(unsigned idx, int op)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.u32 = idx | WORKER_PEERING_BIT;
    if (epoll_ctl(mg_worker.epfd, op, mg_worker.ws->listen_fds[idx], &ev)
        == -1 && errno != (op == EPOLL_CTL_ADD ? EEXIST : ENOENT)) {
        mg_log_error(MG_LOG_CRIT, &mg_log, errno,
                     "epoll_ctl() for peering listener %s",
                     mg_worker.ws->snap->listeners[idx].name);
        return MG_ERROR;
    }
    return MG_OK;
}

/* Puts the peering listeners in the epoll set (|in|) or takes them out. */
static void
worker_peering_set(int in)
{
    const mg_snapshot_t *snap = mg_worker.ws->snap;
    unsigned i;
    int rc = MG_OK;

    if (in == mg_worker.peering_in) {
        return;
    }
    for (i = 0; i < snap->nlisteners; i++) {
        if (snap->listeners[i].peering
            && worker_peering_ctl(i, in ? EPOLL_CTL_ADD : EPOLL_CTL_DEL)
               != MG_OK) {
            rc = MG_ERROR;
        }
    }
    if (in && rc != MG_OK) {
        /* Half in would leave listeners nobody accepts from: all out, and
         * the next tick tries again. */
        for (i = 0; i < snap->nlisteners; i++) {
            if (snap->listeners[i].peering) {
                (void)worker_peering_ctl(i, EPOLL_CTL_DEL);
            }
        }
        in = 0;
    }
    mg_worker.peering_in = in;
    mg_shm_peering_taking(mg_worker.ws->slot, mg_worker.ws->generation, in);
}

/* Takes connections from peering listener |idx| while this worker may (the
 * first one in any case when |force|); leaves the set when it may not. */
static void
worker_peering_accept(unsigned idx, int force)
{
    unsigned k;

    for (k = 0; k < WORKER_ACCEPT_BATCH; k++) {
        if (!force && !worker_peering_wanted(NULL)) {
            worker_peering_set(0);
            return;
        }
        force = 0;
        if (worker_accept_one(idx) != MG_OK || mg_worker.epfd == -1) {
            return;
        }
    }
}

static void
worker_on_peering_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    const mg_snapshot_t *snap = mg_worker.ws->snap;
    unsigned taking = 0, i;
    int want = worker_peering_wanted(&taking), force = 0;

    /* The least loaded workers come back on their own ticks; this is for
     * one that cannot (its epoll_ctl() failing): never starve. */
    if (want || taking > 0) {
        mg_worker.lonely = 0;
    } else if (++mg_worker.lonely >= WORKER_PEERING_LONELY) {
        mg_worker.lonely = 0;
        force = 1;
    }
    worker_peering_set(want || force);
    if (!mg_worker.peering_in) {
        return;
    }
    /* With strict EPOLLEXCLUSIVE, the wake-up for a connection may have
     * gone to a worker that then left the set: look ourselves, at the
     * cost of one accept4() per tick. */
    for (i = 0; i < snap->nlisteners && mg_worker.epfd != -1; i++) {
        if (snap->listeners[i].peering) {
            worker_peering_accept(i, force);
            force = 0;
        }
    }
}

static void
worker_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct epoll_event evs[64];
    int n, i, k;
    unsigned idx;

    n = epoll_wait(mg_worker.epfd, evs, 64, 0);
    for (i = 0; i < n; i++) {
        idx = evs[i].data.u32;
        if (idx & WORKER_PEERING_BIT) {
            idx &= ~WORKER_PEERING_BIT;
            if (mg_worker.peering_in) {
                worker_peering_accept(idx, 0);
            } else {
                /* Reported before we left (or a delete failed): make sure
                 * it is out, or it would wake us for ever. */
                (void)worker_peering_ctl(idx, EPOLL_CTL_DEL);
            }
            if (mg_worker.epfd == -1) {
                return;
            }
            continue;
        }
        for (k = 0; k < WORKER_ACCEPT_BATCH; k++) {
            if (worker_accept_one(idx) != MG_OK) {
                break;
            }
            if (mg_worker.epfd == -1) {
                return;   /* drained from inside a callback */
            }
        }
    }
}

void
mg_worker_drop_privileges(const mg_worker_start_t *ws)
{
    if (!ws->drop_privileges) {
        return;
    }
    if (setgid(ws->gid) == -1 || initgroups(ws->user, ws->gid) == -1
        || setuid(ws->uid) == -1) {
        mg_log_error(MG_LOG_EMERG, &mg_log, errno,
                     "cannot drop privileges to \"%s\"", ws->user);
        exit(2);
    }
}

void
mg_worker_run(const mg_worker_start_t *ws)
{
    struct ev_loop *loop;
    struct epoll_event ev;
    sigset_t set;
    char title[64];
    unsigned i;

    memset(&mg_worker, 0, sizeof(mg_worker));
    mg_worker.ws = ws;
    mg_worker.epfd = -1;
    snprintf(mg_worker.role, sizeof(mg_worker.role), "worker %u", ws->slot);
    mg_log.role = mg_worker.role;
    mg_metrics_use(ws->met_slot, ws->snap->gateway.metrics);

    /* The master's loop blocked signals for its own use; a worker gets the
     * defaults back and takes commands over its channel only. */
    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, NULL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_DFL);
    signal(SIGQUIT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);

    for (i = 0; i < ws->nclose_fds; i++) {
        close(ws->close_fds[i]);
    }
    snprintf(title, sizeof(title), "meshgate: worker %u (gen %lu)", ws->slot,
             ws->generation);
    mg_proc_title_set(title);

    loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (loop == NULL) {
        mg_log_error(MG_LOG_EMERG, &mg_log, 0, "cannot create the event loop");
        exit(2);
    }
    /* Access logs open before privileges go, like the master's files. */
    if (mg_ctx_init(&mg_worker.ctx, loop, ws->snap) != MG_OK) {
        mg_log_error(MG_LOG_EMERG, &mg_log, ENOMEM, "worker init");
        exit(2);
    }
    mg_worker_drop_privileges(ws);
    mg_worker.ctx.slot = ws->slot;
    mg_worker.ctx.generation = ws->generation;
    mg_worker.ctx.master_start = ws->master_start;
    mg_worker.ctx.workers = ws->snap->gateway.workers;
    mg_worker.ctx.on_empty = worker_on_empty;

    /* One epoll set of our own with EPOLLEXCLUSIVE on every listening
     * socket: a new connection wakes one idle worker, not all of them. */
    mg_worker.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (mg_worker.epfd == -1) {
        mg_log_error(MG_LOG_EMERG, &mg_log, errno, "epoll_create1()");
        exit(2);
    }
    for (i = 0; i < ws->snap->nlisteners; i++) {
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.u32 = i;
        if (ws->snap->listeners[i].peering) {
            ev.data.u32 |= WORKER_PEERING_BIT;
            mg_worker.peering_in = 1;
        }
        if (epoll_ctl(mg_worker.epfd, EPOLL_CTL_ADD, ws->listen_fds[i], &ev)
            == -1) {
            mg_log_error(MG_LOG_EMERG, &mg_log, errno,
                         "epoll_ctl() for listener %s",
                         ws->snap->listeners[i].name);
            exit(2);
        }
    }
    ev_io_init(&mg_worker.accept_io, worker_on_accept, mg_worker.epfd,
               EV_READ);
    ev_io_start(loop, &mg_worker.accept_io);
    /* A fresh worker holds nothing, so it takes the next connection. */
    mg_shm_peering_start(ws->slot, ws->generation, mg_worker.peering_in);
    ev_timer_init(&mg_worker.peering_tick, worker_on_peering_tick,
                  WORKER_PEERING_TICK, WORKER_PEERING_TICK);
    if (mg_worker.peering_in) {
        ev_timer_start(loop, &mg_worker.peering_tick);
    }
    ev_io_init(&mg_worker.chan_io, worker_on_chan, ws->chan, EV_READ);
    ev_io_start(loop, &mg_worker.chan_io);
    ev_timer_init(&mg_worker.drain_timer, worker_on_drain_timer, 0., 0.);

    ev_run(loop, 0);
    worker_exit(0);
    abort();   /* not reached: worker_exit() exits */
}
