#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "mg_gzip.h"

/* Whether the weight in [p, end) (after a coding name) is q=0. */
static int
gzip_zero_weight(const char *p, const char *end)
{
    const char *d;

    while (p < end && (*p == ' ' || *p == ';' || *p == '\t')) {
        p++;
    }
    if (end - p < 3 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=') {
        return 0;
    }
    d = p + 2;
    if (*d != '0') {
        return 0;
    }
    for (d++; d < end && *d != ' ' && *d != '\t'; d++) {
        if (*d != '.' && *d != '0') {
            return 0;
        }
    }
    return 1;
}

int
mg_gzip_accepted(mg_str_t v)
{
    const char *p = v.data, *end = v.data + v.len, *tok, *params;
    int gzip = -1, star = -1;
    size_t n;

    /* A list of codings with optional weights: "gzip;q=0.5, br". An
     * explicit gzip entry decides; "*" only speaks for codings not named
     * (RFC 9110 §12.5.3). */
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }
        tok = p;
        while (p < end && *p != ',' && *p != ';' && *p != ' ' && *p != '\t') {
            p++;
        }
        n = (size_t)(p - tok);
        params = p;
        while (p < end && *p != ',') {
            p++;
        }
        if (n == 4 && strncasecmp(tok, "gzip", 4) == 0) {
            gzip = !gzip_zero_weight(params, p);
        } else if (n == 1 && *tok == '*') {
            star = !gzip_zero_weight(params, p);
        }
    }
    if (gzip != -1) {
        return gzip;
    }
    return star == 1;
}

int
mg_gzip_wants(const mg_gzip_conf_t *conf, mg_str_t ctype, int64_t length)
{
    size_t n = 0;
    unsigned i;

    if (length >= 0 && length < conf->min_length) {
        return 0;
    }
    while (n < ctype.len && ctype.data[n] != ';' && ctype.data[n] != ' ') {
        n++;
    }
    for (i = 0; i < conf->ntypes; i++) {
        if (conf->types[i].len == n
            && strncasecmp(conf->types[i].data, ctype.data, n) == 0) {
            return 1;
        }
    }
    return 0;
}

mg_gzip_t *
mg_gzip_new(int level)
{
    mg_gzip_t *gz = calloc(1, sizeof(*gz));

    if (gz == NULL) {
        return NULL;
    }
    /* windowBits 15 + 16: a gzip wrapper rather than zlib's. */
    if (deflateInit2(&gz->zs, level, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        free(gz);
        return NULL;
    }
    return gz;
}

ssize_t
mg_gzip_run(mg_gzip_t *gz, const char *in, size_t *in_len, char *out,
            size_t out_room, int mode)
{
    int rc;

    gz->zs.next_in = (Bytef *)in;
    gz->zs.avail_in = (uInt)*in_len;
    gz->zs.next_out = (Bytef *)out;
    gz->zs.avail_out = (uInt)out_room;
    rc = deflate(&gz->zs, mode);
    if (rc == Z_STREAM_ERROR) {
        return -1;
    }
    *in_len -= gz->zs.avail_in;
    if (rc == Z_STREAM_END) {
        gz->finished = 1;
    }
    /* With room left over, everything fed has been flushed out. */
    gz->flushed = mode != Z_NO_FLUSH && gz->zs.avail_out != 0;
    return (ssize_t)(out_room - gz->zs.avail_out);
}

void
mg_gzip_free(mg_gzip_t *gz)
{
    if (gz == NULL) {
        return;
    }
    deflateEnd(&gz->zs);
    free(gz);
}
