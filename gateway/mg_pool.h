/*
 * Arena pools: memory is taken in blocks and released all at once with the
 * pool, after its cleanup handlers ran (newest first). Nothing is freed one
 * object at a time. Used for the snapshot, the connection and the request.
 */
#ifndef MG_POOL_H
#define MG_POOL_H

#include "mg_core.h"

typedef void (*mg_pool_cleanup_cb)(void *data);

/* Creates a pool whose blocks are |block_size| bytes (a larger allocation
 * gets a block of its own). Returns NULL when out of memory. */
mg_pool_t *mg_pool_create(size_t block_size);

/* Runs the cleanup handlers, newest first, then frees every block. */
void mg_pool_destroy(mg_pool_t *pool);

/* Returns |size| bytes aligned for any type, or NULL when out of memory. */
void *mg_palloc(mg_pool_t *pool, size_t size);
void *mg_pcalloc(mg_pool_t *pool, size_t size);

/* Copies |len| bytes of |s| and adds a NUL. Returns NULL when out of memory. */
char *mg_pstrndup(mg_pool_t *pool, const char *s, size_t len);
char *mg_pstrdup(mg_pool_t *pool, const char *s);

/* Registers |cb(data)| to run when the pool is destroyed. MG_OK or MG_ERROR. */
int mg_pool_cleanup_add(mg_pool_t *pool, mg_pool_cleanup_cb cb, void *data);

/* Test hook: the |n|-th allocation from now on fails (0 disables). */
void mg_pool_fail_nth(unsigned long n);

/* Process-lifetime allocation for startup and snapshot building: logs and
 * exits on failure, since nothing can run without it. */
void *mg_xalloc(size_t size);
void *mg_xcalloc(size_t n, size_t size);
char *mg_xstrdup(const char *s);

#endif /* MG_POOL_H */
