/* tests/unit/unit.c — see unit.h. */
#include "unit.h"

#include <stdlib.h>

int x4_test_failed_checks;
static struct { const char *name; x4_test_fn fn; } g_tests[512];
static int g_ntests;

void x4_test_register(const char *name, x4_test_fn fn) {
    if (g_ntests < 512) { g_tests[g_ntests].name = name; g_tests[g_ntests].fn = fn; g_ntests++; }
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    for (int i = 0; i < g_ntests; i++) {
        if (argc > 1) {
            int want = 0;
            for (int a = 1; a < argc; a++) want |= strcmp(argv[a], g_tests[i].name) == 0;
            if (!want) continue;
        }
        int before = x4_test_failed_checks;
        g_tests[i].fn();
        if (x4_test_failed_checks == before) { passed++; fprintf(stderr, "ok   %s\n", g_tests[i].name); }
        else { failed++; fprintf(stderr, "FAIL %s\n", g_tests[i].name); }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
