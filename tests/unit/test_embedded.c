/* tests/unit/test_embedded.c — private PostgreSQL + redis under a temporary X402R_HOME: start,
 * connect, stop, restart on the same data, and adoption of servers that outlived their engine
 * (kill -9), which stop() must still stop. Needs the PostgreSQL 15 binaries and redis-server;
 * skipped when they are missing. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/embedded.h"
#include "unit.h"

static int have_binaries(void) {
    const char *bin = getenv("X4_PG_BIN");
    char p[512];
    snprintf(p, sizeof p, "%s/postgres", bin && *bin ? bin : "/usr/lib/postgresql/15/bin");
    if (access(p, X_OK) != 0 || system("command -v redis-server >/dev/null 2>&1") != 0) {
        fprintf(stderr, "  PostgreSQL or redis-server binaries missing: skipped\n");
        return 0;
    }
    return 1;
}

/* Gone = no such process, or a zombie that we reap here (the test process is the parent of
 * servers it started, even after "forgetting" them). */
static int pid_gone(pid_t pid) {
    if (pid <= 0) return 1;
    waitpid(pid, NULL, WNOHANG);
    if (kill(pid, 0) != 0 && errno == ESRCH) return 1;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && (p[2] == 'Z' || p[2] == 'X');
}

static int pg_exec(const char *url, const char *sql, char *val, size_t vlen) {
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "  connect %s: %s", url, PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) fprintf(stderr, "  %s: %s", sql, PQerrorMessage(c));
    if (ok && val) snprintf(val, vlen, "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

static int redis_roundtrip(const char *url, const char *key, const char *set, char *got, size_t glen) {
    if (strncmp(url, "unix://", 7) != 0) return -1;
    redisContext *c = redisConnectUnix(url + 7);
    if (!c || c->err) {
        fprintf(stderr, "  redis connect %s: %s\n", url, c ? c->errstr : "?");
        if (c) redisFree(c);
        return -1;
    }
    int rc = 0;
    redisReply *r;
    if (set) {
        r = redisCommand(c, "SET %s %s", key, set);
        if (!r || r->type == REDIS_REPLY_ERROR) rc = -1;
        if (r) freeReplyObject(r);
    }
    r = redisCommand(c, "GET %s", key);
    if (!r) rc = -1;
    else {
        snprintf(got, glen, "%s", r->type == REDIS_REPLY_STRING ? r->str : "(nil)");
        freeReplyObject(r);
    }
    redisFree(c);
    return rc;
}

X4_TEST(embedded_lifecycle) {
    if (!have_binaries()) return;
    char home[] = "/tmp/x4embXXXXXX";
    CHECK(mkdtemp(home) != NULL);
    char sub[64];
    snprintf(sub, sizeof sub, "%s/home", home); /* not existing yet: start creates it */
    x4_embedded *e = NULL;
    char *pgurl = NULL, *rurl = NULL, err[1024] = "";

    /* 1. first start: initdb, database x402r created */
    int rc = x4_embedded_start(&e, sub, 1, 1, &pgurl, &rurl, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  start: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) return;
    char want[256];
    snprintf(want, sizeof want, "postgresql:///x402r?host=%s/run&user=postgres", sub);
    CHECK_EQ_STR(pgurl, want);
    snprintf(want, sizeof want, "unix://%s/run/redis.sock", sub);
    CHECK_EQ_STR(rurl, want);
    CHECK(!x4_embedded_pg_adopted(e));
    CHECK(!x4_embedded_redis_adopted(e));
    pid_t pg1 = x4_embedded_pg_pid(e), r1 = x4_embedded_redis_pid(e);
    CHECK(pg1 > 0 && r1 > 0);
    /* the servers are not in our process group: a terminal's SIGINT would not reach them */
    CHECK(getpgid(pg1) != getpgrp());
    CHECK(getpgid(r1) != getpgrp());
    char val[128] = "";
    CHECK_EQ_INT(pg_exec(pgurl, "CREATE TABLE survives (x int); INSERT INTO survives VALUES (42)", NULL, 0), 0);
    CHECK_EQ_INT(pg_exec(pgurl, "SELECT current_database()", val, sizeof val), 0);
    CHECK_EQ_STR(val, "x402r");
    CHECK_EQ_INT(pg_exec(pgurl, "SHOW listen_addresses", val, sizeof val), 0);
    CHECK_EQ_STR(val, "");
    CHECK_EQ_INT(redis_roundtrip(rurl, "k", "v1", val, sizeof val), 0);
    CHECK_EQ_STR(val, "v1");
    x4_embedded_stop(e);
    CHECK(pid_gone(pg1));
    CHECK(pid_gone(r1));
    free(pgurl);
    free(rurl);

    /* 2. second start reuses the data directory; redis has no persistence */
    e = NULL;
    rc = x4_embedded_start(&e, sub, 1, 1, &pgurl, &rurl, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  restart: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) return;
    CHECK_EQ_INT(pg_exec(pgurl, "SELECT x FROM survives", val, sizeof val), 0);
    CHECK_EQ_STR(val, "42");
    CHECK_EQ_INT(redis_roundtrip(rurl, "k", NULL, val, sizeof val), 0);
    CHECK_EQ_STR(val, "(nil)");
    CHECK_EQ_INT(redis_roundtrip(rurl, "k2", "v2", val, sizeof val), 0);
    pid_t pg2 = x4_embedded_pg_pid(e), r2 = x4_embedded_redis_pid(e);

    /* 3. "kill -9" the engine: forget the servers without stopping them */
    x4_embedded_abandon(e);
    free(pgurl);
    free(rurl);
    CHECK(!pid_gone(pg2));
    CHECK(!pid_gone(r2));

    /* 4. start again: adopts both */
    e = NULL;
    rc = x4_embedded_start(&e, sub, 1, 1, &pgurl, &rurl, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  adopt: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) return;
    CHECK(x4_embedded_pg_adopted(e));
    CHECK(x4_embedded_redis_adopted(e));
    CHECK_EQ_INT(x4_embedded_pg_pid(e), pg2);
    CHECK_EQ_INT(x4_embedded_redis_pid(e), r2);
    CHECK_EQ_INT(redis_roundtrip(rurl, "k2", NULL, val, sizeof val), 0);
    CHECK_EQ_STR(val, "v2"); /* the same redis */
    CHECK_EQ_INT(pg_exec(pgurl, "SELECT count(*) FROM survives", val, sizeof val), 0);
    CHECK_EQ_STR(val, "1");
    x4_embedded_stop(e);
    CHECK(pid_gone(pg2));
    CHECK(pid_gone(r2));
    free(pgurl);
    free(rurl);

    /* 5. only redis wanted: PostgreSQL is not started, its URL stays NULL */
    e = NULL;
    pgurl = (char *)"x";
    rc = x4_embedded_start(&e, sub, 0, 1, &pgurl, &rurl, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK(pgurl == NULL);
        CHECK(rurl != NULL);
        CHECK_EQ_INT(x4_embedded_pg_pid(e), 0);
        pid_t r3 = x4_embedded_redis_pid(e);
        x4_embedded_stop(e);
        CHECK(pid_gone(r3));
        free(rurl);
    }

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    CHECK(system(cmd) == 0);
}

/* the postmaster dies hard (kill -9) while the engine is "dead" too: the next start must get
 * past the stale postmaster.pid on its own */
X4_TEST(embedded_stale_pid_file) {
    if (!have_binaries()) return;
    char home[] = "/tmp/x4embXXXXXX";
    CHECK(mkdtemp(home) != NULL);
    x4_embedded *e = NULL;
    char *pgurl = NULL, err[1024] = "";
    int rc = x4_embedded_start(&e, home, 1, 0, &pgurl, NULL, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  start: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) return;
    free(pgurl);
    pid_t pg = x4_embedded_pg_pid(e);
    x4_embedded_abandon(e);
    kill(pg, SIGKILL);
    waitpid(pg, NULL, 0);
    char pidf[128];
    snprintf(pidf, sizeof pidf, "%s/pgdata/postmaster.pid", home);
    CHECK(access(pidf, F_OK) == 0); /* stale */
    e = NULL;
    rc = x4_embedded_start(&e, home, 1, 0, &pgurl, NULL, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  restart after kill -9: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK(!x4_embedded_pg_adopted(e));
        char val[32] = "";
        CHECK_EQ_INT(pg_exec(pgurl, "SELECT 1", val, sizeof val), 0);
        CHECK_EQ_STR(val, "1");
        pid_t pg2 = x4_embedded_pg_pid(e);
        x4_embedded_stop(e);
        CHECK(pid_gone(pg2));
        free(pgurl);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    CHECK(system(cmd) == 0);
}

X4_TEST(embedded_bad_home) {
    x4_embedded *e = NULL;
    char *pgurl = NULL, *rurl = NULL, err[512] = "";
    CHECK_EQ_INT(x4_embedded_start(&e, "", 1, 1, &pgurl, &rurl, err, sizeof err), -1);
    CHECK(e == NULL);
    CHECK(strstr(err, "X402R_HOME") != NULL);
    CHECK_EQ_INT(x4_embedded_start(&e, "/proc/x4-no-such/home", 1, 1, &pgurl, &rurl, err, sizeof err), -1);
    CHECK(strstr(err, "cannot create") != NULL);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[1] = 't'; longp[2] = 'm'; longp[3] = 'p'; longp[4] = '/';
    longp[sizeof longp - 1] = 0;
    CHECK_EQ_INT(x4_embedded_start(&e, longp, 1, 1, &pgurl, &rurl, err, sizeof err), -1);
    CHECK(strstr(err, "too long") != NULL);
    rmdir(longp);
    CHECK(pgurl == NULL && rurl == NULL);
}

/* a real "engine" process starts the servers and is killed with SIGKILL; the servers (now
 * orphans, not our children) are adopted and stopped by this process */
X4_TEST(embedded_adopt_after_engine_sigkill) {
    if (!have_binaries()) return;
    char home[] = "/tmp/x4embXXXXXX";
    CHECK(mkdtemp(home) != NULL);
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t engine = fork();
    if (engine == 0) {
        close(fds[0]);
        x4_embedded *e = NULL;
        char *pgurl = NULL, *rurl = NULL, err[1024];
        pid_t pids[2] = {0, 0};
        if (x4_embedded_start(&e, home, 1, 1, &pgurl, &rurl, err, sizeof err) == 0) {
            pids[0] = x4_embedded_pg_pid(e);
            pids[1] = x4_embedded_redis_pid(e);
        } else {
            fprintf(stderr, "  engine: %s\n", err);
        }
        ssize_t w = write(fds[1], pids, sizeof pids);
        (void)w;
        for (;;) pause(); /* until SIGKILL */
    }
    close(fds[1]);
    pid_t pids[2] = {0, 0};
    CHECK(read(fds[0], pids, sizeof pids) == (ssize_t)sizeof pids);
    close(fds[0]);
    kill(engine, SIGKILL);
    waitpid(engine, NULL, 0);
    CHECK(pids[0] > 0 && pids[1] > 0);
    if (pids[0] <= 0 || pids[1] <= 0) return;
    CHECK(!pid_gone(pids[0]));
    CHECK(!pid_gone(pids[1]));

    x4_embedded *e = NULL;
    char *pgurl = NULL, *rurl = NULL, err[1024] = "";
    int rc = x4_embedded_start(&e, home, 1, 1, &pgurl, &rurl, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  adopt: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) return;
    CHECK(x4_embedded_pg_adopted(e) && x4_embedded_redis_adopted(e));
    CHECK_EQ_INT(x4_embedded_pg_pid(e), pids[0]);
    CHECK_EQ_INT(x4_embedded_redis_pid(e), pids[1]);
    char val[32] = "";
    CHECK_EQ_INT(pg_exec(pgurl, "SELECT 7", val, sizeof val), 0);
    CHECK_EQ_STR(val, "7");
    x4_embedded_stop(e);
    CHECK(pid_gone(pids[0]));
    CHECK(pid_gone(pids[1]));
    free(pgurl);
    free(rurl);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    CHECK(system(cmd) == 0);
}

/* a home path with a space and a quote still works (conninfo, URL and socket list); a comma
 * cannot (libpq splits host lists on commas) and is refused with a clear message */
X4_TEST(embedded_odd_home_path) {
    if (!have_binaries()) return;
    char base[] = "/tmp/x4embXXXXXX";
    CHECK(mkdtemp(base) != NULL);
    char home[128];
    snprintf(home, sizeof home, "%s/a,b", base);
    x4_embedded *e = NULL;
    char *pgurl = NULL, err[1024] = "";
    CHECK_EQ_INT(x4_embedded_start(&e, home, 1, 0, &pgurl, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "comma") != NULL);
    snprintf(home, sizeof home, "%s/a b'c", base);
    int rc = x4_embedded_start(&e, home, 1, 0, &pgurl, NULL, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  start: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        CHECK(strstr(pgurl, "a%20b%27c/run") != NULL);
        char val[32] = "";
        CHECK_EQ_INT(pg_exec(pgurl, "SELECT 5", val, sizeof val), 0);
        CHECK_EQ_STR(val, "5");
        pid_t pg = x4_embedded_pg_pid(e);
        x4_embedded_stop(e);
        CHECK(pid_gone(pg));
        free(pgurl);
    }
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    CHECK(system(cmd) == 0);
}
