/* tests/unit/test_catalog.c — catalog loading, record validation, de-duplication, ${VAR}
 * expansion, the x402-upl registry shape, the content version. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/util.h"
#include "plan/catalog.h"
#include "unit.h"

static char g_dir[] = "/tmp/x4_test_catalog_XXXXXX";

static const char *write_tmp(const char *name, const char *text) {
    static char path[256];
    if (g_dir[sizeof g_dir - 2] == 'X' && !mkdtemp(g_dir)) return NULL;
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(text, f);
    fclose(f);
    return path;
}

static int add_json(x4_catalog *c, const char *text, char *err, size_t errlen) {
    json_t *j = json_loads(text, 0, NULL);
    if (!j) return -2;
    int rc = x4_catalog_add_record(c, j, "file", err, errlen);
    json_decref(j);
    return rc;
}

X4_TEST(load_file_wrapped_and_bare) {
    const char *p = write_tmp("a.json",
                              "{\"services\":[{\"id\":\"a\",\"name\":\"A\",\"description\":\"first\","
                              "\"url\":\"https://a.example/x\",\"price\":{\"amount\":\"1000\",\"asset\":\"M\","
                              "\"network\":\"solana:x\"},\"input\":{\"type\":\"object\"},\"tags\":[\"t1\"]},"
                              "{\"id\":\"b\",\"name\":\"B\",\"description\":\"second\"}]}");
    char err[256] = "";
    x4_catalog *c = x4_catalog_new();
    CHECK_EQ_INT(x4_catalog_load_file(c, p, err, sizeof err), 2);
    CHECK_EQ_INT(x4_catalog_count(c), 2);
    const x4_service *a = x4_catalog_get(c, "a");
    CHECK(a != NULL);
    if (a) {
        CHECK_EQ_STR(a->url, "https://a.example/x");
        CHECK_EQ_STR(a->method, "POST");
        CHECK(a->has_price);
        CHECK_EQ_INT(a->price, 1000);
        CHECK_EQ_STR(a->asset, "M");
        CHECK_EQ_STR(a->network, "solana:x");
        CHECK(json_is_object(a->input));
        CHECK(a->output == NULL);
        CHECK_EQ_INT(json_array_size(a->tags), 1);
        CHECK_EQ_STR(a->source, "file");
    }
    const x4_service *b = x4_catalog_get(c, "b");
    CHECK(b && !b->has_price && b->url == NULL && json_is_array(b->tags));
    CHECK(x4_catalog_get(c, "zzz") == NULL);
    CHECK(x4_catalog_at(c, 0) == a && x4_catalog_at(c, 2) == NULL);
    x4_catalog_unref(c);

    p = write_tmp("bare.json", "[{\"id\":\"x\"},{\"id\":\"y\",\"method\":\"get\"}]");
    c = x4_catalog_new();
    CHECK_EQ_INT(x4_catalog_load_file(c, p, err, sizeof err), 2);
    CHECK_EQ_STR(x4_catalog_get(c, "y")->method, "GET");
    CHECK_EQ_STR(x4_catalog_get(c, "x")->name, "x"); /* name defaults to the id */
    x4_catalog_unref(c);
}

X4_TEST(load_file_errors) {
    char err[256] = "";
    x4_catalog *c = x4_catalog_new();
    CHECK_EQ_INT(x4_catalog_load_file(c, "/nonexistent/catalog.json", err, sizeof err), -1);
    CHECK(err[0] != 0);
    const char *p = write_tmp("bad.json", "{\"services\": [");
    CHECK_EQ_INT(x4_catalog_load_file(c, p, err, sizeof err), -1);
    p = write_tmp("notcat.json", "{\"foo\": 1}");
    CHECK_EQ_INT(x4_catalog_load_file(c, p, err, sizeof err), -1);
    CHECK(strstr(err, "services") != NULL);
    CHECK_EQ_INT(x4_catalog_count(c), 0);
    x4_catalog_unref(c);
}

