/* tests/unit/test_lua.c — the Lua runtime: default policies called through x4_lua_call, hostile
 * policies (endless loop, error, huge allocation, wrong return, sandbox escapes) that must fail
 * cleanly and leave the state usable, read-only views, plugins and atomic reload. Hostile
 * files are written to a fresh temporary directory per test. */
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lua/lua.h"
#include "unit.h"

static char g_tmp[256];

static void write_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", g_tmp, dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void fresh_tmp(void) {
    char cmd[600];
    snprintf(g_tmp, sizeof g_tmp, "/tmp/x4-lua-test-XXXXXX");
    CHECK(mkdtemp(g_tmp) != NULL);
    snprintf(cmd, sizeof cmd, "%s/policies", g_tmp);
    mkdir(cmd, 0700);
    snprintf(cmd, sizeof cmd, "%s/plugins", g_tmp);
    mkdir(cmd, 0700);
}

static void rm_tmp(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    CHECK(system(cmd) == 0);
}

/* A runtime over the temp dirs (hostile tests) or the shipped policies (defaults). */
static x4_lua_rt *open_rt(int shipped, size_t cap, uint64_t budget) {
    char pol[512], plu[512], err[512] = "";
    snprintf(pol, sizeof pol, "%s/policies", shipped ? X4_SOURCE_DIR : g_tmp);
    snprintf(plu, sizeof plu, "%s/plugins", g_tmp);
    x4_lua_opts o = {.policy_dir = pol, .plugin_dir = plu, .lib_dir = X4_SOURCE_DIR "/lua", .mem_cap = cap,
                     .budget = budget};
    x4_lua_rt *rt = x4_lua_open(&o, err, sizeof err);
    CHECK(rt != NULL);
    if (rt && x4_lua_reload(rt, err, sizeof err) != 0) {
        fprintf(stderr, "  reload: %s\n", err);
        CHECK(!"reload failed");
    }
    return rt;
}

static json_t *call(x4_lua_rt *rt, const char *hook, const char *args_json, int want_rc, char *err, size_t errlen) {
    json_error_t je;
    json_t *args = args_json ? json_loads(args_json, 0, &je) : NULL;
    json_t *res = NULL;
    if (args_json) CHECK(args != NULL);
    int rc = x4_lua_call(rt, hook, args, &res, err, errlen);
    if (rc != want_rc) fprintf(stderr, "  %s: rc %d (%s)\n", hook, rc, err);
    CHECK_EQ_INT(rc, want_rc);
    json_decref(args);
    return res;
}

