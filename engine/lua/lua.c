/* lua/lua.c — the sandboxed LuaJIT runtime behind lua/lua.h.
 *
 * One lua_State per runtime, created with lua_newstate and our allocator, which counts every
 * byte and refuses growth past the cap while a protected call runs (outside one, only the
 * engine allocates, a few bytes, and is never refused: an unprotected failure would panic).
 * luaopen_jit is never called, so the JIT stays off and the count hook sees every instruction.
 * The hook fires every HOOK_STEP instructions, remembers where it is (so an out-of-memory
 * error can name a line) and, once the budget is spent, errors on every instruction; the
 * sandbox's pcall/xpcall re-raise such aborts, so policy code cannot swallow them. Running out
 * of memory aborts the call the same way.
 *
 * Sandbox: base (minus the loaders, fenv access, the collector and newproxy; coroutines are
 * left out too: a resumed coroutine would catch an abort), table, string (no dump), math, bit,
 * os.time/os.clock, and our require. Each file gets a fresh environment whose library tables
 * are its own shallow copies; modules returned by require are frozen into read-only views.
 *
 * Read-only views: a JSON object or array reaches Lua as a zero-size userdata whose fenv is
 * the backing table; __index reads it, __newindex raises, __len works (it would not on a
 * table proxy in Lua 5.1). pairs/ipairs/next/unpack/type in the sandbox understand views.
 * Arguments are converted eagerly (O(size) per call), so a view never points into the engine.
 *
 * JSON (lua-cjson, safe variant): cjson encodes through its own malloc'd buffer, outside the
 * cap, so encode first copies its argument into plain tables while summing an upper bound of
 * the output size and refuses anything over a quarter of the cap; decode input is bounded the
 * same way and nesting is capped at 64 both ways.
 *
 * Reload builds a complete new state and swaps it in only when every file loaded; the version
 * is a BLAKE2b hash of the files' names and contents. Cost per call: argument conversion,
 * one pcall, result conversion and validation; a full collection only after a failure or when
 * more than half the cap is in use. */
#include "lua/lua.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "core/log.h"
#include "core/util.h"

int luaopen_cjson_safe(lua_State *L); /* lua-cjson, linked with -llua5.1-cjson */

#define HOOK_STEP 1000
#define MAX_DEPTH 64
#define MAX_NODES 200000
#define MAX_FILE_BYTES ((size_t)1 << 20)
#define MAX_FILES 256
#define MIN_CAP ((size_t)1 << 20)
#define MAX_UNPACK 8000

enum { ABORT_NONE = 0, ABORT_BUDGET, ABORT_MEM };
enum { KIND_POLICY = 0, KIND_PLUGIN = 1 };

static const char *const kind_reg[] = {"x4.policies", "x4.plugins"};
static const char *const kind_prefix[] = {"policies", "plugins"};

typedef struct x4_lua_state {
    lua_State *L;
    x4_lua_rt *rt;        /* directories for require */
    size_t used, cap;
    int capped;           /* allocator refuses growth past cap */
    int abort;            /* ABORT_* for the running call */
    uint64_t budget, spent;
    char where[192];      /* last position seen by the hook */
    char version[17];
    json_t *hooks;        /* {"policies":{file:[fn]}, "plugins":{...}} */
    json_t *sources;      /* {"plugins":{name:hash}, "modules":{name:"dir/name.lua hash"}} (hex BLAKE2b-256) */
    int ref_msgh, ref_tramp, ref_viewmt;
} lstate;

struct x4_lua_rt {
    char *dirs[3];        /* policy, plugin, lib */
    size_t cap;
    uint64_t budget;
    lstate *cur;
    int in_call;
};

/* ---------- allocator and hook ---------- */

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    lstate *st = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        st->used -= old;
        return NULL;
    }
    if (nsize > old && st->capped && st->used + (nsize - old) > st->cap) {
        if (!st->abort) st->abort = ABORT_MEM;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) {
        if (nsize > old && !st->abort) st->abort = ABORT_MEM;
        return NULL;
    }
    st->used = st->used - old + nsize;
    return p;
}

static lstate *state_of(lua_State *L) {
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
    lstate *st = state_of(L);
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        snprintf(st->where, sizeof st->where, "%s:%d", ar->short_src, ar->currentline);
    if (!st->abort) {
        st->spent += HOOK_STEP;
        if (st->spent <= st->budget) return;
        st->abort = ABORT_BUDGET;
        lua_sethook(L, count_hook, LUA_MASKCOUNT, 1); /* from now on, every instruction fails */
    }
    lua_pushstring(L, st->abort == ABORT_BUDGET ? "instruction budget exceeded" : "not enough memory");
    lua_error(L);
}

/* True if the message already starts with "chunk:line:". */
static int has_location(const char *m) {
    const char *c = strchr(m, ':');
    if (!c || c == m) return 0;
    const char *d = c + 1;
    if (*d < '0' || *d > '9') return 0;
    while (*d >= '0' && *d <= '9') d++;
    return *d == ':';
}

/* First frame of Lua code above C: its "file:line", or "?" if there is none. */
static void lua_where(lua_State *L, int from, int skip_lib, char *out, size_t n) {
    lua_Debug ar;
    snprintf(out, n, "?");
    for (int level = from; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;
        if (skip_lib && strncmp(ar.source, "@lua/", 5) == 0) continue;
        snprintf(out, n, "%s:%d", ar.short_src, ar.currentline);
        return;
    }
    if (skip_lib) lua_where(L, from, 0, out, n);
}

/* Message handler of every protected run: make sure the message is a string naming a line. */
static int msgh(lua_State *L) {
    char where[192];
    lua_where(L, 1, 1, where, sizeof where);
    if (lua_type(L, 1) == LUA_TSTRING) {
        const char *m = lua_tostring(L, 1);
        if (has_location(m)) return 1;
        lua_pushfstring(L, "%s (at %s)", m, where);
    } else {
        lua_pushfstring(L, "(error object is a %s value) (at %s)", luaL_typename(L, 1), where);
    }
    return 1;
}

/* ---------- views ---------- */