X4_TEST(bad_records_are_skipped) {
    const char *p = write_tmp(
        "mixed.json",
        "[{\"id\":\"ok1\"},"
        "{\"name\":\"no id\"},"
        "{\"id\":\"bad id with spaces\"},"
        "{\"id\":\"ftp\",\"url\":\"ftp://x/y\"},"
        "{\"id\":\"m\",\"method\":\"FETCH\"},"
        "{\"id\":\"p1\",\"price\":{\"amount\":\"1.5\"}},"
        "{\"id\":\"p2\",\"price\":{\"amount\":\"99999999999999999999\"}},"
        "{\"id\":\"p3\",\"price\":{\"amount\":1000}},"
        "{\"id\":\"s\",\"input\":\"not a schema\"},"
        "{\"id\":\"t\",\"tags\":[1]},"
        "{\"id\":\"n\",\"name\":5},"
        "{\"id\":\"h\",\"url\":\"https:///nohost\"},"
        "{\"id\":\"c\",\"compensate\":{\"url\":\"gopher://x\"}},"
        "42,"
        "{\"id\":\"ok2\",\"url\":\"http://h:1/p\",\"compensate\":{\"url\":\"http://h:1/undo\",\"method\":\"delete\"}}]");
    char err[256] = "";
    x4_catalog *c = x4_catalog_new();
    CHECK_EQ_INT(x4_catalog_load_file(c, p, err, sizeof err), 2);
    CHECK(x4_catalog_get(c, "ok1") && x4_catalog_get(c, "ok2"));
    const x4_service *ok2 = x4_catalog_get(c, "ok2");
    CHECK(ok2 && ok2->compensate);
    if (ok2 && ok2->compensate)
        CHECK_EQ_STR(json_string_value(json_object_get(ok2->compensate, "method")), "DELETE");

    /* the reason comes back from x4_catalog_add_record */
    CHECK_EQ_INT(add_json(c, "{\"id\":\"q\",\"price\":{\"amount\":\"-1\"}}", err, sizeof err), -1);
    CHECK(strstr(err, "price.amount") != NULL);
    char longid[200];
    memset(longid, 'a', 129);
    longid[129] = 0;
    char rec[300];
    snprintf(rec, sizeof rec, "{\"id\":\"%s\"}", longid);
    CHECK_EQ_INT(add_json(c, rec, err, sizeof err), -1);
    longid[128] = 0;
    snprintf(rec, sizeof rec, "{\"id\":\"%s\"}", longid);
    CHECK_EQ_INT(add_json(c, rec, err, sizeof err), 0);
    CHECK_EQ_INT(add_json(c, "{\"id\":\"ns:svc/v1#a.b-c_d\"}", err, sizeof err), 0);
    x4_catalog_unref(c);
}

X4_TEST(dedupe_by_id_and_url_first_wins) {
    char err[256] = "";
    x4_catalog *c = x4_catalog_new();
    CHECK_EQ_INT(add_json(c, "{\"id\":\"a\",\"description\":\"first\",\"url\":\"https://h/a\"}", err, sizeof err), 0);
    CHECK_EQ_INT(add_json(c, "{\"id\":\"a\",\"description\":\"second\"}", err, sizeof err), -1);
    CHECK(strstr(err, "duplicate id") != NULL);
    CHECK_EQ_INT(add_json(c, "{\"id\":\"b\",\"url\":\"https://h/a\"}", err, sizeof err), -1);
    CHECK(strstr(err, "duplicate url") != NULL);
    CHECK_EQ_INT(add_json(c, "{\"id\":\"b\",\"url\":\"https://h/b\"}", err, sizeof err), 0);
    CHECK_EQ_INT(x4_catalog_count(c), 2);
    CHECK_EQ_STR(x4_catalog_get(c, "a")->description, "first");
    x4_catalog_unref(c);
}

X4_TEST(env_expansion_in_url) {
    char err[256] = "";
    setenv("X4_TEST_BASE", "http://127.0.0.1:5401", 1);
    unsetenv("X4_TEST_UNSET");
    x4_catalog *c = x4_catalog_new();
    CHECK_EQ_INT(add_json(c, "{\"id\":\"a\",\"url\":\"${X4_TEST_BASE}/dex\"}", err, sizeof err), 0);
    CHECK_EQ_STR(x4_catalog_get(c, "a")->url, "http://127.0.0.1:5401/dex");
    CHECK_EQ_INT(add_json(c, "{\"id\":\"b\",\"url\":\"${X4_TEST_UNSET}/dex\"}", err, sizeof err), -1);
    CHECK(strstr(err, "X4_TEST_UNSET") != NULL);
    CHECK_EQ_INT(add_json(c, "{\"id\":\"c\",\"url\":\"${X4_TEST_BASE/dex\"}", err, sizeof err), -1);
    const char *p = write_tmp("env.json", "[{\"id\":\"d\",\"url\":\"${X4_TEST_UNSET}/x\"},"
                                          "{\"id\":\"e\",\"url\":\"${X4_TEST_BASE}/e\"}]");
    CHECK_EQ_INT(x4_catalog_load_file(c, p, err, sizeof err), 1);
    CHECK(x4_catalog_get(c, "d") == NULL && x4_catalog_get(c, "e") != NULL);
    x4_catalog_unref(c);
}

