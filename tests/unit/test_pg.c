/* tests/unit/test_pg.c — the asynchronous PostgreSQL pool and x4_migrate against the private
 * server of scripts/testenv.sh (X4_TESTENV). Every run creates a scratch database with a random
 * name and drops it at exit. Without X4_TESTENV the tests are skipped (and pass). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"
#include "store/pg.h"
#include "unit.h"

static char g_admin[512];   /* conninfo of the maintenance database */
static char g_db[64];       /* scratch database */
static char g_ci[512];      /* conninfo of the scratch database */
static char g_extra_dbs[8][64];
static int g_nextra;
static pid_t g_owner;

static PGresult *admin_exec(const char *ci, const char *sql) {
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "  connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "  %s: %s", sql, PQerrorMessage(c));
    PQfinish(c);
    return r;
}

static int exec_simple(const char *ci, const char *sql) {
    PGresult *r = admin_exec(ci, sql);
    int ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    return ok ? 0 : -1;
}

static void drop_dbs(void) {
    if (getpid() != g_owner) return;
    char sql[700];
    for (int i = 0; i < g_nextra; i++) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", g_extra_dbs[i]);
        exec_simple(g_admin, sql);
    }
    if (g_db[0]) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", g_db);
        exec_simple(g_admin, sql);
    }
}

/* Creates a fresh database; writes its conninfo into ci. */
static int new_db(char *name, size_t namelen, char *ci, size_t cilen) {
    const char *env = getenv("X4_TESTENV");
    char suffix[32];
    x4_random_token(8, suffix, sizeof suffix);
    for (char *p = suffix; *p; p++) {
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) *p = 'x';
    }
    snprintf(name, namelen, "x4test_%s", suffix);
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    if (exec_simple(g_admin, sql) != 0) return -1;
    snprintf(ci, cilen, "host=%s/pg user=postgres dbname=%s", env, name);
    return 0;
}

/* Returns 0 when the tests should be skipped. */
static int have_env(void) {
    const char *env = getenv("X4_TESTENV");
    if (!env || !*env) {
        fprintf(stderr, "  X4_TESTENV not set: skipped\n");
        return 0;
    }
    if (g_db[0]) return 1;
    g_owner = getpid();
    snprintf(g_admin, sizeof g_admin, "host=%s/pg user=postgres dbname=postgres", env);
    if (new_db(g_db, sizeof g_db, g_ci, sizeof g_ci) != 0) {
        g_db[0] = 0;
        CHECK(!"cannot create the scratch database");
        return 0;
    }
    atexit(drop_dbs);
    return 1;
}

static int extra_db(char *ci, size_t cilen) {
    if (g_nextra >= 8) return -1;
    if (new_db(g_extra_dbs[g_nextra], sizeof g_extra_dbs[0], ci, cilen) != 0) return -1;
    g_nextra++;
    return 0;
}

/* ------------------------------------------------------------------ loop helpers */

typedef struct {
    uv_loop_t loop;
    uv_timer_t guard;
    x4_pg *pg;
    int outstanding;
    int timed_out;
} tctx;

static void on_guard(uv_timer_t *t) {
    tctx *c = t->data;
    c->timed_out = 1;
    fprintf(stderr, "  timed out with %d outstanding\n", c->outstanding);
    x4_pg_close(c->pg);
    c->pg = NULL;
    uv_close((uv_handle_t *)t, NULL);
}

static int ctx_open(tctx *c, const char *ci, int nconn, int timeout_ms) {
    memset(c, 0, sizeof *c);
    uv_loop_init(&c->loop);
    char err[512];
    if (x4_pg_open(&c->pg, &c->loop, ci, nconn, err, sizeof err) != 0) {
        fprintf(stderr, "  open: %s\n", err);
        uv_loop_close(&c->loop);
        return -1;
    }
    uv_timer_init(&c->loop, &c->guard);
    c->guard.data = c;
    uv_timer_start(&c->guard, on_guard, (uint64_t)timeout_ms, 0);
    return 0;
}

/* Closes the pool (if still open) and the guard, then runs the loop dry. Checks no handle is left. */
static void ctx_finish(tctx *c) {
    if (c->pg) x4_pg_close(c->pg);
    c->pg = NULL;
    if (!uv_is_closing((uv_handle_t *)&c->guard)) uv_close((uv_handle_t *)&c->guard, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&c->loop), 0);
}

