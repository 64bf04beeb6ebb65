/*
 * A minimal TAP producer for the C unit tests: prove reads the output
 * through the t/00unit-*.t wrappers.
 */
#ifndef MG_TAP_H
#define MG_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_count;
static int tap_failed;

#define ok(cond, ...)                                                        \
    do {                                                                     \
        int tap_ok_ = !!(cond);                                              \
        tap_count++;                                                         \
        if (!tap_ok_) {                                                      \
            tap_failed++;                                                    \
        }                                                                    \
        printf("%sok %d - ", tap_ok_ ? "" : "not ", tap_count);              \
        printf(__VA_ARGS__);                                                 \
        printf("\n");                                                        \
        if (!tap_ok_) {                                                      \
            printf("#   failed at %s line %d\n", __FILE__, __LINE__);        \
        }                                                                    \
    } while (0)

#define is_int(got, want, ...)                                               \
    do {                                                                     \
        long long tap_g_ = (long long)(got), tap_w_ = (long long)(want);     \
        ok(tap_g_ == tap_w_, __VA_ARGS__);                                   \
        if (tap_g_ != tap_w_) {                                              \
            printf("#   got %lld, expected %lld\n", tap_g_, tap_w_);         \
        }                                                                    \
    } while (0)

static inline int
done_testing(void)
{
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}

#endif /* MG_TAP_H */