static int is_view(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return 0;
    lstate *st = state_of(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_viewmt);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

/* Pushes the table behind idx: the backing table of a view, or idx itself if it is a table;
 * returns 0 (pushing nothing) for anything else. */
static int push_backing(lua_State *L, int idx) {
    if (lua_istable(L, idx)) {
        lua_pushvalue(L, idx);
        return 1;
    }
    if (is_view(L, idx)) {
        lua_getfenv(L, idx);
        return 1;
    }
    return 0;
}

/* Wraps the table on top of the stack into a view, replacing it. */
static void make_view(lua_State *L) {
    lstate *st = state_of(L);
    lua_newuserdata(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_viewmt);
    lua_setmetatable(L, -2);
    lua_insert(L, -2);
    lua_setfenv(L, -2);
}

static int view_index(lua_State *L) {
    lua_getfenv(L, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int view_newindex(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING)
        return luaL_error(L, "attempt to modify a read-only view (field '%s')", lua_tostring(L, 2));
    return luaL_error(L, "attempt to modify a read-only view");
}

static int view_len(lua_State *L) {
    lua_getfenv(L, 1);
    lua_pushinteger(L, (lua_Integer)lua_objlen(L, -1));
    return 1;
}

static int view_tostring(lua_State *L) {
    lua_pushfstring(L, "view: %p", lua_topointer(L, 1));
    return 1;
}

/* Deep-freezes the value at idx (tables become views of copies; cycles keep their shape).
 * seen is the absolute index of a table mapping original → view. */
static void freeze(lua_State *L, int idx, int seen, int depth) {
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    if (!lua_istable(L, idx)) {
        lua_pushvalue(L, idx);
        return;
    }
    lua_pushvalue(L, idx);
    lua_rawget(L, seen);
    if (!lua_isnil(L, -1)) return;
    lua_pop(L, 1);
    if (depth > MAX_DEPTH) luaL_error(L, "table nested too deeply to freeze");
    luaL_checkstack(L, 6, "freeze");
    lua_newtable(L);
    make_view(L);
    int view = lua_gettop(L);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, view);
    lua_rawset(L, seen);
    lua_getfenv(L, view);
    int back = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        freeze(L, -1, seen, depth + 1);
        lua_pushvalue(L, -3);
        lua_insert(L, -2);
        lua_rawset(L, back);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* ---------- sandbox replacements of base functions ---------- */

static int sb_type(lua_State *L) {
    luaL_checkany(L, 1);
    lua_pushstring(L, is_view(L, 1) ? "table" : luaL_typename(L, 1));
    return 1;
}

static int sb_next(lua_State *L) {
    lua_settop(L, 2);
    if (!push_backing(L, 1)) return luaL_argerror(L, 1, "table expected"); /* t, k, backing */
    lua_pushvalue(L, 2);
    if (lua_next(L, 3)) return 2;
    lua_pushnil(L);
    return 1;
}

static int sb_pairs(lua_State *L) {
    if (!lua_istable(L, 1) && !is_view(L, 1)) return luaL_argerror(L, 1, "table expected");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

static int sb_inext(lua_State *L) {
    lua_Integer i = luaL_checkinteger(L, 2) + 1;
    if (!push_backing(L, 1)) return luaL_argerror(L, 1, "table expected");
    lua_pushinteger(L, i);
    lua_rawgeti(L, -2, (int)i);
    return lua_isnil(L, -1) ? 1 : 2;
}

static int sb_ipairs(lua_State *L) {
    if (!lua_istable(L, 1) && !is_view(L, 1)) return luaL_argerror(L, 1, "table expected");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 0);
    return 3;
}

static int sb_unpack(lua_State *L) {
    lua_settop(L, 3);
    if (!push_backing(L, 1)) return luaL_argerror(L, 1, "table expected");
    int t = lua_gettop(L);
    lua_Integer i = luaL_optinteger(L, 2, 1);
    lua_Integer e = lua_isnoneornil(L, 3) ? (lua_Integer)lua_objlen(L, t) : luaL_checkinteger(L, 3);
    if (i > e) return 0;
    if (e - i >= MAX_UNPACK || !lua_checkstack(L, (int)(e - i + 1))) return luaL_error(L, "too many results to unpack");
    for (lua_Integer k = i; k <= e; k++) lua_rawgeti(L, t, (int)k);
    return (int)(e - i + 1);
}

static int sb_pcall(lua_State *L) {
    luaL_checkany(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (state_of(L)->abort) return lua_error(L); /* budget and memory aborts are not catchable */
    luaL_checkstack(L, 1, "pcall");
    lua_pushboolean(L, status == 0);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/* The handler xpcall really installs: once the call is aborting, the user's handler is not
 * run at all (a handler that loops would otherwise be re-entered for every hook error). */
static int xpcall_handler(lua_State *L) {
    if (state_of(L)->abort) return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sb_xpcall(lua_State *L) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    int n = lua_gettop(L);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_replace(L, 1);
    lua_replace(L, 2); /* handler, f, args... */
    int status = lua_pcall(L, n - 2, LUA_MULTRET, 1);
    if (state_of(L)->abort) return lua_error(L);
    lua_pushboolean(L, status == 0);
    lua_replace(L, 1);
    return lua_gettop(L);
}

/* Concatenates the arguments like print does, views shown as "table". */
static void push_message(lua_State *L, int from) {
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = from; i <= n; i++) {
        if (i > from) luaL_addchar(&b, ' ');
        int t = lua_type(L, i);
        if (t == LUA_TSTRING || t == LUA_TNUMBER) {
            lua_pushvalue(L, i);
            luaL_addvalue(&b);
        } else if (t == LUA_TBOOLEAN) {
            luaL_addstring(&b, lua_toboolean(L, i) ? "true" : "false");
        } else if (t == LUA_TNIL) {
            luaL_addstring(&b, "nil");
        } else if (t == LUA_TLIGHTUSERDATA && !lua_touserdata(L, i)) {
            luaL_addstring(&b, "null");
        } else {
            lua_pushfstring(L, "%s: %p", is_view(L, i) ? "table" : luaL_typename(L, i), lua_topointer(L, i));
            luaL_addvalue(&b);
        }
    }
    luaL_pushresult(&b);
}

static int log_at(lua_State *L, x4_log_level lvl) {
    if (!x4_log_enabled(lvl)) return 0;
    char where[192];
    push_message(L, 1);
    lua_where(L, 1, 1, where, sizeof where);
    size_t len;
    const char *m = lua_tolstring(L, -1, &len);
    x4_log(lvl, "lua", "%s: %.*s%s", where, (int)(len > 2000 ? 2000 : len), m, len > 2000 ? "..." : "");
    return 0;
}
static int sb_log_debug(lua_State *L) { return log_at(L, X4_LOG_DEBUG); }
static int sb_log_info(lua_State *L) { return log_at(L, X4_LOG_INFO); }
static int sb_log_warn(lua_State *L) { return log_at(L, X4_LOG_WARN); }
static int sb_log_error(lua_State *L) { return log_at(L, X4_LOG_ERROR); }

static int sb_os_time(lua_State *L) {
    if (!lua_isnoneornil(L, 1)) return luaL_error(L, "os.time takes no argument in the sandbox");
    lua_pushnumber(L, (lua_Number)time(NULL));
    return 1;
}

static int sb_os_clock(lua_State *L) {
    lua_pushnumber(L, (lua_Number)clock() / CLOCKS_PER_SEC);
    return 1;
}

static int core_now_ms(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000.0 + (lua_Number)(ts.tv_nsec / 1000000));
    return 1;
}

static int core_is_view(lua_State *L) {
    lua_pushboolean(L, is_view(L, 1));
    return 1;
}

/* Plain deep copy of the value at idx (views unwrapped), summing an upper bound of its JSON
 * size into *bytes; raises past limit bytes, MAX_DEPTH or a cycle. */
static size_t json_str_bound(const char *s, size_t n) {
    size_t b = 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        b += c < 0x20 || c == 0x7f ? 6 : (c == '"' || c == '\\' || c == '/') ? 2 : 1;
    }
    return b;
}

static void plain_copy(lua_State *L, int idx, int depth, size_t *bytes, size_t limit) {
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        *bytes += json_str_bound(s, n);
    } else if (t == LUA_TTABLE || is_view(L, idx)) {
        if (depth >= MAX_DEPTH) luaL_error(L, "value nested too deeply (or a cycle)");
        luaL_checkstack(L, 6, "copy");
        push_backing(L, idx);
        int src = lua_gettop(L);
        lua_newtable(L);
        int dst = lua_gettop(L);
        *bytes += 2;
        lua_pushnil(L);
        while (lua_next(L, src)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                size_t n;
                const char *k = lua_tolstring(L, -2, &n);
                *bytes += json_str_bound(k, n) + 2;
            } else {
                *bytes += 34;
            }
            lua_pushvalue(L, -2);
            plain_copy(L, -2, depth + 1, bytes, limit);
            lua_rawset(L, dst);
            lua_pop(L, 1);
            if (*bytes > limit) break;
        }
        lua_remove(L, src);
        if (*bytes > limit) luaL_error(L, "value too large (over %d bytes as JSON)", (int)limit);
        return;
    } else {
        *bytes += 32;
    }
    if (*bytes > limit) luaL_error(L, "value too large (over %d bytes as JSON)", (int)limit);
    lua_pushvalue(L, idx);
}