/* Runs until `outstanding` reaches 0 (callbacks decrement it and stop the loop). */
static void ctx_wait(tctx *c) {
    while (c->outstanding > 0 && !c->timed_out) uv_run(&c->loop, UV_RUN_ONCE);
}

static void done_one(tctx *c) { c->outstanding--; }

/* ------------------------------------------------------------------ tests */

X4_TEST(pg_bad_url_fails_fast) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_pg *pg = NULL;
    char err[512];
    const char *ci = "host=/nonexistent/dir user=nobody password=sekrit1234 dbname=x";
    CHECK_EQ_INT(x4_pg_open(&pg, &loop, ci, 2, err, sizeof err), -1);
    CHECK(pg == NULL);
    CHECK(strstr(err, "cannot connect") != NULL);
    CHECK(strstr(err, "sekrit1234") == NULL);
    /* a malformed URI that echoes itself must not leak the password either */
    CHECK_EQ_INT(x4_pg_open(&pg, &loop, "postgresql://u:sekrit1234@/db?bogus=1", 1, err, sizeof err), -1);
    CHECK(strstr(err, "sekrit1234") == NULL);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* many concurrent queries: every callback exactly once, in order per connection */
typedef struct {
    tctx *c;
    int seq;
    int kind; /* 0 insert, 1 select */
} mq;

static int g_calls[10000];
static int g_mq_errors;
static struct { int pid; int last; } g_pidseq[16];
static int g_npid, g_order_bad;

static void on_mq(PGresult *res, const char *err, void *ud) {
    mq *m = ud;
    g_calls[m->seq]++;
    if (err || !res) {
        g_mq_errors++;
        if (g_mq_errors < 5) fprintf(stderr, "  query %d: %s\n", m->seq, err ? err : "?");
    } else {
        int pid = (int)x4_pg_ll(res, 0, "pid", -1);
        int n = (int)x4_pg_ll(res, 0, "n", -1);
        if (n != m->seq) g_order_bad++;
        int i;
        for (i = 0; i < g_npid; i++)
            if (g_pidseq[i].pid == pid) break;
        if (i == g_npid && g_npid < 16) { g_pidseq[g_npid].pid = pid; g_pidseq[g_npid].last = -1; g_npid++; }
        if (i < 16) {
            if (g_pidseq[i].last >= m->seq) g_order_bad++;
            g_pidseq[i].last = m->seq;
        }
    }
    done_one(m->c);
}

static void on_simple_ok(PGresult *res, const char *err, void *ud) {
    tctx *c = ud;
    if (err) fprintf(stderr, "  unexpected error: %s\n", err);
    CHECK(err == NULL && res != NULL);
    done_one(c);
}

X4_TEST(pg_many_concurrent_queries) {
    if (!have_env()) return;
    tctx c;
    if (ctx_open(&c, g_ci, 4, 60000) != 0) { CHECK(0); return; }
    c.outstanding = 1;
    x4_pg_query(c.pg, "CREATE TABLE many (id int PRIMARY KEY, v text)", 0, NULL, on_simple_ok, &c);
    ctx_wait(&c);

    enum { N = 10000 };
    static mq ms[N];
    memset(g_calls, 0, sizeof g_calls);
    g_npid = 0;
    g_order_bad = 0;
    g_mq_errors = 0;
    c.outstanding = N;
    for (int i = 0; i < N; i++) {
        char id[16], v[32];
        snprintf(id, sizeof id, "%d", i);
        snprintf(v, sizeof v, "value %d", i);
        ms[i].c = &c;
        ms[i].seq = i;
        if (i % 2 == 0) {
            const char *p[2] = {id, v};
            ms[i].kind = 0;
            x4_pg_query(c.pg, "INSERT INTO many (id, v) VALUES ($1::int, $2) RETURNING id AS n, pg_backend_pid() AS pid",
                        2, p, on_mq, &ms[i]);
        } else {
            const char *p[1] = {id};
            ms[i].kind = 1;
            x4_pg_query(c.pg, "SELECT $1::int AS n, pg_backend_pid() AS pid", 1, p, on_mq, &ms[i]);
        }
    }
    CHECK(x4_pg_pending(c.pg) > 0);
    ctx_wait(&c);
    CHECK(!c.timed_out);
    int once = 1;
    for (int i = 0; i < N; i++)
        if (g_calls[i] != 1) once = 0;
    CHECK(once);
    CHECK_EQ_INT(g_mq_errors, 0);
    CHECK_EQ_INT(g_order_bad, 0);
    CHECK(g_npid >= 2); /* the load was spread over the pool */
    CHECK_EQ_INT(x4_pg_pending(c.pg), 0);

    /* the inserts are all there */
    c.outstanding = 1;
    x4_pg_query(c.pg, "SELECT count(*) AS n FROM many", 0, NULL, on_simple_ok, &c);
    ctx_wait(&c);
    PGresult *r = admin_exec(g_ci, "SELECT count(*) FROM many");
    CHECK(r && atoi(PQgetvalue(r, 0, 0)) == N / 2);
    PQclear(r);
    ctx_finish(&c);
}

