/* Tiny assertion helpers shared by the C tests. */
#ifndef TIDINGS_TEST_CHECK_H
#define TIDINGS_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tidings.h"

static int check_failures = 0;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

/* Runs `call`, which may pass `&err` as its error_out, and checks its
 * status and, when `needle` is not NULL, that the error message mentions it.
 * The message is freed. */
#define EXPECT(expected, needle, call)                                         \
    do {                                                                       \
        char *err = NULL;                                                      \
        tidings_status check_st_ = (call);                                     \
        if (check_st_ != (expected)) {                                         \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n",       \
                    __FILE__, __LINE__, #call, tidings_status_name(check_st_), \
                    tidings_status_name(expected), err ? err : "no message");  \
            check_failures++;                                                  \
        } else if ((needle) != NULL &&                                         \
                   (err == NULL || strstr(err, (needle)) == NULL)) {           \
            fprintf(stderr, "%s:%d: %s: message %s lacks \"%s\"\n", __FILE__,  \
                    __LINE__, #call, err ? err : "(none)",                     \
                    (const char *)(needle));                                   \
            check_failures++;                                                  \
        }                                                                      \
        tidings_string_free(err);                                              \
    } while (0)

static int check_contains(const char *haystack, const char *needle) {
    return haystack != NULL && needle != NULL && strstr(haystack, needle) != NULL;
}

static int check_done(const char *name) {
    if (check_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

#endif
