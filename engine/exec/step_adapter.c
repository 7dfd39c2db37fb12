/* exec/step_adapter.c — step adapters: Lua plugins in front of the built-in HTTP adapter (see
 * step_adapter.h for the contract).
 *
 * Everything a plugin returns is treated as hostile: the request table is checked field by
 * field (unknown fields refused, method from a fixed list, http(s) URL without blanks or
 * control characters, bounded body, URL and header counts) and the request is built by
 * x4_adapter_build, which owns the engine's headers and refuses reserved or malformed ones.
 * Cost per step: one JSON view of the step for prepare and one of the response for parse,
 * converted once each way by the runtime — except for the shipped http/x402 plugins, whose
 * answer C knows without asking (see "the shipped plugins" below). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/util.h"
#include "exec/step_adapter.h"

#define MOD "adapter"
#define MAX_QUERY_MEMBERS 256

const char *x4_step_adapter(const x4_service *svc) { return x4_service_adapter(svc); }

int x4_step_adapter_builtin(const char *a) { return a && (strcmp(a, "http") == 0 || strcmp(a, "x402") == 0); }

/* ---- the shipped plugins ----
 * plugins/http.lua as shipped asks C for exactly the built-in request, and x402.lua as shipped
 * is http.lua through require "http":
 *   prepare returns {method = service.method or "POST", inputs_as = "query" (GET, DELETE) or
 *     "body"}. For a method the catalog stores (GET, POST, PUT, PATCH, DELETE, upper case) and
 *     inputs that are an object (or none: {}), build_from_plugin then sends the service URL with
 *     the inputs as the compact, key-sorted JSON body or as the key-sorted query — the bytes of
 *     x4_adapter_http_build — and every way it can refuse (no URL, a bad URL, a body, query or
 *     URL over the limits) falls back to x4_adapter_http_build, as does a Lua failure (budget,
 *     memory). So the request is x4_adapter_http_build's in every case.
 *   parse of a 2xx answer whose body is empty or JSON returns {output_from = "body"}: the
 *     output is the body as json_loadb decodes it ({} when empty), which is also what the
 *     built-in classification gives when the Lua call fails.
 * In those cases the Lua round trip is skipped; anything else (another method or inputs shape,
 * a non-2xx answer, a 2xx body that is not JSON, compensate) still runs the plugin, whose
 * messages C does not reproduce. The shipped files are recognised by the BLAKE2b-256 hash of
 * the source text the runtime loaded (x4_lua_plugin_source), and for x402 by where its
 * require "http" was found (x4_lua_module_source: plugins/http.lua with the shipped hash, not a
 * lua/ or policies/ http.lua): an operator's own http.lua or x402.lua, or any edit to the
 * shipped ones, has a different hash and runs as Lua. test_step_adapter.c checks these hashes
 * against plugins/ so that an edit there cannot go unnoticed. */
#define SHIPPED_HTTP_LUA "8ff952b871fd22a7684c489dced0cf36ad341bdc594ae1789a12019df4830097"
#define SHIPPED_X402_LUA "0327a5f294bd6af9a0ba6cea74b0d94f4c7fa196b344e6d23873954589af89eb"

const char *x4_step_shipped_hash(const char *adapter) {
    if (adapter && strcmp(adapter, "http") == 0) return SHIPPED_HTTP_LUA;
    if (adapter && strcmp(adapter, "x402") == 0) return SHIPPED_X402_LUA;
    return NULL;
}

int x4_step_adapter_shipped(const x4_lua_rt *rt, const char *adapter) {
    const char *want = x4_step_shipped_hash(adapter), *have = x4_lua_plugin_source(rt, adapter);
    if (!want || !have || strcmp(have, want) != 0) return 0;
    if (strcmp(adapter, "http") == 0) return 1;
    const char *m = x4_lua_module_source(rt, "http");
    return m && strcmp(m, "plugins/http.lua " SHIPPED_HTTP_LUA) == 0;
}

