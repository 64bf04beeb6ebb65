#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "mg_buf.h"

static mg_buf_t *
buf_alloc(size_t size)
{
    mg_buf_t *b = malloc(sizeof(mg_buf_t) + size);

    if (b == NULL) {
        return NULL;
    }
    b->start = (char *)(b + 1);
    b->pos = b->last = b->start;
    b->end = b->start + size;
    b->next = NULL;
    return b;
}

mg_buf_t *
mg_buf_get(mg_buf_cache_t *cache)
{
    mg_buf_t *b = cache->free;

    if (b != NULL) {
        cache->free = b->next;
        cache->nfree--;
        b->pos = b->last = b->start;
        b->next = NULL;
        return b;
    }
    return buf_alloc(MG_BUF_SIZE);
}

mg_buf_t *
mg_buf_get_large(size_t size)
{
    return buf_alloc(size);
}

void
mg_buf_put(mg_buf_cache_t *cache, mg_buf_t *b)
{
    if (b == NULL) {
        return;
    }
    if ((size_t)(b->end - b->start) != MG_BUF_SIZE
        || cache->nfree >= cache->max_free) {
        free(b);
        return;
    }
    b->next = cache->free;
    cache->free = b;
    cache->nfree++;
}

void
mg_buf_cache_clear(mg_buf_cache_t *cache)
{
    mg_buf_t *b;

    while ((b = cache->free) != NULL) {
        cache->free = b->next;
        free(b);
    }
    cache->nfree = 0;
}

void
mg_buf_compact(mg_buf_t *b)
{
    size_t n = mg_buf_pending(b);

    if (b->pos != b->start) {
        memmove(b->start, b->pos, n);
        b->pos = b->start;
        b->last = b->start + n;
    }
}
