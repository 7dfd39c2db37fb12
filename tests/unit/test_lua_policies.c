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
#include "unit_lua.h"

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
    int passed = 0, failed = 0;
    CHECK_EQ_INT(unit_lua_run(rt, &passed, &failed), 0);
    printf("lua: %d passed, %d failed\n", passed, failed);
    CHECK(passed >= 20); /* every test file was found and run */
    CHECK_EQ_INT(failed, 0);
    x4_lua_close(rt);
}
