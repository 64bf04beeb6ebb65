#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "mg_conf.h"
#include "mg_control.h"
#include "mg_eds.h"
#include "mg_metrics.h"
#include "mg_notify.h"
#include "mg_dns.h"
#include "mg_health.h"
#include "mg_listen.h"
#include "mg_log.h"
#include "mg_master.h"
#include "mg_pool.h"
#include "mg_shm.h"
#include "mg_snapshot.h"
#include "mg_tls.h"
#include "mg_trace.h"
#include "mg_worker.h"

#define MASTER_CRASH_WINDOW 60.0  /* seconds a crash is remembered */
#define MASTER_CRASH_LIMIT  5     /* crashes in the window: give up */
#define MASTER_MAX_PROCS    4096

typedef struct master_gen_s master_gen_t;
struct master_gen_s {
    unsigned long id;
    mg_snapshot_t *snap;
    int *fds;                     /* listening fd per snap->listeners[] */
    unsigned live;                /* workers of this generation running */
    int draining;
    uid_t uid;
    gid_t gid;
    int drop_privileges;
    master_gen_t *next;
};

typedef struct master_proc_s {
    pid_t pid;
    unsigned slot;
    unsigned met_slot;            /* its metrics slot (mg_metrics) */
    master_gen_t *gen;
    int chan;                     /* master's end of the socketpair */
} master_proc_t;

/* Crash accounting for each worker slot of the current generation, and
 * one more, after the workers', for its control process. */
typedef struct master_slot_s {
    ev_tstamp crashes[MASTER_CRASH_LIMIT];
    unsigned ncrashes;
    int gave_up;
    ev_timer respawn;
} master_slot_t;

typedef struct master_s {
    struct ev_loop *loop;
    const mg_master_opts_t *opts;
    master_gen_t *gens;           /* newest first; gens == current */
    unsigned long next_gen;
    master_proc_t procs[MASTER_MAX_PROCS];
    unsigned nprocs;
    master_slot_t *slots;
    unsigned nslots;
    int stopping;                 /* 1 graceful, 2 fast */
    const char *pid_file;
    double start_time;
    ev_signal sig_hup, sig_term, sig_int, sig_quit, sig_usr1;
    ev_child child;
    ev_timer stop_timer;
    ev_timer ticket_timer;        /* TLS session ticket key rotation */
    ev_timer ready_timer;         /* polls until a generation runs */
    ev_tstamp ready_since;        /* when the poll started */
    int reloading;                /* the manager was told RELOADING=1 */
} master_t;

static master_t mg_master;

static void master_spawn(master_gen_t *g, unsigned slot);
static void master_wait_ready(void);

/* The control process takes the slot after the last worker's, so that it
 * shares the workers' crash accounting and respawn timer. */
static int
master_is_control(const master_gen_t *g, unsigned slot)
{
    return slot == g->snap->gateway.workers;
}

/* "worker 3" or "control process", for log lines. */
static const char *
master_proc_name(const master_gen_t *g, unsigned slot, char *buf, size_t len)
{
    if (master_is_control(g, slot)) {
        return "control process";
    }
    snprintf(buf, len, "worker %u", slot);
    return buf;
}

static master_gen_t *
master_current(void)
{
    return mg_master.gens;
}

static int
master_resolve_user(master_gen_t *g)
{
    struct passwd *pw;

    g->drop_privileges = 0;
    if (geteuid() != 0 || g->snap->gateway.user == NULL
        || g->snap->gateway.user[0] == '\0') {
        return MG_OK;
    }
    pw = getpwnam(g->snap->gateway.user);
    if (pw == NULL) {
        mg_log_error(MG_LOG_EMERG, &mg_log, 0, "unknown user \"%s\"",
                     g->snap->gateway.user);
        return MG_ERROR;
    }
    g->uid = pw->pw_uid;
    g->gid = pw->pw_gid;
    g->drop_privileges = 1;
    return MG_OK;
}

/* Creates each access log as root and hands it to the worker user, so
 * that workers, which run unprivileged, can reopen it after a rotation. */