/* a failing query does not affect the next one; NULL params; reading results */
typedef struct {
    tctx *c;
    char err[256];
    int got_err, called;
    char a[64], b[64];
    int a_null, b_null;
    long long ll, ll_def;
} one;

static void on_one(PGresult *res, const char *err, void *ud) {
    one *o = ud;
    o->called++;
    if (err) {
        o->got_err = 1;
        snprintf(o->err, sizeof o->err, "%s", err);
        CHECK(res == NULL);
    } else {
        const char *a = x4_pg_val(res, 0, "a"), *b = x4_pg_val(res, 0, "b");
        o->a_null = a == NULL;
        o->b_null = b == NULL;
        snprintf(o->a, sizeof o->a, "%s", a ? a : "");
        snprintf(o->b, sizeof o->b, "%s", b ? b : "");
        o->ll = x4_pg_ll(res, 0, "a", -7);
        o->ll_def = x4_pg_ll(res, 0, "nosuchcolumn", -7);
        CHECK(x4_pg_val(res, 5, "a") == NULL); /* row out of range */
    }
    done_one(o->c);
}

X4_TEST(pg_errors_params_results) {
    if (!have_env()) return;
    tctx c;
    if (ctx_open(&c, g_ci, 1, 20000) != 0) { CHECK(0); return; }
    one o[6];
    memset(o, 0, sizeof o);
    for (int i = 0; i < 6; i++) o[i].c = &c;
    c.outstanding = 6;
    x4_pg_query(c.pg, "SELECT 1/0 AS a", 0, NULL, on_one, &o[0]);
    x4_pg_query(c.pg, "SELECT 2 AS a, 'x' AS b", 0, NULL, on_one, &o[1]);
    x4_pg_query(c.pg, "SELEC nonsense", 0, NULL, on_one, &o[2]);
    const char *p[2] = {NULL, "hello"};
    x4_pg_query(c.pg, "SELECT $1::bigint AS a, $2::text AS b", 2, p, on_one, &o[3]);
    const char *p2[2] = {"123456789012", NULL};
    x4_pg_query(c.pg, "SELECT $1::bigint AS a, $2::text AS b", 2, p2, on_one, &o[4]);
    x4_pg_query(c.pg, "SELECT 'dup' AS a FROM generate_series(1,3) WHERE false", 0, NULL, on_one, &o[5]);
    ctx_wait(&c);
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(o[i].called, 1);
    CHECK(o[0].got_err);
    CHECK(strncmp(o[0].err, "22012: ", 7) == 0);
    CHECK(!o[1].got_err);
    CHECK_EQ_STR(o[1].a, "2");
    CHECK_EQ_STR(o[1].b, "x");
    CHECK_EQ_INT(o[1].ll, 2);
    CHECK_EQ_INT(o[1].ll_def, -7);
    CHECK(o[2].got_err);
    CHECK(strncmp(o[2].err, "42601: ", 7) == 0);
    CHECK(!o[3].got_err);
    CHECK(o[3].a_null);
    CHECK_EQ_INT(o[3].ll, -7);
    CHECK_EQ_STR(o[3].b, "hello");
    CHECK(!o[4].got_err);
    CHECK_EQ_INT(o[4].ll, 123456789012LL);
    CHECK(o[4].b_null);
    CHECK(!o[5].got_err);
    CHECK(o[5].a_null); /* no rows */

    /* a unique violation carries its SQLSTATE */
    memset(o, 0, sizeof o);
    for (int i = 0; i < 3; i++) o[i].c = &c;
    c.outstanding = 3;
    x4_pg_query(c.pg, "CREATE TABLE uniq (k text PRIMARY KEY)", 0, NULL, on_one, &o[0]);
    x4_pg_query(c.pg, "INSERT INTO uniq VALUES ('a'), ('a')", 0, NULL, on_one, &o[1]);
    x4_pg_query(c.pg, "INSERT INTO uniq VALUES ('a') RETURNING k AS a", 0, NULL, on_one, &o[2]);
    ctx_wait(&c);
    CHECK(!o[0].got_err);
    CHECK(strncmp(o[1].err, "23505: ", 7) == 0);
    CHECK(!o[2].got_err); /* the failed insert rolled back on its own */
    CHECK_EQ_STR(o[2].a, "a");
    ctx_finish(&c);
}

