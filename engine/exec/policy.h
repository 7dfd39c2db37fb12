/* exec/policy.h — the engine's use of the Lua runtime (lua/lua.h, docs/lua.md): one runtime
 * per engine process, loaded at start from POLICY_DIR / PLUGIN_DIR with the library dir
 * X4_SOURCE_DIR "/lua" (or X402R_LUA_DIR), reloaded atomically on SIGHUP and by
 * POST /admin/policies/reload. Every function is for the loop thread only.
 *
 * A missing policy directory is logged once by the runtime and leaves the built-in decisions
 * in force; a file that fails to load at start is logged and the engine runs on the built-in
 * decisions (nothing loaded) until a reload succeeds. */
#ifndef X4_EXEC_POLICY_H
#define X4_EXEC_POLICY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

/* Creates the runtime and loads the files. -1 only when the runtime cannot be created. */
int x4_policy_open(x4_engine *e, char *err, size_t errlen);
void x4_policy_close(x4_engine *e);

/* 0, or -1 with err (file:line) leaving the previous set and version in force. */
int x4_policy_reload(x4_engine *e, char *err, size_t errlen);
/* "none" before a successful load (or without a runtime). */
const char *x4_policy_version(const x4_engine *e);
/* x4_lua_describe(), or {"version":"none"} without a runtime; a new reference. */
json_t *x4_policy_describe(const x4_engine *e);

/* The engine's own backoff before attempt+1: exponential from RETRY_BASE_MS by RETRY_FACTOR,
 * capped at RETRY_MAX_DELAY_MS, with full jitter. */
int64_t x4_policy_backoff_ms(const x4_config *cfg, int attempt);

/* The error a failed attempt gets, as retry.decide sees it (err.class ...). */
typedef struct {
    const char *cls;        /* "network", "timeout", "status", "payment" */
    long status;            /* HTTP status for "status", else 0 */
    int64_t retry_after_ms; /* the server's Retry-After, -1 if none */
    const char *message;    /* the engine's reason */
} x4_policy_err;

enum { X4_POLICY_DEFAULT = -1, X4_POLICY_GIVEUP = 0, X4_POLICY_RETRY = 1 };

/* Asks retry.decide(step, err, attempt). step is {id, service, maxAttempts, inputs}.
 * X4_POLICY_RETRY with *delay_ms, X4_POLICY_GIVEUP with reason, or X4_POLICY_DEFAULT when no
 * hook is loaded or the call failed (already logged): the caller's built-in decision applies. */
int x4_policy_retry(x4_engine *e, const char *step_id, const char *service, const json_t *inputs,
                    int max_attempts, const x4_policy_err *err, int attempt, int64_t *delay_ms, char *reason,
                    size_t reasonlen);

/* The same through another hook with retry.decide's contract (rollback.retry for compensations). */
int x4_policy_retry_hook(x4_engine *e, const char *hook, const char *step_id, const char *service,
                         const json_t *inputs, int max_attempts, const x4_policy_err *err, int attempt,
                         int64_t *delay_ms, char *reason, size_t reasonlen);

/* rollback.plan(workflow): 0 with *plan (a new array, already shape-checked by the runtime), or
 * X4_POLICY_DEFAULT (no hook, or it failed: logged) — the caller builds the default plan. */
int x4_policy_rollback(x4_engine *e, const json_t *workflow, json_t **plan);

enum { X4_APPROVE_MANUAL = 0, X4_APPROVE_AUTO = 1, X4_APPROVE_DENY = 2 };
typedef struct {
    int action;          /* X4_APPROVE_* */
    int64_t expires_ms;  /* manual: how long the approval stays open (0: APPROVAL_TTL_MS) */
    char reason[256];
} x4_approval;

/* approval.decide(workflow, estimate, limits): 0 with *out, or X4_POLICY_DEFAULT (no hook or a
 * failed call: the built-in decision is manual with APPROVAL_TTL_MS). */
int x4_policy_approval(x4_engine *e, const json_t *workflow, uint64_t estimate, const json_t *limits,
                       x4_approval *out);

#endif