X4_TEST(registry_bare_array) {
    json_t *ans = json_loads(
        "[{\"id\":\"r1\",\"name\":\"Weather\",\"description\":\"forecast\",\"url\":\"https://w.example/api\","
        "\"category\":\"weather\",\"pricePerCall\":\"0.001\",\"capabilities\":[\"forecast\",\"weather\"],"
        "\"tags\":[\"climate\"],"
        "\"inputSchema\":\"{\\\"type\\\":\\\"object\\\",\\\"required\\\":[\\\"city\\\"]}\","
        "\"outputSchema\":{\"type\":\"object\"}},"
        "{\"id\":\"r2\",\"url\":\"https://w.example/b\",\"pricePerCall\":\"0.0000001\"},"
        "{\"id\":\"r3\",\"url\":\"https://w.example/c\",\"inputSchema\":\"{not json\"},"
        "{\"id\":\"r4\",\"url\":\"https://w.example/d\",\"pricePerCall\":0.25}]",
        0, NULL);
    CHECK(ans != NULL);
    x4_catalog *c = x4_catalog_new();
    CHECK_EQ_INT(x4_catalog_add_registry(c, ans, "registry"), 2);
    const x4_service *s = x4_catalog_get(c, "r1");
    CHECK(s != NULL);
    if (s) {
        CHECK(s->has_price);
        CHECK_EQ_INT(s->price, 1000);
        CHECK_EQ_STR(s->method, "POST");
        CHECK_EQ_STR(s->source, "registry");
        CHECK(json_is_object(s->input));
        CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(s->input, "required"), 0)), "city");
        CHECK(json_is_object(s->output));
        /* category, capabilities and tags become tags, without repeats */
        CHECK_EQ_INT(json_array_size(s->tags), 3);
        CHECK_EQ_STR(json_string_value(json_array_get(s->tags, 0)), "weather");
    }
    CHECK(x4_catalog_get(c, "r2") == NULL); /* more decimals than USDC has */
    CHECK(x4_catalog_get(c, "r3") == NULL); /* inputSchema is not JSON */
    CHECK(x4_catalog_get(c, "r4") && x4_catalog_get(c, "r4")->price == 250000);
    json_decref(ans);
    x4_catalog_unref(c);
}

X4_TEST(registry_wrapped_object) {
    static const char *const keys[] = {"services", "data", "items", "results"};
    for (size_t k = 0; k < 4; k++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"total\":1,\"%s\":[{\"id\":\"w%zu\",\"name\":\"N\",\"description\":\"D\","
                 "\"url\":\"https://x.example/%zu\",\"pricePerCall\":\"0.001\","
                 "\"inputSchema\":\"{\\\"type\\\":\\\"object\\\"}\"}]}",
                 keys[k], k, k);
        json_t *ans = json_loads(text, 0, NULL);
        x4_catalog *c = x4_catalog_new();
        CHECK_EQ_INT(x4_catalog_add_registry(c, ans, "registry"), 1);
        CHECK(x4_catalog_count(c) == 1 && x4_catalog_at(c, 0)->price == 1000);
        CHECK(json_is_object(x4_catalog_at(c, 0)->input));
        json_decref(ans);
        x4_catalog_unref(c);
    }
    json_t *junk = json_loads("{\"nothing\":true}", 0, NULL);
    x4_catalog *c = x4_catalog_new();
    CHECK_EQ_INT(x4_catalog_add_registry(c, junk, "registry"), 0);
    json_decref(junk);
    x4_catalog_unref(c);
}