static void
master_prepare_access_logs(const master_gen_t *g)
{
    unsigned i;
    int fd;
    const char *path;

    for (i = 0; i < g->snap->nlisteners; i++) {
        path = g->snap->listeners[i].access_log;
        if (path == NULL) {
            continue;
        }
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd == -1) {
            mg_log_error(MG_LOG_ERROR, &mg_log, errno,
                         "cannot open access log \"%s\"", path);
            continue;
        }
        if (g->drop_privileges && fchown(fd, g->uid, g->gid) == -1) {
            mg_log_error(MG_LOG_WARN, &mg_log, errno, "fchown(\"%s\")", path);
        }
        close(fd);
    }
}

static int
master_apply_error_log(const mg_snapshot_t *snap)
{
    struct passwd *pw;
    int fd;
    const char *path = snap->gateway.error_log;

    mg_log.level = snap->gateway.log_level;
    if (path == NULL || strcmp(path, "stderr") == 0) {
        mg_log_set_fd(&mg_log, 2, NULL);
        return MG_OK;
    }
    fd = mg_log_open_file(path);
    if (fd == -1) {
        mg_log_error(MG_LOG_EMERG, &mg_log, errno,
                     "cannot open error log \"%s\"", path);
        return MG_ERROR;
    }
    /* Workers reopen it on USR1 after dropping privileges. */
    if (geteuid() == 0 && snap->gateway.user != NULL
        && (pw = getpwnam(snap->gateway.user)) != NULL
        && fchown(fd, pw->pw_uid, pw->pw_gid) == -1) {
        mg_log_error(MG_LOG_WARN, &mg_log, errno, "fchown(\"%s\")", path);
    }
    mg_log_set_fd(&mg_log, fd, path);
    return MG_OK;
}

static void
master_write_pid_file(void)
{
    char buf[32];
    int fd, n;

    if (mg_master.pid_file == NULL) {
        return;
    }
    fd = open(mg_master.pid_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
              0644);
    if (fd == -1) {
        mg_log_error(MG_LOG_ERROR, &mg_log, errno,
                     "cannot write pid file \"%s\"", mg_master.pid_file);
        return;
    }
    n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (write(fd, buf, (size_t)n) != n) {
        mg_log_error(MG_LOG_ERROR, &mg_log, errno, "write(\"%s\")",
                     mg_master.pid_file);
    }
    close(fd);
}