static size_t json_limit(lua_State *L) {
    size_t l = state_of(L)->cap / 4;
    return l > 0x7fffffff ? 0x7fffffff : l;
}

static int core_copy(lua_State *L) {
    size_t bytes = 0;
    luaL_checkany(L, 1);
    plain_copy(L, 1, 0, &bytes, (size_t)-1 / 2);
    return 1;
}

static int core_json_encode_copy(lua_State *L) {
    size_t bytes = 0;
    plain_copy(L, 1, 0, &bytes, json_limit(L));
    return 1;
}

/* json.encode(v) → string | nil, err: like cjson.safe, bad input is an answer, not an error. */
static int core_json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    lua_pushcfunction(L, core_json_encode_copy);
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 1, 0)) {
        if (state_of(L)->abort) return lua_error(L);
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushvalue(L, lua_upvalueindex(1)); /* cjson.safe encode */
    lua_insert(L, -2);
    lua_call(L, 1, 2);
    return 2;
}

static int core_json_decode(lua_State *L) {
    size_t n;
    luaL_checklstring(L, 1, &n);
    if (n > json_limit(L)) {
        lua_pushnil(L);
        lua_pushfstring(L, "JSON text too large (%d bytes)", (int)n);
        return 2;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2);
    return 2;
}

/* ---------- loading source files ---------- */

static int valid_module_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '.' || s[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (s[i + 1] == '.') return 0;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* A fresh environment: the base template with its library tables copied, _G pointing at it. */
static void push_env(lua_State *L) {
    lua_newtable(L);
    int env = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, "x4.base");
    int base = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, base)) {
        if (lua_istable(L, -1)) {
            int lib = lua_gettop(L);
            lua_newtable(L);
            lua_pushnil(L);
            while (lua_next(L, lib)) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, -4);
            }
            lua_replace(L, lib);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, env);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
}

/* Compiles source text (never bytecode) into a function with a fresh environment, pushing the
 * function then the environment. Raises with the compiler's "file:line:" message. */
static void load_source(lua_State *L, const char *buf, size_t len, const char *chunkname) {
    if (len > 0 && buf[0] == '\033') luaL_error(L, "%s: precompiled chunks are not allowed", chunkname + 1);
    if (luaL_loadbufferx(L, buf, len, chunkname, "t")) lua_error(L);
    push_env(L);
    lua_pushvalue(L, -1);
    lua_setfenv(L, -3);
}

/* Records what a source text was (hex BLAKE2b-256 of its bytes) under sources[group][name],
 * as "prefix hash" when prefix is given. Best effort: a record missing for lack of memory only
 * makes x4_lua_plugin_source/x4_lua_module_source answer NULL. */
static void note_source(lstate *st, const char *group, const char *name, const char *prefix, const char *buf,
                        size_t len) {
    unsigned char h[32];
    char hex[65], text[256];
    if (!st->sources && !(st->sources = json_object())) return;
    json_t *g = json_object_get(st->sources, group);
    if (!g && (!(g = json_object()) || json_object_set_new(st->sources, group, g))) return;
    crypto_generichash(h, sizeof h, (const unsigned char *)buf, (unsigned long long)len, NULL, 0);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    if (prefix) snprintf(text, sizeof text, "%s %s", prefix, hex);
    else snprintf(text, sizeof text, "%s", hex);
    json_object_set_new(g, name, json_string(text));
}

static int sb_require(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    lstate *st = state_of(L);
    if (!valid_module_name(name)) return luaL_error(L, "invalid module name '%s'", name);
    lua_settop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "x4.loaded"); /* 2 */
    lua_getfield(L, 2, name);
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
        return luaL_error(L, "module '%s' requires itself (loop)", name);
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);

    char rel[160], path[4096], chunk[200];
    size_t i;
    for (i = 0; name[i]; i++) rel[i] = name[i] == '.' ? '/' : name[i];
    rel[i] = 0;
    static const int order[3] = {2, 0, 1};                  /* lib, policies, plugins */
    static const char *const prefix[3] = {"policies", "plugins", "lua"};
    struct stat sb;
    int found = -1;
    for (int k = 0; k < 3 && found < 0; k++) {
        snprintf(path, sizeof path, "%s/%s.lua", st->rt->dirs[order[k]], rel);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) found = order[k];
    }
    if (found < 0) return luaL_error(L, "module '%s' not found (searched lua/, policies/, plugins/)", name);
    if ((size_t)sb.st_size > MAX_FILE_BYTES) return luaL_error(L, "module '%s' is too large", name);
    snprintf(chunk, sizeof chunk, "@%s/%s.lua", prefix[found], rel);

    size_t len = (size_t)sb.st_size;
    char *buf = lua_newuserdata(L, len + 1); /* freed by the collector even if loading raises */
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(buf, 1, len, f) : 0;
    if (f) fclose(f);
    if (!f || got != len) return luaL_error(L, "cannot read module '%s'", name);

    lua_pushboolean(L, 0);
    lua_setfield(L, 2, name); /* loading */
    note_source(st, "modules", name, chunk + 1, buf, len);
    load_source(L, buf, len, chunk); /* fn env */
    lua_insert(L, -2);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) { /* a module that only defines globals exports its environment */
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
    }
    lua_newtable(L);
    freeze(L, -2, lua_gettop(L), 0);
    lua_setfield(L, 2, name);
    lua_getfield(L, 2, name);
    return 1;
}

/* ---------- state construction ---------- */

static int open_lib(lua_State *L, lua_CFunction fn, const char *name) {
    lua_pushcfunction(L, fn);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
    return 0;
}

static void set_fn(lua_State *L, int t, const char *name, lua_CFunction fn) {
    t = t < 0 ? lua_gettop(L) + t + 1 : t;
    lua_pushcfunction(L, fn);
    lua_setfield(L, t, name);
}

static void cjson_config(lua_State *L, int cj, const char *fn, int nargs, ...) {
    va_list ap;
    va_start(ap, nargs);
    lua_getfield(L, cj, fn);
    for (int i = 0; i < nargs; i++) {
        const char *a = va_arg(ap, const char *);
        if (strcmp(a, "on") == 0) lua_pushboolean(L, 1);
        else if (strcmp(a, "off") == 0) lua_pushboolean(L, 0);
        else lua_pushnumber(L, atof(a));
    }
    va_end(ap);
    lua_call(L, nargs, 0);
}

