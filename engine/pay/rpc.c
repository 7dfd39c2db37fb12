/* pay/rpc.c — the asynchronous Solana JSON-RPC client (see rpc.h for the contract).
 *
 * One x4_rpc_call per request: it owns the preallocated typed result (so a result can always
 * be delivered, even after an allocation failure), the parsed response and a list of heap
 * blocks the result points into; all of it is released right after the callback. Each method
 * is a small table entry: its name, the size of its result and a parser from the JSON
 * "result" into the struct. Parsers check every type and value and fail with a reason that
 * names the field; a failed parse clears the typed part, so a caller never sees half a result.
 *
 * jansson refuses integers above int64 (the node's rentEpoch is u64::MAX), so before parsing
 * such integer literals are rewritten into marked strings ("#x4big:<digits>") that only the
 * u64 reader here accepts; everything else in the text is left byte for byte. */
#include "pay/rpc.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define DEF_TIMEOUT_MS 30000
#define MAX_CONNECT_MS 10000
#define BIG_MARK "#x4big:"
#define MEMO_V2 "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
#define MEMO_V1 "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"
/* base58 strings up to this length always fit x4_b58_decode's 256-byte limit
 * (349 * log2(58) < 2048), so a failure to decode one means it is not base58. */
#define B58_SURE_FITS 349

typedef void (*any_cb)(void);
typedef struct method method;

struct x4_rpc {
    x4_httpc *http;
    char *url;
    char commitment[16];
    long timeout_ms;
    size_t max_response;
    uint64_t next_id;
    x4_rpc_call *head;
    size_t inflight;
    int closing;
    char last_err[256];
};

struct x4_rpc_call {
    x4_rpc *rpc;
    x4_rpc_call *prev, *next;
    x4_httpc_call *http;
    const method *m;
    uint64_t id;
    any_cb cb;
    void *ud;
    void *res;            /* the typed result, m->res_size bytes, first member x4_rpc_result */
    size_t nreq;          /* getSignatureStatuses: how many signatures were asked for */
    int sending, sync_failed, oom;
    char sync_err[200];
    json_t *root;
    void **keep;          /* heap blocks the result points into */
    size_t nkeep, capkeep;
    char why[400];
};

struct method {
    size_t res_size;
    int (*parse)(x4_rpc_call *c, json_t *result);
    void (*on_rpc_error)(x4_rpc_call *c, json_t *error);
    void (*deliver)(x4_rpc_call *c);
};

/* ------------------------------------------------------------------------------------------ */
/* small helpers                                                                              */

static int fail(x4_rpc_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(x4_rpc_call *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    return -1;
}

static int fail_oom(x4_rpc_call *c) {
    c->oom = 1;
    return fail(c, "out of memory");
}

/* Registers p to be freed after the callback; frees p and returns NULL if it cannot. */
static void *keep(x4_rpc_call *c, void *p) {
    if (!p) return NULL;
    if (c->nkeep == c->capkeep) {
        size_t ncap = c->capkeep ? c->capkeep * 2 : 8;
        void **n = realloc(c->keep, ncap * sizeof *n);
        if (!n) {
            free(p);
            return NULL;
        }
        c->keep = n;
        c->capkeep = ncap;
    }
    c->keep[c->nkeep++] = p;
    return p;
}

static void *kalloc(x4_rpc_call *c, size_t n) {
    return keep(c, calloc(1, n ? n : 1));
}

/* Exact decimal u64: 1..20 digits, no sign, no leading zero (except "0"), no overflow. */
static int parse_u64_dec(const char *s, uint64_t *out) {
    uint64_t v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0')) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int as_u64(x4_rpc_call *c, json_t *v, const char *what, uint64_t *out) {
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0) return fail(c, "%s is negative (%lld)", what, (long long)i);
        *out = (uint64_t)i;
        return 0;
    }
    if (json_is_string(v) && strncmp(json_string_value(v), BIG_MARK, strlen(BIG_MARK)) == 0) {
        if (parse_u64_dec(json_string_value(v) + strlen(BIG_MARK), out) == 0) return 0;
        return fail(c, "%s is out of the u64 range", what);
    }
    return fail(c, "%s: expected an unsigned integer", what);
}

static int as_i64(x4_rpc_call *c, json_t *v, const char *what, int64_t *out) {
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && strncmp(json_string_value(v), BIG_MARK, strlen(BIG_MARK)) == 0)
        return fail(c, "%s is out of the i64 range", what);
    return fail(c, "%s: expected an integer", what);
}

static int as_str(x4_rpc_call *c, json_t *v, const char *what, const char **out) {
    *out = "";
    if (!json_is_string(v)) return fail(c, "%s: expected a string", what);
    *out = json_string_value(v);
    return 0;
}

static int as_bool(x4_rpc_call *c, json_t *v, const char *what, bool *out) {
    if (!json_is_boolean(v)) return fail(c, "%s: expected a boolean", what);
    *out = json_is_true(v);
    return 0;
}

static int as_obj(x4_rpc_call *c, json_t *v, const char *what) {
    return json_is_object(v) ? 0 : fail(c, "%s: expected an object", what);
}

static int as_arr(x4_rpc_call *c, json_t *v, const char *what) {
    return json_is_array(v) ? 0 : fail(c, "%s: expected an array", what);
}

static int as_key(x4_rpc_call *c, json_t *v, const char *what, char out[X4_SOL_B58_KEY_MAX], x4_sol_pubkey *k) {
    const char *s;
    x4_sol_pubkey tmp;
    if (as_str(c, v, what, &s)) return -1;
    if (strlen(s) >= X4_SOL_B58_KEY_MAX || x4_sol_pubkey_from_b58(s, k ? k : &tmp) != 0)
        return fail(c, "%s is not a base58 public key", what);
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int as_sig(x4_rpc_call *c, json_t *v, const char *what, char out[X4_SOL_B58_SIG_MAX]) {
    const char *s;
    uint8_t raw[X4_SOL_SIG_LEN];
    if (as_str(c, v, what, &s)) return -1;
    if (strlen(s) >= X4_SOL_B58_SIG_MAX || x4_b58_decode_exact(s, raw, sizeof raw) != 0)
        return fail(c, "%s is not a base58 signature", what);
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

/* null or absent -> *out NULL; anything else -> its compact JSON text. */
static int as_json_text(x4_rpc_call *c, json_t *v, const char **out) {
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    char *s = keep(c, json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY));
    if (!s) return fail_oom(c);
    *out = s;
    return 0;
}

static int as_commitment(x4_rpc_call *c, json_t *v, const char *what, char out[16]) {
    const char *s;
    out[0] = 0;
    if (!v || json_is_null(v)) return 0;
    if (as_str(c, v, what, &s)) return -1;
    if (strcmp(s, "processed") && strcmp(s, "confirmed") && strcmp(s, "finalized"))
        return fail(c, "%s: unknown commitment \"%.32s\"", what, s);
    snprintf(out, 16, "%s", s);
    return 0;
}

/* Strings of a JSON array (absent or null = none) into a kept array of pointers into the tree. */
static int as_str_list(x4_rpc_call *c, json_t *v, const char *what, const char *const **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v)) return 0;
    if (as_arr(c, v, what)) return -1;
    size_t k = json_array_size(v);
    const char **list = kalloc(c, k * sizeof *list);
    if (!list) return fail_oom(c);
    for (size_t i = 0; i < k; i++) {
        if (!json_is_string(json_array_get(v, i))) return fail(c, "%s[%zu]: expected a string", what, i);
        list[i] = json_string_value(json_array_get(v, i));
    }
    *out = list;
    *n = k;
    return 0;
}