static void
master_send(master_proc_t *p, char cmd)
{
    if (p->chan == -1) {
        return;
    }
    while (send(p->chan, &cmd, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
        if (errno != EINTR) {
            mg_log_error(MG_LOG_WARN, &mg_log, errno,
                         "cannot send a command to worker pid %d",
                         (int)p->pid);
            return;
        }
    }
}

static void
master_send_gen(master_gen_t *g, char cmd)
{
    unsigned i;

    for (i = 0; i < mg_master.nprocs; i++) {
        if (g == NULL || mg_master.procs[i].gen == g) {
            master_send(&mg_master.procs[i], cmd);
        }
    }
}

static void
master_spawn(master_gen_t *g, unsigned slot)
{
    mg_worker_start_t ws;
    master_proc_t *p;
    const int *all;
    int sv[2], *close_fds, control = master_is_control(g, slot);
    unsigned i, n, nall, met_slot;
    char name[32];
    pid_t pid;

    if (mg_master.nprocs == MASTER_MAX_PROCS) {
        mg_log_error(MG_LOG_CRIT, &mg_log, 0, "too many worker processes");
        return;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
        mg_log_error(MG_LOG_CRIT, &mg_log, errno, "socketpair()");
        return;
    }
    met_slot = mg_metrics_slot_take();
    pid = fork();
    if (pid == -1) {
        mg_log_error(MG_LOG_CRIT, &mg_log, errno, "fork()");
        close(sv[0]);
        close(sv[1]);
        if (met_slot != MG_MET_NO_SLOT) {
            mg_metrics_slot_release(met_slot, g->snap);
        }
        return;
    }
    if (pid == 0) {
        close(sv[0]);
        /* The child must not keep other workers' channels open, or their
         * end-of-file on master exit would never come. */
        nall = mg_listen_all_fds(&all);
        close_fds = mg_xalloc((mg_master.nprocs + nall + 1) * sizeof(int));
        n = 0;
        for (i = 0; i < mg_master.nprocs; i++) {
            close_fds[n++] = mg_master.procs[i].chan;
        }
        /* Listening sockets this generation does not serve; the control
         * process serves none, so a removed listener never lingers in it. */
        for (i = 0; i < nall; i++) {
            unsigned k, mine = 0;

            for (k = 0; k < g->snap->nlisteners && !control; k++) {
                if (g->fds[k] == all[i]) {
                    mine = 1;
                }
            }
            if (!mine) {
                close_fds[n++] = all[i];
            }
        }
        memset(&ws, 0, sizeof(ws));
        ws.snap = g->snap;
        ws.listen_fds = control ? NULL : g->fds;
        ws.close_fds = close_fds;
        ws.nclose_fds = n;
        ws.slot = slot;
        ws.met_slot = met_slot;
        ws.generation = g->id;
        ws.chan = sv[1];
        ws.uid = g->uid;
        ws.gid = g->gid;
        ws.drop_privileges = g->drop_privileges;
        ws.user = g->snap->gateway.user;
        ws.master_start = mg_master.start_time;
        if (control) {
            mg_control_run(&ws);
        }
        mg_worker_run(&ws);
    }
    close(sv[1]);
    p = &mg_master.procs[mg_master.nprocs++];
    p->pid = pid;
    p->slot = slot;
    p->met_slot = met_slot;
    p->gen = g;
    p->chan = sv[0];
    g->live++;
    mg_log_error(MG_LOG_INFO, &mg_log, 0, "%s (pid %d, generation %lu) "
                 "started", master_proc_name(g, slot, name, sizeof(name)),
                 (int)pid, g->id);
}

static void
master_free_gen(master_gen_t *dead)
{
    master_gen_t **pp;
    const mg_snapshot_t *snaps[64];
    int *fds[64];
    unsigned n = 0;
    master_gen_t *g;

    for (pp = &mg_master.gens; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == dead) {
            *pp = dead->next;
            break;
        }
    }
    mg_snapshot_free(dead->snap);
    free(dead->fds);
    free(dead);
    for (g = mg_master.gens; g != NULL && n < 64; g = g->next) {
        snaps[n] = g->snap;
        fds[n] = g->fds;
        n++;
    }
    mg_listen_close_unused(snaps, fds, n);
}

static void
master_maybe_exit(void)
{
    if (mg_master.stopping && mg_master.nprocs == 0) {
        ev_break(mg_master.loop, EVBREAK_ALL);
    }
}

static void
master_on_respawn(struct ev_loop *loop, ev_timer *w, int revents)
{
    /* The timer sits inside slots[]: recover the slot by address. */
    unsigned slot = (unsigned)(((char *)w - (char *)mg_master.slots)
                               / sizeof(master_slot_t));
    master_gen_t *g = master_current();

    if (mg_master.stopping || g == NULL || slot >= mg_master.nslots) {
        return;
    }
    mg_met_inc(g->snap->met + MG_MET_G_RESTARTS);
    master_spawn(g, slot);
}