static int init_state(lua_State *L) {
    lstate *st = lua_touserdata(L, 1);
    lua_settop(L, 0);
    open_lib(L, luaopen_base, "");
    open_lib(L, luaopen_table, LUA_TABLIBNAME);
    open_lib(L, luaopen_string, LUA_STRLIBNAME);
    open_lib(L, luaopen_math, LUA_MATHLIBNAME);
    open_lib(L, luaopen_bit, LUA_BITLIBNAME);

    static const char *const removed[] = {"dofile", "loadfile", "load", "loadstring", "require", "module",
                                          "getfenv", "setfenv", "collectgarbage", "newproxy", "gcinfo",
                                          "jit", "coroutine", "print", "os", "io", "ffi", "package", NULL};
    for (int i = 0; removed[i]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, removed[i]);
    }
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1); /* strings' metatable: hide it from getmetatable("") */
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    /* seeded per state: policies use math.random for jitter */
    lua_getglobal(L, "math");
    lua_getfield(L, -1, "randomseed");
    lua_pushnumber(L, (lua_Number)randombytes_uniform(0x7fffffff));
    lua_call(L, 1, 0);
    lua_pop(L, 1);

    lua_pushcfunction(L, msgh);
    st->ref_msgh = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    set_fn(L, -1, "__index", view_index);
    set_fn(L, -1, "__newindex", view_newindex);
    set_fn(L, -1, "__len", view_len);
    set_fn(L, -1, "__tostring", view_tostring);
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    st->ref_viewmt = luaL_ref(L, LUA_REGISTRYINDEX);

    /* the sandbox template */
    lua_newtable(L);
    int base = lua_gettop(L);
    static const char *const kept[] = {"assert", "error", "getmetatable", "rawequal", "rawget", "rawset",
                                       "select", "setmetatable", "tonumber", "tostring", "_VERSION", NULL};
    for (int i = 0; kept[i]; i++) {
        lua_getglobal(L, kept[i]);
        lua_setfield(L, base, kept[i]);
    }
    static const char *const libs[] = {"string", "table", "math", "bit", NULL};
    for (int i = 0; libs[i]; i++) {
        lua_getglobal(L, libs[i]);
        lua_setfield(L, base, libs[i]);
    }
    lua_pushcfunction(L, sb_next);
    lua_pushvalue(L, -1);
    lua_setfield(L, base, "next");
    lua_pushcclosure(L, sb_pairs, 1);
    lua_setfield(L, base, "pairs");
    lua_pushcfunction(L, sb_inext);
    lua_pushcclosure(L, sb_ipairs, 1);
    lua_setfield(L, base, "ipairs");
    set_fn(L, base, "type", sb_type);
    set_fn(L, base, "unpack", sb_unpack);
    set_fn(L, base, "pcall", sb_pcall);
    set_fn(L, base, "xpcall", sb_xpcall);
    set_fn(L, base, "print", sb_log_info);
    set_fn(L, base, "require", sb_require);
    lua_newtable(L);
    set_fn(L, -1, "time", sb_os_time);
    set_fn(L, -1, "clock", sb_os_clock);
    lua_setfield(L, base, "os");
    lua_setfield(L, LUA_REGISTRYINDEX, "x4.base");

    /* x402r.core: the C half of require "x402r" */
    lua_pushcfunction(L, luaopen_cjson_safe);
    lua_call(L, 0, 1);
    int cj = lua_gettop(L);
    cjson_config(L, cj, "encode_max_depth", 1, "64");
    cjson_config(L, cj, "decode_max_depth", 1, "64");
    cjson_config(L, cj, "encode_keep_buffer", 1, "off");
    cjson_config(L, cj, "encode_invalid_numbers", 1, "off");
    cjson_config(L, cj, "decode_invalid_numbers", 1, "off");
    lua_newtable(L);
    int core = lua_gettop(L);
    lua_getfield(L, cj, "encode");
    lua_pushcclosure(L, core_json_encode, 1);
    lua_setfield(L, core, "json_encode");
    lua_getfield(L, cj, "decode");
    lua_pushcclosure(L, core_json_decode, 1);
    lua_setfield(L, core, "json_decode");
    lua_getfield(L, cj, "null");
    lua_setfield(L, core, "null");
    set_fn(L, core, "log_debug", sb_log_debug);
    set_fn(L, core, "log_info", sb_log_info);
    set_fn(L, core, "log_warn", sb_log_warn);
    set_fn(L, core, "log_error", sb_log_error);
    set_fn(L, core, "now_ms", core_now_ms);
    set_fn(L, core, "copy", core_copy);
    set_fn(L, core, "is_view", core_is_view);
    lua_newtable(L);
    lua_pushvalue(L, core);
    lua_setfield(L, -2, "x402r.core");
    lua_setfield(L, LUA_REGISTRYINDEX, "x4.loaded");
    lua_settop(L, 0);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, kind_reg[KIND_POLICY]);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, kind_reg[KIND_PLUGIN]);
    return 0;
}

struct pjob {
    int (*fn)(lua_State *L, void *ud);
    void *ud;
};

static int trampoline(lua_State *L) {
    struct pjob *j = lua_touserdata(L, 1);
    lua_remove(L, 1);
    return j->fn(L, j->ud);
}

static void state_free(lstate *st) {
    if (!st) return;
    if (st->L) lua_close(st->L);
    json_decref(st->hooks);
    json_decref(st->sources);
    free(st);
}

static lstate *state_new(x4_lua_rt *rt, char *err, size_t errlen) {
    lstate *st = calloc(1, sizeof *st);
    if (!st) {
        x4_seterr(err, errlen, "out of memory");
        return NULL;
    }
    st->rt = rt;
    st->cap = rt->cap;
    st->budget = rt->budget;
    st->ref_msgh = st->ref_tramp = st->ref_viewmt = LUA_NOREF;
    st->L = lua_newstate(l_alloc, st);
    if (!st->L) {
        x4_seterr(err, errlen, "cannot create a Lua state");
        goto err;
    }
    if (lua_cpcall(st->L, init_state, st)) {
        x4_seterr(err, errlen, "cannot initialise the Lua state: %s", lua_tostring(st->L, -1));
        goto err;
    }
    lua_pushcfunction(st->L, trampoline);
    st->ref_tramp = luaL_ref(st->L, LUA_REGISTRYINDEX);
    if (st->ref_tramp == LUA_REFNIL || st->ref_tramp == LUA_NOREF) {
        x4_seterr(err, errlen, "cannot register the trampoline");
        goto err;
    }
    return st;
err:
    state_free(st);
    return NULL;
}

/* Runs fn(L, ud) protected, under the budget and the cap, leaving nres results on the stack.
 * On failure, fills err with a message naming the file and line (fallback_where if the error
 * itself carries none) and cleans up. */
