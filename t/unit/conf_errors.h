/*
 * For unit tests of configuration loading: whether a load reported an
 * error containing a given text, printing what it did report otherwise.
 */
#ifndef MG_TEST_CONF_ERRORS_H
#define MG_TEST_CONF_ERRORS_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mg_conf.h"

static int MG_PRINTF(2, 3)
has_error(const mg_conf_errors_t *errs, const char *fmt, ...)
{
    char want[1024];
    va_list ap;
    unsigned i;

    va_start(ap, fmt);
    vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    for (i = 0; i < errs->n; i++) {
        if (strstr(errs->msgs[i], want) != NULL) {
            return 1;
        }
    }
    printf("#   no error contains: %s\n", want);
    for (i = 0; i < errs->n; i++) {
        printf("#   got: %s\n", errs->msgs[i]);
    }
    return 0;
}

#endif /* MG_TEST_CONF_ERRORS_H */