static void
master_note_crash(unsigned slot)
{
    master_slot_t *s = &mg_master.slots[slot];
    ev_tstamp now = ev_now(mg_master.loop), delay;
    unsigned i, recent = 0;
    char name[32];

    if (s->gave_up) {
        return;
    }
    if (s->ncrashes == MASTER_CRASH_LIMIT) {
        memmove(&s->crashes[0], &s->crashes[1],
                (MASTER_CRASH_LIMIT - 1) * sizeof(ev_tstamp));
        s->ncrashes--;
    }
    s->crashes[s->ncrashes++] = now;
    for (i = 0; i < s->ncrashes; i++) {
        if (now - s->crashes[i] <= MASTER_CRASH_WINDOW) {
            recent++;
        }
    }
    if (recent >= MASTER_CRASH_LIMIT) {
        s->gave_up = 1;
        mg_log_error(MG_LOG_CRIT, &mg_log, 0,
                     "%s crashed %u times in %.0f s: not respawning "
                     "it until the next reload",
                     master_proc_name(master_current(), slot, name,
                                      sizeof(name)),
                     recent, MASTER_CRASH_WINDOW);
        return;
    }
    /* 0.1 s, 0.2 s, 0.4 s, ... so a crash loop cannot spin the master. */
    delay = 0.1 * (double)(1u << (recent - 1));
    ev_timer_set(&s->respawn, delay, 0.);
    ev_timer_start(mg_master.loop, &s->respawn);
}

static void
master_on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    pid_t pid;
    int status;
    unsigned i;
    master_proc_t p;
    char name[32];

    /* libev reaps one child per callback; collect any others too. */
    (void)w;
    for (;;) {
        if (w != NULL) {
            pid = w->rpid;
            status = w->rstatus;
            w = NULL;
        } else {
            pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0) {
                break;
            }
        }
        for (i = 0; i < mg_master.nprocs; i++) {
            if (mg_master.procs[i].pid == pid) {
                break;
            }
        }
        if (i == mg_master.nprocs) {
            continue;
        }
        p = mg_master.procs[i];
        mg_master.procs[i] = mg_master.procs[--mg_master.nprocs];
        if (p.chan != -1) {
            close(p.chan);
        }
        p.gen->live--;
        if (p.met_slot != MG_MET_NO_SLOT) {
            mg_metrics_slot_release(p.met_slot, p.gen->snap);
        }
        if (!master_is_control(p.gen, p.slot)) {
            /* Its connections died with it: its peering count must not
             * hold the other workers back until a respawn. */
            mg_shm_peering_gone(p.slot, p.gen->id);
        }
        if (WIFSIGNALED(status)) {
            mg_log_error(p.gen->draining || mg_master.stopping
                             ? MG_LOG_NOTICE : MG_LOG_CRIT,
                         &mg_log, 0,
                         "%s (pid %d, generation %lu) exited on "
                         "signal %d%s",
                         master_proc_name(p.gen, p.slot, name, sizeof(name)),
                         (int)pid, p.gen->id,
                         WTERMSIG(status),
                         WCOREDUMP(status) ? " (core dumped)" : "");
        } else {
            mg_log_error(WEXITSTATUS(status) == 0 ? MG_LOG_NOTICE
                                                  : MG_LOG_CRIT,
                         &mg_log, 0,
                         "%s (pid %d, generation %lu) exited with "
                         "code %d",
                         master_proc_name(p.gen, p.slot, name, sizeof(name)),
                         (int)pid, p.gen->id,
                         WEXITSTATUS(status));
        }
        if (p.gen == master_current() && !p.gen->draining
            && !mg_master.stopping && p.slot < mg_master.nslots) {
            master_note_crash(p.slot);
        }
        if (p.gen->live == 0 && p.gen != master_current()) {
            master_free_gen(p.gen);
        }
    }
    master_maybe_exit();
}

static void
master_reset_slots(unsigned n)
{
    unsigned i;

    for (i = 0; i < mg_master.nslots; i++) {
        ev_timer_stop(mg_master.loop, &mg_master.slots[i].respawn);
    }
    free(mg_master.slots);
    mg_master.slots = mg_xcalloc(n, sizeof(master_slot_t));
    mg_master.nslots = n;
    for (i = 0; i < n; i++) {
        ev_timer_init(&mg_master.slots[i].respawn, master_on_respawn, 0., 0.);
    }
}

/* Makes |snap| the running generation. Returns MG_OK, or MG_ERROR with the
 * old generation untouched. */