/* The prepare of the shipped plugins is the built-in request for these steps (see above). */
static int shipped_prepare_is_builtin(const x4_step_in *in) {
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    if (in->inputs && !json_is_object(in->inputs)) return 0;
    if (!in->svc->method) return 1;
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(in->svc->method, methods[i]) == 0) return 1;
    return 0;
}

/* ---- views ---- */

static json_t *service_view(const x4_service *svc) {
    json_t *s = x4_service_to_json(svc);
    return s ? s : json_object();
}

/* ctx: {workflowId, stepId, attempt, idempotencyKey, adapter, service}. */
static json_t *ctx_view(const x4_step_in *in, json_t *service, int compensation) {
    char key[300];
    if (compensation) snprintf(key, sizeof key, "%s:%s:compensate", in->workflow_id, in->step_id);
    else snprintf(key, sizeof key, "%s:%s:%d", in->workflow_id, in->step_id, in->attempt);
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:O}", "workflowId", in->workflow_id, "stepId", in->step_id, "attempt",
                     in->attempt, "idempotencyKey", key, "adapter", x4_step_adapter(in->svc), "service", service);
}

/* [step, ctx] for prepare and compensate. */
static json_t *step_args(const x4_step_in *in, const json_t *output, int compensation) {
    json_t *service = service_view(in->svc);
    json_t *inputs = in->inputs ? json_incref((json_t *)in->inputs) : json_object();
    json_t *step = json_pack("{s:s, s:s, s:i, s:s, s:o, s:O}", "id", in->step_id, "workflowId", in->workflow_id,
                             "attempt", in->attempt, "adapter", x4_step_adapter(in->svc), "inputs", inputs, "service",
                             service);
    if (step && output) json_object_set(step, "output", (json_t *)output);
    json_t *ctx = ctx_view(in, service, compensation);
    json_decref(service);
    if (!step || !ctx) {
        json_decref(step);
        json_decref(ctx);
        return NULL;
    }
    return json_pack("[o, o]", step, ctx);
}

/* response = {status, headers, body?, json, binary?}. */
static json_t *response_view(const x4_httpc_resp *r) {
    json_t *h = json_object(), *v = json_object();
    if (!h || !v) goto oom;
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *name = r->headers[i].name, *val = r->headers[i].value ? r->headers[i].value : "";
        if (!name) continue;
        char lname[128];
        size_t n = strlen(name);
        if (n == 0 || n >= sizeof lname) continue;
        for (size_t k = 0; k <= n; k++) lname[k] = (char)tolower((unsigned char)name[k]);
        json_t *prev = json_object_get(h, lname), *s;
        if (prev) {
            x4_buf b = {0};
            if (x4_buf_printf(&b, "%s, %s", json_string_value(prev), val) < 0) {
                x4_buf_free(&b);
                goto oom;
            }
            s = json_stringn(b.data, b.len);
            x4_buf_free(&b);
        } else {
            s = json_string(val);
        }
        if (s) json_object_set_new(h, lname, s); /* a value that is not UTF-8 is left out */
    }
    json_object_set_new(v, "status", json_integer(r->code));
    json_object_set_new(v, "headers", h);
    h = NULL;
    json_t *body = NULL;
    int is_json = 0;
    if (r->body_len > 0) {
        body = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, NULL);
        is_json = body != NULL;
        if (!body) body = json_stringn(r->body, r->body_len);
    } else {
        body = json_string("");
    }
    if (body) json_object_set_new(v, "body", body);
    else json_object_set_new(v, "binary", json_true());
    json_object_set_new(v, "json", json_boolean(is_json));
    return v;
oom:
    json_decref(h);
    json_decref(v);
    return NULL;
}

/* ---- checks of what a plugin returned ---- */

static int only_keys(const json_t *o, const char *const *allowed, size_t n, const char *what, char *err,
                     size_t errlen) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        size_t i;
        for (i = 0; i < n && strcmp(k, allowed[i]) != 0; i++) {
        }
        if (i == n) {
            x4_seterr(err, errlen, "%s has an unknown field '%.64s'", what, k);
            return -1;
        }
    }
    return 0;
}

