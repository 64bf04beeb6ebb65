/*
 * The admin listener's pages: /ready, /server_info, /clusters and
 * /config_dump. A page is built whole into a heap buffer (admin output is
 * small and rare, and bounded by MG_ADMIN_BODY_MAX), which the caller
 * sends as a direct response and then frees. Everything is read from the
 * answering worker's context: its snapshot, the shared health table and
 * its own counters (active requests, connections, outlier ejections are
 * per worker).
 */
#ifndef MG_ADMIN_H
#define MG_ADMIN_H

#include "mg_core.h"
#include "mg_str.h"

#define MG_ADMIN_BODY_MAX (16 * 1024 * 1024)

typedef struct mg_admin_reply_s {
    unsigned status;
    const char *ctype;            /* static string */
    char *body;                   /* heap; mg_admin_reply_free() */
    size_t len;
} mg_admin_reply_t;

/*
 * Builds the answer of worker |ctx| to an admin request for |path| with
 * query |query| (without the '?', may be empty) into |ar|. Unknown paths
 * get a 404 that lists the pages. Returns MG_OK, or MG_ERROR when out of
 * memory or past MG_ADMIN_BODY_MAX (|ar| then holds nothing).
 */
int mg_admin_handle(mg_ctx_t *ctx, mg_str_t path, mg_str_t query,
                    mg_admin_reply_t *ar);

/* Frees the body of |ar|. */
void mg_admin_reply_free(mg_admin_reply_t *ar);

#endif /* MG_ADMIN_H */