/* callbacks that submit more queries, and a close from inside a callback */
typedef struct {
    tctx *c;
    int depth, calls, errors;
} chain;

static void on_chain(PGresult *res, const char *err, void *ud) {
    chain *ch = ud;
    ch->calls++;
    if (err) ch->errors++;
    if (++ch->depth < 50) {
        x4_pg_query(ch->c->pg, "SELECT 1", 0, NULL, on_chain, ch);
    } else {
        done_one(ch->c);
    }
}

static int g_after_close_calls, g_after_close_errs;
static void on_after_close(PGresult *res, const char *err, void *ud) {
    g_after_close_calls++;
    if (err && strstr(err, "shutting down")) g_after_close_errs++;
}
static void on_closer(PGresult *res, const char *err, void *ud) {
    tctx *c = ud;
    x4_pg_close(c->pg);
    c->pg = NULL;
    done_one(c);
}

X4_TEST(pg_reentrant_callbacks) {
    if (!have_env()) return;
    tctx c;
    if (ctx_open(&c, g_ci, 2, 20000) != 0) { CHECK(0); return; }
    chain ch = {&c, 0, 0, 0};
    c.outstanding = 1;
    x4_pg_query(c.pg, "SELECT 1", 0, NULL, on_chain, &ch);
    ctx_wait(&c);
    CHECK_EQ_INT(ch.calls, 50);
    CHECK_EQ_INT(ch.errors, 0);

    g_after_close_calls = g_after_close_errs = 0;
    c.outstanding = 1;
    x4_pg_query(c.pg, "SELECT 1", 0, NULL, on_closer, &c);
    for (int i = 0; i < 20; i++) x4_pg_query(c.pg, "SELECT pg_sleep(0.05)", 0, NULL, on_after_close, NULL);
    ctx_wait(&c);
    CHECK_EQ_INT(g_after_close_calls, 20);
    CHECK_EQ_INT(g_after_close_errs, 20);
    ctx_finish(&c);
}

/* close with queries pending: each callback once with an error */
static int g_pend_calls, g_pend_errs;
static void on_pending(PGresult *res, const char *err, void *ud) {
    g_pend_calls++;
    if (err && strstr(err, "shutting down")) g_pend_errs++;
}
static void on_close_timer(uv_timer_t *t) {
    tctx *c = t->data;
    x4_pg_close(c->pg);
    c->pg = NULL;
    uv_close((uv_handle_t *)t, NULL);
    uv_close((uv_handle_t *)&c->guard, NULL);
}

X4_TEST(pg_close_with_pending) {
    if (!have_env()) return;
    /* before the loop ever ran */
    tctx c;
    if (ctx_open(&c, g_ci, 3, 20000) != 0) { CHECK(0); return; }
    g_pend_calls = g_pend_errs = 0;
    for (int i = 0; i < 1000; i++) x4_pg_query(c.pg, "SELECT pg_sleep(0.01)", 0, NULL, on_pending, NULL);
    x4_pg_close(c.pg);
    c.pg = NULL;
    CHECK_EQ_INT(g_pend_calls, 1000);
    CHECK_EQ_INT(g_pend_errs, 1000);
    ctx_finish(&c);
    CHECK_EQ_INT(g_pend_calls, 1000);

    /* while queries are in flight on the server */
    if (ctx_open(&c, g_ci, 3, 20000) != 0) { CHECK(0); return; }
    g_pend_calls = g_pend_errs = 0;
    for (int i = 0; i < 300; i++) x4_pg_query(c.pg, "SELECT pg_sleep(0.2)", 0, NULL, on_pending, NULL);
    uv_timer_t t;
    uv_timer_init(&c.loop, &t);
    t.data = &c;
    uv_timer_start(&t, on_close_timer, 100, 0);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(g_pend_calls, 300);
    CHECK_EQ_INT(g_pend_errs, 300);
    ctx_finish(&c);
}

