#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "mg_control.h"
#include "mg_dns.h"
#include "mg_health.h"
#include "mg_log.h"
#include "mg_metrics.h"
#include "mg_snapshot.h"
#include "mg_trace.h"
#include "mg_xds.h"
#include "mg_worker.h"

typedef struct control_s {
    const mg_worker_start_t *ws;
    struct ev_loop *loop;
    mg_health_t *health;
    mg_dns_t *dns;
    mg_trace_export_t *trace;     /* NULL without tracing */
    mg_xds_t *xds;                /* NULL without discovery */
    ev_io chan_io;
} control_t;

/* The control process's one global. */
static control_t mg_control;

static void control_exit(int code) __attribute__((noreturn));

static void
control_exit(int code)
{
    if (mg_control.health != NULL) {
        mg_health_stop(mg_control.health);
        mg_control.health = NULL;
    }
    if (mg_control.dns != NULL) {
        mg_dns_stop(mg_control.dns);
        mg_control.dns = NULL;
    }
    mg_trace_export_stop(mg_control.trace);
    mg_xds_stop(mg_control.xds);
    mg_control.xds = NULL;
    mg_control.trace = NULL;
    if (mg_control.loop != NULL) {
        ev_io_stop(mg_control.loop, &mg_control.chan_io);
        ev_loop_destroy(mg_control.loop);
        mg_control.loop = NULL;
    }
    exit(code);
}

static void
control_on_chan(struct ev_loop *loop, ev_io *w, int revents)
{
    char cmds[16];
    ssize_t n, i;
    int fd;

    n = read(w->fd, cmds, sizeof(cmds));
    if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        /* The master is gone: nobody would read what we find. */
        mg_log_error(MG_LOG_NOTICE, &mg_log, 0, "master gone, exiting");
        control_exit(0);
    }
    for (i = 0; i < n; i++) {
        switch (cmds[i]) {
        case MG_WORKER_CMD_DRAIN:
        case MG_WORKER_CMD_QUIT:
            /* Checks and lookups hold no client: a newer control process
             * (or none) takes over at once. */
            mg_log_error(MG_LOG_INFO, &mg_log, 0, "stopping health checks "
                         "and DNS lookups, exiting");
            control_exit(0);
            break;
        case MG_WORKER_CMD_REOPEN:
            if (mg_log.path != NULL) {
                fd = mg_log_open_file(mg_log.path);
                if (fd != -1) {
                    mg_log_set_fd(&mg_log, fd, mg_log.path);
                }
            }
            break;
        }
    }
}

void
mg_control_run(const mg_worker_start_t *ws)
{
    struct ev_loop *loop;
    sigset_t set;
    char title[64];
    unsigned i;

    memset(&mg_control, 0, sizeof(mg_control));
    mg_control.ws = ws;
    mg_log.role = "control";
    mg_metrics_use(ws->met_slot, ws->snap->gateway.metrics);

    /* As in a worker: default signals back, commands over the channel. */
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
    snprintf(title, sizeof(title), "meshgate: control (gen %lu)",
             ws->generation);
    mg_proc_title_set(title);

    loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (loop == NULL) {
        mg_log_error(MG_LOG_EMERG, &mg_log, 0, "cannot create the event loop");
        exit(2);
    }
    mg_control.loop = loop;
    mg_worker_drop_privileges(ws);

    mg_control.health = mg_health_start(loop, ws->snap);
    if (mg_control.health == NULL) {
        mg_log_error(MG_LOG_EMERG, &mg_log, ENOMEM,
                     "cannot start the health checks");
        control_exit(2);
    }
    mg_log_error(MG_LOG_INFO, &mg_log, 0, "health checks started for %u "
                 "endpoints", mg_health_count(ws->snap));
    mg_control.dns = mg_dns_start(loop, ws->snap);
    if (mg_control.dns == NULL) {
        mg_log_error(MG_LOG_EMERG, &mg_log, ENOMEM,
                     "cannot start the DNS lookups");
        control_exit(2);
    }
    mg_log_error(MG_LOG_INFO, &mg_log, 0, "DNS lookups started for %u host "
                 "names", mg_dns_count(ws->snap));
    if (ws->snap->tracing != NULL) {
        mg_control.trace = mg_trace_export_start(loop, ws->snap);
        if (mg_control.trace == NULL) {
            mg_log_error(MG_LOG_EMERG, &mg_log, ENOMEM,
                         "cannot start the span export");
            control_exit(2);
        }
        mg_log_error(MG_LOG_INFO, &mg_log, 0, "span export to %s started",
                     ws->snap->tracing->zipkin);
    }
    if (ws->snap->xds != NULL) {
        mg_control.xds = mg_xds_start(loop, ws->snap);
        if (mg_control.xds == NULL) {
            mg_log_error(MG_LOG_EMERG, &mg_log, ENOMEM,
                         "cannot start the xds client");
            control_exit(2);
        }
    }
    ev_io_init(&mg_control.chan_io, control_on_chan, ws->chan, EV_READ);
    ev_io_start(loop, &mg_control.chan_io);

    ev_run(loop, 0);
    control_exit(0);
}
