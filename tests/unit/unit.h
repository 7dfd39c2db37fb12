/* tests/unit/unit.h — the unit-test harness: X4_TEST(name) functions registered at load time,
 * CHECK()/CHECK_EQ_*() that record a failure with file:line and go on, one executable per file.
 * main() runs every test (or those named on the command line) and prints
 * "N passed, M failed"; exit status 1 on any failure. */
#ifndef X4_TESTS_UNIT_H
#define X4_TESTS_UNIT_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef void (*x4_test_fn)(void);
void x4_test_register(const char *name, x4_test_fn fn);
extern int x4_test_failed_checks;

#define X4_TEST(name)                                                                  \
    static void name(void);                                                            \
    __attribute__((constructor)) static void register_##name(void) { x4_test_register(#name, name); } \
    static void name(void)

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            x4_test_failed_checks++;                                                   \
        }                                                                              \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                             \
    do {                                                                               \
        long long _a = (long long)(a), _b = (long long)(b);                            \
        if (_a != _b) {                                                                \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, _a, _b); \
            x4_test_failed_checks++;                                                   \
        }                                                                              \
    } while (0)
#define CHECK_EQ_STR(a, b)                                                             \
    do {                                                                               \
        const char *_a = (a), *_b = (b);                                               \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                                       \
            fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
                    _a ? _a : "(null)", _b ? _b : "(null)");                           \
            x4_test_failed_checks++;                                                   \
        }                                                                              \
    } while (0)

#endif