static int
master_start_gen(mg_snapshot_t *snap)
{
    master_gen_t *g = mg_xcalloc(1, sizeof(*g)), *old = master_current();
    unsigned i;

    g->snap = snap;
    if (master_resolve_user(g) != MG_OK) {
        free(g);
        return MG_ERROR;
    }
    g->fds = mg_listen_open(snap);
    if (g->fds == NULL) {
        free(g);
        return MG_ERROR;
    }
    g->id = ++mg_master.next_gen;
    g->next = mg_master.gens;
    mg_master.gens = g;
    {
        /* Endpoints the draining generations still use keep their slots. */
        unsigned long oldest = g->id;
        master_gen_t *o;

        for (o = mg_master.gens; o != NULL; o = o->next) {
            oldest = mg_min(oldest, o->id);
        }
        (void)mg_shm_assign(snap, g->id, oldest);
        (void)mg_dns_assign(snap, g->id, oldest);
        (void)mg_eds_assign(snap, g->id, oldest);
        (void)mg_metrics_assign(snap, g->id, oldest);
    }
    master_prepare_access_logs(g);
    master_reset_slots(snap->gateway.workers + 1);
    for (i = 0; i < snap->gateway.workers; i++) {
        master_spawn(g, i);
    }
    /* The old generation's control process goes with the drain below;
     * this one starts checking and resolving at once, so no interval is
     * missed. */
    if (mg_health_count(snap) > 0 || mg_dns_count(snap) > 0
        || snap->tracing != NULL || snap->xds != NULL) {
        master_spawn(g, snap->gateway.workers);
    }
    if (old != NULL) {
        old->draining = 1;
        master_send_gen(old, MG_WORKER_CMD_DRAIN);
        if (old->live == 0) {
            master_free_gen(old);
        }
    }
    return MG_OK;
}

static void
master_reload(void)
{
    mg_conf_errors_t errs = { NULL, 0 };
    mg_snapshot_t *snap;
    master_gen_t *cur = master_current();
    unsigned i;

    mg_log_error(MG_LOG_NOTICE, &mg_log, 0, "reloading %s",
                 mg_master.opts->conf_file);
    mg_notify("RELOADING=1");
    mg_master.reloading = 1;
    snap = mg_conf_load(mg_master.opts->conf_file, &errs);
    if (snap == NULL) {
        for (i = 0; i < errs.n; i++) {
            mg_log_error(MG_LOG_ERROR, &mg_log, 0, "%s", errs.msgs[i]);
        }
        mg_conf_errors_free(&errs);
        goto failed;
    }
    /* The new workers inherit the log: switch it before they fork. */
    if (master_apply_error_log(snap) != MG_OK) {
        mg_snapshot_free(snap);
        goto failed;
    }
    if (master_start_gen(snap) != MG_OK) {
        mg_snapshot_free(snap);
        if (cur != NULL) {
            (void)master_apply_error_log(cur->snap);
        }
        goto failed;
    }
    mg_log_error(MG_LOG_NOTICE, &mg_log, 0,
                 "reload: generation %lu started (%u workers)",
                 master_current()->id, snap->gateway.workers);
    mg_met_inc(snap->met + MG_MET_G_RELOADS);
    master_wait_ready();
    return;

failed:
    if (cur != NULL) {
        mg_met_inc(cur->snap->met + MG_MET_G_RELOAD_FAILURES);
    }
    {
        char state[160];

        snprintf(state, sizeof(state), "READY=1\nSTATUS=reload failed, "
                 "generation %lu still serving", cur ? cur->id : 0);
        mg_notify(state);
        mg_master.reloading = 0;
    }
    mg_log_error(MG_LOG_NOTICE, &mg_log, 0,
                 "reload failed, keeping generation %lu", cur ? cur->id : 0);
}

static void
master_on_stop_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    unsigned i;

    mg_log_error(MG_LOG_WARN, &mg_log, 0,
                 "workers still running after the drain timeout: killing");
    for (i = 0; i < mg_master.nprocs; i++) {
        kill(mg_master.procs[i].pid, SIGKILL);
    }
}

