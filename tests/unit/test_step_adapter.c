/* tests/unit/test_step_adapter.c — step adapters (exec/step_adapter.h) with a real, sandboxed
 * Lua runtime: the C fallback, the shipped plugins (plugins/http.lua, x402.lua, transform.lua)
 * against the built-in C adapter, hostile plugins (error, endless loop, wrong shapes, CRLF and
 * reserved headers, non-http URLs) that must fail or fall back cleanly, parse outcomes, the
 * compensation request, the C fast path of the shipped http/x402 plugins against the same files
 * run through Lua, the example plugin (examples/plugins/graphql.lua), and the runner of
 * the plugin Lua tests (tests/lua/plugins/NAME_test.lua, examples/plugins/test/NAME_test.lua). */
#include <dirent.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "exec/step_adapter.h"
#include "lua/lua.h"
#include "plan/catalog.h"
#include "unit.h"
#include "unit_lua.h"

static char g_tmp[256];

static void fresh_tmp(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/x4-step-adapter-XXXXXX");
    CHECK(mkdtemp(g_tmp) != NULL);
    char p[512];
    snprintf(p, sizeof p, "%s/pol", g_tmp);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/plug", g_tmp);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/lib", g_tmp);
    mkdir(p, 0700);
}

static void write_plugin(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/plug/%s", g_tmp, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    *len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf) buf[*len] = 0;
    return buf;
}

/* Writes a copy of the shipped plugins/NAME.lua into DIR with one line appended: the same
 * behaviour, another hash, so the step adapter runs it through Lua. */