/* {context:{slot}, value} results: fills r->context_slot, *value may be JSON null. */
static int ctx_value(x4_rpc_call *c, json_t *result, json_t **value) {
    x4_rpc_result *r = c->res;
    json_t *ctx;
    if (as_obj(c, result, "result")) return -1;
    ctx = json_object_get(result, "context");
    if (as_obj(c, ctx, "result.context")) return -1;
    if (as_u64(c, json_object_get(ctx, "slot"), "result.context.slot", &r->context_slot)) return -1;
    *value = json_object_get(result, "value");
    if (!*value) return fail(c, "result.value is missing");
    return 0;
}

/* Rewrites integer literals outside int64 into BIG_MARK strings. 0 = nothing to do (*out NULL),
 * 1 = rewritten (*out heap, NUL-terminated), -1 = out of memory. */
static int quote_big_ints(const char *s, size_t n, char **out) {
    x4_buf b = {0};
    size_t i = 0, last = 0;
    int in_str = 0, changed = 0;
    *out = NULL;
    while (i < n) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\') i += 2;
            else {
                if (ch == '"') in_str = 0;
                i++;
            }
            continue;
        }
        if (ch == '"') {
            in_str = 1;
            i++;
            continue;
        }
        if (ch != '-' && !(ch >= '0' && ch <= '9')) {
            i++;
            continue;
        }
        size_t start = i, d, j = i;
        int neg = ch == '-', real = 0;
        if (neg) j++;
        d = j;
        while (j < n && s[j] >= '0' && s[j] <= '9') j++;
        size_t ndig = j - d;
        while (j < n && (s[j] == '.' || s[j] == 'e' || s[j] == 'E' || s[j] == '+' || s[j] == '-' ||
                         (s[j] >= '0' && s[j] <= '9'))) {
            real = 1;
            j++;
        }
        if (!real && ndig >= 19) {
            const char *lim = neg ? "9223372036854775808" : "9223372036854775807";
            if (ndig > 19 || memcmp(s + d, lim, 19) > 0) {
                if (x4_buf_append(&b, s + last, start - last) || x4_buf_puts(&b, "\"" BIG_MARK) ||
                    x4_buf_append(&b, s + start, j - start) || x4_buf_puts(&b, "\""))
                    goto err;
                last = j;
                changed = 1;
            }
        }
        i = j;
    }
    if (!changed) return 0;
    if (x4_buf_append(&b, s + last, n - last)) goto err;
    *out = b.data;
    return 1;
err:
    x4_buf_free(&b);
    return -1;
}

static const char *commitment_for(const x4_rpc *rpc, int no_processed) {
    if (no_processed && strcmp(rpc->commitment, "processed") == 0) return "confirmed";
    return rpc->commitment;
}

/* ------------------------------------------------------------------------------------------ */
/* the round trip                                                                             */

static void unlink_call(x4_rpc_call *c) {
    x4_rpc *rpc = c->rpc;
    if (c->prev) c->prev->next = c->next;
    else if (rpc->head == c) rpc->head = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    rpc->inflight--;
}

static void free_call(x4_rpc_call *c) {
    for (size_t i = 0; i < c->nkeep; i++) free(c->keep[i]);
    free(c->keep);
    json_decref(c->root);
    free(c->res);
    free(c);
}

static void clear_typed(x4_rpc_call *c) {
    memset((char *)c->res + sizeof(x4_rpc_result), 0, c->m->res_size - sizeof(x4_rpc_result));
}