/* reconnect after pg_terminate_backend */
typedef struct {
    tctx *c;
    int phase;
    int calls[400];
    int ok_after, err_after, total_inflight_calls;
    uv_timer_t t;
    int ticks;
} rc_ctx;

static void on_rc_inflight(PGresult *res, const char *err, void *ud) {
    int *slot = ud;
    (*slot)++;
    static int shown;
    if (err && shown++ < 2) fprintf(stderr, "  in flight during terminate: %s\n", err);
}

static void on_rc_after(PGresult *res, const char *err, void *ud) {
    rc_ctx *r = ud;
    if (err) { r->err_after++; fprintf(stderr, "  after reconnect: %s\n", err); }
    else r->ok_after++;
    done_one(r->c);
}

static void on_rc_tick(uv_timer_t *t) {
    rc_ctx *r = t->data;
    r->ticks++;
    if (r->phase == 0) {
        /* terminate every backend of the scratch database except our own */
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '%s' "
                 "AND pid <> pg_backend_pid()",
                 g_db);
        PGresult *res = admin_exec(g_admin, sql);
        CHECK(res && atoi(PQgetvalue(res, 0, 0)) >= 2);
        PQclear(res);
        r->phase = 1;
        uv_timer_start(t, on_rc_tick, 1500, 0);
        return;
    }
    if (r->phase == 1) {
        CHECK(x4_pg_healthy(r->c->pg));
        r->phase = 2;
        r->c->outstanding = 40;
        for (int i = 0; i < 40; i++) x4_pg_query(r->c->pg, "SELECT 1 AS a", 0, NULL, on_rc_after, r);
        uv_close((uv_handle_t *)t, NULL);
    }
}

X4_TEST(pg_reconnect_after_terminate) {
    if (!have_env()) return;
    tctx c;
    if (ctx_open(&c, g_ci, 3, 30000) != 0) { CHECK(0); return; }
    static rc_ctx r;
    memset(&r, 0, sizeof r);
    r.c = &c;
    /* wait until all three connections are up (a few simple queries spread across them) */
    c.outstanding = 6;
    for (int i = 0; i < 6; i++) x4_pg_query(c.pg, "SELECT pg_sleep(0.05)", 0, NULL, on_simple_ok, &c);
    ctx_wait(&c);
    /* queries in flight when the backends die: each callback exactly once (error or not) */
    for (int i = 0; i < 400; i++)
        x4_pg_query(c.pg, i % 10 == 0 ? "SELECT pg_sleep(1)" : "SELECT 1", 0, NULL, on_rc_inflight, &r.calls[i]);
    uv_timer_init(&c.loop, &r.t);
    r.t.data = &r;
    uv_timer_start(&r.t, on_rc_tick, 30, 0);
    c.outstanding = 1000000; /* set by phase 1 */
    while (r.phase < 2 && !c.timed_out) uv_run(&c.loop, UV_RUN_ONCE);
    ctx_wait(&c);
    CHECK(!c.timed_out);
    CHECK_EQ_INT(r.ok_after, 40);
    CHECK_EQ_INT(r.err_after, 0);
    int once = 1;
    for (int i = 0; i < 400; i++)
        if (r.calls[i] != 1) once = 0;
    CHECK(once);
    CHECK_EQ_INT(x4_pg_pending(c.pg), 0);
    ctx_finish(&c);
}

/* ------------------------------------------------------------------ migrations */

static void write_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void rm_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static int count_rows(const char *ci, const char *sql) {
    PGresult *r = admin_exec(ci, sql);
    int n = (r && PQresultStatus(r) == PGRES_TUPLES_OK) ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return n;
}

