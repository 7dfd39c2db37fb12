/* tests/unit/unit_lua.h — the one runner of pure-Lua unit tests, for the C test programs that
 * host them (test_lua_policies.c: tests/lua/; test_step_adapter.c: the plugin tests).
 *
 * Every loaded plugin file named NAME_test is a test file; its global test_* functions are
 * called in name order through x4_lua_call_plugin — the same path, budget and sandbox production
 * calls take. A test passes when it returns without error. Prints one line per test. */
#ifndef X4_TEST_UNIT_LUA_H
#define X4_TEST_UNIT_LUA_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lua.h"

static int unit_lua_cmp(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Runs every test of the loaded *_test files; adds to *passed and *failed. -1 on OOM. */
static int unit_lua_run(x4_lua_rt *rt, int *passed, int *failed) {
    json_t *d = x4_lua_describe(rt);
    json_t *files = json_object_get(d, "plugins"), *fns;
    const char *file;
    int rc = 0;
    json_object_foreach(files, file, fns) {
        size_t len = strlen(file), n = 0, i;
        if (len < 5 || strcmp(file + len - 5, "_test") != 0) continue;
        const char **names = calloc(json_array_size(fns) + 1, sizeof *names);
        json_t *f;
        if (!names) {
            rc = -1;
            break;
        }
        json_array_foreach(fns, i, f) if (strncmp(json_string_value(f), "test_", 5) == 0) names[n++] = json_string_value(f);
        qsort(names, n, sizeof *names, unit_lua_cmp);
        for (i = 0; i < n; i++) {
            json_t *res = NULL;
            char err[1024] = "";
            int r = x4_lua_call_plugin(rt, file, names[i], NULL, &res, err, sizeof err);
            json_decref(res);
            if (r == 0) {
                ++*passed;
                fprintf(stderr, "  ok   %s.%s\n", file, names[i]);
            } else {
                ++*failed;
                fprintf(stderr, "  FAIL %s.%s: %s\n", file, names[i], err);
            }
        }
        free(names);
    }
    json_decref(d);
    return rc;
}

#endif