static int run_protected(lstate *st, int (*fn)(lua_State *, void *), void *ud, int nres, const char *fallback_where,
                         char *err, size_t errlen) {
    lua_State *L = st->L;
    struct pjob j = {fn, ud};
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_msgh);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref_tramp);
    lua_pushlightuserdata(L, &j);
    st->abort = ABORT_NONE;
    st->spent = 0;
    st->where[0] = 0;
    st->capped = 1;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_STEP);
    int status = lua_pcall(L, 1, nres, 1);
    lua_sethook(L, NULL, 0, 0);
    st->capped = 0;
    if (status == 0 && st->abort) status = LUA_ERRRUN; /* an abort swallowed by library code */
    if (status == 0) {
        lua_remove(L, 1); /* the message handler */
        st->abort = ABORT_NONE;
        return 0;
    }
    const char *where = st->where[0] ? st->where : (fallback_where ? fallback_where : "?");
    if (st->abort == ABORT_BUDGET) {
        x4_seterr(err, errlen, "%s: instruction budget exceeded (%llu instructions)", where,
               (unsigned long long)st->budget);
    } else if (st->abort == ABORT_MEM || status == LUA_ERRMEM) {
        x4_seterr(err, errlen, "%s: not enough memory (cap %zu bytes)", where, st->cap);
    } else {
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        x4_seterr(err, errlen, "%s", m ? m : "unknown error");
    }
    st->abort = ABORT_NONE;
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return -1;
}

/* ---------- JSON <-> Lua ---------- */

static void push_json(lua_State *L, const json_t *v, int depth, int top) {
    if (depth > MAX_DEPTH) luaL_error(L, "argument nested too deeply");
    luaL_checkstack(L, 4, "arguments");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_foreach((json_t *)v, k, x) {
            if (json_is_null(x)) continue; /* absent and null read the same: nil */
            lua_pushstring(L, k);
            push_json(L, x, depth + 1, 0);
            lua_rawset(L, -3);
        }
        make_view(L);
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_json(L, json_array_get(v, i), depth + 1, 0);
            lua_rawseti(L, -2, (int)i + 1);
        }
        make_view(L);
        break;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: lua_pushnumber(L, (lua_Number)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    default:
        if (top) lua_pushnil(L);
        else lua_pushlightuserdata(L, NULL); /* x402r.null keeps array positions */
        break;
    }
}

typedef struct {
    int nodes;
    char path[256];
    char why[200];
} conv;

static json_t *to_json(lua_State *L, int idx, int depth, conv *c);

static void path_push(conv *c, size_t *mark, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void path_push(conv *c, size_t *mark, const char *fmt, ...) {
    *mark = strlen(c->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->path + *mark, sizeof c->path - *mark, fmt, ap);
    va_end(ap);
}

static json_t *table_to_json(lua_State *L, int t, int depth, conv *c) {
    size_t n = 0;
    double max = 0;
    int array = 1;
    json_t *out = NULL;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        n++;
        if (lua_type(L, -2) != LUA_TNUMBER) {
            array = 0;
        } else {
            double k = lua_tonumber(L, -2);
            if (k < 1 || k != floor(k)) array = 0;
            else if (k > max) max = k;
        }
        lua_pop(L, 1);
    }
    if (array && max != (double)n) array = 0;
    size_t mark;
    if (array) {
        if (!(out = json_array())) goto oom;
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, t, (int)i);
            path_push(c, &mark, "[%zu]", i);
            json_t *x = to_json(L, lua_gettop(L), depth + 1, c);
            lua_pop(L, 1);
            if (!x) goto err;
            c->path[mark] = 0;
            if (json_array_append_new(out, x)) goto oom;
        }
        return out;
    }
    if (!(out = json_object())) goto oom;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        char kb[64];
        const char *k;
        size_t klen;
        if (lua_type(L, -2) == LUA_TSTRING) {
            k = lua_tolstring(L, -2, &klen);
        } else if (lua_type(L, -2) == LUA_TNUMBER) {
            double d = lua_tonumber(L, -2);
            if (d == floor(d) && fabs(d) < 9007199254740992.0) snprintf(kb, sizeof kb, "%lld", (long long)d);
            else snprintf(kb, sizeof kb, "%.17g", d);
            k = kb;
            klen = strlen(kb);
        } else {
            lua_pop(L, 2);
            x4_seterr(c->why, sizeof c->why, "a %s key cannot be a JSON object key", luaL_typename(L, -2));
            goto err;
        }
        path_push(c, &mark, ".%.*s", (int)(klen > 40 ? 40 : klen), k);
        json_t *x = to_json(L, lua_gettop(L), depth + 1, c);
        if (!x) {
            lua_pop(L, 2);
            goto err;
        }
        c->path[mark] = 0;
        if (json_object_setn_new(out, k, klen, x)) {
            lua_pop(L, 2);
            x4_seterr(c->why, sizeof c->why, "a key is not valid UTF-8");
            goto err;
        }
        lua_pop(L, 1);
    }
    return out;
oom:
    x4_seterr(c->why, sizeof c->why, "out of memory");
err:
    json_decref(out);
    return NULL;
}

/* Converts the Lua value at idx; NULL with c->why/c->path on failure. No Lua allocation. */
static json_t *to_json(lua_State *L, int idx, int depth, conv *c) {
    if (++c->nodes > MAX_NODES) {
        x4_seterr(c->why, sizeof c->why, "more than %d values", MAX_NODES);
        return NULL;
    }
    if (depth > MAX_DEPTH) {
        x4_seterr(c->why, sizeof c->why, "nested more than %d deep (a cycle?)", MAX_DEPTH);
        return NULL;
    }
    if (!lua_checkstack(L, 4)) {
        x4_seterr(c->why, sizeof c->why, "stack overflow");
        return NULL;
    }
    json_t *v = NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: v = json_null(); break;
    case LUA_TBOOLEAN: v = json_boolean(lua_toboolean(L, idx)); break;
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, idx);
        if (isnan(d) || isinf(d)) {
            x4_seterr(c->why, sizeof c->why, "NaN or infinity is not JSON");
            return NULL;
        }
        v = d == floor(d) && fabs(d) <= 9007199254740992.0 ? json_integer((json_int_t)d) : json_real(d);
        break;
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (!(v = json_stringn(s, n))) {
            x4_seterr(c->why, sizeof c->why, "string is not valid UTF-8");
            return NULL;
        }
        break;
    }
    case LUA_TLIGHTUSERDATA:
        if (!lua_touserdata(L, idx)) {
            v = json_null();
            break;
        }
        x4_seterr(c->why, sizeof c->why, "cannot convert a userdata value");
        return NULL;
    case LUA_TTABLE: return table_to_json(L, idx, depth, c);
    case LUA_TUSERDATA:
        if (is_view(L, idx)) {
            lua_getfenv(L, idx);
            v = table_to_json(L, lua_gettop(L), depth, c);
            lua_pop(L, 1);
            return v;
        }
        /* fall through */
    default: x4_seterr(c->why, sizeof c->why, "cannot convert a %s value", luaL_typename(L, idx)); return NULL;
    }
    if (!v) x4_seterr(c->why, sizeof c->why, "out of memory");
    return v;
}

/* ---------- validators of known hooks ---------- */

typedef int (*validator)(json_t **res, const json_t *args, char *why, size_t n);

static const char *action_of(const json_t *r) {
    return json_is_object(r) ? json_string_value(json_object_get(r, "action")) : NULL;
}