X4_TEST(pg_migrate_apply_twice_and_rollback) {
    if (!have_env()) return;
    char ci[512];
    if (extra_db(ci, sizeof ci) != 0) { CHECK(0); return; }
    char dir[] = "/tmp/x4migXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    write_file(dir, "001_first.sql", "CREATE TABLE m1 (a int);\nINSERT INTO m1 VALUES (1), (2);\n");
    write_file(dir, "002_second.sql",
               "CREATE FUNCTION m_add(x int, y int) RETURNS int LANGUAGE sql AS $$ SELECT x + y; $$;\n"
               "CREATE TABLE m2 (b text);\n");
    write_file(dir, "README.md", "not a migration");
    write_file(dir, "notes.sql", "not numbered: ignored");
    char err[1024] = "";
    CHECK_EQ_INT(x4_migrate(ci, dir, err, sizeof err), 2);
    CHECK_EQ_INT(x4_migrate(ci, dir, err, sizeof err), 0);
    CHECK_EQ_INT(count_rows(ci, "SELECT count(*) FROM m1"), 2);
    CHECK_EQ_INT(count_rows(ci, "SELECT m_add(2, 3)"), 5);
    CHECK_EQ_INT(count_rows(ci, "SELECT count(*) FROM schema_migrations"), 2);

    /* a broken file: rolled back, named in the error; later files not applied */
    write_file(dir, "003_broken.sql", "CREATE TABLE m3 (c int);\nINSERT INTO m3 VALUES (1);\nSELECT * FROM no_such_table;\n");
    write_file(dir, "010_later.sql", "CREATE TABLE m10 (d int);\n");
    err[0] = 0;
    CHECK_EQ_INT(x4_migrate(ci, dir, err, sizeof err), -1);
    CHECK(strstr(err, "003_broken.sql") != NULL);
    CHECK(strstr(err, "42P01") != NULL);
    CHECK_EQ_INT(count_rows(ci, "SELECT count(*) FROM pg_tables WHERE tablename IN ('m3', 'm10')"), 0);
    CHECK_EQ_INT(count_rows(ci, "SELECT count(*) FROM schema_migrations"), 2);

    /* fixed: both apply, in number order (10 after 3) */
    write_file(dir, "003_broken.sql", "CREATE TABLE m3 (c int);\n");
    CHECK_EQ_INT(x4_migrate(ci, dir, err, sizeof err), 2);
    CHECK_EQ_INT(count_rows(ci, "SELECT count(*) FROM schema_migrations WHERE version IN (3, 10)"), 2);
    CHECK_EQ_INT(count_rows(ci,
                            "SELECT count(*) FROM schema_migrations a JOIN schema_migrations b "
                            "ON a.version = 3 AND b.version = 10 AND a.applied_at <= b.applied_at"),
                 1);

    /* a missing directory and a bad connection are errors */
    CHECK_EQ_INT(x4_migrate(ci, "/nonexistent/x4dir", err, sizeof err), -1);
    CHECK(strstr(err, "/nonexistent/x4dir") != NULL);
    CHECK_EQ_INT(x4_migrate("host=/nonexistent user=x password=pw987654", dir, err, sizeof err), -1);
    CHECK(strstr(err, "pw987654") == NULL);
    rm_dir(dir);
}

X4_TEST(pg_migrate_two_processes) {
    if (!have_env()) return;
    char ci[512];
    if (extra_db(ci, sizeof ci) != 0) { CHECK(0); return; }
    char dir[] = "/tmp/x4migXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    write_file(dir, "001_a.sql", "CREATE TABLE ta (a int); SELECT pg_sleep(0.3);\n");
    write_file(dir, "002_b.sql", "CREATE TABLE tb (b int);\n");
    write_file(dir, "003_c.sql", "ALTER TABLE tb ADD COLUMN c int;\n"); /* fails if applied twice */
    fflush(NULL);
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            char err[1024];
            int n = x4_migrate(ci, dir, err, sizeof err);
            if (n < 0) fprintf(stderr, "  child %d: %s\n", i, err);
            _exit(n < 0 ? 255 : n);
        }
    }
    int total = 0, failed = 0;
    for (int i = 0; i < 2; i++) {
        int st = 0;
        waitpid(kids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) == 255) failed++;
        else total += WEXITSTATUS(st);
    }
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(total, 3);
    CHECK_EQ_INT(count_rows(ci, "SELECT count(*) FROM schema_migrations"), 3);
    CHECK_EQ_INT(count_rows(ci, "SELECT count(DISTINCT version) FROM schema_migrations"), 3);
    rm_dir(dir);
}

