/* lua/lua.h — the Lua runtime: operator policies and step-adapter plugins in one sandboxed
 * LuaJIT state per engine process (docs/lua.md is the author's side of this contract).
 *
 * Files: every policies/NAME.lua and plugins/NAME.lua is run once per (re)load in its own
 * environment table; the global functions it defines are its hooks ("retry.decide" is the
 * function `decide` defined by policies/retry.lua). `require` only finds source files in the
 * library dir (lua/), then the policy dir, then the plugin dir; the engine's own library is
 * `require "x402r"`.
 *
 * Calls get their arguments as read-only views of JSON values and return plain tables that
 * are converted back to JSON and checked by the hook's validator. Each call runs with the JIT
 * off, under an instruction budget and the state's memory cap; an error, a budget overrun,
 * running out of memory or a wrongly shaped return fails the call (-1, logged once at warn
 * with the file and line) and leaves the state usable: the caller then uses its built-in
 * default. Not thread-safe: one runtime belongs to one loop thread. */
#ifndef X4_LUA_LUA_H
#define X4_LUA_LUA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define X4_LUA_DEFAULT_MEM_CAP ((size_t)64 << 20)   /* bytes for the whole state */
#define X4_LUA_DEFAULT_BUDGET 1000000u              /* VM instructions per call */

typedef struct {
    const char *policy_dir;  /* default "policies" */
    const char *plugin_dir;  /* default "plugins" */
    const char *lib_dir;     /* default "lua" (holds x402r.lua) */
    size_t mem_cap;          /* 0: X4_LUA_DEFAULT_MEM_CAP; at least 1 MiB is enforced */
    uint64_t budget;         /* 0: X4_LUA_DEFAULT_BUDGET */
} x4_lua_opts;

typedef struct x4_lua_rt x4_lua_rt;

/* Creates a runtime with nothing loaded (every hook is absent until x4_lua_reload succeeds).
 * NULL with err only on bad options or out of memory. */
x4_lua_rt *x4_lua_open(const x4_lua_opts *opts, char *err, size_t errlen);
void x4_lua_close(x4_lua_rt *rt);

/* Builds a new state, loads every policy and plugin file and swaps it in only if all of them
 * loaded. 0 on success; -1 with err (naming the file and line) leaves the previous set, and
 * its version, in force. A missing directory counts as empty (logged). */
int x4_lua_reload(x4_lua_rt *rt, char *err, size_t errlen);

/* Hex hash (16 chars) of the loaded policy and plugin files; "none" before the first load. */
const char *x4_lua_version(const x4_lua_rt *rt);

/* Calls a policy hook "FILE.FUNCTION" (e.g. "retry.decide") with args: a JSON array of
 * positional arguments (NULL: none; any other value: one argument). Returns 0 and *result (a
 * new reference, already validated and normalised for the known hooks), 1 if no loaded policy
 * defines that hook (nothing logged), or -1 with err naming the file and line (logged). */
int x4_lua_call(x4_lua_rt *rt, const char *hook, const json_t *args, json_t **result, char *err,
                size_t errlen);

/* The same for plugin functions (plugins/NAME.lua's FUNCTION); no validator is applied. */
int x4_lua_call_plugin(x4_lua_rt *rt, const char *plugin, const char *fn, const json_t *args,
                       json_t **result, char *err, size_t errlen);

int x4_lua_has_hook(const x4_lua_rt *rt, const char *hook);      /* "retry.decide" */
int x4_lua_has_plugin(const x4_lua_rt *rt, const char *name);    /* "http" */

/* What the current state runs, for callers that recognise a known file (exec/step_adapter.c
 * skips the Lua round trip of the shipped http/x402 plugins): the hex BLAKE2b-256 of the
 * source text loaded as plugins/NAME.lua; NULL if none is loaded. Valid until the next reload. */
const char *x4_lua_plugin_source(const x4_lua_rt *rt, const char *name);
/* "DIR/MODULE.lua HASH" for a module some file of the current state required (DIR is lua,
 * policies or plugins: where require found it, and so what every later require of it gets);
 * NULL if nothing required it. Valid until the next reload. */
const char *x4_lua_module_source(const x4_lua_rt *rt, const char *module);

/* {"version", "memory":{"used","cap"}, "budget", "policies":{file:[functions]},
 * "plugins":{file:[functions]}} — a new reference, for /health and the admin API. */
json_t *x4_lua_describe(const x4_lua_rt *rt);

#endif