static const char *sget(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }
static long long iget(const json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------- default policies ---------- */

X4_TEST(default_retry_backs_off_with_jitter) {
    char err[512];
    fresh_tmp();
    x4_lua_rt *rt = open_rt(1, 0, 0);
    long long min1 = 1 << 30, max1 = -1, max3 = -1;
    for (int i = 0; i < 60; i++) {
        json_t *r = call(rt, "retry.decide", "[{\"id\":\"s1\"}, {\"class\":\"network\"}, 1]", 0, err, sizeof err);
        CHECK_EQ_STR(sget(r, "action"), "retry");
        long long d = iget(r, "delayMs");
        if (d < min1) min1 = d;
        if (d > max1) max1 = d;
        json_decref(r);
        r = call(rt, "retry.decide", "[{\"id\":\"s1\",\"maxAttempts\":6}, {\"class\":\"timeout\"}, 4]", 0, err, sizeof err);
        CHECK_EQ_STR(sget(r, "action"), "retry");
        if (iget(r, "delayMs") > max3) max3 = iget(r, "delayMs");
        CHECK(iget(r, "delayMs") <= 4000);
        json_decref(r);
    }
    CHECK(min1 >= 0 && max1 <= 500);
    CHECK(max1 > min1); /* jittered, not constant */
    CHECK(max3 > 500);  /* the ceiling grew with the attempt */

    json_t *r = call(rt, "retry.decide", "[{}, {\"class\":\"status\",\"status\":503}, 2]", 0, err, sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "retry");
    CHECK(iget(r, "delayMs") <= 1000);
    json_decref(r);
    r = call(rt, "retry.decide", "[{}, {\"class\":\"status\",\"status\":429,\"retryAfterMs\":5000}, 1]", 0, err, sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "retry");
    CHECK(iget(r, "delayMs") >= 5000);
    json_decref(r);
    r = call(rt, "retry.decide", "[{}, {\"class\":\"status\",\"status\":404}, 1]", 0, err, sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "giveup");
    CHECK(strstr(sget(r, "reason"), "404") != NULL);
    json_decref(r);
    r = call(rt, "retry.decide", "[{}, {\"class\":\"payment\"}, 1]", 0, err, sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "giveup");
    json_decref(r);
    r = call(rt, "retry.decide", "[{}, {\"class\":\"network\"}, 3]", 0, err, sizeof err); /* default max 3 */
    CHECK_EQ_STR(sget(r, "action"), "giveup");
    json_decref(r);
    r = call(rt, "retry.decide", "[{\"maxAttempts\":5}, {\"class\":\"network\"}, 3]", 0, err, sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "retry");
    json_decref(r);
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(default_approval_auto_manual_deny) {
    char err[512];
    fresh_tmp();
    x4_lua_rt *rt = open_rt(1, 0, 0);
    json_t *r = call(rt, "approval.decide",
                     "[{\"id\":\"wf_1\"}, \"500000\", {\"maxCost\":\"10000000\", \"autoApproveBelow\":\"1000000\"}]", 0,
                     err, sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "auto");
    json_decref(r);
    r = call(rt, "approval.decide", "[{\"id\":\"wf_1\"}, \"2000000\", {\"maxCost\":\"10000000\"}]", 0, err, sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "manual");
    CHECK_EQ_INT(iget(r, "expiresMs"), 15 * 60 * 1000);
    json_decref(r);
    r = call(rt, "approval.decide", "[{\"id\":\"wf_1\"}, 20000000, {\"maxCost\":\"10000000\"}]", 0, err, sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "deny");
    CHECK(strstr(sget(r, "reason"), "limit") != NULL);
    json_decref(r);
    r = call(rt, "approval.decide", "[{}, \"300\", {\"available\":\"200\", \"autoApproveBelow\":\"1000\"}]", 0, err,
             sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "manual"); /* unaffordable: never auto, the user may top up */
    json_decref(r);
    r = call(rt, "approval.decide", "[{}, \"300\", {\"autoApproveBelow\":\"100\"}]", 0, err, sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "manual");
    json_decref(r);
    r = call(rt, "approval.decide", "[{}, \"not money\", {}]", 0, err, sizeof err);
    CHECK_EQ_STR(sget(r, "action"), "deny");
    json_decref(r);
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(default_rollback_reverse_dependency_order) {
    char err[512];
    fresh_tmp();
    x4_lua_rt *rt = open_rt(1, 0, 0);
    /* x depends on y although listed first; c failed; e cannot be undone; d is independent */
    json_t *r = call(rt, "rollback.plan",
                     "[{\"id\":\"wf_9\",\"status\":\"failed\",\"steps\":["
                     "{\"id\":\"x\",\"status\":\"succeeded\",\"dependsOn\":[\"y\"],\"compensate\":{\"url\":\"http://s/x/undo\"}},"
                     "{\"id\":\"y\",\"status\":\"succeeded\",\"compensate\":{\"url\":\"http://s/y/undo\",\"method\":\"delete\"}},"
                     "{\"id\":\"c\",\"status\":\"failed\",\"dependsOn\":[\"x\"],\"compensate\":{\"url\":\"http://s/c\"}},"
                     "{\"id\":\"d\",\"status\":\"succeeded\",\"output\":{\"n\":1},\"compensate\":{\"url\":\"https://s/d\"}},"
                     "{\"id\":\"e\",\"status\":\"succeeded\"}]}]",
                     0, err, sizeof err);
    CHECK(json_is_array(r));
    CHECK_EQ_INT(json_array_size(r), 3);
    CHECK_EQ_STR(sget(json_array_get(r, 0), "step"), "d");
    CHECK_EQ_STR(sget(json_array_get(r, 1), "step"), "x");
    CHECK_EQ_STR(sget(json_array_get(r, 2), "step"), "y");
    CHECK_EQ_STR(sget(json_array_get(r, 2), "method"), "DELETE");
    CHECK_EQ_STR(sget(json_array_get(r, 1), "method"), "POST");
    json_t *body = json_object_get(json_array_get(r, 0), "body");
    CHECK_EQ_STR(sget(body, "workflowId"), "wf_9");
    CHECK_EQ_INT(iget(json_object_get(body, "output"), "n"), 1);
    json_decref(r);
    r = call(rt, "rollback.plan", "[{\"id\":\"wf_0\",\"steps\":[]}]", 0, err, sizeof err);
    CHECK(json_is_array(r) && json_array_size(r) == 0);
    json_decref(r);
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(default_matching_score_then_price) {
    char err[512];
    fresh_tmp();
    x4_lua_rt *rt = open_rt(1, 0, 0);
    json_t *r = call(rt, "matching.rank",
                     "[[{\"id\":\"a\",\"score\":0.5,\"price\":\"300\",\"url\":\"http://a\"},"
                     "{\"id\":\"b\",\"score\":0.9,\"price\":\"900\",\"url\":\"http://b\"},"
                     "{\"id\":\"c\",\"score\":0.5,\"price\":\"100\",\"url\":\"http://c\"},"
                     "{\"id\":\"d\",\"score\":0.9,\"price\":\"5000\",\"url\":\"http://d\"}], {\"id\":\"s1\"}]",
                     0, err, sizeof err);
    CHECK_EQ_INT(json_array_size(r), 4);
    CHECK_EQ_STR(sget(json_array_get(r, 0), "id"), "b");
    CHECK_EQ_STR(sget(json_array_get(r, 1), "id"), "d");
    CHECK_EQ_STR(sget(json_array_get(r, 2), "id"), "c");
    CHECK_EQ_STR(sget(json_array_get(r, 3), "id"), "a");
    CHECK_EQ_STR(sget(json_array_get(r, 2), "url"), "http://c"); /* the engine's own records */
    json_decref(r);
    r = call(rt, "matching.rank", "[[{\"id\":\"a\",\"score\":1,\"price\":\"300\"},{\"id\":\"b\",\"score\":2,\"price\":\"900\"}], {\"maxPrice\":\"500\"}]",
             0, err, sizeof err);
    CHECK_EQ_INT(json_array_size(r), 1);
    CHECK_EQ_STR(sget(json_array_get(r, 0), "id"), "a");
    json_decref(r);
    x4_lua_close(rt);
    rm_tmp();
}

/* ---------- hostile policies ---------- */

X4_TEST(endless_loop_stops_within_budget) {
    char err[512] = "";
    fresh_tmp();
    write_file("policies", "loop.lua",
               "function spin()\n  while true do end\nend\n"
               "function sneaky()\n  while true do pcall(function() while true do end end) end\nend\n"
               "function sneaky2()\n  while true do xpcall(function() while true do end end, function() while true do end end) end\nend\n"
               "function ok() return {fine = true} end\n");
    x4_lua_rt *rt = open_rt(0, 0, 2000000);
    double t0 = now_s();
    json_t *r = call(rt, "loop.spin", NULL, -1, err, sizeof err);
    CHECK(r == NULL);
    CHECK(now_s() - t0 < 2.0);
    CHECK(strstr(err, "policies/loop.lua:2:") != NULL);
    CHECK(strstr(err, "budget") != NULL);
    call(rt, "loop.sneaky", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "budget") != NULL);
    call(rt, "loop.sneaky2", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "budget") != NULL);
    CHECK(now_s() - t0 < 5.0);
    r = call(rt, "loop.ok", NULL, 0, err, sizeof err); /* the state is still usable */
    CHECK(json_is_true(json_object_get(r, "fine")));
    json_decref(r);
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(error_names_file_and_line) {
    char err[512] = "";
    fresh_tmp();
    write_file("policies", "bad.lua",
               "local x = require \"x402r\"\n"
               "function boom()\n  error(\"boom\")\nend\n"
               "function nilcall() local t = nil\n  return t.field\nend\n"
               "function tableerr()\n  error({code = 1})\nend\n"
               "function badctor()\n  return x.retry(-1)\nend\n");
    x4_lua_rt *rt = open_rt(0, 0, 0);
    call(rt, "bad.boom", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "policies/bad.lua:3: boom") != NULL);
    call(rt, "bad.nilcall", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "policies/bad.lua:6:") != NULL);
    call(rt, "bad.tableerr", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "table value") != NULL && strstr(err, "policies/bad.lua:9") != NULL);
    call(rt, "bad.badctor", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "policies/bad.lua:11") != NULL && strstr(err, "delay_ms") != NULL); /* a tail call: the definition */
    call(rt, "bad.nothere", NULL, 1, err, sizeof err);
    call(rt, "nofile.decide", NULL, 1, err, sizeof err);
    CHECK(x4_lua_has_hook(rt, "bad.boom"));
    CHECK(!x4_lua_has_hook(rt, "bad.nothere"));
    CHECK(!x4_lua_has_hook(rt, "bad.x")); /* x is a local, not a hook */
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(out_of_memory_is_caught_and_state_survives) {
    char err[512] = "";
    fresh_tmp();
    write_file("policies", "mem.lua",
               "function rep()\n  local s = string.rep(\"x\", 1e9)\n  return #s\nend\n"
               "function grow()\n  local t = {}\n  local i = 0\n  while true do i = i + 1; t[i] = string.rep(\"y\", 1000) .. i end\nend\n"
               "function caught()\n  local ok = pcall(string.rep, \"x\", 1e9)\n  return {ok = ok}\nend\n"
               "function ok()\n  local t = {}\n  for i = 1, 1000 do t[i] = i end\n  return {n = #t}\nend\n");
    x4_lua_rt *rt = open_rt(0, (size_t)16 << 20, 50000000);
    call(rt, "mem.rep", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "not enough memory") != NULL);
    CHECK(strstr(err, "policies/mem.lua") != NULL);
    json_t *r = call(rt, "mem.ok", NULL, 0, err, sizeof err);
    CHECK_EQ_INT(iget(r, "n"), 1000);
    json_decref(r);
    double t0 = now_s();
    call(rt, "mem.grow", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "not enough memory") != NULL);
    CHECK(strstr(err, "policies/mem.lua:") != NULL);
    CHECK(now_s() - t0 < 5.0);
    json_t *d = x4_lua_describe(rt);
    CHECK(json_integer_value(json_object_get(json_object_get(d, "memory"), "used")) < (8 << 20)); /* garbage freed */
    json_decref(d);
    r = call(rt, "mem.ok", NULL, 0, err, sizeof err);
    CHECK_EQ_INT(iget(r, "n"), 1000);
    json_decref(r);
    call(rt, "mem.caught", NULL, -1, err, sizeof err); /* pcall cannot swallow the cap */
    CHECK(strstr(err, "not enough memory") != NULL);
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(wrong_return_shapes_are_rejected) {
    char err[512] = "";
    fresh_tmp();
    write_file("policies", "retry.lua", "function decide(step, err, attempt)\n  return step.mode_result\nend\n");
    write_file("policies", "approval.lua", "function decide() return {action = \"manual\"} end\n");
    write_file("policies", "matching.lua",
               "function rank(c) return {c[2], {id = \"evil\", price = \"0\"}} end\n"
               "function rank2(c) return {c[1], c[1]} end\n");
    write_file("policies", "rollback.lua", "function plan(w) return {{step = \"zz\", url = \"http://x\", method = \"POST\"}} end\n");
    write_file("policies", "misc.lua", "function fn() return function() end end\nfunction nan() return {v = 0/0} end\n"
                                       "function cyc() local t = {} t.t = t return t end\n");
    x4_lua_rt *rt = open_rt(0, 0, 0);
    call(rt, "retry.decide", "[{\"mode_result\":\"soon\"}, {}, 1]", -1, err, sizeof err);
    CHECK(strstr(err, "bad return value") != NULL && strstr(err, "policies/retry.lua:1") != NULL);
    call(rt, "retry.decide", "[{\"mode_result\":{\"action\":\"retry\",\"delayMs\":-5}}, {}, 1]", -1, err, sizeof err);
    CHECK(strstr(err, "delayMs") != NULL);
    call(rt, "retry.decide", "[{\"mode_result\":{\"action\":\"retry\",\"delayMs\":1.5}}, {}, 1]", -1, err, sizeof err);
    call(rt, "retry.decide", "[{\"mode_result\":{\"action\":\"giveup\"}}, {}, 1]", -1, err, sizeof err);
    CHECK(strstr(err, "reason") != NULL);
    json_t *r = call(rt, "retry.decide", "[{\"mode_result\":{\"action\":\"retry\",\"delayMs\":250}}, {}, 1]", 0, err, sizeof err);
    CHECK_EQ_INT(iget(r, "delayMs"), 250);
    json_decref(r);
    call(rt, "approval.decide", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "expiresMs") != NULL);
    call(rt, "matching.rank", "[[{\"id\":\"a\"},{\"id\":\"b\"}]]", -1, err, sizeof err);
    CHECK(strstr(err, "evil") != NULL);
    call(rt, "rollback.plan", "[{\"steps\":[{\"id\":\"a\"}]}]", -1, err, sizeof err);
    CHECK(strstr(err, "zz") != NULL);
    call(rt, "misc.fn", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "function") != NULL);
    call(rt, "misc.nan", NULL, -1, err, sizeof err);
    call(rt, "misc.cyc", NULL, -1, err, sizeof err);
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(bytecode_files_are_refused) {
    char err[512] = "";
    fresh_tmp();
    write_file("policies", "ok.lua", "function f() return 1 end\n");
    x4_lua_rt *rt = open_rt(0, 0, 0);
    write_file("plugins", "evil.lua", "\033LJ\002fake bytecode");
    CHECK(x4_lua_reload(rt, err, sizeof err) == -1);
    CHECK(strstr(err, "precompiled") != NULL && strstr(err, "plugins/evil.lua") != NULL);
    CHECK(!x4_lua_has_plugin(rt, "evil"));
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(sandbox_escapes_fail) {
    char err[512] = "", p[600];
    fresh_tmp();
    write_file("policies", "escape.lua",
               "function absent()\n"
               "  return {io = io == nil, execute = os.execute == nil, load = load == nil, loadstring = loadstring == nil,\n"
               "    dofile = dofile == nil, loadfile = loadfile == nil, dump = string.dump == nil, getfenv = getfenv == nil,\n"
               "    setfenv = setfenv == nil, gc = collectgarbage == nil, newproxy = newproxy == nil, jit = jit == nil,\n"
               "    module = module == nil, package = package == nil, ffi = ffi == nil, co = coroutine == nil,\n"
               "    strmt = getmetatable(\"\") == false, dumpm = (\"\").dump == nil, time = type(os.time()) == \"number\"}\n"
               "end\n"
               "function reqffi() return require \"ffi\" end\n"
               "function jitlib() return require \"jit\" end\n"
               "function path() return require \"../../../etc/passwd\" end\n"
               "function bc() return require \"sub.evil\" end\n"
               "function exec() return os.execute(\"true\") end\n"
               "function strmt() getmetatable(\"\").__index.upper = nil end\n"
               "function libs() string.upper = nil; return 1 end\n"
               "function up() return string.upper(\"a\") end\n"
               "function lib() local x = require \"x402r\"; x.retry = nil end\n");
    write_file("policies", "other.lua", "function up() return string.upper(\"b\") end\n"
                                        "function lib() return require(\"x402r\").retry(5) end\n");
    snprintf(p, sizeof p, "%s/policies/sub", g_tmp);
    mkdir(p, 0700);
    write_file("policies", "sub/evil.lua", "\033LJ\002fake bytecode");
    x4_lua_rt *rt = open_rt(0, 0, 0);
    json_t *r = call(rt, "escape.absent", NULL, 0, err, sizeof err);
    const char *k;
    json_t *v;
    CHECK_EQ_INT(json_object_size(r), 19);
    json_object_foreach(r, k, v) {
        if (!json_is_true(v)) fprintf(stderr, "  sandbox leaks %s\n", k);
        CHECK(json_is_true(v));
    }
    json_decref(r);
    call(rt, "escape.reqffi", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "not found") != NULL);
    call(rt, "escape.jitlib", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "not found") != NULL);
    call(rt, "escape.path", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "invalid module name") != NULL);
    call(rt, "escape.bc", NULL, -1, err, sizeof err);
    CHECK(strstr(err, "precompiled") != NULL);
    call(rt, "escape.exec", NULL, -1, err, sizeof err);
    call(rt, "escape.strmt", NULL, -1, err, sizeof err);
    r = call(rt, "escape.libs", NULL, 0, err, sizeof err); /* its own copy of string */
    json_decref(r);
    call(rt, "escape.up", NULL, -1, err, sizeof err);
    r = call(rt, "other.up", NULL, 0, err, sizeof err); /* another file's string is untouched */
    CHECK_EQ_STR(json_string_value(r), "B");
    json_decref(r);
    call(rt, "escape.lib", NULL, -1, err, sizeof err); /* the x402r module is frozen */
    CHECK(strstr(err, "read-only") != NULL);
    r = call(rt, "other.lib", NULL, 0, err, sizeof err);
    CHECK_EQ_INT(iget(r, "delayMs"), 5);
    json_decref(r);
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(views_are_read_only_and_readable) {
    char err[512] = "";
    fresh_tmp();
    write_file("policies", "view.lua",
               "function set(step) step.x = 1 end\n"
               "function setnested(step) step.inputs.a = 2 end\n"
               "function setexisting(step) step.id = \"other\" end\n"
               "function setarr(step) step.list[1] = 0 end\n"
               "function raw(step) rawset(step, \"x\", 1) end\n"
               "function ins(step) table.insert(step.list, 4) end\n"
               "function meta(step) setmetatable(step, nil) end\n"
               "function read(step)\n"
               "  local keys = 0\n"
               "  for k, v in pairs(step) do keys = keys + 1 end\n"
               "  local sum = 0\n"
               "  for i, v in ipairs(step.list) do sum = sum + v end\n"
               "  local a, b, c = unpack(step.list)\n"
               "  local copy = require(\"x402r\").copy(step)\n"
               "  copy.id = \"changed\"\n"
               "  return {keys = keys, len = #step.list, sum = sum, t = type(step), c = c, id = step.id,\n"
               "          copied = copy.id, mt = getmetatable(step), nul = step.list2[2] == require(\"x402r\").null,\n"
               "          absent = step.gone == nil, json = require(\"x402r\").json.encode(step.inputs)}\n"
               "end\n"
               "function echo(step) return step end\n");
    x4_lua_rt *rt = open_rt(0, 0, 0);
    const char *arg = "[{\"id\":\"s1\",\"inputs\":{\"a\":1},\"list\":[1,2,3],\"list2\":[1,null,3],\"gone\":null}]";
    const char *writers[] = {"view.set", "view.setnested", "view.setexisting", "view.setarr", "view.raw", "view.ins", "view.meta"};
    for (size_t i = 0; i < sizeof writers / sizeof writers[0]; i++) {
        call(rt, writers[i], arg, -1, err, sizeof err);
        CHECK(strstr(err, "policies/view.lua:") != NULL);
    }
    call(rt, "view.set", arg, -1, err, sizeof err);
    CHECK(strstr(err, "read-only") != NULL);
    json_t *r = call(rt, "view.read", arg, 0, err, sizeof err);
    CHECK_EQ_INT(iget(r, "keys"), 4);
    CHECK_EQ_INT(iget(r, "len"), 3);
    CHECK_EQ_INT(iget(r, "sum"), 6);
    CHECK_EQ_INT(iget(r, "c"), 3);
    CHECK_EQ_STR(sget(r, "t"), "table");
    CHECK_EQ_STR(sget(r, "id"), "s1");
    CHECK_EQ_STR(sget(r, "copied"), "changed");
    CHECK_EQ_STR(sget(r, "mt"), "read-only");
    CHECK(json_is_true(json_object_get(r, "nul")));
    CHECK(json_is_true(json_object_get(r, "absent")));
    CHECK_EQ_STR(sget(r, "json"), "{\"a\":1}");
    json_decref(r);
    r = call(rt, "view.echo", arg, 0, err, sizeof err); /* a view converts back to the same JSON */
    CHECK_EQ_INT(json_array_size(json_object_get(r, "list")), 3);
    CHECK(json_is_null(json_array_get(json_object_get(r, "list2"), 1)));
    json_decref(r);
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(json_helpers_and_limits) {
    char err[512] = "";
    fresh_tmp();
    write_file("policies", "js.lua",
               "local x = require \"x402r\"\n"
               "function roundtrip()\n"
               "  local t = x.json.decode('{\"a\":[1,2,{\"b\":null}],\"s\":\"\\\\u00e9\"}')\n"
               "  local bad, e = x.json.decode('{oops')\n"
               "  local big = string.rep(\"x\", 1000000)\n"
               "  local many = {}\n"
               "  for i = 1, 100 do many[i] = big end\n"
               "  local huge, e2 = x.json.encode(many)\n"
               "  local deep = {} local cur = deep\n"
               "  for i = 1, 200 do cur.n = {} cur = cur.n end\n"
               "  local d, e3 = x.json.encode(deep)\n"
               "  return {len = #t.a, isnull = t.a[3].b == x.null, s = t.s, bad = bad == nil, e = e,\n"
               "          huge = huge == nil, e2 = e2, deep = d == nil, enc = x.json.encode({1, 2, 3}),\n"
               "          ok = x.schema.check({n = 5}, {type = \"object\", required = {\"n\"}}),\n"
               "          now = x.time.now_ms() > 1.6e12}\n"
               "end\n");
    x4_lua_rt *rt = open_rt(0, 0, 0);
    json_t *r = call(rt, "js.roundtrip", NULL, 0, err, sizeof err);
    CHECK_EQ_INT(iget(r, "len"), 3);
    CHECK(json_is_true(json_object_get(r, "isnull")));
    CHECK_EQ_STR(sget(r, "s"), "\xc3\xa9");
    CHECK(json_is_true(json_object_get(r, "bad")));
    CHECK(sget(r, "e") != NULL);
    CHECK(json_is_true(json_object_get(r, "huge")));
    CHECK(sget(r, "e2") && strstr(sget(r, "e2"), "too large") != NULL);
    CHECK(json_is_true(json_object_get(r, "deep")));
    CHECK_EQ_STR(sget(r, "enc"), "[1,2,3]");
    CHECK(json_is_true(json_object_get(r, "ok")));
    CHECK(json_is_true(json_object_get(r, "now")));
    json_decref(r);
    x4_lua_close(rt);
    rm_tmp();
}

/* ---------- loading ---------- */

X4_TEST(reload_is_atomic_and_versioned) {
    char err[512] = "";
    fresh_tmp();
    write_file("policies", "a.lua", "function f() return 1 end\n");
    x4_lua_rt *rt = open_rt(0, 0, 0);
    char v1[32];
    snprintf(v1, sizeof v1, "%s", x4_lua_version(rt));
    CHECK_EQ_INT(strlen(v1), 16);
    CHECK(x4_lua_reload(rt, err, sizeof err) == 0);
    CHECK_EQ_STR(x4_lua_version(rt), v1); /* same files, same version */

    write_file("policies", "b.lua", "function g() return 2 end\nlocal = broken\n");
    CHECK(x4_lua_reload(rt, err, sizeof err) == -1);
    CHECK(strstr(err, "policies/b.lua:2:") != NULL);
    CHECK_EQ_STR(x4_lua_version(rt), v1);
    json_t *r = call(rt, "a.f", NULL, 0, err, sizeof err); /* the old set is still in force */
    CHECK_EQ_INT(json_integer_value(r), 1);
    json_decref(r);
    CHECK(!x4_lua_has_hook(rt, "b.g"));

    write_file("policies", "b.lua", "function g() return 2 end\nerror(\"fails at load\")\n");
    CHECK(x4_lua_reload(rt, err, sizeof err) == -1);
    CHECK(strstr(err, "policies/b.lua:2: fails at load") != NULL);
    write_file("policies", "b.lua", "while true do end\n");
    double t0 = now_s();
    CHECK(x4_lua_reload(rt, err, sizeof err) == -1);
    CHECK(now_s() - t0 < 2.0);
    CHECK(strstr(err, "budget") != NULL && strstr(err, "b.lua") != NULL);
    CHECK_EQ_STR(x4_lua_version(rt), v1);

    write_file("policies", "b.lua", "function g() return 2 end\n");
    CHECK(x4_lua_reload(rt, err, sizeof err) == 0);
    CHECK(strcmp(x4_lua_version(rt), v1) != 0);
    r = call(rt, "b.g", NULL, 0, err, sizeof err);
    CHECK_EQ_INT(json_integer_value(r), 2);
    json_decref(r);
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(plugins_load_by_file_name) {
    char err[512] = "";
    fresh_tmp();
    write_file("plugins", "echo.lua",
               "function prepare(step, ctx) return {url = step.url, method = \"POST\", body = {n = ctx.n}} end\n"
               "function parse(resp, ctx) return resp.body end\n");
    write_file("plugins", "README.txt", "not lua");
    x4_lua_rt *rt = open_rt(0, 0, 0);
    CHECK(x4_lua_has_plugin(rt, "echo"));
    CHECK(!x4_lua_has_plugin(rt, "http"));
    json_t *args = json_pack("[{s:s}, {s:i}]", "url", "http://svc/x", "n", 7), *res = NULL;
    CHECK_EQ_INT(x4_lua_call_plugin(rt, "echo", "prepare", args, &res, err, sizeof err), 0);
    CHECK_EQ_STR(sget(res, "url"), "http://svc/x");
    CHECK_EQ_INT(iget(json_object_get(res, "body"), "n"), 7);
    json_decref(res);
    CHECK_EQ_INT(x4_lua_call_plugin(rt, "echo", "compensate", args, &res, err, sizeof err), 1);
    json_decref(args);
    json_t *d = x4_lua_describe(rt);
    json_t *fns = json_object_get(json_object_get(d, "plugins"), "echo");
    CHECK_EQ_INT(json_array_size(fns), 2);
    CHECK_EQ_STR(json_string_value(json_object_get(d, "version")), x4_lua_version(rt));
    json_decref(d);
    x4_lua_close(rt);
    rm_tmp();
}

X4_TEST(nothing_loaded_means_no_hook) {
    char err[512] = "";
    x4_lua_opts o = {.policy_dir = "/nonexistent/p", .plugin_dir = "/nonexistent/q", .lib_dir = X4_SOURCE_DIR "/lua"};
    x4_lua_rt *rt = x4_lua_open(&o, err, sizeof err);
    json_t *res = NULL;
    CHECK_EQ_STR(x4_lua_version(rt), "none");
    CHECK_EQ_INT(x4_lua_call(rt, "retry.decide", NULL, &res, err, sizeof err), 1);
    CHECK_EQ_INT(x4_lua_reload(rt, err, sizeof err), 0); /* missing dirs: an empty set */
    CHECK_EQ_INT(x4_lua_call(rt, "retry.decide", NULL, &res, err, sizeof err), 1);
    CHECK_EQ_INT(x4_lua_call(rt, "nodot", NULL, &res, err, sizeof err), -1);
    x4_lua_close(rt);
}
