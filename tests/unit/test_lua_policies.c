/* tests/unit/test_lua_policies.c — runner of the pure-Lua unit tests in tests/lua/.
 *
 * Loads the shipped policies (policies/) and lua/ library into a real sandbox, with tests/lua/
 * as the plugin directory: every tests/lua/NAME_test.lua is then a "plugin" whose global
 * test_* functions are called one by one through x4_lua_call_plugin — the same path, budget
 * and sandbox production calls take. A test passes when it returns without error; tests use
 * tests/lua/testlib.lua (`require "testlib"`) and load the policy under test with
 * `require "retry"` (a policy file required as a module exports its environment). Prints one
 * line per Lua test and "lua: N passed, M failed". */
#include <stdlib.h>

#include "lua/lua.h"
#include "unit.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

X4_TEST(lua_policy_unit_tests) {
    char err[1024] = "";
    x4_lua_opts o = {.policy_dir = X4_SOURCE_DIR "/policies", .plugin_dir = X4_SOURCE_DIR "/tests/lua",
                     .lib_dir = X4_SOURCE_DIR "/lua", .budget = 50000000};
    x4_lua_rt *rt = x4_lua_open(&o, err, sizeof err);
    CHECK(rt != NULL);
    if (!rt) return;
    if (x4_lua_reload(rt, err, sizeof err) != 0) {
        fprintf(stderr, "  cannot load: %s\n", err);
        CHECK(!"reload failed");
        x4_lua_close(rt);
        return;
    }
    json_t *d = x4_lua_describe(rt);
    json_t *files = json_object_get(d, "plugins"), *fns;
    const char *file;
    int passed = 0, failed = 0;
    json_object_foreach(files, file, fns) {
        size_t len = strlen(file), n = 0, i;
        if (len < 5 || strcmp(file + len - 5, "_test") != 0) continue;
        const char **names = calloc(json_array_size(fns) + 1, sizeof *names);
        json_t *f;
        CHECK(names != NULL);
        if (!names) break;
        json_array_foreach(fns, i, f) if (strncmp(json_string_value(f), "test_", 5) == 0) names[n++] = json_string_value(f);
        qsort(names, n, sizeof *names, cmp_str);
        for (i = 0; i < n; i++) {
            json_t *res = NULL;
            int rc = x4_lua_call_plugin(rt, file, names[i], NULL, &res, err, sizeof err);
            json_decref(res);
            if (rc == 0) {
                passed++;
                fprintf(stderr, "  ok   %s.%s\n", file, names[i]);
            } else {
                failed++;
                fprintf(stderr, "  FAIL %s.%s: %s\n", file, names[i], err);
            }
        }
        free(names);
    }
    json_decref(d);
    printf("lua: %d passed, %d failed\n", passed, failed);
    CHECK(passed >= 20); /* every test file was found and run */
    CHECK_EQ_INT(failed, 0);
    x4_lua_close(rt);
}
