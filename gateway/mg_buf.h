/*
 * Data buffers. A buffer is a fixed 16 KiB block (or, rarely, a larger one
 * for a big request head) with start <= pos <= last <= end: bytes in
 * [pos, last) are pending. Blocks come from and return to a per-worker free
 * list, taken when data arrives and returned when drained, so an idle
 * keep-alive connection holds none.
 */
#ifndef MG_BUF_H
#define MG_BUF_H

#include "mg_core.h"

#define MG_BUF_SIZE 16384

struct mg_buf_s {
    char *start;
    char *pos;
    char *last;
    char *end;
    mg_buf_t *next;               /* free list link */
};

typedef struct mg_buf_cache_s {
    mg_buf_t *free;
    unsigned nfree;
    unsigned max_free;            /* blocks kept beyond this are freed */
} mg_buf_cache_t;

/* Returns an empty MG_BUF_SIZE block, or NULL when out of memory. */
mg_buf_t *mg_buf_get(mg_buf_cache_t *cache);

/* Returns an empty buffer of |size| bytes (> MG_BUF_SIZE), not cached. */
mg_buf_t *mg_buf_get_large(size_t size);

/* Gives |b| back (NULL is fine). */
void mg_buf_put(mg_buf_cache_t *cache, mg_buf_t *b);

/* Frees every cached block. */
void mg_buf_cache_clear(mg_buf_cache_t *cache);

static inline size_t
mg_buf_pending(const mg_buf_t *b)
{
    return (size_t)(b->last - b->pos);
}

static inline size_t
mg_buf_room(const mg_buf_t *b)
{
    return (size_t)(b->end - b->last);
}

/* Moves pending bytes to the start to make room at the end. */
void mg_buf_compact(mg_buf_t *b);

#endif /* MG_BUF_H */
