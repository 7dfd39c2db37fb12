/* exec/policy.c — see policy.h. */
#include "exec/policy.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "lua/lua.h"

int x4_policy_open(x4_engine *e, char *err, size_t errlen) {
    const char *lib = getenv("X402R_LUA_DIR");
    if (!lib || !*lib) lib = X4_SOURCE_DIR "/lua";
    x4_lua_opts o = {e->cfg.policy_dir, e->cfg.plugin_dir, lib, (size_t)e->cfg.lua_mem_cap,
                     (uint64_t)e->cfg.lua_budget};
    char why[512];
    e->lua = x4_lua_open(&o, why, sizeof why);
    if (!e->lua) {
        snprintf(err, errlen, "Lua runtime: %s", why);
        return -1;
    }
    if (x4_lua_reload(e->lua, why, sizeof why) < 0)
        x4_warn("policy", "policies not loaded (%s); running on the built-in decisions until a reload succeeds", why);
    return 0;
}

void x4_policy_close(x4_engine *e) {
    if (e->lua) x4_lua_close(e->lua);
    e->lua = NULL;
}

int x4_policy_reload(x4_engine *e, char *err, size_t errlen) {
    if (!e->lua) {
        snprintf(err, errlen, "the Lua runtime is not running");
        return -1;
    }
    if (x4_lua_reload(e->lua, err, errlen) < 0) {
        x4_warn("policy", "reload failed, version %s stays in force: %s", x4_lua_version(e->lua), err);
        return -1;
    }
    x4_info("policy", "policies reloaded, version %s", x4_lua_version(e->lua));
    return 0;
}

const char *x4_policy_version(const x4_engine *e) { return e->lua ? x4_lua_version(e->lua) : "none"; }

json_t *x4_policy_describe(const x4_engine *e) {
    json_t *d = e->lua ? x4_lua_describe(e->lua) : NULL;
    return d ? d : json_pack("{s:s}", "version", "none");
}

int64_t x4_policy_backoff_ms(const x4_config *cfg, int attempt) {
    double cap = (double)cfg->retry_base_ms;
    for (int k = 1; k < attempt && cap < (double)cfg->retry_max_delay_ms; k++) cap *= cfg->retry_factor;
    if (cap > (double)cfg->retry_max_delay_ms) cap = (double)cfg->retry_max_delay_ms;
    uint32_t hi = cap < 1 ? 0 : (uint32_t)cap;
    return hi ? (int64_t)randombytes_uniform(hi + 1) : 0; /* full jitter */
}

int x4_policy_retry(x4_engine *e, const char *step_id, const char *service, const json_t *inputs,
                    int max_attempts, const x4_policy_err *err, int attempt, int64_t *delay_ms, char *reason,
                    size_t reasonlen) {
    return x4_policy_retry_hook(e, "retry.decide", step_id, service, inputs, max_attempts, err, attempt, delay_ms,
                                reason, reasonlen);
}

int x4_policy_retry_hook(x4_engine *e, const char *hook, const char *step_id, const char *service,
                         const json_t *inputs, int max_attempts, const x4_policy_err *err, int attempt,
                         int64_t *delay_ms, char *reason, size_t reasonlen) {
    if (!e->lua || !x4_lua_has_hook(e->lua, hook)) return X4_POLICY_DEFAULT;
    /* the engine's own backoff settings travel with the step, so a policy can honour them */
    json_t *step = json_pack("{s:s, s:s, s:i, s:{s:I, s:f, s:I}}", "id", step_id ? step_id : "", "service",
                             service ? service : "", "maxAttempts", max_attempts, "backoff", "baseMs",
                             (json_int_t)e->cfg.retry_base_ms, "factor", e->cfg.retry_factor, "maxDelayMs",
                             (json_int_t)e->cfg.retry_max_delay_ms);
    json_t *er = json_pack("{s:s, s:s}", "class", err->cls, "message", err->message ? err->message : "");
    if (!step || !er) {
        json_decref(step);
        json_decref(er);
        return X4_POLICY_DEFAULT;
    }
    if (inputs) json_object_set(step, "inputs", (json_t *)inputs);
    if (err->status > 0) json_object_set_new(er, "status", json_integer(err->status));
    if (err->retry_after_ms >= 0) json_object_set_new(er, "retryAfterMs", json_integer(err->retry_after_ms));
    json_t *args = json_pack("[o, o, i]", step, er, attempt);
    if (!args) return X4_POLICY_DEFAULT;
    json_t *res = NULL;
    char why[512];
    int rc = x4_lua_call(e->lua, hook, args, &res, why, sizeof why);
    json_decref(args);
    if (rc != 0) return X4_POLICY_DEFAULT; /* 1: no hook; -1: failed and logged by the runtime */
    int out = X4_POLICY_DEFAULT;
    const char *action = json_string_value(json_object_get(res, "action"));
    if (action && strcmp(action, "retry") == 0 && json_is_integer(json_object_get(res, "delayMs"))) {
        *delay_ms = json_integer_value(json_object_get(res, "delayMs"));
        if (*delay_ms < 0) *delay_ms = 0;
        out = X4_POLICY_RETRY;
    } else if (action && strcmp(action, "giveup") == 0) {
        const char *r = json_string_value(json_object_get(res, "reason"));
        snprintf(reason, reasonlen, "%s", r ? r : "retry policy gave up");
        out = X4_POLICY_GIVEUP;
    }
    json_decref(res);
    return out;
}

int x4_policy_rollback(x4_engine *e, const json_t *workflow, json_t **plan) {
    *plan = NULL;
    if (!e->lua || !x4_lua_has_hook(e->lua, "rollback.plan")) return X4_POLICY_DEFAULT;
    json_t *args = json_pack("[O]", workflow);
    char why[512];
    int rc = args ? x4_lua_call(e->lua, "rollback.plan", args, plan, why, sizeof why) : -1;
    json_decref(args);
    return rc == 0 ? 0 : X4_POLICY_DEFAULT;
}

int x4_policy_approval(x4_engine *e, const json_t *workflow, uint64_t estimate, const json_t *limits,
                       x4_approval *out) {
    memset(out, 0, sizeof *out);
    if (!e->lua || !x4_lua_has_hook(e->lua, "approval.decide")) return X4_POLICY_DEFAULT;
    char est[24];
    snprintf(est, sizeof est, "%llu", (unsigned long long)estimate);
    json_t *args = json_pack("[O, s, O]", workflow, est, limits);
    json_t *res = NULL;
    char why[512];
    int rc = args ? x4_lua_call(e->lua, "approval.decide", args, &res, why, sizeof why) : -1;
    json_decref(args);
    if (rc != 0) return X4_POLICY_DEFAULT;
    const char *a = json_string_value(json_object_get(res, "action"));
    const char *r = json_string_value(json_object_get(res, "reason"));
    out->action = !a ? X4_APPROVE_MANUAL : !strcmp(a, "auto") ? X4_APPROVE_AUTO
                  : !strcmp(a, "deny") ? X4_APPROVE_DENY : X4_APPROVE_MANUAL;
    out->expires_ms = json_integer_value(json_object_get(res, "expiresMs"));
    snprintf(out->reason, sizeof out->reason, "%s", r ? r : "");
    json_decref(res);
    return 0;
}