static void copy_shipped(const char *dir, const char *name, const char *extra) {
    char src[512], dst[512];
    size_t len = 0;
    snprintf(src, sizeof src, "%s/plugins/%s", X4_SOURCE_DIR, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    char *text = read_text(src, &len);
    FILE *f = fopen(dst, "w");
    CHECK(f != NULL && text != NULL);
    if (f && text) {
        fwrite(text, 1, len, f);
        fputs(extra, f);
    }
    if (f) fclose(f);
    free(text);
}

static x4_lua_rt *open_rt(const char *plugin_dir, const char *lib_dir, uint64_t budget) {
    char err[1024] = "", pol[512];
    snprintf(pol, sizeof pol, "%s/pol", g_tmp);
    x4_lua_opts o = {.policy_dir = pol, .plugin_dir = plugin_dir, .lib_dir = lib_dir, .budget = budget};
    x4_lua_rt *rt = x4_lua_open(&o, err, sizeof err);
    CHECK(rt != NULL);
    if (rt && x4_lua_reload(rt, err, sizeof err) != 0) {
        fprintf(stderr, "  reload: %s\n", err);
        CHECK(!"reload failed");
    }
    return rt;
}

static x4_catalog *catalog(void) {
    static const char *const recs[] = {
        "{\"id\":\"post\",\"url\":\"http://127.0.0.1:9/add\",\"method\":\"POST\"}",
        "{\"id\":\"get\",\"url\":\"http://127.0.0.1:9/find\",\"method\":\"GET\"}",
        "{\"id\":\"del\",\"url\":\"http://127.0.0.1:9/item\",\"method\":\"DELETE\"}",
        "{\"id\":\"paid\",\"url\":\"https://paid.example/v1\",\"price\":{\"amount\":\"1000\"}}",
        "{\"id\":\"undoable\",\"url\":\"http://127.0.0.1:9/order\",\"compensate\":{\"url\":\"http://127.0.0.1:9/"
        "cancel\",\"method\":\"delete\"}}",
        "{\"id\":\"reshape\",\"adapter\":\"transform\"}",
        "{\"id\":\"evil\",\"url\":\"http://127.0.0.1:9/evil\",\"adapter\":\"evil\"}",
        "{\"id\":\"good\",\"url\":\"http://127.0.0.1:9/good\",\"adapter\":\"good\"}",
        "{\"id\":\"nope\",\"url\":\"http://127.0.0.1:9/nope\",\"adapter\":\"nope\"}",
        "{\"id\":\"countries.country\",\"url\":\"https://gql.example/graphql\",\"adapter\":\"graphql\"}",
        "{\"id\":\"shop.order\",\"url\":\"https://shop.example/graphql\",\"adapter\":\"graphql\",\"price\":{\"amount\":"
        "\"5\"}}",
    };
    x4_catalog *c = x4_catalog_new();
    char err[256];
    for (size_t i = 0; i < sizeof recs / sizeof *recs; i++) {
        json_t *j = json_loads(recs[i], 0, NULL);
        CHECK(j != NULL);
        CHECK_EQ_INT(x4_catalog_add_record(c, j, "file", err, sizeof err), 0);
        json_decref(j);
    }
    return c;
}

static x4_step_in step_in(const x4_catalog *c, const char *svc, const json_t *inputs) {
    return (x4_step_in){.svc = x4_catalog_get(c, svc), .workflow_id = "wf_1", .step_id = "s1", .attempt = 2,
                        .inputs = inputs, .connect_timeout_ms = 1000, .timeout_ms = 5000, .max_response = 1 << 20};
}

static const char *header(const x4_adapter_call *c, const char *name) {
    const char *v = NULL;
    int n = 0;
    for (size_t i = 0; i < c->req.nheaders; i++)
        if (strcasecmp(c->req.headers[i].name, name) == 0) {
            v = c->req.headers[i].value;
            n++;
        }
    CHECK(n <= 1); /* never twice */
    return v;
}

/* The request a step adapter built equals the built-in C adapter's, byte for byte. */
static void check_same_as_c(x4_lua_rt *rt, const x4_catalog *cat, const char *svc, const char *inputs_text) {
    json_t *inputs = json_loads(inputs_text, 0, NULL);
    CHECK(inputs != NULL);
    x4_step_in in = step_in(cat, svc, inputs);
    x4_adapter_call a, b;
    json_t *out = NULL;
    char err[512] = "";
    int rc = x4_step_prepare(rt, &in, &a, &out, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  %s: %s\n", svc, err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(x4_adapter_http_build(&b, in.svc, inputs, "wf_1", "s1", 2, 1000, 5000, 1 << 20, err, sizeof err), 0);
    if (rc == 0) {
        CHECK_EQ_STR(a.req.method, b.req.method);
        CHECK_EQ_STR(a.req.url, b.req.url);
        CHECK((a.req.body == NULL) == (b.req.body == NULL));
        if (a.req.body && b.req.body) {
            CHECK_EQ_INT(a.req.body_len, b.req.body_len);
            CHECK_EQ_STR(a.req.body, b.req.body);
        }
        CHECK_EQ_INT(a.req.nheaders, b.req.nheaders);
        for (size_t i = 0; i < a.req.nheaders && i < b.req.nheaders; i++) {
            CHECK_EQ_STR(a.req.headers[i].name, b.req.headers[i].name);
            CHECK_EQ_STR(a.req.headers[i].value, b.req.headers[i].value);
        }
        CHECK_EQ_INT(a.req.timeout_ms, 5000);
        CHECK_EQ_INT(a.req.max_response, 1 << 20);
        x4_adapter_call_free(&a);
    }
    x4_adapter_call_free(&b);
    json_decref(inputs);
}

static const char *const k_inputs[] = {
    "{\"q\":\"a b&c\",\"n\":5,\"t\":true,\"l\":[1,2],\"o\":{\"z\":1,\"a\":\"x\"},\"f\":1.5}",
    "{}",
    "{\"nul\":null,\"empty\":{},\"big\":9007199254740993,\"u\":\"\\u00e9\\u4e2d\"}",
};

X4_TEST(no_plugin_is_the_builtin_adapter) {
    fresh_tmp();
    x4_catalog *cat = catalog();
    char dir[512];
    snprintf(dir, sizeof dir, "%s/plug", g_tmp); /* empty: nothing loaded */
    x4_lua_rt *rt = open_rt(dir, X4_SOURCE_DIR "/lua", 0);
    for (size_t i = 0; i < sizeof k_inputs / sizeof *k_inputs; i++) {
        check_same_as_c(NULL, cat, "post", k_inputs[i]);
        check_same_as_c(NULL, cat, "get", k_inputs[i]);
        check_same_as_c(rt, cat, "post", k_inputs[i]);
        check_same_as_c(rt, cat, "paid", k_inputs[i]);
    }
    /* any other adapter needs its plugin */
    json_t *in = json_object(), *out = NULL;
    x4_step_in s = step_in(cat, "nope", in);
    x4_adapter_call call;
    char err[512] = "";
    CHECK_EQ_INT(x4_step_prepare(rt, &s, &call, &out, err, sizeof err), -1);
    CHECK(strstr(err, "no adapter plugin 'nope' loaded") != NULL);
    CHECK_EQ_INT(x4_step_prepare(NULL, &s, &call, &out, err, sizeof err), -1);
    s = step_in(cat, "reshape", in);
    CHECK_EQ_INT(x4_step_prepare(rt, &s, &call, &out, err, sizeof err), -1);
    CHECK(strstr(err, "'transform'") != NULL);
    json_decref(in);
    x4_lua_close(rt);
    x4_catalog_unref(cat);
}

X4_TEST(shipped_http_and_x402_match_the_c_adapter) {
    fresh_tmp();
    x4_catalog *cat = catalog();
    x4_lua_rt *rt = open_rt(X4_SOURCE_DIR "/plugins", X4_SOURCE_DIR "/lua", 0);
    CHECK(x4_lua_has_plugin(rt, "http") && x4_lua_has_plugin(rt, "x402") && x4_lua_has_plugin(rt, "transform"));
    char dir[512];
    snprintf(dir, sizeof dir, "%s/plug", g_tmp); /* the same plugins run through Lua */
    copy_shipped(dir, "http.lua", "-- a copy\n");
    copy_shipped(dir, "x402.lua", "-- a copy\n");
    x4_lua_rt *copy = open_rt(dir, X4_SOURCE_DIR "/lua", 0);
    CHECK(!x4_step_adapter_shipped(copy, "http") && !x4_step_adapter_shipped(copy, "x402"));
    for (size_t i = 0; i < sizeof k_inputs / sizeof *k_inputs; i++) {
        for (int k = 0; k < 2; k++) {
            x4_lua_rt *r = k ? copy : rt;
            check_same_as_c(r, cat, "post", k_inputs[i]);
            check_same_as_c(r, cat, "get", k_inputs[i]);
            check_same_as_c(r, cat, "del", k_inputs[i]);
            check_same_as_c(r, cat, "paid", k_inputs[i]);
        }
    }
    x4_lua_close(copy);
    /* the engine headers, and room left for the payment header */
    json_t *in = json_pack("{s:s}", "q", "x"), *out = NULL;
    x4_step_in s = step_in(cat, "paid", in);
    x4_adapter_call call;
    char err[512] = "";
    CHECK_EQ_INT(x4_step_prepare(rt, &s, &call, &out, err, sizeof err), 0);
    CHECK_EQ_STR(header(&call, "Idempotency-Key"), "wf_1:s1:2");
    CHECK_EQ_STR(header(&call, "X-Workflow-Id"), "wf_1");
    CHECK_EQ_STR(header(&call, "X-Step-Id"), "s1");
    CHECK(call.req.nheaders + 2 <= X4_ADAPTER_MAX_HEADERS);
    CHECK_EQ_STR(call.req.body, "{\"q\":\"x\"}");
    x4_adapter_call_free(&call);
    json_decref(in);
    x4_lua_close(rt);
    x4_catalog_unref(cat);
}

static const char k_evil[] =
    "local x = require 'x402r'\n"
    "function prepare(step, ctx)\n"
    "  local m = step.inputs.mode\n"
    "  if m == 'error' then error('boom') end\n"
    "  if m == 'loop' then while true do end end\n"
    "  if m == 'number' then return 42 end\n"
    "  if m == 'crlf' then return { headers = { ['X-A'] = 'a\\r\\nX-Injected: 1' } } end\n"
    "  if m == 'badname' then return { headers = { ['Bad Name'] = 'v' } } end\n"
    "  if m == 'idem' then return { headers = { ['idempotency-key'] = 'mine' } } end\n"
    "  if m == 'wfid' then return { headers = { ['X-Workflow-Id'] = 'other' } } end\n"
    "  if m == 'pay' then return { headers = { ['X-PAYMENT'] = 'forged' } } end\n"
    "  if m == 'host' then return { headers = { Host = 'elsewhere' } } end\n"
    "  if m == 'numval' then return { headers = { ['X-N'] = 5 } } end\n"
    "  if m == 'file' then return { url = 'file:///etc/passwd' } end\n"
    "  if m == 'nohost' then return { url = 'http:///x' } end\n"
    "  if m == 'space' then return { url = 'http://h/a b' } end\n"
    "  if m == 'method' then return { method = 'TRACE' } end\n"
    "  if m == 'unknown' then return { methd = 'GET' } end\n"
    "  if m == 'getbody' then return { method = 'GET', body = 'x' } end\n"
    "  if m == 'huge' then return { body = string.rep('a', 2 * 1024 * 1024) } end\n"
    "  if m == 'manyh' then local h = {} for i = 1, 40 do h['X-H' .. i] = 'v' end return { headers = h } end\n"
    "  if m == 'both' then return { output = 1, error = 'x' } end\n"
    "  if m == 'inputs_as' then return { inputs_as = 'header' } end\n"
    "  if m == 'fn' then return { body = function() end } end\n"
    "  if m == 'refuse' then return { error = 'missing isbn' } end\n"
    "  return {}\n"
    "end\n"
    "function parse(response, ctx)\n"
    "  local m = response.headers['x-mode']\n"
    "  if m == 'error' then error('parse boom') end\n"
    "  if m == 'loop' then while true do end end\n"
    "  if m == 'number' then return 7 end\n"
    "  if m == 'unknown' then return { outptu = 1 } end\n"
    "  if m == 'retry' then return { retry = true, delay = 1e12, error = 'later' } end\n"
    "  if m == 'baddelay' then return { retry = true, delay = -5 } end\n"
    "  if m == 'fail' then return { error = 'nope: ' .. response.status } end\n"
    "  if m == 'noretry' then return { retry = false, error = 'final' } end\n"
    "  if m == 'retrytype' then return { retry = 'yes', error = 'x' } end\n"
    "  if m == 'null' then return { output = x.null } end\n"
    "  if m == 'text' then return { output = { text = response.body, json = response.json } } end\n"
    "  return { output = { status = response.status, ct = response.headers['content-type'] } }\n"
    "end\n"
    "function compensate(step, ctx)\n"
    "  local m = step.inputs.mode\n"
    "  if m == 'nil' then return nil end\n"
    "  if m == 'error' then error('undo boom') end\n"
    "  if m == 'file' then return { url = 'file:///x' } end\n"
    "  if m == 'crlf' then return { url = 'http://h/u', headers = { A = 'x\\ny' } } end\n"
    "  return { url = 'http://h/undo', method = 'put', body = { key = ctx.idempotencyKey, out = step.output } }\n"
    "end\n";

X4_TEST(hostile_plugins_fail_cleanly) {
    fresh_tmp();
    write_plugin("evil.lua", k_evil);
    /* a shipped name that misbehaves falls back to the built-in request */
    write_plugin("http.lua", "function prepare(step, ctx) if step.inputs.mode == 'loop' then while true do end end "
                             "if step.inputs.mode == 'crlf' then return { headers = { A = 'x\\r\\ny' } } end "
                             "error('broken http') end\n"
                             "function parse(r, ctx) error('broken parse') end\n");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/plug", g_tmp);
    x4_lua_rt *rt = open_rt(dir, X4_SOURCE_DIR "/lua", 200000);
    x4_catalog *cat = catalog();
    static const struct {
        const char *mode, *why;
    } cases[] = {
        {"error", "boom"},
        {"loop", "instruction budget"},
        {"number", "must return a request table"},
        {"crlf", "control character"},
        {"badname", "not allowed in a header name"},
        {"idem", "cannot be set or removed"},
        {"wfid", "cannot be set or removed"},
        {"pay", "cannot be set or removed"},
        {"host", "cannot be set or removed"},
        {"numval", "must be a string"},
        {"file", "http:// or https://"},
        {"nohost", "with a host"},
        {"space", "blank or control"},
        {"method", "method must be one of"},
        {"unknown", "unknown field 'methd'"},
        {"getbody", "GET request cannot carry a body"},
        {"huge", "body longer than"},
        {"manyh", "more than 16 headers"},
        {"both", "only field"},
        {"inputs_as", "inputs_as must be"},
        {"fn", "cannot convert a function"},
        {"refuse", "adapter evil refused the step: missing isbn"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *in = json_pack("{s:s}", "mode", cases[i].mode), *out = NULL;
        x4_step_in s = step_in(cat, "evil", in);
        x4_adapter_call call;
        char err[1024] = "";
        int rc = x4_step_prepare(rt, &s, &call, &out, err, sizeof err);
        if (rc != -1 || !strstr(err, cases[i].why))
            fprintf(stderr, "  mode %s: rc %d err '%s' (want '%s')\n", cases[i].mode, rc, err, cases[i].why);
        CHECK_EQ_INT(rc, -1);
        CHECK(strstr(err, cases[i].why) != NULL);
        CHECK(out == NULL);
        json_decref(in);
    }
    /* the state is still usable, and an empty table is a request with every default */
    json_t *in = json_pack("{s:s, s:i}", "mode", "plain", "n", 1), *out = NULL;
    x4_step_in s = step_in(cat, "evil", in);
    x4_adapter_call call;
    char err[1024] = "";
    CHECK_EQ_INT(x4_step_prepare(rt, &s, &call, &out, err, sizeof err), 0);
    CHECK_EQ_STR(call.req.method, "POST");
    CHECK_EQ_STR(call.req.url, "http://127.0.0.1:9/evil");
    CHECK(call.req.body == NULL);
    CHECK_EQ_STR(header(&call, "Idempotency-Key"), "wf_1:s1:2");
    x4_adapter_call_free(&call);

    /* http.lua broken in three ways: the built-in request each time */
    static const char *const modes[] = {"error", "loop", "crlf"};
    for (size_t i = 0; i < 3; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"mode\":\"%s\"}", modes[i]);
        check_same_as_c(rt, cat, "post", text);
    }
    json_decref(in);
    x4_lua_close(rt);
    x4_catalog_unref(cat);
}

X4_TEST(a_plugin_shapes_the_request) {
    fresh_tmp();
    write_plugin("good.lua",
                 "function prepare(step, ctx)\n"
                 "  return { method = 'put', url = step.service.url .. '/v2',\n"
                 "           query = { z = 'last', a = step.inputs.isbn, key = ctx.idempotencyKey },\n"
                 "           headers = { ['Content-Type'] = 'application/x-www-form-urlencoded',\n"
                 "                       ['X-Api-Version'] = '3', Accept = 'text/plain' },\n"
                 "           body = 'isbn=' .. step.inputs.isbn .. '&n=' .. step.attempt }\n"
                 "end\n");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/plug", g_tmp);
    x4_lua_rt *rt = open_rt(dir, X4_SOURCE_DIR "/lua", 0);
    x4_catalog *cat = catalog();
    json_t *in = json_pack("{s:s}", "isbn", "978-3"), *out = NULL;
    x4_step_in s = step_in(cat, "good", in);
    x4_adapter_call call;
    char err[1024] = "";
    CHECK_EQ_INT(x4_step_prepare(rt, &s, &call, &out, err, sizeof err), 0);
    CHECK_EQ_STR(call.req.method, "PUT");
    CHECK_EQ_STR(call.req.url, "http://127.0.0.1:9/good/v2?a=978-3&key=wf_1%3As1%3A2&z=last");
    CHECK_EQ_STR(call.req.body, "isbn=978-3&n=2");
    CHECK_EQ_INT(call.req.body_len, 14);
    CHECK_EQ_STR(header(&call, "Content-Type"), "application/x-www-form-urlencoded");
    CHECK_EQ_STR(header(&call, "Accept"), "text/plain");
    CHECK_EQ_STR(header(&call, "X-Api-Version"), "3");
    CHECK_EQ_STR(header(&call, "Idempotency-Key"), "wf_1:s1:2");
    CHECK_EQ_STR(header(&call, "X-Step-Id"), "s1");
    CHECK_EQ_INT(call.req.nheaders, 6);
    x4_adapter_call_free(&call);
    json_decref(in);
    x4_lua_close(rt);
    x4_catalog_unref(cat);
}

X4_TEST(transform_answers_without_a_request) {
    fresh_tmp();
    x4_lua_rt *rt = open_rt(X4_SOURCE_DIR "/plugins", X4_SOURCE_DIR "/lua", 0);
    x4_catalog *cat = catalog();
    static const struct {
        const char *inputs, *want;
    } cases[] = {
        {"{\"op\":\"get\",\"from\":{\"a\":{\"b\":[10,20]}},\"path\":\"a.b[1]\"}", "20"},
        {"{\"op\":\"pick\",\"from\":{\"a\":1,\"b\":2,\"c\":3},\"fields\":[\"a\",\"c\"]}", "{\"a\":1,\"c\":3}"},
        {"{\"op\":\"rename\",\"from\":{\"a\":1,\"b\":2},\"map\":{\"a\":\"x\"}}", "{\"x\":1,\"b\":2}"},
        {"{\"op\":\"merge\",\"from\":[{\"a\":1,\"b\":1},{\"b\":2}]}", "{\"a\":1,\"b\":2}"},
        {"{\"op\":\"template\",\"from\":{\"n\":\"Ada\",\"k\":3},\"template\":\"${n} x${k}\"}", "\"Ada x3\""},
        {"{\"op\":\"map\",\"from\":[{\"p\":{\"q\":1}},{\"p\":{\"q\":2}}],\"apply\":{\"op\":\"get\",\"path\":\"p.q\"}}",
         "[1,2]"},
        {"{\"op\":\"shape\",\"from\":{\"u\":{\"n\":\"A\"}},\"fields\":{\"name\":\"u.n\"}}", "{\"name\":\"A\"}"},
        {"{\"op\":\"get\",\"from\":{},\"path\":\"a\"}", "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *in = json_loads(cases[i].inputs, 0, NULL), *out = NULL;
        json_t *want = json_loads(cases[i].want, JSON_DECODE_ANY, NULL);
        CHECK(in && want);
        x4_step_in s = step_in(cat, "reshape", in);
        x4_adapter_call call;
        char err[1024] = "";
        CHECK_EQ_INT(x4_step_prepare(rt, &s, &call, &out, err, sizeof err), 1);
        CHECK(out && want && json_equal(out, want));
        if (out && want && !json_equal(out, want)) {
            char *d = json_dumps(out, JSON_ENCODE_ANY);
            fprintf(stderr, "  case %zu: got %s\n", i, d);
            free(d);
        }
        json_decref(out);
        json_decref(want);
        json_decref(in);
    }
    json_t *in = json_loads("{\"op\":\"explode\"}", 0, NULL), *out = NULL;
    x4_step_in s = step_in(cat, "reshape", in);
    x4_adapter_call call;
    char err[1024] = "";
    CHECK_EQ_INT(x4_step_prepare(rt, &s, &call, &out, err, sizeof err), -1);
    CHECK(strstr(err, "transform: unknown op 'explode'") != NULL);
    CHECK(out == NULL);
    json_decref(in);
    /* nothing to undo */
    json_t *req = NULL;
    in = json_object();
    s = step_in(cat, "reshape", in);
    CHECK_EQ_INT(x4_step_compensation(rt, &s, in, &req, err, sizeof err), 0);
    json_decref(in);
    x4_lua_close(rt);
    x4_catalog_unref(cat);
}

static x4_outcome parse_resp(x4_lua_rt *rt, const x4_catalog *cat, const char *svc, x4_httpc_status st, long code,
                             const char *body, x4_httpc_header *h, size_t nh, json_t **out, int64_t *ra, char *err,
                             size_t errlen) {
    x4_httpc_resp r;
    memset(&r, 0, sizeof r);
    r.status = st;
    r.code = code;
    r.body = (char *)(body ? body : "");
    r.body_len = body ? strlen(body) : 0;
    r.headers = h;
    r.nheaders = nh;
    if (st != X4_HTTPC_OK) snprintf(r.error, sizeof r.error, "connection refused");
    json_t *in = json_object();
    x4_step_in s = step_in(cat, svc, in);
    x4_outcome oc = x4_step_parse(rt, &s, &r, out, ra, err, errlen);
    json_decref(in);
    return oc;
}

X4_TEST(parse_outcomes_of_the_shipped_adapters) {
    fresh_tmp();
    x4_lua_rt *shipped = open_rt(X4_SOURCE_DIR "/plugins", X4_SOURCE_DIR "/lua", 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/plug", g_tmp); /* the same plugins run through Lua */
    copy_shipped(dir, "http.lua", "-- a copy\n");
    copy_shipped(dir, "x402.lua", "-- a copy\n");
    x4_lua_rt *copy = open_rt(dir, X4_SOURCE_DIR "/lua", 0);
    x4_catalog *cat = catalog();
    json_t *out = NULL;
    int64_t ra = 0;
    char err[512] = "";
    static const char *const svcs[] = {"post", "paid"};
    for (size_t k = 0; k < 4; k++) {
        const char *sv = svcs[k % 2];
        x4_lua_rt *rt = k < 2 ? shipped : copy;
        /* the output is the body exactly: nulls, empty objects and big integers survive */
        const char *body = "{\"a\":null,\"b\":{},\"c\":[],\"big\":9007199254740993}";
        CHECK_EQ_INT(parse_resp(rt, cat, sv, X4_HTTPC_OK, 200, body, NULL, 0, &out, &ra, err, sizeof err), X4_OUT_OK);
        json_t *want = json_loads(body, 0, NULL);
        CHECK(out && json_equal(out, want));
        json_decref(want);
        json_decref(out);
        CHECK_EQ_INT(parse_resp(rt, cat, sv, X4_HTTPC_OK, 204, NULL, NULL, 0, &out, &ra, err, sizeof err), X4_OUT_OK);
        CHECK(json_is_object(out) && json_object_size(out) == 0);
        json_decref(out);
        CHECK_EQ_INT(parse_resp(rt, cat, sv, X4_HTTPC_OK, 200, "<html>", NULL, 0, &out, &ra, err, sizeof err),
                     X4_OUT_FAIL);
        CHECK(strstr(err, "not JSON") != NULL);
        x4_httpc_header h[] = {{"retry-after", "2"}};
        CHECK_EQ_INT(parse_resp(rt, cat, sv, X4_HTTPC_OK, 503, "busy", h, 1, &out, &ra, err, sizeof err),
                     X4_OUT_RETRY);
        CHECK_EQ_INT(ra, 2000);
        CHECK(strstr(err, "503") != NULL);
        CHECK_EQ_INT(parse_resp(rt, cat, sv, X4_HTTPC_OK, 429, "", NULL, 0, &out, &ra, err, sizeof err), X4_OUT_RETRY);
        CHECK_EQ_INT(ra, -1);
        CHECK_EQ_INT(parse_resp(rt, cat, sv, X4_HTTPC_OK, 404, "gone", NULL, 0, &out, &ra, err, sizeof err),
                     X4_OUT_FAIL);
        CHECK(strstr(err, "HTTP 404: gone") != NULL);
        CHECK_EQ_INT(parse_resp(rt, cat, sv, X4_HTTPC_OK, 402, "{}", NULL, 0, &out, &ra, err, sizeof err),
                     X4_OUT_PAYMENT_REQUIRED);
        CHECK_EQ_INT(parse_resp(rt, cat, sv, X4_HTTPC_NETWORK, 0, NULL, NULL, 0, &out, &ra, err, sizeof err),
                     X4_OUT_RETRY);
        CHECK_EQ_INT(parse_resp(rt, cat, sv, X4_HTTPC_TOO_LARGE, 0, NULL, NULL, 0, &out, &ra, err, sizeof err),
                     X4_OUT_FAIL);
        CHECK(out == NULL);
    }
    x4_lua_close(shipped);
    x4_lua_close(copy);
    x4_catalog_unref(cat);
}

/* The shipped http/x402 plugins are answered in C (x4_step_adapter_shipped) with exactly what
 * the same files give through Lua, and any other file, or an http module found elsewhere,
 * runs as Lua. */
X4_TEST(shipped_plugins_skip_lua_with_the_same_result) {
    fresh_tmp();
    /* the hashes the fast path recognises are those of the files in plugins/ */
    static const char *const names[] = {"http", "x402"};
    for (size_t i = 0; i < 2; i++) {
        char path[512], hex[65];
        unsigned char h[32];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/plugins/%s.lua", X4_SOURCE_DIR, names[i]);
        char *text = read_text(path, &len);
        crypto_generichash(h, sizeof h, (const unsigned char *)text, len, NULL, 0);
        sodium_bin2hex(hex, sizeof hex, h, sizeof h);
        if (strcmp(hex, x4_step_shipped_hash(names[i])) != 0)
            fprintf(stderr, "  plugins/%s.lua changed (%s): re-check step_adapter.c \"the shipped plugins\"\n",
                    names[i], hex);
        CHECK_EQ_STR(hex, x4_step_shipped_hash(names[i]));
        free(text);
    }
    CHECK(x4_step_shipped_hash("transform") == NULL);
    x4_lua_rt *shipped = open_rt(X4_SOURCE_DIR "/plugins", X4_SOURCE_DIR "/lua", 0);
    CHECK(x4_step_adapter_shipped(shipped, "http") && x4_step_adapter_shipped(shipped, "x402"));
    CHECK(!x4_step_adapter_shipped(shipped, "transform") && !x4_step_adapter_shipped(NULL, "http"));
    CHECK_EQ_STR(x4_lua_plugin_source(shipped, "http"), x4_step_shipped_hash("http"));
    CHECK(x4_lua_plugin_source(shipped, "nope") == NULL);

    /* the same files with one more line: Lua; every answer must be the same */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/plug", g_tmp);
    copy_shipped(dir, "http.lua", "-- a copy\n");
    copy_shipped(dir, "x402.lua", "-- a copy\n");
    x4_lua_rt *copy = open_rt(dir, X4_SOURCE_DIR "/lua", 0);
    CHECK(!x4_step_adapter_shipped(copy, "http") && !x4_step_adapter_shipped(copy, "x402"));
    x4_catalog *cat = catalog();
    static const char *const svcs[] = {"post", "get", "del", "paid"};
    static const char *const inputs[] = {"{\"a\":1,\"b\":[null,{}]}", "{}", "[1,2]", "\"text\""};
    for (size_t i = 0; i < sizeof svcs / sizeof *svcs; i++) {
        for (size_t j = 0; j < sizeof inputs / sizeof *inputs; j++) {
            json_t *in = json_loads(inputs[j], JSON_DECODE_ANY, NULL), *o1 = NULL, *o2 = NULL;
            x4_step_in s = step_in(cat, svcs[i], in);
            x4_adapter_call a, b;
            char e1[512] = "", e2[512] = "";
            int r1 = x4_step_prepare(shipped, &s, &a, &o1, e1, sizeof e1);
            int r2 = x4_step_prepare(copy, &s, &b, &o2, e2, sizeof e2);
            CHECK_EQ_INT(r1, r2);
            if (r1 == 0 && r2 == 0) {
                CHECK_EQ_STR(a.req.method, b.req.method);
                CHECK_EQ_STR(a.req.url, b.req.url);
                CHECK_EQ_INT(a.req.body_len, b.req.body_len);
                CHECK((a.req.body == NULL) == (b.req.body == NULL));
                if (a.req.body && b.req.body) CHECK(memcmp(a.req.body, b.req.body, a.req.body_len) == 0);
                CHECK_EQ_INT(a.req.nheaders, b.req.nheaders);
                for (size_t k = 0; k < a.req.nheaders && k < b.req.nheaders; k++) {
                    CHECK_EQ_STR(a.req.headers[k].name, b.req.headers[k].name);
                    CHECK_EQ_STR(a.req.headers[k].value, b.req.headers[k].value);
                }
            } else {
                CHECK_EQ_STR(e1, e2);
            }
            if (r1 == 0) x4_adapter_call_free(&a);
            if (r2 == 0) x4_adapter_call_free(&b);
            json_decref(o1);
            json_decref(o2);
            json_decref(in);
        }
    }
    static const struct {
        long code;
        const char *body;
    } resps[] = {{200, "{\"a\":null,\"b\":{},\"big\":9007199254740993}"}, {201, "[1,\"x\",null]"}, {200, "null"},
                 {200, "42"}, {204, NULL}, {200, "not json"}, {200, "  "}, {299, "\"s\""}, {503, "{\"busy\":true}"},
                 {404, "gone"}, {429, ""}, {302, "{}"}};
    x4_httpc_header h[] = {{"Retry-After", "3"}, {"Content-Type", "application/json"}};
    for (size_t i = 0; i < sizeof resps / sizeof *resps; i++) {
        for (size_t k = 0; k < 2; k++) {
            const char *sv = k ? "paid" : "post";
            json_t *o1 = NULL, *o2 = NULL;
            int64_t ra1 = 0, ra2 = 0;
            char e1[512] = "", e2[512] = "";
            x4_outcome c1 = parse_resp(shipped, cat, sv, X4_HTTPC_OK, resps[i].code, resps[i].body, h, 2, &o1, &ra1,
                                       e1, sizeof e1);
            x4_outcome c2 = parse_resp(copy, cat, sv, X4_HTTPC_OK, resps[i].code, resps[i].body, h, 2, &o2, &ra2, e2,
                                       sizeof e2);
            CHECK_EQ_INT(c1, c2);
            CHECK_EQ_INT(ra1, ra2);
            CHECK((o1 == NULL) == (o2 == NULL));
            if (o1 && o2) CHECK(json_equal(o1, o2));
            if (c1 != X4_OUT_OK) CHECK_EQ_STR(e1, e2);
            json_decref(o1);
            json_decref(o2);
        }
    }

    /* an operator's http.lua takes effect */
    write_plugin("http.lua", "function prepare(step, ctx) return { headers = { ['X-Mine'] = 'yes' } } end\n"
                             "function parse(response, ctx) return { output = { mine = response.status } } end\n");
    x4_lua_rt *own = open_rt(dir, X4_SOURCE_DIR "/lua", 0);
    CHECK(!x4_step_adapter_shipped(own, "http"));
    json_t *in = json_object(), *out = NULL;
    x4_step_in s = step_in(cat, "post", in);
    x4_adapter_call call;
    char err[512] = "";
    CHECK_EQ_INT(x4_step_prepare(own, &s, &call, &out, err, sizeof err), 0);
    CHECK_EQ_STR(header(&call, "X-Mine"), "yes");
    x4_adapter_call_free(&call);
    int64_t ra = 0;
    CHECK_EQ_INT(parse_resp(own, cat, "post", X4_HTTPC_OK, 200, "{}", NULL, 0, &out, &ra, err, sizeof err),
                 X4_OUT_OK);
    CHECK(out && json_integer_value(json_object_get(out, "mine")) == 200);
    json_decref(out);
    json_decref(in);
    x4_lua_close(own);

    /* the shipped x402.lua whose require "http" finds another http.lua (policies/ comes before
     * plugins/) is not the shipped adapter, though plugins/http.lua is */
    char pol[512];
    snprintf(pol, sizeof pol, "%s/pol", g_tmp);
    snprintf(dir, sizeof dir, "%s/plug", g_tmp);
    copy_shipped(pol, "http.lua", "-- shadows plugins/http.lua for require\n");
    copy_shipped(dir, "http.lua", "");
    copy_shipped(dir, "x402.lua", "");
    x4_lua_rt *shadow = open_rt(dir, X4_SOURCE_DIR "/lua", 0);
    CHECK(x4_step_adapter_shipped(shadow, "http"));
    CHECK(!x4_step_adapter_shipped(shadow, "x402"));
    const char *m = x4_lua_module_source(shadow, "http");
    CHECK(m && strncmp(m, "policies/http.lua ", 18) == 0);
    x4_lua_close(shadow);

    x4_lua_close(shipped);
    x4_lua_close(copy);
    x4_catalog_unref(cat);
}

X4_TEST(parse_of_a_plugin_and_its_failures) {
    fresh_tmp();
    write_plugin("evil.lua", k_evil);
    write_plugin("http.lua", "function prepare(step, ctx) return {} end\nfunction parse(r, ctx) error('broken') end\n");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/plug", g_tmp);
    x4_lua_rt *rt = open_rt(dir, X4_SOURCE_DIR "/lua", 200000);
    x4_catalog *cat = catalog();
    json_t *out = NULL;
    int64_t ra = 0;
    char err[1024] = "";
    x4_httpc_header h[] = {{"X-Mode", ""}, {"Content-Type", "application/json"}, {"Content-Type", "charset=utf-8"}};
#define MODE(m) (h[0].value = (m))
    MODE("plain");
    CHECK_EQ_INT(parse_resp(rt, cat, "evil", X4_HTTPC_OK, 418, "{}", h, 3, &out, &ra, err, sizeof err), X4_OUT_OK);
    CHECK_EQ_INT(json_integer_value(json_object_get(out, "status")), 418);
    CHECK_EQ_STR(json_string_value(json_object_get(out, "ct")), "application/json, charset=utf-8");
    json_decref(out);
    MODE("text");
    CHECK_EQ_INT(parse_resp(rt, cat, "evil", X4_HTTPC_OK, 200, "plain words", h, 1, &out, &ra, err, sizeof err),
                 X4_OUT_OK);
    CHECK_EQ_STR(json_string_value(json_object_get(out, "text")), "plain words");
    CHECK(json_is_false(json_object_get(out, "json")));
    json_decref(out);
    MODE("null");
    CHECK_EQ_INT(parse_resp(rt, cat, "evil", X4_HTTPC_OK, 200, "{}", h, 1, &out, &ra, err, sizeof err), X4_OUT_OK);
    CHECK(json_is_null(out));
    json_decref(out);
    MODE("retry");
    CHECK_EQ_INT(parse_resp(rt, cat, "evil", X4_HTTPC_OK, 200, "{}", h, 1, &out, &ra, err, sizeof err),
                 X4_OUT_RETRY);
    CHECK_EQ_INT(ra, X4_STEP_MAX_DELAY_MS);
    CHECK_EQ_STR(err, "later");
    MODE("fail");
    CHECK_EQ_INT(parse_resp(rt, cat, "evil", X4_HTTPC_OK, 200, "{}", h, 1, &out, &ra, err, sizeof err), X4_OUT_FAIL);
    CHECK_EQ_STR(err, "nope: 200");
    MODE("noretry");
    CHECK_EQ_INT(parse_resp(rt, cat, "evil", X4_HTTPC_OK, 200, "{}", h, 1, &out, &ra, err, sizeof err), X4_OUT_FAIL);
    CHECK_EQ_STR(err, "final");
    /* failures of a plugin's parse fail the step; Lua never sees a 402 */
    static const char *const bad[] = {"error", "loop", "number", "unknown", "baddelay", "retrytype"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        MODE(bad[i]);
        CHECK_EQ_INT(parse_resp(rt, cat, "evil", X4_HTTPC_OK, 200, "{}", h, 1, &out, &ra, err, sizeof err),
                     X4_OUT_FAIL);
        CHECK(strstr(err, "adapter evil failed") != NULL);
        CHECK(out == NULL);
        CHECK_EQ_INT(ra, -1);
    }
    MODE("error");
    CHECK_EQ_INT(parse_resp(rt, cat, "evil", X4_HTTPC_OK, 402, "{}", h, 1, &out, &ra, err, sizeof err),
                 X4_OUT_PAYMENT_REQUIRED);
    /* a broken parse of a shipped adapter: the built-in classification */
    CHECK_EQ_INT(parse_resp(rt, cat, "post", X4_HTTPC_OK, 200, "{\"ok\":1}", NULL, 0, &out, &ra, err, sizeof err),
                 X4_OUT_OK);
    CHECK_EQ_INT(json_integer_value(json_object_get(out, "ok")), 1);
    json_decref(out);
    CHECK_EQ_INT(parse_resp(rt, cat, "post", X4_HTTPC_OK, 500, "x", NULL, 0, &out, &ra, err, sizeof err),
                 X4_OUT_RETRY);
    /* no runtime at all: the built-in classification */
    CHECK_EQ_INT(parse_resp(NULL, cat, "evil", X4_HTTPC_OK, 201, "[1]", NULL, 0, &out, &ra, err, sizeof err),
                 X4_OUT_OK);
    CHECK(json_is_array(out));
    json_decref(out);
#undef MODE
    x4_lua_close(rt);
    x4_catalog_unref(cat);
}

static int compensation(x4_lua_rt *rt, const x4_catalog *cat, const char *svc, const char *mode, const char *output,
                        json_t **req, char *err, size_t errlen) {
    json_t *in = json_pack("{s:s}", "mode", mode), *o = json_loads(output, 0, NULL);
    x4_step_in s = step_in(cat, svc, in);
    int rc = x4_step_compensation(rt, &s, o, req, err, errlen);
    json_decref(in);
    json_decref(o);
    return rc;
}

X4_TEST(compensation_requests) {
    fresh_tmp();
    write_plugin("evil.lua", k_evil);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/plug", g_tmp);
    x4_lua_rt *rt = open_rt(dir, X4_SOURCE_DIR "/lua", 200000);
    x4_lua_rt *shipped = open_rt(X4_SOURCE_DIR "/plugins", X4_SOURCE_DIR "/lua", 0);
    x4_catalog *cat = catalog();
    json_t *req = NULL;
    char err[1024] = "";
    CHECK_EQ_INT(compensation(rt, cat, "evil", "ok", "{\"id\":7}", &req, err, sizeof err), 1);
    CHECK_EQ_STR(json_string_value(json_object_get(req, "url")), "http://h/undo");
    CHECK_EQ_STR(json_string_value(json_object_get(req, "method")), "PUT");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(req, "body"), "key")), "wf_1:s1:compensate");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(json_object_get(req, "body"), "out"), "id")), 7);
    json_decref(req);
    CHECK_EQ_INT(compensation(rt, cat, "evil", "nil", "{}", &req, err, sizeof err), 0);
    CHECK(req == NULL);
    CHECK_EQ_INT(compensation(rt, cat, "evil", "error", "{}", &req, err, sizeof err), -1);
    CHECK(strstr(err, "undo boom") != NULL);
    CHECK_EQ_INT(compensation(rt, cat, "evil", "file", "{}", &req, err, sizeof err), -1);
    CHECK(strstr(err, "http:// or https://") != NULL);
    CHECK_EQ_INT(compensation(rt, cat, "evil", "crlf", "{}", &req, err, sizeof err), -1);
    CHECK(strstr(err, "control character") != NULL);
    CHECK(req == NULL);
    /* no plugin (http not loaded here) or no runtime: nothing from the adapter */
    CHECK_EQ_INT(compensation(rt, cat, "undoable", "ok", "{}", &req, err, sizeof err), 0);
    CHECK_EQ_INT(compensation(NULL, cat, "evil", "ok", "{}", &req, err, sizeof err), 0);
    /* the shipped http adapter offers the catalog's compensate endpoint */
    CHECK_EQ_INT(compensation(shipped, cat, "undoable", "ok", "{\"orderId\":\"o1\"}", &req, err, sizeof err), 1);
    CHECK_EQ_STR(json_string_value(json_object_get(req, "url")), "http://127.0.0.1:9/cancel");
    CHECK_EQ_STR(json_string_value(json_object_get(req, "method")), "DELETE");
    json_t *body = json_object_get(req, "body");
    CHECK_EQ_STR(json_string_value(json_object_get(body, "workflowId")), "wf_1");
    CHECK_EQ_STR(json_string_value(json_object_get(body, "stepId")), "s1");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(body, "output"), "orderId")), "o1");
    json_decref(req);
    CHECK_EQ_INT(compensation(shipped, cat, "post", "ok", "{}", &req, err, sizeof err), 0);
    x4_lua_close(rt);
    x4_lua_close(shipped);
    x4_catalog_unref(cat);
}

