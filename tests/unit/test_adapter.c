/* tests/unit/test_adapter.c — the HTTP step adapter: request building and outcome classes. */
#include <stdlib.h>

#include "exec/adapter.h"
#include "unit.h"

static x4_service svc(const char *method, const char *url) {
    x4_service s;
    memset(&s, 0, sizeof s);
    s.id = "svc";
    s.method = (char *)method;
    s.url = (char *)url;
    return s;
}

X4_TEST(post_carries_json_body_and_idempotency_key) {
    x4_service s = svc("POST", "http://127.0.0.1:1/add");
    json_t *in = json_pack("{s:i, s:i}", "a", 2, "b", 3);
    x4_adapter_call c;
    char err[128];
    CHECK(x4_adapter_http_build(&c, &s, in, "wf_1", "s1", 2, 1000, 2000, 1024, err, sizeof err) == 0);
    CHECK_EQ_STR(c.req.method, "POST");
    CHECK_EQ_STR(c.req.url, "http://127.0.0.1:1/add");
    CHECK(c.req.body && strstr(c.req.body, "\"a\":2"));
    int found = 0;
    for (size_t i = 0; i < c.req.nheaders; i++)
        if (!strcmp(c.req.headers[i].name, "Idempotency-Key")) {
            CHECK_EQ_STR(c.req.headers[i].value, "wf_1:s1:2");
            found = 1;
        }
    CHECK(found);
    x4_adapter_call_free(&c);
    json_decref(in);
}

X4_TEST(get_carries_query_string_escaped) {
    x4_service s = svc("GET", "http://h/q");
    json_t *in = json_pack("{s:s, s:i, s:b, s:[i,i]}", "q", "a b&c", "n", 5, "t", 1, "l", 1, 2);
    x4_adapter_call c;
    char err[128];
    CHECK(x4_adapter_http_build(&c, &s, in, "wf", "s", 1, 1000, 2000, 1024, err, sizeof err) == 0);
    CHECK(c.req.body == NULL);
    CHECK(strstr(c.req.url, "q=a%20b%26c") != NULL);
    CHECK(strstr(c.req.url, "n=5") != NULL);
    CHECK(strstr(c.req.url, "t=true") != NULL);
    CHECK(strstr(c.req.url, "l=%5B1%2C2%5D") != NULL);
    x4_adapter_call_free(&c);
    json_decref(in);
}

X4_TEST(no_url_is_an_error) {
    x4_service s = svc("POST", NULL);
    json_t *in = json_object();
    x4_adapter_call c;
    char err[128];
    CHECK(x4_adapter_http_build(&c, &s, in, "wf", "s", 1, 1, 1, 1, err, sizeof err) == -1);
    CHECK(strstr(err, "no URL") != NULL);
    json_decref(in);
}

static x4_outcome classify(x4_httpc_status st, long code, const char *body, x4_httpc_header *h, size_t nh,
                           json_t **out, int64_t *ra) {
    x4_httpc_resp r;
    memset(&r, 0, sizeof r);
    r.status = st;
    r.code = code;
    r.body = (char *)body;
    r.body_len = body ? strlen(body) : 0;
    r.headers = h;
    r.nheaders = nh;
    char err[256];
    return x4_adapter_http_classify(&r, out, ra, err, sizeof err);
}

X4_TEST(outcome_classes) {
    json_t *out = NULL;
    int64_t ra;
    CHECK_EQ_INT(classify(X4_HTTPC_OK, 200, "{\"x\":1}", NULL, 0, &out, &ra), X4_OUT_OK);
    CHECK(json_integer_value(json_object_get(out, "x")) == 1);
    json_decref(out);
    CHECK_EQ_INT(classify(X4_HTTPC_OK, 200, "not json", NULL, 0, &out, &ra), X4_OUT_FAIL);
    CHECK_EQ_INT(classify(X4_HTTPC_OK, 500, "oops", NULL, 0, &out, &ra), X4_OUT_RETRY);
    CHECK_EQ_INT(classify(X4_HTTPC_OK, 503, "", NULL, 0, &out, &ra), X4_OUT_RETRY);
    CHECK_EQ_INT(classify(X4_HTTPC_OK, 400, "bad", NULL, 0, &out, &ra), X4_OUT_FAIL);
    CHECK_EQ_INT(classify(X4_HTTPC_OK, 404, "", NULL, 0, &out, &ra), X4_OUT_FAIL);
    CHECK_EQ_INT(classify(X4_HTTPC_OK, 402, "{}", NULL, 0, &out, &ra), X4_OUT_PAYMENT_REQUIRED);
    CHECK_EQ_INT(classify(X4_HTTPC_NETWORK, 0, NULL, NULL, 0, &out, &ra), X4_OUT_RETRY);
    CHECK_EQ_INT(classify(X4_HTTPC_TIMEOUT, 0, NULL, NULL, 0, &out, &ra), X4_OUT_RETRY);
    CHECK_EQ_INT(classify(X4_HTTPC_TOO_LARGE, 0, NULL, NULL, 0, &out, &ra), X4_OUT_FAIL);
    CHECK_EQ_INT(classify(X4_HTTPC_CANCELLED, 0, NULL, NULL, 0, &out, &ra), X4_OUT_FAIL);
}

