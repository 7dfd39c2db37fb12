/* exec/adapter_http.c — the built-in HTTP JSON adapter and the request builder (see adapter.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "exec/adapter.h"

static int append_query(x4_buf *b, const char *key, const json_t *v) {
    char *text = NULL;
    const char *s;
    char num[64];
    if (json_is_string(v))
        s = json_string_value(v);
    else if (json_is_integer(v)) {
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        s = num;
    } else if (json_is_true(v))
        s = "true";
    else if (json_is_false(v))
        s = "false";
    else if (json_is_null(v))
        s = "";
    else {
        text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (!text) return -1;
        s = text;
    }
    int rc = x4_buf_puts(b, b->data && strchr(b->data, '?') ? "&" : "?");
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        const char *p = pass ? s : key;
        if (pass) rc |= x4_buf_puts(b, "=");
        for (; *p && rc == 0; p++) {
            unsigned char c = (unsigned char)*p;
            if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
                rc |= x4_buf_append(b, p, 1);
            else
                rc |= x4_buf_printf(b, "%%%02X", c);
        }
    }
    free(text);
    return rc;
}

static int cmp_key(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int x4_adapter_append_query(x4_buf *url, const json_t *obj) {
    size_t n = json_object_size(obj), i = 0;
    if (n == 0) return 0;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) return -1;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) keys[i++] = k;
    qsort(keys, n, sizeof *keys, cmp_key);
    int rc = 0;
    for (i = 0; i < n && rc == 0; i++) rc = append_query(url, keys[i], json_object_get(obj, keys[i]));
    free(keys);
    return rc;
}

int x4_adapter_header_reserved(const char *name) {
    static const char *const reserved[] = {"X-Workflow-Id", "X-Step-Id", "Idempotency-Key", "X-PAYMENT",
                                           "PAYMENT-SIGNATURE", "Host", "Content-Length", "Transfer-Encoding",
                                           "Connection", "Expect", "Upgrade", "TE", "Trailer", "Keep-Alive"};
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strcasecmp(name, reserved[i]) == 0) return 1;
    return strncasecmp(name, "Proxy-", 6) == 0;
}

#define HEADER_NAME_MAX 64
#define HEADER_VALUE_MAX 4096

static int header_ok(const x4_httpc_header *h, char *err, size_t errlen) {
    size_t n = h->name ? strlen(h->name) : 0;
    if (n == 0 || n > HEADER_NAME_MAX) {
        snprintf(err, errlen, "a header name must be 1..%d characters", HEADER_NAME_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h->name[i];
        if (!isalnum(ch) && !strchr("!#$%&'*+-.^_`|~", ch)) {
            snprintf(err, errlen, "header name '%.64s' has a character not allowed in a header name", h->name);
            return -1;
        }
    }
    if (x4_adapter_header_reserved(h->name)) {
        snprintf(err, errlen, "header %s is set by the engine and cannot be set or removed", h->name);
        return -1;
    }
    if (!h->value || strlen(h->value) > HEADER_VALUE_MAX) {
        snprintf(err, errlen, "header %s: the value must be a string of at most %d bytes", h->name, HEADER_VALUE_MAX);
        return -1;
    }
    for (const char *p = h->value; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if ((ch < 32 && ch != '\t') || ch == 127) {
            snprintf(err, errlen, "header %s: the value contains a control character (CR, LF, ...)", h->name);
            return -1;
        }
    }
    return 0;
}

int x4_adapter_build(x4_adapter_call *c, const x4_adapter_spec *sp, const char *workflow_id, const char *step_id,
                     int attempt, long connect_timeout_ms, long timeout_ms, size_t max_response, char *err,
                     size_t errlen) {
    memset(c, 0, sizeof *c);
    if (!sp->method || !sp->url || strlen(sp->method) >= sizeof c->method) {
        snprintf(err, errlen, "the request has no method or URL");
        return -1;
    }
    if (sp->nheaders > X4_ADAPTER_EXTRA_HEADERS) {
        snprintf(err, errlen, "more than %d headers", X4_ADAPTER_EXTRA_HEADERS);
        return -1;
    }
    for (size_t i = 0; i < sp->nheaders; i++) {
        if (header_ok(&sp->headers[i], err, errlen)) return -1;
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(sp->headers[i].name, sp->headers[j].name) == 0) {
                snprintf(err, errlen, "header %s is given twice", sp->headers[i].name);
                return -1;
            }
    }
    snprintf(c->method, sizeof c->method, "%s", sp->method);
    if (x4_buf_puts(&c->url, sp->url) < 0) goto oom;
    if (sp->query && x4_adapter_append_query(&c->url, sp->query) < 0) goto oom;
    if (sp->body && x4_buf_append(&c->body, sp->body, sp->body_len) < 0) goto oom;
    snprintf(c->idem, sizeof c->idem, "%s:%s:%d", workflow_id, step_id, attempt);
    const char *ctype = "application/json", *accept = "application/json";
    for (size_t i = 0; i < sp->nheaders; i++) {
        char *nm = x4_strdup(sp->headers[i].name), *val = x4_strdup(sp->headers[i].value);
        if (nm) c->owned[c->nowned++] = nm;
        if (val) c->owned[c->nowned++] = val;
        if (!nm || !val) goto oom;
        if (strcasecmp(nm, "Content-Type") == 0) ctype = val;
        else if (strcasecmp(nm, "Accept") == 0) accept = val;
    }
    size_t n = 0;
    c->headers[n++] = (x4_httpc_header){"Content-Type", ctype};
    c->headers[n++] = (x4_httpc_header){"Accept", accept};
    c->headers[n++] = (x4_httpc_header){"X-Workflow-Id", workflow_id};
    c->headers[n++] = (x4_httpc_header){"X-Step-Id", step_id};
    c->headers[n++] = (x4_httpc_header){"Idempotency-Key", c->idem};
    for (size_t i = 0; i < c->nowned; i += 2)
        if (strcasecmp(c->owned[i], "Content-Type") != 0 && strcasecmp(c->owned[i], "Accept") != 0)
            c->headers[n++] = (x4_httpc_header){c->owned[i], c->owned[i + 1]};
    int with_body = sp->body != NULL;
    c->req = (x4_httpc_req){c->method,
                            c->url.data,
                            c->headers,
                            n,
                            with_body ? (c->body.data ? c->body.data : "") : NULL,
                            with_body ? c->body.len : 0,
                            connect_timeout_ms,
                            timeout_ms,
                            max_response};
    return 0;
oom:
    snprintf(err, errlen, "out of memory building the request");
    x4_adapter_call_free(c);
    return -1;
}

int x4_adapter_http_build(x4_adapter_call *c, const x4_service *svc, const json_t *inputs, const char *workflow_id,
                          const char *step_id, int attempt, long connect_timeout_ms, long timeout_ms,
                          size_t max_response, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (!svc->url) {
        snprintf(err, errlen, "service %s has no URL in the catalog", svc->id);
        return -1;
    }
    const char *method = svc->method ? svc->method : "POST";
    int with_body = strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0;
    x4_adapter_spec sp = {.method = method, .url = svc->url};
    char *body = NULL;
    if (with_body) {
        body = json_dumps(inputs, JSON_COMPACT | JSON_SORT_KEYS);
        if (!body) {
            snprintf(err, errlen, "out of memory building the request");
            return -1;
        }
        sp.body = body;
        sp.body_len = strlen(body);
    } else if (json_is_object(inputs)) {
        sp.query = inputs;
    }
    int rc = x4_adapter_build(c, &sp, workflow_id, step_id, attempt, connect_timeout_ms, timeout_ms, max_response, err,
                              errlen);
    free(body);
    return rc;
}

void x4_adapter_call_free(x4_adapter_call *c) {
    x4_buf_free(&c->url);
    x4_buf_free(&c->body);
    for (size_t i = 0; i < c->nowned; i++) free(c->owned[i]);
    c->nowned = 0;
}

static int64_t retry_after(const x4_httpc_resp *r) {
    const char *v = x4_httpc_header_get(r, "retry-after");
    if (!v) return -1;
    char *end;
    long long s = strtoll(v, &end, 10);
    if (end == v || s < 0) return -1; /* HTTP-date form: fall back to our own backoff */
    if (s > 300) s = 300;
    return (int64_t)s * 1000;
}