X4_TEST(example_graphql_plugin_through_c) {
    fresh_tmp();
    x4_lua_rt *rt = open_rt(X4_SOURCE_DIR "/examples/plugins", X4_SOURCE_DIR "/lua", 0);
    x4_catalog *cat = catalog();
    json_t *in = json_pack("{s:s}", "code", "FR"), *out = NULL;
    x4_step_in s = step_in(cat, "countries.country", in);
    x4_adapter_call call;
    char err[1024] = "";
    CHECK_EQ_INT(x4_step_prepare(rt, &s, &call, &out, err, sizeof err), 0);
    CHECK_EQ_STR(call.req.method, "POST");
    CHECK_EQ_STR(call.req.url, "https://gql.example/graphql");
    json_t *body = call.req.body ? json_loadb(call.req.body, call.req.body_len, 0, NULL) : NULL;
    CHECK(body != NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(body, "variables"), "code")), "FR");
    CHECK(strstr(json_string_value(json_object_get(body, "query")), "country(code: $code)") != NULL);
    json_decref(body);
    CHECK(strstr(header(&call, "Accept"), "graphql-response+json") != NULL);
    CHECK_EQ_STR(header(&call, "Idempotency-Key"), "wf_1:s1:2");
    x4_adapter_call_free(&call);
    int64_t ra;
    CHECK_EQ_INT(parse_resp(rt, cat, "countries.country", X4_HTTPC_OK, 200,
                            "{\"data\":{\"country\":{\"name\":\"France\"}}}", NULL, 0, &out, &ra, err, sizeof err),
                 X4_OUT_OK);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(out, "country"), "name")), "France");
    json_decref(out);
    CHECK_EQ_INT(parse_resp(rt, cat, "countries.country", X4_HTTPC_OK, 200,
                            "{\"errors\":[{\"message\":\"unknown code\"}]}", NULL, 0, &out, &ra, err, sizeof err),
                 X4_OUT_FAIL);
    CHECK_EQ_STR(err, "graphql: unknown code");
    /* a priced graphql service still goes through the payment path on 402 */
    CHECK_EQ_INT(parse_resp(rt, cat, "shop.order", X4_HTTPC_OK, 402, "{}", NULL, 0, &out, &ra, err, sizeof err),
                 X4_OUT_PAYMENT_REQUIRED);
    json_t *req = NULL;
    CHECK_EQ_INT(compensation(rt, cat, "shop.order", "x", "{\"createOrder\":{\"id\":\"o-9\"}}", &req, err, sizeof err),
                 1);
    CHECK_EQ_STR(json_string_value(json_object_get(req, "method")), "POST");
    CHECK(strstr(json_string_value(json_object_get(req, "body")), "\"o-9\"") != NULL);
    json_decref(req);
    json_decref(in);
    x4_lua_close(rt);
    x4_catalog_unref(cat);
}