static int check_url(const char *u, char *err, size_t errlen) {
    size_t n = strlen(u);
    const char *host = strncmp(u, "http://", 7) == 0 ? u + 7 : strncmp(u, "https://", 8) == 0 ? u + 8 : NULL;
    if (!host || !*host || *host == '/' || *host == '?' || *host == '#') {
        x4_seterr(err, errlen, "url must be an http:// or https:// URL with a host");
        return -1;
    }
    if (n > X4_STEP_MAX_URL) {
        x4_seterr(err, errlen, "url longer than %d bytes", X4_STEP_MAX_URL);
        return -1;
    }
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= 32 || *p == 127) {
            x4_seterr(err, errlen, "url contains a blank or control character");
            return -1;
        }
    return 0;
}

static const char *check_method(const json_t *v, const char *dflt, char *err, size_t errlen) {
    static const char *const ok[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    if (!v || json_is_null(v)) return dflt;
    if (json_is_string(v))
        for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
            if (strcasecmp(json_string_value(v), ok[i]) == 0) return ok[i];
    x4_seterr(err, errlen, "method must be one of GET, POST, PUT, PATCH, DELETE");
    return NULL;
}

/* headers object → array of pointers into it (valid while h lives). */
static int collect_headers(const json_t *h, x4_httpc_header *out, size_t *n, char *err, size_t errlen) {
    *n = 0;
    if (!h || json_is_null(h)) return 0;
    if (json_is_array(h) && json_array_size(h) == 0) return 0; /* an empty Lua table */
    if (!json_is_object(h)) {
        x4_seterr(err, errlen, "headers must be a table of name = value strings");
        return -1;
    }
    if (json_object_size(h) > X4_ADAPTER_EXTRA_HEADERS) {
        x4_seterr(err, errlen, "more than %d headers", X4_ADAPTER_EXTRA_HEADERS);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)h, k, v) {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
            x4_seterr(err, errlen, "header %.64s: the value must be a string without NUL bytes", k);
            return -1;
        }
        out[(*n)++] = (x4_httpc_header){k, json_string_value(v)};
    }
    return 0;
}

/* A body value → text to send (NULL: none). *owned is set when the text was allocated. */
static int body_text(const json_t *b, const char **text, size_t *len, char **owned, char *err, size_t errlen) {
    *text = NULL;
    *len = 0;
    *owned = NULL;
    if (!b || json_is_null(b)) return 0;
    if (json_is_string(b)) {
        *text = json_string_value(b);
        *len = json_string_length(b);
    } else {
        if (!(*owned = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY))) {
            x4_seterr(err, errlen, "body cannot be encoded as JSON");
            return -1;
        }
        *text = *owned;
        *len = strlen(*owned);
    }
    if (*len > X4_STEP_MAX_BODY) {
        free(*owned);
        *owned = NULL;
        x4_seterr(err, errlen, "body longer than %zu bytes", X4_STEP_MAX_BODY);
        return -1;
    }
    return 0;
}