/* Tells the service manager (Type=notify) once every worker of the
 * current generation runs: each marks its slot in shared memory just
 * before it enters its loop. A reload that cannot get there in 10 s is
 * reported done all the same, with the count, so it does not hang. */
static void
master_on_ready_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    master_gen_t *g = master_current();
    mg_shm_peering_view_t v;
    char state[160];
    unsigned want;

    if (g == NULL || mg_master.stopping) {
        ev_timer_stop(loop, w);
        return;
    }
    want = g->snap->gateway.workers;
    if (mg_shm_peering_scan(MG_SHM_WORKERS, g->id, want, &v) != MG_OK) {
        v.live = want;
    }
    if (v.live < want && !(mg_master.reloading
                           && ev_now(loop) - mg_master.ready_since > 10.0)) {
        return;
    }
    ev_timer_stop(loop, w);
    snprintf(state, sizeof(state), "READY=1\nSTATUS=generation %lu: %u of "
             "%u workers running", g->id, v.live, want);
    mg_notify(state);
    mg_master.reloading = 0;
}

static void
master_wait_ready(void)
{
    mg_master.ready_since = ev_now(mg_master.loop);
    ev_timer_stop(mg_master.loop, &mg_master.ready_timer);
    ev_timer_set(&mg_master.ready_timer, 0.01, 0.02);
    ev_timer_start(mg_master.loop, &mg_master.ready_timer);
}

static void
master_stop(int how)
{
    master_gen_t *g = master_current();
    double grace = g ? g->snap->gateway.drain_timeout : 1.0;

    if (mg_master.stopping >= how) {
        return;
    }
    mg_master.stopping = how;
    mg_log_error(MG_LOG_NOTICE, &mg_log, 0, "%s stop",
                 how == 1 ? "graceful" : "fast");
    mg_notify("STOPPING=1");
    for (g = mg_master.gens; g != NULL; g = g->next) {
        g->draining = 1;
    }
    master_send_gen(NULL, how == 1 ? MG_WORKER_CMD_DRAIN : MG_WORKER_CMD_QUIT);
    ev_timer_stop(mg_master.loop, &mg_master.stop_timer);
    ev_timer_set(&mg_master.stop_timer, how == 1 ? grace + 5.0 : 5.0, 0.);
    ev_timer_start(mg_master.loop, &mg_master.stop_timer);
    master_maybe_exit();
}

static void
master_reopen(void)
{
    master_gen_t *g = master_current();

    mg_log_error(MG_LOG_NOTICE, &mg_log, 0, "reopening log files");
    if (g != NULL) {
        if (master_apply_error_log(g->snap) != MG_OK) {
            return;
        }
        master_prepare_access_logs(g);
    }
    master_send_gen(NULL, MG_WORKER_CMD_REOPEN);
}

/* The shared ticket keys change on this timer; workers pick the new key
 * up at once, and the previous one still opens tickets issued before. */
static void
master_on_ticket_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    master_gen_t *g = master_current();

    mg_tls_tickets_rotate();
    mg_log_error(MG_LOG_INFO, &mg_log, 0, "TLS session ticket keys rotated");
    if (g != NULL && g->snap->gateway.tls_ticket_rotation > 0) {
        w->repeat = g->snap->gateway.tls_ticket_rotation;
        ev_timer_again(loop, w);
    }
}

static void
master_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    switch (w->signum) {
    case SIGHUP:
        if (!mg_master.stopping) {
            master_reload();
        }
        break;
    case SIGTERM:
    case SIGINT:
        master_stop(1);
        break;
    case SIGQUIT:
        master_stop(2);
        break;
    case SIGUSR1:
        master_reopen();
        break;
    }
}