/* ---- the Lua tests of plugins ---- */

static void link_into_lib(const char *src_dir, const char *only) {
    DIR *d = opendir(src_dir);
    CHECK(d != NULL);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".lua") != 0) continue;
        if (only && strcmp(e->d_name, only) != 0) continue;
        char from[600], to[600];
        snprintf(from, sizeof from, "%s/%s", src_dir, e->d_name);
        snprintf(to, sizeof to, "%s/lib/%s", g_tmp, e->d_name);
        CHECK(symlink(from, to) == 0);
    }
    closedir(d);
}

/* Loads test_dir's *_test.lua as plugins, with lua/x402r.lua, tests/lua/testlib.lua and every
 * module of module_dir requireable, and calls each test_* function. Returns the passed count. */
static int run_lua_tests(const char *test_dir, const char *module_dir) {
    fresh_tmp();
    link_into_lib(X4_SOURCE_DIR "/lua", "x402r.lua");
    link_into_lib(X4_SOURCE_DIR "/tests/lua", "testlib.lua");
    link_into_lib(module_dir, NULL);
    char lib[512];
    snprintf(lib, sizeof lib, "%s/lib", g_tmp);
    x4_lua_rt *rt = open_rt(test_dir, lib, 50000000);
    if (!rt) return 0;
    int passed = 0, failed = 0;
    CHECK_EQ_INT(unit_lua_run(rt, &passed, &failed), 0);
    printf("lua (%s): %d passed, %d failed\n", test_dir, passed, failed);
    CHECK_EQ_INT(failed, 0);
    x4_lua_close(rt);
    return passed;
}