/* A request table → *call. -1 with err on a bad shape. */
static int build_from_plugin(const x4_step_in *in, const json_t *r, x4_adapter_call *call, char *err, size_t errlen) {
    static const char *const fields[] = {"method", "url", "headers", "query", "body", "inputs_as"};
    if (only_keys(r, fields, sizeof fields / sizeof *fields, "the request", err, errlen)) return -1;
    const char *method = check_method(json_object_get(r, "method"), in->svc->method ? in->svc->method : "POST", err,
                                      errlen);
    if (!method) return -1;
    const json_t *u = json_object_get(r, "url");
    const char *url = in->svc->url;
    if (u && !json_is_null(u)) {
        if (!json_is_string(u) || strlen(json_string_value(u)) != json_string_length(u)) {
            x4_seterr(err, errlen, "url must be a string");
            return -1;
        }
        url = json_string_value(u);
    }
    if (!url) {
        x4_seterr(err, errlen, "service %s has no URL in the catalog and the request gives none", in->svc->id);
        return -1;
    }
    if (check_url(url, err, errlen)) return -1;
    const json_t *q = json_object_get(r, "query"), *b = json_object_get(r, "body");
    const json_t *ia = json_object_get(r, "inputs_as");
    if (q && (json_is_null(q) || (json_is_array(q) && json_array_size(q) == 0))) q = NULL;
    if (b && json_is_null(b)) b = NULL;
    if (q && !json_is_object(q)) {
        x4_seterr(err, errlen, "query must be a table of name = value");
        return -1;
    }
    json_t *empty = NULL;
    const json_t *inputs = in->inputs;
    if (ia && !json_is_null(ia)) {
        const char *how = json_string_value(ia);
        if (!inputs) inputs = empty = json_object();
        if (how && strcmp(how, "query") == 0 && !q) {
            q = json_is_object(inputs) ? inputs : NULL;
        } else if (how && strcmp(how, "body") == 0 && !b) {
            b = inputs;
        } else {
            json_decref(empty);
            x4_seterr(err, errlen, "inputs_as must be \"body\" (no body given) or \"query\" (no query given)");
            return -1;
        }
    }
    int rc = -1;
    char *owned = NULL;
    if (q && json_object_size(q) > MAX_QUERY_MEMBERS) {
        x4_seterr(err, errlen, "query has more than %d members", MAX_QUERY_MEMBERS);
        goto out;
    }
    x4_httpc_header hs[X4_ADAPTER_EXTRA_HEADERS];
    size_t nh;
    if (collect_headers(json_object_get(r, "headers"), hs, &nh, err, errlen)) goto out;
    const char *body;
    size_t blen;
    if (body_text(b, &body, &blen, &owned, err, errlen)) goto out;
    if (body && strcmp(method, "GET") == 0) {
        x4_seterr(err, errlen, "a GET request cannot carry a body (use query)");
        goto out;
    }
    x4_adapter_spec sp = {.method = method, .url = url, .query = q, .body = body, .body_len = blen, .headers = hs,
                          .nheaders = nh};
    rc = x4_adapter_build(call, &sp, in->workflow_id, in->step_id, in->attempt, in->connect_timeout_ms,
                          in->timeout_ms, in->max_response, err, errlen);
    if (rc == 0 && call->url.len > X4_STEP_MAX_URL) {
        x4_adapter_call_free(call);
        x4_seterr(err, errlen, "url with its query is longer than %d bytes", X4_STEP_MAX_URL);
        rc = -1;
    }
out:
    free(owned);
    json_decref(empty);
    return rc;
}

static int builtin_build(const x4_step_in *in, x4_adapter_call *call, char *err, size_t errlen) {
    json_t *empty = in->inputs ? NULL : json_object();
    int rc = x4_adapter_http_build(call, in->svc, in->inputs ? in->inputs : empty, in->workflow_id, in->step_id,
                                   in->attempt, in->connect_timeout_ms, in->timeout_ms, in->max_response, err, errlen);
    json_decref(empty);
    return rc;
}

/* ---- prepare ---- */