static int check_int_range(const json_t *r, const char *field, json_int_t lo, json_int_t hi, char *why, size_t n) {
    json_t *v = json_object_get(r, field);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        x4_seterr(why, n, "%s must be an integer in %lld..%lld", field, (long long)lo, (long long)hi);
        return -1;
    }
    return 0;
}

static int check_reason(const json_t *r, int required, char *why, size_t n) {
    json_t *v = json_object_get(r, "reason");
    if ((!v && !required) || (json_is_string(v) && json_string_length(v) > 0)) return 0;
    x4_seterr(why, n, "reason must be a non-empty string");
    return -1;
}

static int v_retry(json_t **res, const json_t *args, char *why, size_t n) {
    const char *a = action_of(*res);
    if (a && strcmp(a, "retry") == 0) return check_int_range(*res, "delayMs", 0, 86400000, why, n);
    if (a && strcmp(a, "giveup") == 0) return check_reason(*res, 1, why, n);
    x4_seterr(why, n, "expected {action=\"retry\", delayMs=...} or {action=\"giveup\", reason=...}");
    return -1;
}

static int v_approval(json_t **res, const json_t *args, char *why, size_t n) {
    const char *a = action_of(*res);
    if (a && strcmp(a, "auto") == 0) return check_reason(*res, 0, why, n);
    if (a && strcmp(a, "manual") == 0)
        return check_int_range(*res, "expiresMs", 1000, 7LL * 86400000, why, n) || check_reason(*res, 0, why, n) ? -1 : 0;
    if (a && strcmp(a, "deny") == 0) return check_reason(*res, 1, why, n);
    x4_seterr(why, n, "expected {action=\"auto\"|\"manual\"|\"deny\", ...}");
    return -1;
}

static int v_rollback(json_t **res, const json_t *args, char *why, size_t n) {
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
    const json_t *steps = json_object_get(json_array_get(args, 0), "steps");
    size_t i, j;
    json_t *c;
    if (!json_is_array(*res)) {
        x4_seterr(why, n, "expected a list of compensations");
        return -1;
    }
    json_array_foreach(*res, i, c) {
        const char *step = json_string_value(json_object_get(c, "step"));
        const char *url = json_string_value(json_object_get(c, "url"));
        const char *method = json_string_value(json_object_get(c, "method"));
        int known = !json_is_array(steps), okm = 0;
        if (!json_is_object(c) || !step || !url) {
            x4_seterr(why, n, "[%zu] must be {step=..., url=..., method=...}", i + 1);
            return -1;
        }
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
            x4_seterr(why, n, "[%zu].url must be an http(s) URL", i + 1);
            return -1;
        }
        for (j = 0; method && methods[j]; j++) okm |= strcmp(method, methods[j]) == 0;
        if (!okm) {
            x4_seterr(why, n, "[%zu].method must be GET, POST, PUT, PATCH or DELETE", i + 1);
            return -1;
        }
        json_t *s;
        if (!known) json_array_foreach(steps, j, s) known |= json_is_string(json_object_get(s, "id")) &&
                                                              strcmp(json_string_value(json_object_get(s, "id")), step) == 0;
        if (!known) {
            x4_seterr(why, n, "[%zu].step '%s' is not a step of the workflow", i + 1, step);
            return -1;
        }
        for (j = 0; j < i; j++)
            if (strcmp(json_string_value(json_object_get(json_array_get(*res, j), "step")), step) == 0) {
                x4_seterr(why, n, "step '%s' is compensated twice", step);
                return -1;
            }
    }
    return 0;
}

/* The ranking comes back as the engine's own candidate objects, reordered and possibly
 * filtered: a policy can choose, never alter a price or a URL. */
static int v_matching(json_t **res, const json_t *args, char *why, size_t n) {
    const json_t *cands = json_array_get(args, 0);
    json_t *out = json_array(), *c;
    size_t i, j;
    if (!out) {
        x4_seterr(why, n, "out of memory");
        return -1;
    }
    if (!json_is_array(*res)) {
        x4_seterr(why, n, "expected a list of candidates");
        goto err;
    }
    json_array_foreach(*res, i, c) {
        const char *id = json_is_string(c) ? json_string_value(c) : json_string_value(json_object_get(c, "id"));
        json_t *orig = NULL, *x;
        if (!id) {
            x4_seterr(why, n, "[%zu] must be a candidate (with an id)", i + 1);
            goto err;
        }
        json_array_foreach(cands, j, x) if (!orig && json_is_string(json_object_get(x, "id")) &&
                                            strcmp(json_string_value(json_object_get(x, "id")), id) == 0) orig = x;
        if (!orig) {
            x4_seterr(why, n, "[%zu] '%s' is not one of the candidates", i + 1, id);
            goto err;
        }
        json_array_foreach(out, j, x) if (x == orig) {
            x4_seterr(why, n, "'%s' is listed twice", id);
            goto err;
        }
        if (json_array_append(out, orig)) {
            x4_seterr(why, n, "out of memory");
            goto err;
        }
    }
    json_decref(*res);
    *res = out;
    return 0;
err:
    json_decref(out);
    return -1;
}

static const struct {
    const char *hook;
    validator fn;
} validators[] = {
    {"retry.decide", v_retry},
    {"rollback.retry", v_retry},
    {"approval.decide", v_approval},
    {"rollback.plan", v_rollback},
    {"matching.rank", v_matching},
};

/* ---------- calls ---------- */

struct call_job {
    int kind;
    const char *file, *fn;
    const json_t *args;
    int missing;
    char fnwhere[200];
};

static int job_call(lua_State *L, void *ud) {
    struct call_job *c = ud;
    lua_getfield(L, LUA_REGISTRYINDEX, kind_reg[c->kind]);
    lua_getfield(L, -1, c->file);
    if (!lua_istable(L, -1)) goto missing;
    lua_getfield(L, -1, c->fn);
    if (!lua_isfunction(L, -1)) goto missing;
    lua_Debug ar;
    lua_pushvalue(L, -1);
    if (lua_getinfo(L, ">S", &ar)) snprintf(c->fnwhere, sizeof c->fnwhere, "%s:%d", ar.short_src, ar.linedefined);
    int nargs = 0;
    if (json_is_array(c->args)) {
        size_t i;
        json_t *a;
        json_array_foreach(c->args, i, a) {
            push_json(L, a, 0, 1);
            nargs++;
        }
    } else if (c->args) {
        push_json(L, c->args, 0, 1);
        nargs = 1;
    }
    lua_call(L, nargs, 1);
    return 1;
missing:
    c->missing = 1;
    lua_pushnil(L);
    return 1;
}