X4_TEST(lua_tests_of_the_shipped_plugins) {
    CHECK(run_lua_tests(X4_SOURCE_DIR "/tests/lua/plugins", X4_SOURCE_DIR "/plugins") >= 14);
}

X4_TEST(lua_tests_of_the_example_plugin) {
    CHECK(run_lua_tests(X4_SOURCE_DIR "/examples/plugins/test", X4_SOURCE_DIR "/examples/plugins") >= 6);
}

X4_TEST(shipped_plugins_load_with_the_default_policies) {
    char err[1024] = "";
    x4_lua_opts o = {.policy_dir = X4_SOURCE_DIR "/policies", .plugin_dir = X4_SOURCE_DIR "/plugins",
                     .lib_dir = X4_SOURCE_DIR "/lua"};
    x4_lua_rt *rt = x4_lua_open(&o, err, sizeof err);
    CHECK(rt != NULL);
    if (!rt) return;
    CHECK_EQ_INT(x4_lua_reload(rt, err, sizeof err), 0);
    CHECK(x4_lua_has_hook(rt, "retry.decide"));
    static const char *const want[][2] = {{"http", "prepare"}, {"http", "parse"},     {"http", "compensate"},
                                          {"x402", "prepare"}, {"x402", "parse"},     {"x402", "compensate"},
                                          {"transform", "prepare"}};
    json_t *d = x4_lua_describe(rt);
    json_t *plugins = json_object_get(d, "plugins");
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        json_t *fns = json_object_get(plugins, want[i][0]), *f;
        size_t k;
        int found = 0;
        json_array_foreach(fns, k, f) found |= strcmp(json_string_value(f), want[i][1]) == 0;
        CHECK(found);
    }
    json_decref(d);
    x4_lua_close(rt);
}