int x4_step_prepare(x4_lua_rt *rt, const x4_step_in *in, x4_adapter_call *call, json_t **output, char *err,
                    size_t errlen) {
    memset(call, 0, sizeof *call);
    *output = NULL;
    if (!in || !in->svc || !in->workflow_id || !in->step_id) {
        x4_seterr(err, errlen, "step adapter: missing step or service");
        return -1;
    }
    const char *name = x4_step_adapter(in->svc);
    int builtin = x4_step_adapter_builtin(name);
    int loaded = rt && x4_lua_has_plugin(rt, name);
    char why[768] = "";
    int rc = 1;
    if (loaded && builtin && shipped_prepare_is_builtin(in) && x4_step_adapter_shipped(rt, name))
        return builtin_build(in, call, err, errlen);
    if (loaded) {
        json_t *args = step_args(in, NULL, 0), *res = NULL;
        if (!args) {
            x4_seterr(err, errlen, "out of memory");
            return -1;
        }
        rc = x4_lua_call_plugin(rt, name, "prepare", args, &res, why, sizeof why); /* a failure is logged there */
        json_decref(args);
        if (rc == 0) {
            json_t *o = json_is_object(res) ? json_object_get(res, "output") : NULL;
            json_t *e = json_is_object(res) ? json_object_get(res, "error") : NULL;
            if (o && json_object_size(res) == 1) {
                *output = json_incref(o);
                json_decref(res);
                return 1;
            }
            if (e && json_object_size(res) == 1 && json_is_string(e)) {
                x4_seterr(err, errlen, "adapter %s refused the step: %s", name, json_string_value(e));
                json_decref(res);
                return -1;
            }
            char bad[512] = "";
            if (!json_is_object(res) && !(json_is_array(res) && json_array_size(res) == 0)) {
                x4_seterr(bad, sizeof bad, "prepare must return a request table, {output = v} or {error = why}");
            } else if (e && !json_is_string(e)) {
                x4_seterr(bad, sizeof bad, "error must be a string");
            } else if (o || e) {
                x4_seterr(bad, sizeof bad, "output and error must be the only field of what prepare returns");
            } else {
                json_t *req = json_is_object(res) ? json_incref(res) : json_object(); /* {} arrives as [] */
                int b = build_from_plugin(in, req, call, bad, sizeof bad);
                json_decref(req);
                if (b == 0) {
                    json_decref(res);
                    return 0;
                }
            }
            json_decref(res);
            snprintf(why, sizeof why, "plugins/%s.lua prepare: bad request: %s", name, bad);
            x4_warn(MOD, "%s/%s: %s", in->workflow_id, in->step_id, why);
            rc = -1;
        }
    }
    if (rc == 1) {
        if (builtin) return builtin_build(in, call, err, errlen);
        if (loaded) x4_seterr(err, errlen, "adapter plugin '%s' has no prepare function", name);
        else x4_seterr(err, errlen, "no adapter plugin '%s' loaded", name);
        return -1;
    }
    if (builtin) {
        x4_info(MOD, "%s/%s: adapter %s failed, using the built-in request", in->workflow_id, in->step_id, name);
        return builtin_build(in, call, err, errlen);
    }
    x4_seterr(err, errlen, "adapter %s failed: %s", name, why);
    return -1;
}

/* ---- parse ---- */

static x4_outcome parse_result(const x4_step_in *in, const char *name, const x4_httpc_resp *resp, const json_t *rv,
                               int rc, json_t *res, char *why, size_t whylen, json_t **output,
                               int64_t *retry_after_ms, char *err, size_t errlen);

/* {output_from = "body"}: the response's JSON body, decoded by C (nulls, empty objects and
 * large integers survive, unlike a round trip through Lua); an empty body is {}. */
static x4_outcome body_output(const x4_httpc_resp *r, const json_t *view, json_t **output, char *err,
                              size_t errlen) {
    if (json_is_true(json_object_get(view, "json"))) { /* already decoded for the view */
        json_t *b = json_object_get(view, "body");
        *output = b ? json_incref(b) : json_null();
        return X4_OUT_OK;
    }
    json_error_t jerr;
    json_t *j = r->body_len ? json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &jerr) : json_object();
    if (!j) {
        x4_seterr(err, errlen, "service answered %ld with a body that is not JSON: %s", r->code, jerr.text);
        return X4_OUT_FAIL;
    }
    *output = j;
    return X4_OUT_OK;
}

