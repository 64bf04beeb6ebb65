/*
 * Length-delimited strings. They point into buffers or the snapshot arena and
 * are never NUL-terminated unless stated.
 */
#ifndef MG_STR_H
#define MG_STR_H

#include <stddef.h>
#include <string.h>
#include <strings.h>

typedef struct mg_str_s {
    const char *data;
    size_t len;
} mg_str_t;

#define mg_str_lit(s) ((mg_str_t){ (s), sizeof(s) - 1 })
#define mg_str_null ((mg_str_t){ NULL, 0 })

static inline mg_str_t
mg_str(const char *s)
{
    return (mg_str_t){ s, s ? strlen(s) : 0 };
}

static inline int
mg_str_eq(mg_str_t a, mg_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* ASCII case-insensitive equality, as header names and hosts need. */
static inline int
mg_str_caseeq(mg_str_t a, mg_str_t b)
{
    return a.len == b.len && (a.len == 0 || strncasecmp(a.data, b.data, a.len) == 0);
}

#define mg_str_caseeq_lit(a, lit) mg_str_caseeq((a), mg_str_lit(lit))

static inline char
mg_tolower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c;
}

#endif /* MG_STR_H */
