#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_pool.h"

#define POOL_ALIGN 16

typedef struct pool_block_s pool_block_t;
struct pool_block_s {
    pool_block_t *next;
    char *pos;
    char *end;
};

typedef struct pool_cleanup_s pool_cleanup_t;
struct pool_cleanup_s {
    pool_cleanup_t *next;
    mg_pool_cleanup_cb cb;
    void *data;
};

struct mg_pool_s {
    pool_block_t *current;   /* allocation happens here */
    pool_block_t *large;     /* oversized allocations, one block each */
    pool_cleanup_t *cleanups;
    size_t block_size;
};

static unsigned long pool_fail_countdown;

void
mg_pool_fail_nth(unsigned long n)
{
    pool_fail_countdown = n;
}

static int
pool_should_fail(void)
{
    if (pool_fail_countdown == 0) {
        return 0;
    }
    return --pool_fail_countdown == 0;
}

static size_t
pool_align_up(size_t n)
{
    return (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
}

static pool_block_t *
pool_block_new(size_t size)
{
    size_t header = pool_align_up(sizeof(pool_block_t));
    pool_block_t *b = malloc(header + size);

    if (b == NULL) {
        return NULL;
    }
    b->next = NULL;
    b->pos = (char *)b + header;
    b->end = b->pos + size;
    return b;
}

mg_pool_t *
mg_pool_create(size_t block_size)
{
    mg_pool_t *pool;
    pool_block_t *b;

    if (block_size < 256) {
        block_size = 256;
    }
    b = pool_block_new(block_size);
    if (b == NULL) {
        return NULL;
    }
    /* The pool header lives in its own first block. */
    pool = (mg_pool_t *)b->pos;
    b->pos += pool_align_up(sizeof(mg_pool_t));
    pool->current = b;
    pool->large = NULL;
    pool->cleanups = NULL;
    pool->block_size = block_size;
    return pool;
}

void
mg_pool_destroy(mg_pool_t *pool)
{
    pool_cleanup_t *cl;
    pool_block_t *b, *next, *first = NULL;

    if (pool == NULL) {
        return;
    }
    for (cl = pool->cleanups; cl != NULL; cl = cl->next) {
        cl->cb(cl->data);
    }
    for (b = pool->large; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    for (b = pool->current; b != NULL; b = next) {
        next = b->next;
        if ((char *)pool >= (char *)b && (char *)pool < b->end) {
            first = b;   /* holds the pool itself: free it last */
            continue;
        }
        free(b);
    }
    free(first);
}

void *
mg_palloc(mg_pool_t *pool, size_t size)
{
    pool_block_t *b;
    char *p;

    if (pool_should_fail()) {
        return NULL;
    }
    size = pool_align_up(size ? size : 1);
    b = pool->current;
    if ((size_t)(b->end - b->pos) >= size) {
        p = b->pos;
        b->pos += size;
        return p;
    }
    if (size > pool->block_size / 4) {
        b = pool_block_new(size);
        if (b == NULL) {
            return NULL;
        }
        b->next = pool->large;
        pool->large = b;
        return b->pos;
    }
    b = pool_block_new(pool->block_size);
    if (b == NULL) {
        return NULL;
    }
    b->next = pool->current;
    pool->current = b;
    p = b->pos;
    b->pos += size;
    return p;
}

void *
mg_pcalloc(mg_pool_t *pool, size_t size)
{
    void *p = mg_palloc(pool, size);

    if (p != NULL) {
        memset(p, 0, size);
    }
    return p;
}

char *
mg_pstrndup(mg_pool_t *pool, const char *s, size_t len)
{
    char *p = mg_palloc(pool, len + 1);

    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

char *
mg_pstrdup(mg_pool_t *pool, const char *s)
{
    return mg_pstrndup(pool, s, strlen(s));
}

int
mg_pool_cleanup_add(mg_pool_t *pool, mg_pool_cleanup_cb cb, void *data)
{
    pool_cleanup_t *cl = mg_palloc(pool, sizeof(*cl));

    if (cl == NULL) {
        return MG_ERROR;
    }
    cl->cb = cb;
    cl->data = data;
    cl->next = pool->cleanups;
    pool->cleanups = cl;
    return MG_OK;
}

static void
pool_out_of_memory(size_t size)
{
    fprintf(stderr, "meshgate: [emerg] out of memory allocating %zu bytes\n",
            size);
    exit(1);
}

void *
mg_xalloc(size_t size)
{
    void *p = malloc(size ? size : 1);

    if (p == NULL) {
        pool_out_of_memory(size);
    }
    return p;
}

void *
mg_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL) {
        pool_out_of_memory(n * size);
    }
    return p;
}

char *
mg_xstrdup(const char *s)
{
    char *p = strdup(s);

    if (p == NULL) {
        pool_out_of_memory(strlen(s));
    }
    return p;
}