x4_outcome x4_step_parse(x4_lua_rt *rt, const x4_step_in *in, const x4_httpc_resp *resp, json_t **output,
                         int64_t *retry_after_ms, char *err, size_t errlen) {
    *output = NULL;
    *retry_after_ms = -1;
    const char *name = in && in->svc ? x4_step_adapter(in->svc) : "http";
    if (resp->status != X4_HTTPC_OK || resp->code == 402 || !rt || !in || !in->svc || !in->workflow_id ||
        !in->step_id || !x4_lua_has_plugin(rt, name))
        return x4_adapter_http_classify(resp, output, retry_after_ms, err, errlen);
    if (resp->code >= 200 && resp->code < 300 && x4_step_adapter_shipped(rt, name)) {
        /* the shipped plugins: {output_from = "body"} for an empty or JSON body (see above) */
        json_t *j = resp->body_len ? json_loadb(resp->body, resp->body_len, JSON_DECODE_ANY, NULL) : json_object();
        if (j) {
            *output = j;
            return X4_OUT_OK;
        }
    }
    json_t *service = service_view(in->svc), *rv = response_view(resp);
    json_t *ctx = ctx_view(in, service, 0);
    json_decref(service);
    json_t *args = rv && ctx ? json_pack("[O, O]", rv, ctx) : NULL;
    json_decref(ctx);
    if (!args) {
        json_decref(rv);
        x4_seterr(err, errlen, "out of memory");
        return X4_OUT_FAIL;
    }
    char why[768] = "";
    json_t *res = NULL;
    int rc = x4_lua_call_plugin(rt, name, "parse", args, &res, why, sizeof why);
    json_decref(args);
    x4_outcome oc = parse_result(in, name, resp, rv, rc, res, why, sizeof why, output, retry_after_ms, err, errlen);
    json_decref(rv);
    return oc;
}

/* Interprets what parse returned (rc and res from x4_lua_call_plugin; res is consumed). */
static x4_outcome parse_result(const x4_step_in *in, const char *name, const x4_httpc_resp *resp, const json_t *rv,
                               int rc, json_t *res, char *why, size_t whylen, json_t **output,
                               int64_t *retry_after_ms, char *err, size_t errlen) {
    if (rc == 1) return x4_adapter_http_classify(resp, output, retry_after_ms, err, errlen);
    if (rc == 0) {
        static const char *const fields[] = {"output", "output_from", "retry", "delay", "error"};
        char bad[512] = "";
        json_t *o = json_object_get(res, "output"), *rt_ = json_object_get(res, "retry"),
               *d = json_object_get(res, "delay"), *e = json_object_get(res, "error");
        if (!json_is_object(res)) {
            x4_seterr(bad, sizeof bad, "parse must return {output = v}, {retry = true, delay?, error?} or {error = why}");
        } else if (only_keys(res, fields, sizeof fields / sizeof *fields, "what parse returns", bad, sizeof bad)) {
        } else if (e && !json_is_string(e)) {
            x4_seterr(bad, sizeof bad, "error must be a string");
        } else if (rt_ && !json_is_boolean(rt_)) {
            x4_seterr(bad, sizeof bad, "retry must be a boolean");
        } else if (o && json_object_size(res) == 1) {
            *output = json_incref(o);
            json_decref(res);
            return X4_OUT_OK;
        } else if (json_object_get(res, "output_from") && json_object_size(res) == 1) {
            const char *from = json_string_value(json_object_get(res, "output_from"));
            if (!from || strcmp(from, "body") != 0) {
                x4_seterr(bad, sizeof bad, "output_from must be \"body\"");
                goto bad;
            }
            json_decref(res);
            return body_output(resp, rv, output, err, errlen);
        } else if (json_is_true(rt_) && !o) {
            if (d && !json_is_null(d)) {
                double ms = json_number_value(d);
                if (!json_is_number(d) || ms < 0 || ms != ms) {
                    x4_seterr(bad, sizeof bad, "delay must be a number of milliseconds >= 0");
                    goto bad;
                }
                *retry_after_ms = ms > X4_STEP_MAX_DELAY_MS ? X4_STEP_MAX_DELAY_MS : (int64_t)ms;
            }
            x4_seterr(err, errlen, "%s", e ? json_string_value(e) : "the adapter asked for a retry");
            json_decref(res);
            return X4_OUT_RETRY;
        } else if (e && !o && !json_is_true(rt_) && !d) {
            x4_seterr(err, errlen, "%s", json_string_value(e));
            json_decref(res);
            return X4_OUT_FAIL;
        } else {
            x4_seterr(bad, sizeof bad, "parse must return {output = v}, {retry = true, delay?, error?} or {error = why}");
        }
    bad:
        json_decref(res);
        snprintf(why, whylen, "plugins/%s.lua parse: bad return value: %s", name, bad);
        x4_warn(MOD, "%s/%s: %s", in->workflow_id, in->step_id, why);
    }
    *retry_after_ms = -1;
    if (x4_step_adapter_builtin(name)) return x4_adapter_http_classify(resp, output, retry_after_ms, err, errlen);
    x4_seterr(err, errlen, "adapter %s failed: %s", name, why);
    return X4_OUT_FAIL;
}