int
mg_master_run(const mg_master_opts_t *opts, mg_snapshot_t *snap)
{
    struct ev_loop *loop;
    unsigned workers;

    mg_master.opts = opts;
    mg_master.start_time = (double)time(NULL);
    mg_log.role = "master";
    if (master_apply_error_log(snap) != MG_OK) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    loop = ev_default_loop(EVFLAG_AUTO);
    if (loop == NULL) {
        mg_log_error(MG_LOG_EMERG, &mg_log, 0, "cannot create the event loop");
        return 1;
    }
    mg_master.loop = loop;
    mg_proc_title_set("meshgate: master");

    ev_signal_init(&mg_master.sig_hup, master_on_signal, SIGHUP);
    ev_signal_init(&mg_master.sig_term, master_on_signal, SIGTERM);
    ev_signal_init(&mg_master.sig_int, master_on_signal, SIGINT);
    ev_signal_init(&mg_master.sig_quit, master_on_signal, SIGQUIT);
    ev_signal_init(&mg_master.sig_usr1, master_on_signal, SIGUSR1);
    ev_signal_start(loop, &mg_master.sig_hup);
    ev_signal_start(loop, &mg_master.sig_term);
    ev_signal_start(loop, &mg_master.sig_int);
    ev_signal_start(loop, &mg_master.sig_quit);
    ev_signal_start(loop, &mg_master.sig_usr1);
    ev_child_init(&mg_master.child, master_on_child, 0, 0);
    ev_child_start(loop, &mg_master.child);
    ev_timer_init(&mg_master.stop_timer, master_on_stop_timer, 0., 0.);
    ev_timer_init(&mg_master.ready_timer, master_on_ready_timer, 0., 0.);
    mg_notify_init();
    /* Before any worker forks, so all of them share the key ring and the
     * health table. */
    if (mg_shm_create() != MG_OK) {
        mg_log_error(MG_LOG_EMERG, &mg_log, errno,
                     "cannot map the shared health table");
        return 1;
    }
    if (mg_dns_table_create() != MG_OK) {
        mg_log_error(MG_LOG_EMERG, &mg_log, errno,
                     "cannot map the shared DNS table");
        return 1;
    }
    if (mg_eds_create() != MG_OK) {
        mg_log_error(MG_LOG_EMERG, &mg_log, errno,
                     "cannot map the shared discovery table");
        return 1;
    }
    if (mg_metrics_create() != MG_OK) {
        mg_log_error(MG_LOG_EMERG, &mg_log, errno,
                     "cannot map the shared metrics");
        return 1;
    }
    if (mg_trace_shm_create() != MG_OK) {
        mg_log_error(MG_LOG_EMERG, &mg_log, errno,
                     "cannot map the shared span rings");
        return 1;
    }
    if (mg_tls_tickets_init() != MG_OK) {
        mg_log_error(MG_LOG_EMERG, &mg_log, 0,
                     "cannot set up TLS session ticket keys");
        return 1;
    }
    ev_timer_init(&mg_master.ticket_timer, master_on_ticket_timer,
                  snap->gateway.tls_ticket_rotation > 0
                      ? snap->gateway.tls_ticket_rotation : 3600.,
                  0.);
    ev_timer_start(loop, &mg_master.ticket_timer);

    workers = snap->gateway.workers;
    if (master_start_gen(snap) != MG_OK) {
        mg_snapshot_free(snap);
        return 1;
    }
    mg_master.pid_file = opts->pid_file ? opts->pid_file
                                        : snap->gateway.pid_file;
    master_write_pid_file();
    mg_log_error(MG_LOG_NOTICE, &mg_log, 0,
                 "meshgate %s: generation 1 started (%u workers)",
                 PACKAGE_VERSION, workers);
    master_wait_ready();

    ev_run(loop, 0);

    if (mg_master.pid_file != NULL) {
        unlink(mg_master.pid_file);
    }
    mg_listen_close_all();
    while (mg_master.gens != NULL) {
        master_gen_t *g = mg_master.gens;

        mg_master.gens = g->next;
        mg_snapshot_free(g->snap);
        free(g->fds);
        free(g);
    }
    free(mg_master.slots);
    mg_log_error(MG_LOG_NOTICE, &mg_log, 0, "exiting");
    return 0;
}