static int do_call(x4_lua_rt *rt, int kind, const char *file, const char *fn, const char *label, const json_t *args,
                   json_t **result, char *err, size_t errlen) {
    lstate *st = rt->cur;
    char msg[1024];
    *result = NULL;
    if (!st) {
        x4_seterr(err, errlen, "%s: no policies loaded", label);
        return 1;
    }
    if (rt->in_call) {
        x4_seterr(err, errlen, "%s: re-entrant Lua call refused", label);
        return -1;
    }
    struct call_job c = {.kind = kind, .file = file, .fn = fn, .args = args};
    snprintf(c.fnwhere, sizeof c.fnwhere, "%s/%s.lua", kind_prefix[kind], file);
    rt->in_call = 1;
    int rc = run_protected(st, job_call, &c, 1, c.fnwhere, msg, sizeof msg);
    rt->in_call = 0;
    if (rc == 0 && c.missing) {
        lua_settop(st->L, 0);
        x4_seterr(err, errlen, "%s: not defined", label);
        return 1;
    }
    if (rc == 0) {
        conv cv = {0};
        snprintf(cv.path, sizeof cv.path, "result");
        json_t *r = to_json(st->L, 1, 0, &cv);
        lua_settop(st->L, 0);
        if (!r) {
            snprintf(msg, sizeof msg, "%s: bad return value: %s: %s", c.fnwhere, cv.path, cv.why);
            rc = -1;
        } else {
            for (size_t i = 0; kind == KIND_POLICY && i < sizeof validators / sizeof validators[0]; i++) {
                char why[300];
                if (strcmp(validators[i].hook, label) != 0) continue;
                if (validators[i].fn(&r, args, why, sizeof why)) {
                    snprintf(msg, sizeof msg, "%s: bad return value: %s", c.fnwhere, why);
                    json_decref(r);
                    r = NULL;
                    rc = -1;
                }
            }
            *result = r;
        }
    }
    if (st->used > st->cap / 2) lua_gc(st->L, LUA_GCCOLLECT, 0);
    if (rc) {
        char file_prefix[160];
        snprintf(file_prefix, sizeof file_prefix, "%s/%s.lua", kind_prefix[kind], file);
        if (!strstr(msg, file_prefix)) { /* e.g. raised in lua/ under a tail call */
            size_t ml = strlen(msg);
            snprintf(msg + ml, sizeof msg - ml, " (in the hook defined at %s)", c.fnwhere);
        }
        x4_warn("lua", "%s failed: %s", label, msg);
        x4_seterr(err, errlen, "%s: %s", label, msg);
        return -1;
    }
    return 0;
}

static int split_hook(const char *hook, char *file, size_t fsz, const char **fn) {
    const char *dot = hook ? strchr(hook, '.') : NULL;
    if (!dot || dot == hook || !dot[1] || (size_t)(dot - hook) >= fsz) return -1;
    memcpy(file, hook, (size_t)(dot - hook));
    file[dot - hook] = 0;
    *fn = dot + 1;
    return 0;
}

int x4_lua_call(x4_lua_rt *rt, const char *hook, const json_t *args, json_t **result, char *err, size_t errlen) {
    char file[128];
    const char *fn;
    *result = NULL;
    if (split_hook(hook, file, sizeof file, &fn)) {
        x4_seterr(err, errlen, "bad hook name '%s' (expected FILE.FUNCTION)", hook ? hook : "(null)");
        return -1;
    }
    return do_call(rt, KIND_POLICY, file, fn, hook, args, result, err, errlen);
}

int x4_lua_call_plugin(x4_lua_rt *rt, const char *plugin, const char *fn, const json_t *args, json_t **result,
                       char *err, size_t errlen) {
    char label[300];
    *result = NULL;
    if (!plugin || !fn) {
        x4_seterr(err, errlen, "plugin and function names are required");
        return -1;
    }
    snprintf(label, sizeof label, "plugins/%s.%s", plugin, fn);
    return do_call(rt, KIND_PLUGIN, plugin, fn, label, args, result, err, errlen);
}

static int has_fn(const x4_lua_rt *rt, int kind, const char *file, const char *fn) {
    if (!rt || !rt->cur || !file) return 0;
    json_t *fns = json_object_get(json_object_get(rt->cur->hooks, kind_prefix[kind]), file);
    if (!fns) return 0;
    if (!fn) return 1;
    size_t i;
    json_t *x;
    json_array_foreach(fns, i, x) if (strcmp(json_string_value(x), fn) == 0) return 1;
    return 0;
}

int x4_lua_has_hook(const x4_lua_rt *rt, const char *hook) {
    char file[128];
    const char *fn;
    return split_hook(hook, file, sizeof file, &fn) == 0 && has_fn(rt, KIND_POLICY, file, fn);
}

int x4_lua_has_plugin(const x4_lua_rt *rt, const char *name) { return has_fn(rt, KIND_PLUGIN, name, NULL); }

const char *x4_lua_plugin_source(const x4_lua_rt *rt, const char *name) {
    if (!rt || !rt->cur || !name) return NULL;
    return json_string_value(json_object_get(json_object_get(rt->cur->sources, "plugins"), name));
}

const char *x4_lua_module_source(const x4_lua_rt *rt, const char *module) {
    if (!rt || !rt->cur || !module) return NULL;
    return json_string_value(json_object_get(json_object_get(rt->cur->sources, "modules"), module));
}

/* ---------- reload ---------- */

typedef struct {
    int kind;
    char name[96];
    char *buf;
    size_t len;
} srcfile;

typedef struct {
    srcfile *files;
    size_t n;
    size_t current;
} load_set;

static int name_cmp(const void *a, const void *b) {
    const srcfile *x = a, *y = b;
    if (x->kind != y->kind) return x->kind - y->kind;
    return strcmp(x->name, y->name);
}

static int valid_file_name(const char *n) {
    size_t len = strlen(n);
    if (len < 5 || len > 90 || strcmp(n + len - 4, ".lua") != 0) return 0;
    for (size_t i = 0; i < len - 4; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) != 0) {
        x4_seterr(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto err;
    }
    if ((size_t)sb.st_size > MAX_FILE_BYTES) {
        x4_seterr(err, errlen, "%s is larger than %zu bytes", path, MAX_FILE_BYTES);
        goto err;
    }
    if (!(buf = malloc((size_t)sb.st_size + 1))) {
        x4_seterr(err, errlen, "out of memory");
        goto err;
    }
    *len = fread(buf, 1, (size_t)sb.st_size, f);
    if (*len != (size_t)sb.st_size) {
        x4_seterr(err, errlen, "cannot read %s", path);
        goto err;
    }
    fclose(f);
    *out = buf;
    return 0;
err:
    if (f) fclose(f);
    free(buf);
    return -1;
}

static int scan_dir(load_set *set, int kind, const char *dir, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d) {
        if (errno == ENOENT) {
            x4_warn("lua", "%s directory %s does not exist: none loaded", kind_prefix[kind], dir);
            return 0;
        }
        x4_seterr(err, errlen, "cannot open %s: %s", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d))) {
        char path[4096];
        srcfile *f;
        if (!valid_file_name(e->d_name)) continue;
        if (set->n >= MAX_FILES) {
            x4_seterr(err, errlen, "more than %d Lua files", MAX_FILES);
            goto err;
        }
        f = &set->files[set->n];
        memset(f, 0, sizeof *f);
        f->kind = kind;
        snprintf(f->name, sizeof f->name, "%.*s", (int)(strlen(e->d_name) - 4), e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (read_file(path, &f->buf, &f->len, err, errlen)) goto err;
        set->n++;
    }
    closedir(d);
    return 0;
err:
    closedir(d);
    return -1;
}