/* the real migrations in sql/ apply cleanly to an empty database, twice */
X4_TEST(pg_migrate_project_sql) {
    if (!have_env()) return;
    const char *src = getenv("X4_SOURCE_DIR");
#ifdef X4_SOURCE_DIR
    if (!src) src = X4_SOURCE_DIR;
#endif
    if (!src) return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/sql", src);
    struct stat st;
    if (stat(dir, &st) != 0) return;
    char ci[512];
    if (extra_db(ci, sizeof ci) != 0) { CHECK(0); return; }
    char err[1024] = "";
    int n = x4_migrate(ci, dir, err, sizeof err);
    if (n < 0) fprintf(stderr, "  %s\n", err);
    CHECK(n >= 1);
    CHECK_EQ_INT(x4_migrate(ci, dir, err, sizeof err), 0);
}

/* the server goes away: the pool notices, keeps retrying with backoff, and queries submitted
 * meanwhile wait in the queue until the server is back (a second private server for this) */
static int g_wait_ok, g_wait_err;
static void on_wait_q(PGresult *res, const char *err, void *ud) {
    tctx *c = ud;
    if (err) { g_wait_err++; fprintf(stderr, "  queued query: %s\n", err); }
    else g_wait_ok++;
    done_one(c);
}
static void on_run_for(uv_timer_t *t) { uv_timer_stop(t); }
static void run_for(tctx *c, int ms) {
    uv_timer_t t;
    uv_timer_init(&c->loop, &t);
    uv_timer_start(&t, on_run_for, (uint64_t)ms, 0);
    while (uv_is_active((uv_handle_t *)&t) && !c->timed_out) uv_run(&c->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT);
}

X4_TEST(pg_server_restart_queues) {
    if (!have_env()) return;
    const char *src = getenv("X4_SOURCE_DIR");
#ifdef X4_SOURCE_DIR
    if (!src) src = X4_SOURCE_DIR;
#endif
    char dir[] = "/tmp/x4pgrsXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char up[1024], down[1024], ci[600];
    snprintf(up, sizeof up, "'%s/scripts/testenv.sh' up '%s' >/dev/null", src, dir);
    snprintf(down, sizeof down, "'%s/scripts/testenv.sh' down '%s' >/dev/null", src, dir);
    snprintf(ci, sizeof ci, "host=%s/pg user=postgres dbname=postgres", dir);
    if (system(up) != 0) { CHECK(!"testenv up failed"); return; }
    tctx c;
    if (ctx_open(&c, ci, 2, 60000) != 0) { CHECK(0); CHECK(system(down) == 0); return; }
    c.outstanding = 2;
    x4_pg_query(c.pg, "SELECT 1", 0, NULL, on_simple_ok, &c);
    x4_pg_query(c.pg, "SELECT 1", 0, NULL, on_simple_ok, &c);
    ctx_wait(&c);
    CHECK(x4_pg_healthy(c.pg));

    CHECK(system(down) == 0);
    run_for(&c, 600); /* the pool notices and starts retrying */
    CHECK(!x4_pg_healthy(c.pg));
    g_wait_ok = g_wait_err = 0;
    c.outstanding = 50;
    for (int i = 0; i < 50; i++) x4_pg_query(c.pg, "SELECT 1", 0, NULL, on_wait_q, &c);
    run_for(&c, 800);
    CHECK_EQ_INT(x4_pg_pending(c.pg), 50); /* waiting, not failed */
    CHECK_EQ_INT(g_wait_err, 0);

    CHECK(system(up) == 0);
    ctx_wait(&c);
    CHECK(!c.timed_out);
    CHECK_EQ_INT(g_wait_ok, 50);
    CHECK_EQ_INT(g_wait_err, 0);
    CHECK(x4_pg_healthy(c.pg));
    ctx_finish(&c);
    CHECK(system(down) == 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}
