/* tests/unit/test_util.c — money parsing/formatting, IDs, query strings, buffers. */
#include <stdlib.h>

#include "core/util.h"
#include "unit.h"

X4_TEST(money_parse_exact) {
    uint64_t v = 0;
    const char *why = NULL;
    CHECK(x4_money_parse("10.5", 6, &v, &why) == 0);
    CHECK_EQ_INT(v, 10500000);
    CHECK(x4_money_parse("0.000001", 6, &v, &why) == 0);
    CHECK_EQ_INT(v, 1);
    CHECK(x4_money_parse("2", 6, &v, &why) == 0);
    CHECK_EQ_INT(v, 2000000);
    CHECK(x4_money_parse(".5", 6, &v, &why) == 0);
    CHECK_EQ_INT(v, 500000);
    CHECK(x4_money_parse("1.0000000", 6, &v, &why) == 0); /* zeros past precision are harmless */
    CHECK_EQ_INT(v, 1000000);
}

X4_TEST(money_parse_rejects) {
    uint64_t v;
    const char *why = NULL;
    CHECK(x4_money_parse("0.0000001", 6, &v, &why) == -1);
    CHECK_EQ_STR(why, "too many decimals");
    CHECK(x4_money_parse("-1", 6, &v, &why) == -1);
    CHECK_EQ_STR(why, "negative");
    CHECK(x4_money_parse("1e5", 6, &v, &why) == -1);
    CHECK(x4_money_parse("", 6, &v, &why) == -1);
    CHECK(x4_money_parse(".", 6, &v, &why) == -1);
    CHECK(x4_money_parse("99999999999999999999", 6, &v, &why) == -1);
    CHECK_EQ_STR(why, "too large");
}

X4_TEST(money_format) {
    char out[40];
    x4_money_format(2000000, 6, out);
    CHECK_EQ_STR(out, "2.000000");
    x4_money_format(1, 6, out);
    CHECK_EQ_STR(out, "0.000001");
    x4_money_format(42, 0, out);
    CHECK_EQ_STR(out, "42");
}

X4_TEST(ids_have_prefix_and_are_unique) {
    char a[64], b[64];
    x4_make_id("wf", a, sizeof a);
    x4_make_id("wf", b, sizeof b);
    CHECK(strncmp(a, "wf_", 3) == 0);
    CHECK(strcmp(a, b) != 0);
}

X4_TEST(query_get) {
    char out[64];
    const char *q = "limit=50&cursor=abc%3D&x";
    CHECK_EQ_INT(x4_query_get(q, strlen(q), "limit", out, sizeof out), 1);
    CHECK_EQ_STR(out, "50");
    CHECK_EQ_INT(x4_query_get(q, strlen(q), "cursor", out, sizeof out), 1);
    CHECK_EQ_STR(out, "abc=");
    CHECK_EQ_INT(x4_query_get(q, strlen(q), "x", out, sizeof out), 1);
    CHECK_EQ_INT(x4_query_get(q, strlen(q), "nope", out, sizeof out), 0);
    const char *bad = "a=%zz";
    CHECK_EQ_INT(x4_query_get(bad, strlen(bad), "a", out, sizeof out), -1);
    const char *trunc = "a=%4";
    CHECK_EQ_INT(x4_query_get(trunc, strlen(trunc), "a", out, sizeof out), -1);
}

X4_TEST(buf_grows) {
    x4_buf b = {0};
    for (int i = 0; i < 1000; i++) CHECK(x4_buf_printf(&b, "%d,", i) == 0);
    CHECK(b.len > 3000);
    CHECK(strncmp(b.data, "0,1,2,", 6) == 0);
    x4_buf_free(&b);
}

X4_TEST(buf_pg_array_elem_quotes_and_escapes) {
    x4_buf b = {0};
    CHECK(x4_buf_puts(&b, "{") == 0);
    CHECK(x4_buf_pg_array_elem(&b, "wf_1") == 0);
    CHECK(x4_buf_puts(&b, ",") == 0);
    CHECK(x4_buf_pg_array_elem(&b, "a\"b\\c,{d}") == 0);
    CHECK(x4_buf_puts(&b, ",") == 0);
    CHECK(x4_buf_pg_array_elem(&b, "") == 0);
    CHECK(x4_buf_puts(&b, "}") == 0);
    CHECK_EQ_STR(b.data, "{\"wf_1\",\"a\\\"b\\\\c,{d}\",\"\"}");
    x4_buf_free(&b);
}