static int job_load(lua_State *L, void *ud) {
    load_set *set = ud;
    lstate *st = state_of(L);
    for (size_t i = 0; i < set->n; i++) {
        srcfile *f = &set->files[i];
        char chunk[200];
        set->current = i;
        st->spent = 0;
        snprintf(chunk, sizeof chunk, "@%s/%s.lua", kind_prefix[f->kind], f->name);
        load_source(L, f->buf, f->len, chunk); /* fn env */
        if (f->kind == KIND_PLUGIN) note_source(st, "plugins", f->name, NULL, f->buf, f->len);
        lua_insert(L, -2);
        st->where[0] = 0;
        lua_call(L, 0, 0);
        lua_getfield(L, LUA_REGISTRYINDEX, kind_reg[f->kind]);
        lua_insert(L, -2);
        lua_setfield(L, -2, f->name);
        lua_pop(L, 1);
    }
    return 0;
}

/* Records which functions each loaded file defines (unprotected: reads only). */
static json_t *collect_hooks(lua_State *L) {
    json_t *all = json_object();
    for (int kind = 0; all && kind < 2; kind++) {
        json_t *files = json_object();
        if (!files || json_object_set_new(all, kind_prefix[kind], files)) goto err;
        lua_getfield(L, LUA_REGISTRYINDEX, kind_reg[kind]);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            json_t *fns = json_array();
            if (!fns || json_object_set_new(files, lua_tostring(L, -2), fns)) {
                lua_settop(L, 0);
                goto err;
            }
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                if (lua_type(L, -2) == LUA_TSTRING && lua_isfunction(L, -1) && strcmp(lua_tostring(L, -2), "_G") != 0)
                    json_array_append_new(fns, json_string(lua_tostring(L, -2)));
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return all;
err:
    json_decref(all);
    return NULL;
}

static void strip_base_functions(lua_State *L, json_t *hooks) {
    /* Functions inherited from the sandbox template (print, pairs, ...) are not hooks. */
    lua_getfield(L, LUA_REGISTRYINDEX, "x4.base");
    const char *kind;
    json_t *files;
    json_object_foreach(hooks, kind, files) {
        const char *file;
        json_t *fns;
        json_object_foreach(files, file, fns) {
            for (size_t i = json_array_size(fns); i-- > 0;) {
                lua_getfield(L, -1, json_string_value(json_array_get(fns, i)));
                if (!lua_isnil(L, -1)) json_array_remove(fns, i);
                lua_pop(L, 1);
            }
        }
    }
    lua_pop(L, 1);
}

int x4_lua_reload(x4_lua_rt *rt, char *err, size_t errlen) {
    load_set set = {0};
    lstate *st = NULL;
    char msg[1024];
    int rc = -1;
    if (rt->in_call) {
        x4_seterr(err, errlen, "reload refused during a Lua call");
        return -1;
    }
    if (!(set.files = calloc(MAX_FILES, sizeof *set.files))) {
        x4_seterr(err, errlen, "out of memory");
        goto done;
    }
    if (scan_dir(&set, KIND_POLICY, rt->dirs[0], err, errlen) || scan_dir(&set, KIND_PLUGIN, rt->dirs[1], err, errlen))
        goto done;
    qsort(set.files, set.n, sizeof *set.files, name_cmp);

    unsigned char h[16];
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, sizeof h);
    for (size_t i = 0; i < set.n; i++) {
        char head[200];
        int hl = snprintf(head, sizeof head, "%s/%s.lua%c%zu%c", kind_prefix[set.files[i].kind], set.files[i].name, 0,
                          set.files[i].len, 0);
        crypto_generichash_update(&hs, (const unsigned char *)head, (unsigned long long)hl);
        crypto_generichash_update(&hs, (const unsigned char *)set.files[i].buf, set.files[i].len);
    }
    crypto_generichash_final(&hs, h, sizeof h);

    if (!(st = state_new(rt, err, errlen))) goto done;
    sodium_bin2hex(st->version, sizeof st->version, h, 8);
    if (run_protected(st, job_load, &set, 0, NULL, msg, sizeof msg)) {
        const srcfile *f = set.n ? &set.files[set.current] : NULL;
        if (f && !strstr(msg, f->name))
            x4_seterr(err, errlen, "%s/%s.lua: %s", kind_prefix[f->kind], f->name, msg);
        else
            x4_seterr(err, errlen, "%s", msg);
        x4_error("lua", "reload failed, previous policies (version %s) stay in force: %s", x4_lua_version(rt), err);
        goto done;
    }
    lua_settop(st->L, 0);
    if (!(st->hooks = collect_hooks(st->L))) {
        x4_seterr(err, errlen, "out of memory");
        goto done;
    }
    strip_base_functions(st->L, st->hooks);
    lua_gc(st->L, LUA_GCCOLLECT, 0);
    state_free(rt->cur);
    rt->cur = st;
    st = NULL;
    x4_info("lua", "loaded %zu policy and plugin files, version %s, %zu bytes in use", set.n, rt->cur->version,
            rt->cur->used);
    rc = 0;
done:
    state_free(st);
    for (size_t i = 0; set.files && i < set.n; i++) free(set.files[i].buf);
    free(set.files);
    return rc;
}

/* ---------- lifecycle ---------- */

x4_lua_rt *x4_lua_open(const x4_lua_opts *o, char *err, size_t errlen) {
    x4_lua_rt *rt = calloc(1, sizeof *rt);
    const char *dirs[3] = {o && o->policy_dir ? o->policy_dir : "policies",
                           o && o->plugin_dir ? o->plugin_dir : "plugins", o && o->lib_dir ? o->lib_dir : "lua"};
    if (!rt) goto oom;
    if (sodium_init() < 0) {
        x4_seterr(err, errlen, "libsodium failed to initialise");
        goto err;
    }
    for (int i = 0; i < 3; i++)
        if (!(rt->dirs[i] = strdup(dirs[i]))) goto oom;
    rt->cap = o && o->mem_cap ? o->mem_cap : X4_LUA_DEFAULT_MEM_CAP;
    if (rt->cap < MIN_CAP) rt->cap = MIN_CAP;
    rt->budget = o && o->budget ? o->budget : X4_LUA_DEFAULT_BUDGET;
    return rt;
oom:
    x4_seterr(err, errlen, "out of memory");
err:
    x4_lua_close(rt);
    return NULL;
}

void x4_lua_close(x4_lua_rt *rt) {
    if (!rt) return;
    state_free(rt->cur);
    for (int i = 0; i < 3; i++) free(rt->dirs[i]);
    free(rt);
}

const char *x4_lua_version(const x4_lua_rt *rt) { return rt && rt->cur ? rt->cur->version : "none"; }

json_t *x4_lua_describe(const x4_lua_rt *rt) {
    const lstate *st = rt ? rt->cur : NULL;
    json_t *pol = st ? json_object_get(st->hooks, "policies") : NULL;
    json_t *plu = st ? json_object_get(st->hooks, "plugins") : NULL;
    return json_pack("{s:s, s:{s:I, s:I}, s:I, s:o, s:o}", "version", x4_lua_version(rt), "memory", "used",
                     (json_int_t)(st ? st->used : 0), "cap", (json_int_t)(rt ? rt->cap : 0), "budget",
                     (json_int_t)(rt ? rt->budget : 0), "policies", pol ? json_deep_copy(pol) : json_object(),
                     "plugins", plu ? json_deep_copy(plu) : json_object());
}