X4_TEST(retry_after_is_honoured_on_429) {
    x4_httpc_header h[] = {{"retry-after", "2"}};
    json_t *out = NULL;
    int64_t ra = -1;
    CHECK_EQ_INT(classify(X4_HTTPC_OK, 429, "", h, 1, &out, &ra), X4_OUT_RETRY);
    CHECK_EQ_INT(ra, 2000);
    x4_httpc_header big[] = {{"retry-after", "99999"}};
    classify(X4_HTTPC_OK, 429, "", big, 1, &out, &ra);
    CHECK_EQ_INT(ra, 300000); /* capped */
    x4_httpc_header date[] = {{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}};
    classify(X4_HTTPC_OK, 429, "", date, 1, &out, &ra);
    CHECK_EQ_INT(ra, -1); /* dates fall back to our backoff */
}

X4_TEST(keys_are_sorted_in_body_and_query) {
    x4_service s = svc("POST", "http://h/p");
    json_t *in = json_pack("{s:i, s:{s:i, s:i}, s:i}", "z", 1, "m", "y", 1, "b", 2, "a", 3);
    x4_adapter_call c;
    char err[128];
    CHECK(x4_adapter_http_build(&c, &s, in, "wf", "s", 1, 1, 1, 1, err, sizeof err) == 0);
    CHECK_EQ_STR(c.req.body, "{\"a\":3,\"m\":{\"b\":2,\"y\":1},\"z\":1}");
    x4_adapter_call_free(&c);
    s = svc("DELETE", "http://h/d?x=1");
    CHECK(x4_adapter_http_build(&c, &s, in, "wf", "s", 1, 1, 1, 1, err, sizeof err) == 0);
    CHECK_EQ_STR(c.req.url, "http://h/d?x=1&a=3&m=%7B%22b%22%3A2%2C%22y%22%3A1%7D&z=1");
    CHECK(c.req.body == NULL);
    x4_adapter_call_free(&c);
    json_decref(in);
}

X4_TEST(build_from_a_spec_keeps_the_engine_headers) {
    x4_httpc_header hs[] = {{"content-type", "text/plain"}, {"X-Key", "k1"}};
    x4_adapter_spec sp = {.method = "PATCH", .url = "https://h/x", .body = "a=1", .body_len = 3, .headers = hs,
                          .nheaders = 2};
    x4_adapter_call c;
    char err[256];
    CHECK(x4_adapter_build(&c, &sp, "wf", "s", 4, 1, 2, 3, err, sizeof err) == 0);
    CHECK_EQ_STR(c.req.method, "PATCH");
    CHECK_EQ_STR(c.req.body, "a=1");
    CHECK_EQ_INT(c.req.nheaders, 6);
    CHECK_EQ_STR(c.req.headers[0].name, "Content-Type");
    CHECK_EQ_STR(c.req.headers[0].value, "text/plain");
    CHECK_EQ_STR(c.req.headers[4].value, "wf:s:4");
    CHECK_EQ_STR(c.req.headers[5].name, "X-Key");
    CHECK(c.req.nheaders + 2 <= X4_ADAPTER_MAX_HEADERS); /* room for the payment header */
    x4_adapter_call_free(&c);

    static const x4_httpc_header bad[][1] = {{{"Idempotency-Key", "x"}}, {{"x-payment", "x"}}, {{"PAYMENT-SIGNATURE", "x"}},
                                             {{"X-Step-Id", "x"}},       {{"Proxy-Authorization", "x"}},
                                             {{"Content-Length", "1"}},   {{"X-A", "a\r\nb: c"}},
                                             {{"X A", "v"}},             {{"", "v"}},
                                             {{"X-B", "\x7f"}}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sp.headers = bad[i];
        sp.nheaders = 1;
        err[0] = 0;
        CHECK(x4_adapter_build(&c, &sp, "wf", "s", 1, 1, 2, 3, err, sizeof err) == -1);
        CHECK(err[0] != 0);
    }
    x4_httpc_header dup[] = {{"X-A", "1"}, {"x-a", "2"}};
    sp.headers = dup;
    sp.nheaders = 2;
    CHECK(x4_adapter_build(&c, &sp, "wf", "s", 1, 1, 2, 3, err, sizeof err) == -1);
    CHECK(strstr(err, "twice") != NULL);
    CHECK(x4_adapter_header_reserved("idempotency-key") && !x4_adapter_header_reserved("Accept"));
}
