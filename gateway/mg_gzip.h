/*
 * Response compression: which responses qualify, and a streaming gzip
 * encoder that works block by block, so no body is ever held whole.
 */
#ifndef MG_GZIP_H
#define MG_GZIP_H

#include <sys/types.h>

#include <zlib.h>

#include "mg_core.h"
#include "mg_str.h"

/* Per-route settings (snapshot). */
typedef struct mg_gzip_conf_s {
    int level;                    /* 1..9 */
    int64_t min_length;           /* known lengths below it stay as they are */
    const mg_str_t *types;        /* media types, lower case, no parameters */
    unsigned ntypes;
} mg_gzip_conf_t;

typedef struct mg_gzip_s {
    z_stream zs;
    unsigned finished:1;          /* the gzip trailer is out */
    unsigned flushed:1;           /* everything fed so far is out */
} mg_gzip_t;

/* Whether an Accept-Encoding field value accepts gzip (not with q=0). */
int mg_gzip_accepted(mg_str_t accept_encoding);

/* Whether a response with Content-Type |ctype| (parameters allowed) and
 * |length| bytes (-1 when unknown) should be compressed under |conf|. */
int mg_gzip_wants(const mg_gzip_conf_t *conf, mg_str_t ctype, int64_t length);

/* Returns a new encoder at |level|, or NULL when out of memory. */
mg_gzip_t *mg_gzip_new(int level);

/*
 * Compresses from |in| (|*in_len| bytes; on return how many were taken)
 * into |out| (|out_room| bytes; returns how many were written). |mode|:
 * Z_NO_FLUSH while more input follows, Z_SYNC_FLUSH to push out what was
 * fed when the input pauses, Z_FINISH at the end (call until
 * gz->finished). Returns the bytes written, or -1 on a zlib error.
 */
ssize_t mg_gzip_run(mg_gzip_t *gz, const char *in, size_t *in_len, char *out,
                    size_t out_room, int mode);

/* Frees the encoder (NULL is fine). */
void mg_gzip_free(mg_gzip_t *gz);

#endif /* MG_GZIP_H */