X4_TEST(version_tracks_content) {
    char err[256];
    const char *rec1 = "{\"id\":\"a\",\"description\":\"one\",\"price\":{\"amount\":\"5\"}}";
    x4_catalog *c1 = x4_catalog_new(), *c2 = x4_catalog_new(), *c3 = x4_catalog_new();
    CHECK_EQ_INT(strlen(x4_catalog_version(c1)), 16);
    char empty[17];
    snprintf(empty, sizeof empty, "%s", x4_catalog_version(c1));
    add_json(c1, rec1, err, sizeof err);
    add_json(c2, rec1, err, sizeof err);
    add_json(c3, "{\"id\":\"a\",\"description\":\"one\",\"price\":{\"amount\":\"6\"}}", err, sizeof err);
    CHECK(strcmp(x4_catalog_version(c1), empty) != 0);
    CHECK_EQ_STR(x4_catalog_version(c1), x4_catalog_version(c2));
    CHECK(strcmp(x4_catalog_version(c1), x4_catalog_version(c3)) != 0);
    char before[17];
    snprintf(before, sizeof before, "%s", x4_catalog_version(c1));
    add_json(c1, "{\"id\":\"b\"}", err, sizeof err);
    CHECK(strcmp(x4_catalog_version(c1), before) != 0);
    /* a refused record does not change it */
    snprintf(before, sizeof before, "%s", x4_catalog_version(c1));
    add_json(c1, "{\"id\":\"b\"}", err, sizeof err);
    CHECK_EQ_STR(x4_catalog_version(c1), before);
    x4_catalog_unref(c1);
    x4_catalog_unref(c2);
    x4_catalog_unref(c3);
}

X4_TEST(refcount_and_to_json) {
    char err[256];
    x4_catalog *c = x4_catalog_new();
    add_json(c, "{\"id\":\"a\",\"name\":\"A\",\"url\":\"https://h/a\",\"price\":{\"amount\":\"42\",\"asset\":\"M\"},"
                "\"output\":{\"type\":\"object\"},\"tags\":[\"x\"]}",
             err, sizeof err);
    CHECK(x4_catalog_ref(c) == c);
    x4_catalog_unref(c); /* still alive */
    json_t *j = x4_service_to_json(x4_catalog_get(c, "a"));
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(j, "price"), "amount")), "42");
    CHECK_EQ_STR(json_string_value(json_object_get(j, "url")), "https://h/a");
    CHECK_EQ_STR(json_string_value(json_object_get(j, "method")), "POST");
    CHECK(json_object_get(j, "input") == NULL && json_is_object(json_object_get(j, "output")));
    /* round trip: the dump is itself a valid record */
    x4_catalog *c2 = x4_catalog_new();
    CHECK_EQ_INT(x4_catalog_add_record(c2, j, "file", err, sizeof err), 0);
    CHECK_EQ_STR(x4_catalog_version(c2), x4_catalog_version(c));
    json_decref(j);
    x4_catalog_unref(c2);
    x4_catalog_unref(c);
}

X4_TEST(nestools_catalog_loads_fully) {
    const char *path = X4_SOURCE_DIR "/../shared/bench/planner/nestools/catalog.json";
    if (access(path, R_OK) != 0) {
        printf("note: %s absent, NesTools catalog check skipped\n", path);
        return;
    }
    char err[256] = "";
    x4_catalog *c = x4_catalog_new();
    uint64_t t0 = x4_mono_us();
    int n = x4_catalog_load_file(c, path, err, sizeof err);
    uint64_t dt = x4_mono_us() - t0;
    CHECK_EQ_INT(n, 3034);
    CHECK_EQ_INT(x4_catalog_count(c), 3034);
    CHECK(x4_catalog_get(c, "scan_isbn") != NULL);
    CHECK(x4_catalog_get(c, "locate_book") != NULL);
    printf("note: NesTools catalog: 3034 services in %.1f ms\n", (double)dt / 1000.0);
    CHECK(dt < 5 * 1000 * 1000); /* generous even under sanitizers */
    x4_catalog_unref(c);
}

X4_TEST(examples_catalog_loads) {
    setenv("EXAMPLES_URL", "http://127.0.0.1:5401", 1);
    char err[256] = "";
    x4_catalog *c = x4_catalog_new();
    CHECK_EQ_INT(x4_catalog_load_file(c, X4_SOURCE_DIR "/examples/catalog.json", err, sizeof err), 9);
    const x4_service *s = x4_catalog_get(c, "dex_volume");
    CHECK(s && s->url && strcmp(s->url, "http://127.0.0.1:5401/dex_volume") == 0);
    x4_catalog_unref(c);
}