/* Cost of the Lua seam against the C adapter: no runtime, the shipped plugins (answered in C)
 * and the same files run through Lua (printed; the bound only catches a pathology). */
X4_TEST(cost_per_step_through_lua) {
    fresh_tmp();
    x4_lua_rt *rt = open_rt(X4_SOURCE_DIR "/plugins", X4_SOURCE_DIR "/lua", 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/plug", g_tmp);
    copy_shipped(dir, "http.lua", "-- a copy\n");
    x4_lua_rt *copy = open_rt(dir, X4_SOURCE_DIR "/lua", 0);
    x4_catalog *cat = catalog();
    json_t *in = json_loads(k_inputs[0], 0, NULL);
    const char *body = "{\"title\":\"A book\",\"pages\":320,\"authors\":[\"a\",\"b\"],\"meta\":{\"isbn\":\"978\"}}";
    x4_httpc_resp r;
    memset(&r, 0, sizeof r);
    r.status = X4_HTTPC_OK;
    r.code = 200;
    r.body = (char *)body;
    r.body_len = strlen(body);
    enum { N = 2000 };
    double t[3];
    x4_lua_rt *rts[3] = {NULL, rt, copy};
    for (int k = 0; k < 3; k++) {
        x4_step_in s = step_in(cat, "post", in);
        uint64_t t0 = x4_mono_us();
        for (int i = 0; i < N; i++) {
            x4_adapter_call call;
            json_t *out = NULL;
            int64_t ra;
            char err[256];
            CHECK_EQ_INT(x4_step_prepare(rts[k], &s, &call, &out, err, sizeof err), 0);
            x4_adapter_call_free(&call);
            CHECK_EQ_INT(x4_step_parse(rts[k], &s, &r, &out, &ra, err, sizeof err), X4_OUT_OK);
            json_decref(out);
        }
        t[k] = (double)(x4_mono_us() - t0) / N;
    }
    printf("step adapter cost per prepare+parse: C %.1f us, shipped http.lua %.1f us, the same through Lua %.1f us\n",
           t[0], t[1], t[2]);
    CHECK(t[1] < 2000.0 && t[2] < 2000.0);
    json_decref(in);
    x4_lua_close(rt);
    x4_lua_close(copy);
    x4_catalog_unref(cat);
}