static void set_msg(x4_rpc_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_msg(x4_rpc_result *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

static int id_matches(const x4_rpc_call *c, json_t *id) {
    return json_is_integer(id) && json_integer_value(id) >= 0 && (uint64_t)json_integer_value(id) == c->id;
}

static void handle_body(x4_rpc_call *c, const x4_httpc_resp *resp) {
    x4_rpc_result *r = c->res;
    int http_ok = resp->code >= 200 && resp->code < 300;
    char *fixed = NULL;
    json_error_t je;
    int q = quote_big_ints(resp->body, resp->body_len, &fixed);
    if (q < 0) {
        r->status = X4_RPC_E_INTERNAL;
        set_msg(r, "out of memory");
        return;
    }
    c->root = fixed ? json_loads(fixed, 0, &je) : json_loadb(resp->body, resp->body_len, 0, &je);
    free(fixed);
    if (!c->root || !json_is_object(c->root)) {
        if (!http_ok) {
            r->status = X4_RPC_E_HTTP;
            set_msg(r, "HTTP %ld from the RPC node", resp->code);
        } else {
            r->status = X4_RPC_E_PROTOCOL;
            if (!c->root) set_msg(r, "response is not JSON: %s", je.text);
            else set_msg(r, "response is not a JSON-RPC object");
        }
        return;
    }
    json_t *ver = json_object_get(c->root, "jsonrpc"), *id = json_object_get(c->root, "id");
    json_t *error = json_object_get(c->root, "error"), *result = json_object_get(c->root, "result");
    if (error && !json_is_null(error)) {
        json_t *code = json_object_get(error, "code"), *msg = json_object_get(error, "message");
        if (id && !json_is_null(id) && !id_matches(c, id)) {
            r->status = X4_RPC_E_PROTOCOL;
            set_msg(r, "error response id does not match request id %llu", (unsigned long long)c->id);
            return;
        }
        if (!json_is_object(error) || !json_is_integer(code) || !json_is_string(msg)) {
            r->status = http_ok ? X4_RPC_E_PROTOCOL : X4_RPC_E_HTTP;
            set_msg(r, "malformed JSON-RPC error object (HTTP %ld)", resp->code);
            return;
        }
        r->status = X4_RPC_E_RPC;
        r->code = (long long)json_integer_value(code);
        set_msg(r, "%s", json_string_value(msg));
        if (as_json_text(c, json_object_get(error, "data"), &r->data_json) != 0) r->data_json = NULL;
        if (c->m->on_rpc_error) c->m->on_rpc_error(c, error);
        return;
    }
    if (!http_ok) {
        r->status = X4_RPC_E_HTTP;
        set_msg(r, "HTTP %ld from the RPC node", resp->code);
        return;
    }
    if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0) {
        r->status = X4_RPC_E_PROTOCOL;
        set_msg(r, "response is not JSON-RPC 2.0 (jsonrpc field)");
        return;
    }
    if (!id_matches(c, id)) {
        r->status = X4_RPC_E_PROTOCOL;
        set_msg(r, "response id does not match request id %llu", (unsigned long long)c->id);
        return;
    }
    if (!result) {
        r->status = X4_RPC_E_PROTOCOL;
        set_msg(r, "response has neither result nor error");
        return;
    }
    if (c->m->parse(c, result) != 0) {
        clear_typed(c);
        r->context_slot = 0;
        r->status = c->oom ? X4_RPC_E_INTERNAL : X4_RPC_E_PROTOCOL;
        set_msg(r, "%s", c->why);
        return;
    }
    r->status = X4_RPC_OK;
}

static void on_http(const x4_httpc_resp *resp, void *ud) {
    x4_rpc_call *c = ud;
    x4_rpc_result *r = c->res;
    if (c->sending) { /* failed inside x4_httpc_request(): start() reports it */
        c->sync_failed = 1;
        snprintf(c->sync_err, sizeof c->sync_err, "%.150s", resp->error);
        return;
    }
    c->http = NULL;
    unlink_call(c);
    r->http_status = resp->code;
    r->total_ms = resp->total_ms;
    switch (resp->status) {
    case X4_HTTPC_OK: handle_body(c, resp); break;
    case X4_HTTPC_NETWORK: r->status = X4_RPC_E_TRANSPORT; break;
    case X4_HTTPC_TIMEOUT: r->status = X4_RPC_E_TIMEOUT; break;
    case X4_HTTPC_TOO_LARGE: r->status = X4_RPC_E_TOO_LARGE; break;
    case X4_HTTPC_CANCELLED: r->status = X4_RPC_E_CANCELLED; break;
    default: r->status = X4_RPC_E_INTERNAL; break;
    }
    if (resp->status != X4_HTTPC_OK) set_msg(r, "%s", resp->error[0] ? resp->error : x4_rpc_status_name(r->status));
    c->m->deliver(c); /* the client may be freed inside: c no longer touches it */
    free_call(c);
}

static x4_rpc_call *start(x4_rpc *rpc, const method *m, const char *name, json_t *params, any_cb cb, void *ud,
                          size_t nreq) {
    x4_rpc_call *c = NULL;
    json_t *req = NULL;
    char *body = NULL;
    if (!params) {
        snprintf(rpc->last_err, sizeof rpc->last_err, "out of memory building %s", name);
        goto err;
    }
    if (!cb) {
        snprintf(rpc->last_err, sizeof rpc->last_err, "%s: no callback", name);
        goto err;
    }
    if (rpc->closing) {
        snprintf(rpc->last_err, sizeof rpc->last_err, "%s: the client is closing", name);
        goto err;
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->res = calloc(1, m->res_size))) goto oom;
    c->rpc = rpc;
    c->m = m;
    c->cb = cb;
    c->ud = ud;
    c->nreq = nreq;
    c->id = rpc->next_id++;
    req = json_pack("{s:s, s:I, s:s, s:O}", "jsonrpc", "2.0", "id", (json_int_t)c->id, "method", name, "params",
                    params);
    if (!req || !(body = json_dumps(req, JSON_COMPACT))) goto oom;
    x4_httpc_header hs[2] = {{"content-type", "application/json"}, {"accept", "application/json"}};
    long ct = rpc->timeout_ms < MAX_CONNECT_MS ? rpc->timeout_ms : MAX_CONNECT_MS;
    x4_httpc_req hr = {"POST", rpc->url, hs, 2, body, strlen(body), ct, rpc->timeout_ms, rpc->max_response};
    c->sending = 1;
    c->http = x4_httpc_request(rpc->http, &hr, on_http, c);
    c->sending = 0;
    if (!c->http) {
        snprintf(rpc->last_err, sizeof rpc->last_err, "%s: cannot start the request: %s", name,
                 c->sync_failed ? c->sync_err : "?");
        goto err;
    }
    c->next = rpc->head;
    if (rpc->head) rpc->head->prev = c;
    rpc->head = c;
    rpc->inflight++;
    free(body);
    json_decref(req);
    json_decref(params);
    return c;
oom:
    snprintf(rpc->last_err, sizeof rpc->last_err, "out of memory building %s", name);
err:
    free(body);
    json_decref(req);
    json_decref(params);
    if (c) free_call(c);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* client                                                                                     */

const char *x4_rpc_status_name(x4_rpc_status s) {
    switch (s) {
    case X4_RPC_OK: return "ok";
    case X4_RPC_E_RPC: return "rpc error";
    case X4_RPC_E_TRANSPORT: return "transport error";
    case X4_RPC_E_TIMEOUT: return "timeout";
    case X4_RPC_E_HTTP: return "http error";
    case X4_RPC_E_TOO_LARGE: return "response too large";
    case X4_RPC_E_PROTOCOL: return "protocol error";
    case X4_RPC_E_CANCELLED: return "cancelled";
    case X4_RPC_E_INTERNAL: return "internal error";
    }
    return "?";
}

bool x4_rpc_error_is_retryable(const x4_rpc_result *r) {
    if (!r) return false;
    switch (r->status) {
    case X4_RPC_E_TRANSPORT:
    case X4_RPC_E_TIMEOUT: return true;
    case X4_RPC_E_HTTP: return r->http_status == 429 || r->http_status >= 500;
    case X4_RPC_E_RPC:
        return r->code == X4_RPC_CODE_NODE_BEHIND || r->code == 429 || r->http_status == 429 ||
               r->http_status >= 500;
    default: return false;
    }
}

x4_rpc *x4_rpc_new(x4_httpc *h, const char *url, const char *commitment, long timeout_ms) {
    x4_rpc *rpc = NULL;
    if (!h || !url || !*url) goto err;
    if (!commitment) commitment = "confirmed";
    if (strcmp(commitment, "processed") && strcmp(commitment, "confirmed") && strcmp(commitment, "finalized"))
        goto err;
    rpc = calloc(1, sizeof *rpc);
    if (!rpc || !(rpc->url = x4_strdup(url))) goto err;
    rpc->http = h;
    snprintf(rpc->commitment, sizeof rpc->commitment, "%s", commitment);
    rpc->timeout_ms = timeout_ms > 0 ? timeout_ms : DEF_TIMEOUT_MS;
    rpc->max_response = X4_RPC_DEFAULT_MAX_RESPONSE;
    rpc->next_id = 1;
    return rpc;
err:
    if (rpc) free(rpc->url);
    free(rpc);
    return NULL;
}

void x4_rpc_set_max_response(x4_rpc *rpc, size_t bytes) {
    rpc->max_response = bytes ? bytes : X4_RPC_DEFAULT_MAX_RESPONSE;
}
const char *x4_rpc_commitment(const x4_rpc *rpc) { return rpc->commitment; }
const char *x4_rpc_last_error(const x4_rpc *rpc) { return rpc->last_err; }
size_t x4_rpc_inflight(const x4_rpc *rpc) { return rpc->inflight; }

void x4_rpc_cancel(x4_rpc_call *call) {
    if (call && call->http) x4_httpc_cancel(call->http);
}

void x4_rpc_free(x4_rpc *rpc) {
    if (!rpc) return;
    rpc->closing = 1;
    while (rpc->head) {
        x4_rpc_call *c = rpc->head;
        if (!c->http) { /* cannot happen: a linked call always has its HTTP call */
            unlink_call(c);
            free_call(c);
            continue;
        }
        x4_httpc_cancel(c->http);
    }
    free(rpc->url);
    free(rpc);
}

/* A call whose argument is wrong is refused before anything is sent. */
static x4_rpc_call *refuse(x4_rpc *rpc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static x4_rpc_call *refuse(x4_rpc *rpc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rpc->last_err, sizeof rpc->last_err, fmt, ap);
    va_end(ap);
    return NULL;
}

static int valid_key(const char *s) {
    x4_sol_pubkey k;
    return s && x4_sol_pubkey_from_b58(s, &k) == 0;
}
static int valid_sig(const char *s) {
    uint8_t raw[X4_SOL_SIG_LEN];
    return s && x4_b58_decode_exact(s, raw, sizeof raw) == 0;
}

#define DELIVER(fn, T, CBT) \
    static void fn(x4_rpc_call *c) { ((CBT)c->cb)((const T *)c->res, c->ud); }

/* ------------------------------------------------------------------------------------------ */
/* getLatestBlockhash, getBlockHeight                                                         */

static int parse_blockhash(x4_rpc_call *c, json_t *result) {
    x4_rpc_blockhash *b = c->res;
    json_t *v;
    const char *s;
    if (ctx_value(c, result, &v) || as_obj(c, v, "result.value")) return -1;
    if (as_str(c, json_object_get(v, "blockhash"), "result.value.blockhash", &s)) return -1;
    if (strlen(s) >= sizeof b->blockhash || x4_sol_blockhash_from_b58(s, b->blockhash_bytes) != 0)
        return fail(c, "result.value.blockhash is not base58 of 32 bytes");
    memcpy(b->blockhash, s, strlen(s) + 1);
    if (as_u64(c, json_object_get(v, "lastValidBlockHeight"), "result.value.lastValidBlockHeight",
               &b->last_valid_block_height))
        return -1;
    b->slot = b->r.context_slot;
    return 0;
}
DELIVER(deliver_blockhash, x4_rpc_blockhash, x4_rpc_blockhash_cb)
static const method M_BLOCKHASH = {sizeof(x4_rpc_blockhash), parse_blockhash, NULL, deliver_blockhash};

x4_rpc_call *x4_rpc_get_latest_blockhash(x4_rpc *rpc, x4_rpc_blockhash_cb cb, void *ud) {
    json_t *p = json_pack("[{s:s}]", "commitment", commitment_for(rpc, 0));
    return start(rpc, &M_BLOCKHASH, "getLatestBlockhash", p, (any_cb)cb, ud, 0);
}

static int parse_height(x4_rpc_call *c, json_t *result) {
    x4_rpc_block_height *h = c->res;
    return as_u64(c, result, "result", &h->height);
}
DELIVER(deliver_height, x4_rpc_block_height, x4_rpc_block_height_cb)
static const method M_HEIGHT = {sizeof(x4_rpc_block_height), parse_height, NULL, deliver_height};

x4_rpc_call *x4_rpc_get_block_height(x4_rpc *rpc, x4_rpc_block_height_cb cb, void *ud) {
    json_t *p = json_pack("[{s:s}]", "commitment", commitment_for(rpc, 0));
    return start(rpc, &M_HEIGHT, "getBlockHeight", p, (any_cb)cb, ud, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* getAccountInfo, getBalance, getTokenAccountBalance                                         */

static int parse_account(x4_rpc_call *c, json_t *result) {
    x4_rpc_account *a = c->res;
    json_t *v, *data, *space;
    const char *b64, *enc;
    if (ctx_value(c, result, &v)) return -1;
    if (json_is_null(v)) return 0; /* exists = false */
    if (as_obj(c, v, "result.value")) return -1;
    a->exists = true;
    if (as_u64(c, json_object_get(v, "lamports"), "result.value.lamports", &a->lamports) ||
        as_key(c, json_object_get(v, "owner"), "result.value.owner", a->owner, &a->owner_key) ||
        as_bool(c, json_object_get(v, "executable"), "result.value.executable", &a->executable))
        return -1;
    data = json_object_get(v, "data");
    if (!json_is_array(data) || json_array_size(data) != 2 ||
        as_str(c, json_array_get(data, 0), "result.value.data[0]", &b64) ||
        as_str(c, json_array_get(data, 1), "result.value.data[1]", &enc) || strcmp(enc, "base64") != 0)
        return fail(c, "result.value.data: expected [\"<base64>\", \"base64\"]");
    size_t blen = strlen(b64);
    if (blen) {
        size_t cap = blen / 4 * 3 + 3, n = 0;
        const char *end = NULL;
        uint8_t *buf = kalloc(c, cap);
        if (!buf) return fail_oom(c);
        if (sodium_base642bin(buf, cap, b64, blen, NULL, &n, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
            end != b64 + blen)
            return fail(c, "result.value.data[0] is not valid base64");
        a->data = n ? buf : NULL;
        a->data_len = n;
    }
    space = json_object_get(v, "space");
    if (space) {
        if (as_u64(c, space, "result.value.space", &a->space)) return -1;
        if (a->space != a->data_len)
            return fail(c, "result.value.space (%llu) does not match the data length (%zu)",
                        (unsigned long long)a->space, a->data_len);
    } else {
        a->space = a->data_len;
    }
    return 0;
}
DELIVER(deliver_account, x4_rpc_account, x4_rpc_account_cb)
static const method M_ACCOUNT = {sizeof(x4_rpc_account), parse_account, NULL, deliver_account};

x4_rpc_call *x4_rpc_get_account_info(x4_rpc *rpc, const char *pubkey, x4_rpc_account_cb cb, void *ud) {
    if (!valid_key(pubkey)) return refuse(rpc, "getAccountInfo: not a base58 public key");
    json_t *p = json_pack("[s, {s:s, s:s}]", pubkey, "encoding", "base64", "commitment", commitment_for(rpc, 0));
    return start(rpc, &M_ACCOUNT, "getAccountInfo", p, (any_cb)cb, ud, 0);
}

static int parse_balance(x4_rpc_call *c, json_t *result) {
    x4_rpc_balance *b = c->res;
    json_t *v;
    if (ctx_value(c, result, &v)) return -1;
    return as_u64(c, v, "result.value", &b->lamports);
}
DELIVER(deliver_balance, x4_rpc_balance, x4_rpc_balance_cb)
static const method M_BALANCE = {sizeof(x4_rpc_balance), parse_balance, NULL, deliver_balance};

x4_rpc_call *x4_rpc_get_balance(x4_rpc *rpc, const char *pubkey, x4_rpc_balance_cb cb, void *ud) {
    if (!valid_key(pubkey)) return refuse(rpc, "getBalance: not a base58 public key");
    json_t *p = json_pack("[s, {s:s}]", pubkey, "commitment", commitment_for(rpc, 0));
    return start(rpc, &M_BALANCE, "getBalance", p, (any_cb)cb, ud, 0);
}

/* {amount: "<decimal>", decimals: n} (uiTokenAmount has the same shape). */
static int parse_token_amount(x4_rpc_call *c, json_t *v, const char *what, uint64_t *amount, uint8_t *decimals) {
    char w[96];
    const char *s;
    uint64_t d;
    if (as_obj(c, v, what)) return -1;
    snprintf(w, sizeof w, "%s.amount", what);
    if (as_str(c, json_object_get(v, "amount"), w, &s)) return -1;
    if (parse_u64_dec(s, amount) != 0) return fail(c, "%s is not an exact u64 decimal (\"%.32s\")", w, s);
    snprintf(w, sizeof w, "%s.decimals", what);
    if (as_u64(c, json_object_get(v, "decimals"), w, &d)) return -1;
    if (d > 255) return fail(c, "%s is out of range", w);
    *decimals = (uint8_t)d;
    return 0;
}

static int parse_token_balance(x4_rpc_call *c, json_t *result) {
    x4_rpc_token_balance *t = c->res;
    json_t *v;
    if (ctx_value(c, result, &v)) return -1;
    return parse_token_amount(c, v, "result.value", &t->amount, &t->decimals);
}
DELIVER(deliver_token_balance, x4_rpc_token_balance, x4_rpc_token_balance_cb)
static const method M_TOKEN_BALANCE = {sizeof(x4_rpc_token_balance), parse_token_balance, NULL,
                                       deliver_token_balance};

x4_rpc_call *x4_rpc_get_token_account_balance(x4_rpc *rpc, const char *pubkey, x4_rpc_token_balance_cb cb,
                                              void *ud) {
    if (!valid_key(pubkey)) return refuse(rpc, "getTokenAccountBalance: not a base58 public key");
    json_t *p = json_pack("[s, {s:s}]", pubkey, "commitment", commitment_for(rpc, 0));
    return start(rpc, &M_TOKEN_BALANCE, "getTokenAccountBalance", p, (any_cb)cb, ud, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* sendTransaction                                                                            */

static int parse_send(x4_rpc_call *c, json_t *result) {
    x4_rpc_send *s = c->res;
    return as_sig(c, result, "result", s->signature);
}

/* -32002: data is the simulation value {err, logs, ...}; anything malformed there is ignored
 * (the status stays the node's error, which is what the caller acts on). */
static void send_rpc_error(x4_rpc_call *c, json_t *error) {
    x4_rpc_send *s = c->res;
    json_t *data = json_object_get(error, "data");
    if (s->r.code != X4_RPC_CODE_PREFLIGHT_FAILED || !json_is_object(data)) return;
    if (as_json_text(c, json_object_get(data, "err"), &s->preflight_err) != 0) s->preflight_err = NULL;
    if (as_str_list(c, json_object_get(data, "logs"), "error.data.logs", &s->preflight_logs,
                    &s->npreflight_logs) != 0) {
        s->preflight_logs = NULL;
        s->npreflight_logs = 0;
    }
}
DELIVER(deliver_send, x4_rpc_send, x4_rpc_send_cb)
static const method M_SEND = {sizeof(x4_rpc_send), parse_send, send_rpc_error, deliver_send};

x4_rpc_call *x4_rpc_send_transaction(x4_rpc *rpc, const char *tx_base64, bool skip_preflight,
                                     const char *preflight_commitment, x4_rpc_send_cb cb, void *ud) {
    if (!tx_base64 || !*tx_base64) return refuse(rpc, "sendTransaction: empty transaction");
    if (!preflight_commitment) preflight_commitment = commitment_for(rpc, 0);
    if (strcmp(preflight_commitment, "processed") && strcmp(preflight_commitment, "confirmed") &&
        strcmp(preflight_commitment, "finalized"))
        return refuse(rpc, "sendTransaction: unknown preflight commitment");
    json_t *p = json_pack("[s, {s:s, s:b, s:s}]", tx_base64, "encoding", "base64", "skipPreflight",
                          (int)skip_preflight, "preflightCommitment", preflight_commitment);
    return start(rpc, &M_SEND, "sendTransaction", p, (any_cb)cb, ud, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* getSignatureStatuses                                                                       */

static int parse_statuses(x4_rpc_call *c, json_t *result) {
    x4_rpc_sig_statuses *s = c->res;
    json_t *v;
    char w[64];
    if (ctx_value(c, result, &v) || as_arr(c, v, "result.value")) return -1;
    if (json_array_size(v) != c->nreq)
        return fail(c, "result.value has %zu entries for %zu signatures", json_array_size(v), c->nreq);
    x4_rpc_sig_status *list = kalloc(c, c->nreq * sizeof *list);
    if (!list) return fail_oom(c);
    for (size_t i = 0; i < c->nreq; i++) {
        json_t *e = json_array_get(v, i), *conf;
        x4_rpc_sig_status *st = &list[i];
        if (json_is_null(e)) continue;
        snprintf(w, sizeof w, "result.value[%zu]", i);
        if (as_obj(c, e, w)) return -1;
        st->found = true;
        snprintf(w, sizeof w, "result.value[%zu].slot", i);
        if (as_u64(c, json_object_get(e, "slot"), w, &st->slot)) return -1;
        conf = json_object_get(e, "confirmations");
        if (conf && !json_is_null(conf)) {
            snprintf(w, sizeof w, "result.value[%zu].confirmations", i);
            if (as_u64(c, conf, w, &st->confirmations)) return -1;
            st->has_confirmations = true;
        }
        if (as_json_text(c, json_object_get(e, "err"), &st->err)) return -1;
        snprintf(w, sizeof w, "result.value[%zu].confirmationStatus", i);
        if (as_commitment(c, json_object_get(e, "confirmationStatus"), w, st->confirmation_status)) return -1;
    }
    s->statuses = list;
    s->n = c->nreq;
    return 0;
}
DELIVER(deliver_statuses, x4_rpc_sig_statuses, x4_rpc_sig_statuses_cb)
static const method M_STATUSES = {sizeof(x4_rpc_sig_statuses), parse_statuses, NULL, deliver_statuses};

x4_rpc_call *x4_rpc_get_signature_statuses(x4_rpc *rpc, const char *const *sigs, size_t n,
                                           bool search_transaction_history, x4_rpc_sig_statuses_cb cb,
                                           void *ud) {
    if (!sigs || n == 0 || n > X4_RPC_MAX_SIGS)
        return refuse(rpc, "getSignatureStatuses: 1..%d signatures", X4_RPC_MAX_SIGS);
    json_t *arr = json_array();
    if (!arr) return refuse(rpc, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!valid_sig(sigs[i])) {
            json_decref(arr);
            return refuse(rpc, "getSignatureStatuses: signature %zu is not base58 of 64 bytes", i);
        }
        if (json_array_append_new(arr, json_string(sigs[i])) != 0) {
            json_decref(arr);
            return refuse(rpc, "out of memory");
        }
    }
    json_t *p = json_pack("[o, {s:b}]", arr, "searchTransactionHistory", (int)search_transaction_history);
    return start(rpc, &M_STATUSES, "getSignatureStatuses", p, (any_cb)cb, ud, n);
}

/* ------------------------------------------------------------------------------------------ */
/* getTransaction                                                                             */

static int parse_token_balances(x4_rpc_call *c, json_t *arr, const char *what, size_t nkeys,
                                const x4_rpc_tx_token_balance **out, size_t *n) {
    char w[96];
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr)) return 0;
    if (as_arr(c, arr, what)) return -1;
    size_t k = json_array_size(arr);
    x4_rpc_tx_token_balance *list = kalloc(c, k * sizeof *list);
    if (!list) return fail_oom(c);
    for (size_t i = 0; i < k; i++) {
        json_t *e = json_array_get(arr, i), *v;
        x4_rpc_tx_token_balance *b = &list[i];
        uint64_t idx;
        snprintf(w, sizeof w, "%s[%zu]", what, i);
        if (as_obj(c, e, w)) return -1;
        snprintf(w, sizeof w, "%s[%zu].accountIndex", what, i);
        if (as_u64(c, json_object_get(e, "accountIndex"), w, &idx)) return -1;
        if (idx >= nkeys) return fail(c, "%s is out of range (%zu account keys)", w, nkeys);
        b->account_index = (uint32_t)idx;
        snprintf(w, sizeof w, "%s[%zu].mint", what, i);
        if (as_key(c, json_object_get(e, "mint"), w, b->mint, NULL)) return -1;
        if ((v = json_object_get(e, "owner")) && !json_is_null(v)) {
            snprintf(w, sizeof w, "%s[%zu].owner", what, i);
            if (as_key(c, v, w, b->owner, NULL)) return -1;
        }
        if ((v = json_object_get(e, "programId")) && !json_is_null(v)) {
            snprintf(w, sizeof w, "%s[%zu].programId", what, i);
            if (as_key(c, v, w, b->program_id, NULL)) return -1;
        }
        snprintf(w, sizeof w, "%s[%zu].uiTokenAmount", what, i);
        if (parse_token_amount(c, json_object_get(e, "uiTokenAmount"), w, &b->amount, &b->decimals)) return -1;
    }
    *out = list;
    *n = k;
    return 0;
}

typedef struct {
    x4_rpc_memo *v;
    size_t n, cap;
} memo_list;

/* Memo instructions among `ixs` (compiled: programIdIndex, accounts, data in base58). */
static int scan_instructions(x4_rpc_call *c, json_t *ixs, const char *what, const x4_rpc_tx *t, int inner,
                             memo_list *ml) {
    char w[96];
    if (as_arr(c, ixs, what)) return -1;
    for (size_t i = 0; i < json_array_size(ixs); i++) {
        json_t *ix = json_array_get(ixs, i);
        uint64_t pi;
        const char *data, *prog;
        snprintf(w, sizeof w, "%s[%zu]", what, i);
        if (as_obj(c, ix, w)) return -1;
        snprintf(w, sizeof w, "%s[%zu].programIdIndex", what, i);
        if (as_u64(c, json_object_get(ix, "programIdIndex"), w, &pi)) return -1;
        if (pi >= t->naccount_keys) return fail(c, "%s is out of range", w);
        snprintf(w, sizeof w, "%s[%zu].accounts", what, i);
        if (as_arr(c, json_object_get(ix, "accounts"), w)) return -1;
        snprintf(w, sizeof w, "%s[%zu].data", what, i);
        if (as_str(c, json_object_get(ix, "data"), w, &data)) return -1;
        prog = t->account_keys[pi];
        if (strcmp(prog, MEMO_V2) != 0 && strcmp(prog, MEMO_V1) != 0) continue;
        if (ml->n == ml->cap) {
            size_t ncap = ml->cap ? ml->cap * 2 : 4;
            x4_rpc_memo *nv = realloc(ml->v, ncap * sizeof *nv);
            if (!nv) return fail_oom(c);
            ml->v = nv;
            ml->cap = ncap;
        }
        x4_rpc_memo *m = &ml->v[ml->n++];
        memset(m, 0, sizeof *m);
        m->inner = inner;
        size_t slen = strlen(data), len = 0;
        uint8_t *buf = kalloc(c, slen + 1);
        if (!buf) return fail_oom(c);
        if (x4_b58_decode(data, buf, slen, &len) == 0) {
            buf[len] = 0;
            m->text = (const char *)buf;
            m->len = len;
        } else if (slen <= B58_SURE_FITS) {
            return fail(c, "%s is not base58", w);
        } /* else: longer than x4_b58_decode handles (256 bytes): text stays NULL */
    }
    return 0;
}

static int parse_tx(x4_rpc_call *c, json_t *result) {
    x4_rpc_tx *t = c->res;
    json_t *meta, *tx, *msg, *keys, *loaded = NULL, *lw = NULL, *lr = NULL, *v, *sigs, *inner;
    memo_list ml = {0};
    char w[96];
    if (json_is_null(result)) return 0; /* found = false */
    if (as_obj(c, result, "result")) return -1;
    t->found = true;
    t->raw = result;
    if (as_u64(c, json_object_get(result, "slot"), "result.slot", &t->slot)) return -1;
    if ((v = json_object_get(result, "blockTime")) && !json_is_null(v)) {
        if (as_i64(c, v, "result.blockTime", &t->block_time)) return -1;
        t->has_block_time = true;
    }
    v = json_object_get(result, "version");
    if (!v || (json_is_string(v) && strcmp(json_string_value(v), "legacy") == 0)) t->version = X4_SOL_LEGACY;
    else if (json_is_integer(v) && json_integer_value(v) == 0) t->version = 0;
    else return fail(c, "result.version: expected \"legacy\" or 0");
    meta = json_object_get(result, "meta");
    if (as_obj(c, meta, "result.meta")) return -1;
    if (as_json_text(c, json_object_get(meta, "err"), &t->err)) return -1;
    if (as_u64(c, json_object_get(meta, "fee"), "result.meta.fee", &t->fee)) return -1;
    if (as_str_list(c, json_object_get(meta, "logMessages"), "result.meta.logMessages", &t->logs, &t->nlogs))
        return -1;
    tx = json_object_get(result, "transaction");
    if (as_obj(c, tx, "result.transaction (encoding json)")) return -1;
    msg = json_object_get(tx, "message");
    if (as_obj(c, msg, "result.transaction.message")) return -1;
    keys = json_object_get(msg, "accountKeys");
    if (as_arr(c, keys, "result.transaction.message.accountKeys")) return -1;
    if ((loaded = json_object_get(meta, "loadedAddresses")) && !json_is_null(loaded)) {
        if (as_obj(c, loaded, "result.meta.loadedAddresses")) return -1;
        lw = json_object_get(loaded, "writable");
        lr = json_object_get(loaded, "readonly");
        if ((lw && as_arr(c, lw, "result.meta.loadedAddresses.writable")) ||
            (lr && as_arr(c, lr, "result.meta.loadedAddresses.readonly")))
            return -1;
    }
    t->nstatic_keys = json_array_size(keys);
    size_t nk = t->nstatic_keys + json_array_size(lw) + json_array_size(lr); /* size of NULL is 0 */
    if (t->nstatic_keys == 0) return fail(c, "result.transaction.message.accountKeys is empty");
    char(*ak)[X4_SOL_B58_KEY_MAX] = kalloc(c, nk * sizeof *ak);
    if (!ak) return fail_oom(c);
    json_t *groups[3] = {keys, lw, lr};
    const char *gname[3] = {"result.transaction.message.accountKeys", "result.meta.loadedAddresses.writable",
                            "result.meta.loadedAddresses.readonly"};
    size_t k = 0;
    for (int g = 0; g < 3; g++)
        for (size_t i = 0; i < json_array_size(groups[g]); i++, k++) {
            snprintf(w, sizeof w, "%s[%zu]", gname[g], i);
            if (as_key(c, json_array_get(groups[g], i), w, ak[k], NULL)) return -1;
        }
    t->account_keys = (const char(*)[X4_SOL_B58_KEY_MAX])ak;
    t->naccount_keys = nk;
    sigs = json_object_get(tx, "signatures");
    if (as_arr(c, sigs, "result.transaction.signatures")) return -1;
    if (json_array_size(sigs) == 0) return fail(c, "result.transaction.signatures is empty");
    char(*sv)[X4_SOL_B58_SIG_MAX] = kalloc(c, json_array_size(sigs) * sizeof *sv);
    if (!sv) return fail_oom(c);
    for (size_t i = 0; i < json_array_size(sigs); i++) {
        snprintf(w, sizeof w, "result.transaction.signatures[%zu]", i);
        if (as_sig(c, json_array_get(sigs, i), w, sv[i])) return -1;
    }
    t->signatures = (const char(*)[X4_SOL_B58_SIG_MAX])sv;
    t->nsignatures = json_array_size(sigs);
    if (parse_token_balances(c, json_object_get(meta, "preTokenBalances"), "result.meta.preTokenBalances", nk,
                             &t->pre_token, &t->npre_token) ||
        parse_token_balances(c, json_object_get(meta, "postTokenBalances"), "result.meta.postTokenBalances", nk,
                             &t->post_token, &t->npost_token))
        return -1;
    if (scan_instructions(c, json_object_get(msg, "instructions"), "result.transaction.message.instructions", t, 0,
                          &ml))
        goto err;
    if ((inner = json_object_get(meta, "innerInstructions")) && !json_is_null(inner)) {
        if (as_arr(c, inner, "result.meta.innerInstructions")) goto err;
        for (size_t i = 0; i < json_array_size(inner); i++) {
            json_t *e = json_array_get(inner, i);
            snprintf(w, sizeof w, "result.meta.innerInstructions[%zu]", i);
            if (as_obj(c, e, w)) goto err;
            snprintf(w, sizeof w, "result.meta.innerInstructions[%zu].instructions", i);
            if (scan_instructions(c, json_object_get(e, "instructions"), w, t, 1, &ml)) goto err;
        }
    }
    if (ml.n && !keep(c, ml.v)) {
        ml.v = NULL;
        return fail_oom(c);
    }
    t->memos = ml.v;
    t->nmemos = ml.n;
    return 0;
err:
    free(ml.v);
    return -1;
}
DELIVER(deliver_tx, x4_rpc_tx, x4_rpc_tx_cb)
static const method M_TX = {sizeof(x4_rpc_tx), parse_tx, NULL, deliver_tx};

x4_rpc_call *x4_rpc_get_transaction(x4_rpc *rpc, const char *signature, x4_rpc_tx_cb cb, void *ud) {
    if (!valid_sig(signature)) return refuse(rpc, "getTransaction: not a base58 signature");
    json_t *p = json_pack("[s, {s:s, s:s, s:i}]", signature, "encoding", "json", "commitment",
                          commitment_for(rpc, 1), "maxSupportedTransactionVersion", 0);
    return start(rpc, &M_TX, "getTransaction", p, (any_cb)cb, ud, 0);
}

uint64_t x4_rpc_tx_token_amount(const x4_rpc_tx_token_balance *b, size_t n, uint32_t index) {
    for (size_t i = 0; i < n; i++)
        if (b[i].account_index == index) return b[i].amount;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* getSignaturesForAddress                                                                    */

/* "[n] text" or "[n1] t1; [n2] t2" (n = the memo's byte length) -> the texts. When the lengths
 * do not line up (the node replaced invalid UTF-8), the whole rest after the first "[n] " is
 * one text. */
static int memo_texts(x4_rpc_call *c, const char *memo, const char *const **out, size_t *nout) {
    const char *p = memo;
    size_t cap = 4, n = 0;
    const char **list = kalloc(c, cap * sizeof *list);
    if (!list) return fail_oom(c);
    for (;;) {
        char *end;
        if (*p != '[' || !isdigit((unsigned char)p[1])) break;
        errno = 0;
        unsigned long len = strtoul(p + 1, &end, 10);
        if (errno || end[0] != ']' || end[1] != ' ') break;
        const char *text = end + 2;
        if (strlen(text) < len) break;
        if (n == cap) {
            const char **nl = kalloc(c, cap * 2 * sizeof *nl);
            if (!nl) return fail_oom(c);
            memcpy(nl, list, n * sizeof *nl);
            list = nl;
            cap *= 2;
        }
        if (!(list[n] = keep(c, x4_strndup(text, len)))) return fail_oom(c);
        n++;
        p = text + len;
        if (*p == 0) {
            *out = list;
            *nout = n;
            return 0;
        }
        if (p[0] != ';' || p[1] != ' ') break;
        p += 2;
    }
    /* fallback: one text */
    p = memo;
    if (p[0] == '[') {
        const char *e = strstr(p, "] ");
        if (e) {
            size_t i = 1;
            while (p + i < e && isdigit((unsigned char)p[i])) i++;
            if (p + i == e && i > 1) p = e + 2;
        }
    }
    if (!(list[0] = keep(c, x4_strdup(p)))) return fail_oom(c);
    *out = list;
    *nout = 1;
    return 0;
}

static int parse_sigs(x4_rpc_call *c, json_t *result) {
    x4_rpc_sigs *s = c->res;
    char w[64];
    if (as_arr(c, result, "result")) return -1;
    size_t n = json_array_size(result);
    x4_rpc_sig_info *items = kalloc(c, n * sizeof *items);
    if (!items) return fail_oom(c);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(result, i), *v;
        x4_rpc_sig_info *it = &items[i];
        snprintf(w, sizeof w, "result[%zu]", i);
        if (as_obj(c, e, w)) return -1;
        snprintf(w, sizeof w, "result[%zu].signature", i);
        if (as_sig(c, json_object_get(e, "signature"), w, it->signature)) return -1;
        snprintf(w, sizeof w, "result[%zu].slot", i);
        if (as_u64(c, json_object_get(e, "slot"), w, &it->slot)) return -1;
        if (as_json_text(c, json_object_get(e, "err"), &it->err)) return -1;
        if ((v = json_object_get(e, "memo")) && !json_is_null(v)) {
            snprintf(w, sizeof w, "result[%zu].memo", i);
            if (as_str(c, v, w, &it->memo) || memo_texts(c, it->memo, &it->memo_texts, &it->nmemo_texts))
                return -1;
        }
        if ((v = json_object_get(e, "blockTime")) && !json_is_null(v)) {
            snprintf(w, sizeof w, "result[%zu].blockTime", i);
            if (as_i64(c, v, w, &it->block_time)) return -1;
            it->has_block_time = true;
        }
        snprintf(w, sizeof w, "result[%zu].confirmationStatus", i);
        if (as_commitment(c, json_object_get(e, "confirmationStatus"), w, it->confirmation_status)) return -1;
    }
    s->items = items;
    s->n = n;
    return 0;
}
DELIVER(deliver_sigs, x4_rpc_sigs, x4_rpc_sigs_cb)
static const method M_SIGS = {sizeof(x4_rpc_sigs), parse_sigs, NULL, deliver_sigs};

x4_rpc_call *x4_rpc_get_signatures_for_address(x4_rpc *rpc, const char *address, const x4_rpc_sigs_opts *opts,
                                               x4_rpc_sigs_cb cb, void *ud) {
    if (!valid_key(address)) return refuse(rpc, "getSignaturesForAddress: not a base58 public key");
    json_t *cfg = json_pack("{s:s}", "commitment", commitment_for(rpc, 1));
    if (!cfg) return refuse(rpc, "out of memory");
    if (opts) {
        int bad = 0;
        if (opts->limit > 1000) {
            json_decref(cfg);
            return refuse(rpc, "getSignaturesForAddress: limit is at most 1000");
        }
        if ((opts->before && !valid_sig(opts->before)) || (opts->until && !valid_sig(opts->until))) {
            json_decref(cfg);
            return refuse(rpc, "getSignaturesForAddress: before/until must be base58 signatures");
        }
        if (opts->limit) bad |= json_object_set_new(cfg, "limit", json_integer(opts->limit));
        if (opts->before) bad |= json_object_set_new(cfg, "before", json_string(opts->before));
        if (opts->until) bad |= json_object_set_new(cfg, "until", json_string(opts->until));
        if (bad) {
            json_decref(cfg);
            return refuse(rpc, "out of memory");
        }
    }
    json_t *p = json_pack("[s, o]", address, cfg);
    return start(rpc, &M_SIGS, "getSignaturesForAddress", p, (any_cb)cb, ud, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* any method                                                                                 */

static int parse_raw(x4_rpc_call *c, json_t *result) {
    x4_rpc_raw *r = c->res;
    r->result = result;
    return 0;
}
DELIVER(deliver_raw, x4_rpc_raw, x4_rpc_raw_cb)
static const method M_RAW = {sizeof(x4_rpc_raw), parse_raw, NULL, deliver_raw};

x4_rpc_call *x4_rpc_request(x4_rpc *rpc, const char *method_name, json_t *params, x4_rpc_raw_cb cb, void *ud) {
    if (!method_name || !*method_name) return refuse(rpc, "x4_rpc_request: no method");
    if (params && !json_is_array(params)) return refuse(rpc, "x4_rpc_request: params must be an array");
    json_t *p = params ? json_incref(params) : json_array();
    return start(rpc, &M_RAW, method_name, p, (any_cb)cb, ud, 0);
}
