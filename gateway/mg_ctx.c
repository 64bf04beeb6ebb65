#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mg_access_log.h"
#include "mg_ctx.h"
#include "mg_h1.h"
#include "mg_snapshot.h"
#include "mg_h2up.h"
#include "mg_upstream.h"

static void
ctx_seed_request_ids(mg_ctx_t *ctx)
{
    unsigned char raw[8];
    unsigned i;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = -1;

    if (fd != -1) {
        n = read(fd, raw, sizeof(raw));
        close(fd);
    }
    if (n != (ssize_t)sizeof(raw)) {
        uint64_t v = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

        memcpy(raw, &v, sizeof(raw));
    }
    for (i = 0; i < sizeof(raw); i++) {
        snprintf(ctx->request_id_seed + 2 * i, 3, "%02x", raw[i]);
    }
}

int
mg_ctx_init(mg_ctx_t *ctx, struct ev_loop *loop, const mg_snapshot_t *snap)
{
    unsigned i;

    ctx->loop = loop;
    ctx->snap = snap;
    ctx->pid = getpid();
    ctx->bufs.max_free = 4096;
    ctx->pools = calloc(snap->npools ? snap->npools : 1,
                        sizeof(*ctx->pools));
    ctx->active = calloc(snap->nendpoints ? snap->nendpoints : 1,
                         sizeof(*ctx->active));
    ctx->lb = calloc(snap->nclusters ? snap->nclusters : 1,
                     sizeof(*ctx->lb));
    ctx->retrying = calloc(snap->nclusters ? snap->nclusters : 1,
                           sizeof(*ctx->retrying));
    ctx->overflows = calloc(snap->nclusters ? snap->nclusters : 1,
                            sizeof(*ctx->overflows));
    ctx->eds_seq = calloc(snap->nclusters ? snap->nclusters : 1,
                          sizeof(*ctx->eds_seq));
    ctx->conns = calloc(snap->nendpoints ? snap->nendpoints : 1,
                        sizeof(*ctx->conns));
    ctx->pending = calloc(snap->nendpoints ? snap->nendpoints : 1,
                          sizeof(*ctx->pending));
    ctx->outlier = calloc(snap->nendpoints ? snap->nendpoints : 1,
                          sizeof(*ctx->outlier));
    ctx->ejected_until = calloc(snap->nendpoints ? snap->nendpoints : 1,
                                sizeof(*ctx->ejected_until));
    ctx->access_logs = calloc(snap->nlisteners ? snap->nlisteners : 1,
                              sizeof(*ctx->access_logs));
    ctx->req = malloc(sizeof(*ctx->req));
    ctx->resp = malloc(sizeof(*ctx->resp));
    if (ctx->pools == NULL || ctx->active == NULL || ctx->lb == NULL
        || ctx->retrying == NULL || ctx->overflows == NULL
        || ctx->eds_seq == NULL
        || ctx->conns == NULL || ctx->pending == NULL
        || ctx->outlier == NULL
        || ctx->ejected_until == NULL
        || ctx->access_logs == NULL || ctx->req == NULL || ctx->resp == NULL) {
        return MG_ERROR;
    }
    for (i = 0; i < snap->nclusters; i++) {
        unsigned n = snap->clusters[i].nendpoints;

        if (snap->clusters[i].lb == MG_LB_WEIGHTED_ROUND_ROBIN) {
            ctx->lb[i].current = calloc(n ? n : 1, sizeof(int));
            if (ctx->lb[i].current == NULL) {
                return MG_ERROR;
            }
        }
    }
    /* Retry backoff jitter: workers must not draw the same delays. */
    srandom((unsigned)getpid() ^ (unsigned)time(NULL));
    for (i = 0; i < snap->nclusters; i++) {
        /* Workers must not all pick the same levels in lockstep. */
        ctx->lb[i].rng = ((uint64_t)getpid() << 32) ^ (i + 1) * 0x9e3779b9u;
    }
    for (i = 0; i < snap->nlisteners; i++) {
        (void)mg_access_log_open(&ctx->access_logs[i], loop,
                                 snap->listeners[i].access_log,
                                 snap->listeners[i].access_format);
    }
    ctx_seed_request_ids(ctx);
    return MG_OK;
}

void
mg_ctx_reopen_logs(mg_ctx_t *ctx)
{
    unsigned i;

    for (i = 0; i < ctx->snap->nlisteners; i++) {
        mg_access_log_reopen(&ctx->access_logs[i]);
    }
}

void
mg_ctx_destroy(mg_ctx_t *ctx)
{
    unsigned i;

    if (ctx->access_logs != NULL) {
        for (i = 0; i < ctx->snap->nlisteners; i++) {
            mg_access_log_close(&ctx->access_logs[i]);
        }
    }
    if (ctx->pools != NULL) {
        mg_upstream_close_idle(ctx);
        mg_h2up_close_all(ctx);
    }
    if (ctx->lb != NULL) {
        for (i = 0; i < ctx->snap->nclusters; i++) {
            free(ctx->lb[i].current);
        }
    }
    free(ctx->pools);
    free(ctx->active);
    free(ctx->retrying);
    free(ctx->overflows);
    free(ctx->eds_seq);
    free(ctx->conns);
    free(ctx->pending);
    free(ctx->outlier);
    free(ctx->ejected_until);
    free(ctx->lb);
    free(ctx->access_logs);
    free(ctx->req);
    free(ctx->resp);
    mg_buf_cache_clear(&ctx->bufs);
}
