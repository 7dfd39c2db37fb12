/* exec/adapter_http.c — see adapter.h. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
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
    if (x4_buf_puts(&c->url, svc->url) < 0) goto oom;
    if (with_body) {
        char *body = json_dumps(inputs, JSON_COMPACT);
        if (!body) goto oom;
        int rc = x4_buf_puts(&c->body, body);
        free(body);
        if (rc < 0) goto oom;
    } else {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)inputs, k, v) if (append_query(&c->url, k, v) < 0) goto oom;
    }
    snprintf(c->idem, sizeof c->idem, "%s:%s:%d", workflow_id, step_id, attempt);
    size_t n = 0;
    c->headers[n++] = (x4_httpc_header){"Content-Type", "application/json"};
    c->headers[n++] = (x4_httpc_header){"Accept", "application/json"};
    c->headers[n++] = (x4_httpc_header){"X-Workflow-Id", workflow_id};
    c->headers[n++] = (x4_httpc_header){"X-Step-Id", step_id};
    c->headers[n++] = (x4_httpc_header){"Idempotency-Key", c->idem};
    c->req = (x4_httpc_req){method, c->url.data, c->headers, n, with_body ? c->body.data : NULL,
                            with_body ? c->body.len : 0, connect_timeout_ms, timeout_ms, max_response};
    return 0;
oom:
    snprintf(err, errlen, "out of memory building the request");
    x4_adapter_call_free(c);
    return -1;
}

void x4_adapter_call_free(x4_adapter_call *c) {
    x4_buf_free(&c->url);
    x4_buf_free(&c->body);
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