static void snippet(const x4_httpc_resp *r, char *out, size_t outlen) {
    size_t n = r->body_len < 160 ? r->body_len : 160;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outlen; i++) {
        unsigned char ch = (unsigned char)r->body[i];
        out[o++] = (ch >= 32 && ch < 127) ? (char)ch : ' ';
    }
    out[o] = 0;
}

x4_outcome x4_adapter_http_classify(const x4_httpc_resp *r, json_t **output, int64_t *retry_after_ms, char *err,
                                    size_t errlen) {
    *output = NULL;
    *retry_after_ms = -1;
    switch (r->status) {
    case X4_HTTPC_OK: break;
    case X4_HTTPC_NETWORK:
    case X4_HTTPC_TIMEOUT: snprintf(err, errlen, "%s", r->error); return X4_OUT_RETRY;
    case X4_HTTPC_TOO_LARGE:
    case X4_HTTPC_CANCELLED:
    case X4_HTTPC_INTERNAL: snprintf(err, errlen, "%s", r->error); return X4_OUT_FAIL;
    }
    char text[176];
    snippet(r, text, sizeof text);
    if (r->code >= 200 && r->code < 300) {
        json_error_t jerr;
        json_t *j = r->body_len ? json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &jerr) : json_object();
        if (!j) {
            snprintf(err, errlen, "service answered %ld with a body that is not JSON: %s", r->code, jerr.text);
            return X4_OUT_FAIL;
        }
        *output = j;
        return X4_OUT_OK;
    }
    if (r->code == 402) {
        snprintf(err, errlen, "service requires payment (HTTP 402)");
        return X4_OUT_PAYMENT_REQUIRED;
    }
    snprintf(err, errlen, "service answered HTTP %ld: %s", r->code, text);
    if (r->code == 429 || r->code == 503) *retry_after_ms = retry_after(r);
    if (r->code == 429 || r->code >= 500) return X4_OUT_RETRY;
    return X4_OUT_FAIL;
}