/* ---- compensate ---- */

int x4_step_compensation(x4_lua_rt *rt, const x4_step_in *in, const json_t *output, json_t **req, char *err,
                         size_t errlen) {
    *req = NULL;
    if (!rt || !in || !in->svc || !in->workflow_id || !in->step_id) return 0;
    const char *name = x4_step_adapter(in->svc);
    if (!x4_lua_has_plugin(rt, name)) return 0;
    json_t *args = step_args(in, output ? output : json_null(), 1), *res = NULL;
    if (!args) {
        x4_seterr(err, errlen, "out of memory");
        return -1;
    }
    char why[768] = "";
    int rc = x4_lua_call_plugin(rt, name, "compensate", args, &res, why, sizeof why);
    json_decref(args);
    if (rc == 1) return 0;
    if (rc < 0) {
        x4_seterr(err, errlen, "adapter %s: %s", name, why);
        return -1;
    }
    if (json_is_null(res)) {
        json_decref(res);
        return 0;
    }
    static const char *const fields[] = {"url", "method", "headers", "body"};
    char bad[512] = "";
    const json_t *u = json_object_get(res, "url");
    const char *method = NULL;
    x4_httpc_header hs[X4_ADAPTER_EXTRA_HEADERS];
    size_t nh = 0;
    if (!json_is_object(res)) {
        x4_seterr(bad, sizeof bad, "compensate must return nil or {url, method?, headers?, body?}");
    } else if (only_keys(res, fields, sizeof fields / sizeof *fields, "the compensation", bad, sizeof bad)) {
    } else if (!json_is_string(u) || strlen(json_string_value(u)) != json_string_length(u)) {
        x4_seterr(bad, sizeof bad, "url must be a string");
    } else if (check_url(json_string_value(u), bad, sizeof bad)) {
    } else if (!(method = check_method(json_object_get(res, "method"), "POST", bad, sizeof bad))) {
    } else if (collect_headers(json_object_get(res, "headers"), hs, &nh, bad, sizeof bad)) {
    } else {
        /* the headers get the same checks as a request's: build one and throw it away */
        x4_adapter_call probe;
        x4_adapter_spec sp = {.method = method, .url = json_string_value(u), .headers = hs, .nheaders = nh};
        if (x4_adapter_build(&probe, &sp, in->workflow_id, in->step_id, 0, 0, 0, 0, bad, sizeof bad) == 0) {
            x4_adapter_call_free(&probe);
            json_t *body = json_object_get(res, "body");
            json_t *out = json_pack("{s:O, s:s}", "url", u, "method", method);
            if (out && nh) json_object_set(out, "headers", json_object_get(res, "headers"));
            if (out && body && !json_is_null(body)) json_object_set(out, "body", body);
            json_decref(res);
            if (!out) {
                x4_seterr(err, errlen, "out of memory");
                return -1;
            }
            *req = out;
            return 1;
        }
    }
    json_decref(res);
    x4_seterr(err, errlen, "adapter %s: plugins/%s.lua compensate: bad return value: %s", name, name, bad);
    x4_warn(MOD, "%s/%s: %s", in->workflow_id, in->step_id, err);
    return -1;
}
