/* core/embedded.c — see embedded.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/embedded.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define EMB_WAIT_MS 30000
#define EMB_STOP_MS 15000
#define EMB_DB "x402r"

struct x4_embedded {
    char home[PATH_MAX];
    pid_t pg_pid, redis_pid;
    int pg_child, redis_child;     /* 1 when the pid is our own child (waitpid works) */
    int pg_adopted, redis_adopted;
};

/* ------------------------------------------------------------------ small helpers */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Alive = exists and is not a zombie (an orphan may stay a zombie until init reaps it). */
static int pid_alive(pid_t pid) {
    if (pid <= 0) return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH) return 0;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? 0 : 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X')) return 0;
    return 1;
}

/* 1 when /proc/pid/cmdline mentions `what` (sanity check before adopting a pid from a file). */
static int pid_cmdline_has(pid_t pid, const char *what) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1; /* no /proc: trust the pid file */
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (buf[i] == 0) buf[i] = ' ';
    buf[n] = 0;
    return strstr(buf, what) != NULL;
}

static pid_t read_pid_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long v = 0;
    if (fscanf(f, "%ld", &v) != 1) v = 0;
    fclose(f);
    return v > 0 && v < INT_MAX ? (pid_t)v : 0;
}

/* Last ~600 bytes of a log file, on one line, for error messages. */
static void log_tail(const char *path, char *out, size_t outlen) {
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char buf[601];
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        fseek(f, sz > 600 ? sz - 600 : 0, SEEK_SET);
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
    const char *start = buf;
    /* the last two lines are the interesting ones */
    int lines = 0;
    for (size_t i = n; i > 0; i--)
        if (buf[i - 1] == '\n' && ++lines == 2) { start = buf + i; break; }
    size_t o = 0;
    for (const char *p = start; *p && o + 1 < outlen; p++) out[o++] = (*p == '\n') ? ' ' : *p;
    out[o] = 0;
}

static int log_contains(const char *path, const char *needle) {
    char tail[700];
    log_tail(path, tail, sizeof tail);
    return strstr(tail, needle) != NULL;
}

/* mkdir -p with mode 0755 for every directory created. */
static int mkdir_p(const char *path, char *err, size_t errlen) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        set_err(err, errlen, "embedded: path too long: %s", path);
        return -1;
    }
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0755) == 0) {
                chmod(tmp, 0755); /* not subject to the umask */
            } else if (errno != EEXIST) {
                set_err(err, errlen, "embedded: cannot create %s: %s", tmp, strerror(errno));
                return -1;
            }
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

/* Makes every directory from / down to dir traversable by `others` (the postgres user). */
static void make_traversable(const char *dir) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (;;) {
        struct stat st;
        if (stat(tmp, &st) == 0 && S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH)) {
            if (chmod(tmp, (st.st_mode & 07777) | S_IXOTH) == 0)
                x4_warn("embedded", "made %s traversable (o+x) for the postgres user", tmp);
        }
        char *slash = strrchr(tmp, '/');
        if (!slash || slash == tmp) break;
        *slash = 0;
    }
}

typedef struct {
    int drop;       /* setuid/setgid to uid/gid in the child */
    uid_t uid;
    gid_t gid;
} ident;

static void close_fds_from(int lowfd) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, lowfd, ~0U, 0) == 0) return;
#endif
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int fds[1024], n = 0;
        struct dirent *de;
        while ((de = readdir(d)) != NULL && n < 1024) {
            int fd = atoi(de->d_name);
            if (fd >= lowfd && fd != dirfd(d)) fds[n++] = fd;
        }
        closedir(d);
        for (int i = 0; i < n; i++) close(fds[i]);
        return;
    }
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = lowfd; fd < max; fd++) close(fd);
}

/* Forks and execs argv in a new session with stdin=/dev/null and stdout/stderr=logfd (or
 * /dev/null when logfd < 0), dropping privileges when id->drop. Returns the pid or -1. */
static pid_t spawn(char *const argv[], const ident *id, int logfd, char *err, size_t errlen) {
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        set_err(err, errlen, "embedded: /dev/null: %s", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        set_err(err, errlen, "embedded: fork: %s", strerror(errno));
        close(devnull);
        return -1;
    }
    if (pid == 0) {
        setsid();
        /* default signal dispositions and an empty mask for the server */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int s = 1; s < 32; s++)
            if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
        dup2(devnull, 0);
        dup2(logfd >= 0 ? logfd : devnull, 1);
        dup2(logfd >= 0 ? logfd : devnull, 2);
        close_fds_from(3);
        if (id->drop) {
            if (setgroups(1, &id->gid) != 0 || setgid(id->gid) != 0 || setuid(id->uid) != 0) {
                static const char msg[] = "embedded: cannot switch to the postgres user\n";
                ssize_t w = write(2, msg, sizeof msg - 1);
                (void)w;
                _exit(126);
            }
        }
        execvp(argv[0], argv);
        {
            char msg[512];
            int l = snprintf(msg, sizeof msg, "embedded: cannot execute %s: %s\n", argv[0], strerror(errno));
            ssize_t w = write(2, msg, (size_t)l);
            (void)w;
        }
        _exit(127);
    }
    close(devnull);
    return pid;
}

/* Waits for our own child; returns 1 when it exited (status in *st), 0 when still running. */
static int child_exited(pid_t pid, int *st) {
    int s = 0;
    pid_t r = waitpid(pid, &s, WNOHANG);
    if (r == pid) {
        if (st) *st = s;
        return 1;
    }
    if (r < 0 && errno == ECHILD) return 1;
    return 0;
}

/* Waits for pid to go away (child: waitpid; otherwise: /proc polling) until deadline. */
static int wait_gone(pid_t pid, int is_child, uint64_t deadline) {
    for (;;) {
        if (is_child ? child_exited(pid, NULL) : !pid_alive(pid)) return 1;
        if (mono_ms() >= deadline) return 0;
        sleep_ms(20);
    }
}

/* ------------------------------------------------------------------ PostgreSQL */

static void pg_bin(char *out, size_t outlen) {
    const char *env = getenv("X4_PG_BIN");
    if (env && *env) { snprintf(out, outlen, "%s", env); return; }
    if (access("/usr/lib/postgresql/15/bin/postgres", X_OK) == 0) {
        snprintf(out, outlen, "/usr/lib/postgresql/15/bin");
        return;
    }
    int best = -1;
    DIR *d = opendir("/usr/lib/postgresql");
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            int v = atoi(de->d_name);
            char p[PATH_MAX];
            snprintf(p, sizeof p, "/usr/lib/postgresql/%s/bin/postgres", de->d_name);
            if (v > best && access(p, X_OK) == 0) best = v;
        }
        closedir(d);
    }
    if (best > 0) snprintf(out, outlen, "/usr/lib/postgresql/%d/bin", best);
    else snprintf(out, outlen, "/usr/lib/postgresql/15/bin");
}

static void pg_conninfo(const x4_embedded *e, const char *db, char *out, size_t outlen) {
    /* key=value form: the path single-quoted, with ' and \ escaped by a backslash */
    char q[PATH_MAX * 2 + 8];
    size_t o = 0;
    for (const char *p = e->home; *p && o + 3 < sizeof q; p++) {
        if (*p == '\'' || *p == '\\') q[o++] = '\\';
        q[o++] = *p;
    }
    q[o] = 0;
    snprintf(out, outlen, "host='%s/run' user=postgres dbname=%s connect_timeout=5", q, db);
}

static PGPing pg_ping(const x4_embedded *e) {
    char ci[PATH_MAX * 2 + 128];
    pg_conninfo(e, "postgres", ci, sizeof ci);
    return PQping(ci);
}

static int open_log(const char *path, const ident *id, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        set_err(err, errlen, "embedded: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (id && id->drop && fchown(fd, id->uid, id->gid) != 0) { /* best effort */ }
    return fd;
}

static int pg_initdb(x4_embedded *e, const ident *id, const char *bin, char *err, size_t errlen) {
    char data[PATH_MAX + 16], ver[PATH_MAX + 32], logp[PATH_MAX + 32], prog[PATH_MAX + 16];
    snprintf(data, sizeof data, "%s/pgdata", e->home);
    snprintf(ver, sizeof ver, "%s/PG_VERSION", data);
    snprintf(logp, sizeof logp, "%s/postgres.log", e->home);
    if (access(ver, F_OK) == 0) return 0;
    if (mkdir(data, 0700) != 0 && errno != EEXIST) {
        set_err(err, errlen, "embedded: cannot create %s: %s", data, strerror(errno));
        return -1;
    }
    chmod(data, 0700);
    if (id->drop && chown(data, id->uid, id->gid) != 0) {
        set_err(err, errlen, "embedded: cannot chown %s to postgres: %s", data, strerror(errno));
        return -1;
    }
    int logfd = open_log(logp, id, err, errlen);
    if (logfd < 0) return -1;
    snprintf(prog, sizeof prog, "%s/initdb", bin);
    char *argv[] = {prog, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", NULL};
    x4_info("embedded", "initialising PostgreSQL data directory %s", data);
    pid_t pid = spawn(argv, id, logfd, err, errlen);
    close(logfd);
    if (pid < 0) return -1;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char tail[700];
        log_tail(logp, tail, sizeof tail);
        set_err(err, errlen, "embedded: initdb failed (see %s): %s", logp, tail);
        return -1;
    }
    return 0;
}

static int pg_create_db(x4_embedded *e, char *err, size_t errlen) {
    char ci[PATH_MAX * 2 + 128];
    pg_conninfo(e, "postgres", ci, sizeof ci);
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        set_err(err, errlen, "embedded: cannot connect to the private PostgreSQL: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    PGresult *r = PQexec(c, "SELECT 1 FROM pg_database WHERE datname = '" EMB_DB "'");
    int exists = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
    PQclear(r);
    int rc = 0;
    if (!exists) {
        r = PQexec(c, "CREATE DATABASE " EMB_DB);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            if (!state || strcmp(state, "42P04") != 0) { /* 42P04: created meanwhile */
                set_err(err, errlen, "embedded: CREATE DATABASE " EMB_DB ": %s", PQerrorMessage(c));
                rc = -1;
            }
        } else {
            x4_info("embedded", "created database " EMB_DB);
        }
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

static int pg_start(x4_embedded *e, const ident *id, char *err, size_t errlen) {
    char bin[PATH_MAX], data[PATH_MAX + 16], run[PATH_MAX + 16], logp[PATH_MAX + 32], pidf[PATH_MAX + 32];
    pg_bin(bin, sizeof bin);
    snprintf(data, sizeof data, "%s/pgdata", e->home);
    snprintf(run, sizeof run, "%s/run", e->home);
    snprintf(logp, sizeof logp, "%s/postgres.log", e->home);
    snprintf(pidf, sizeof pidf, "%s/postmaster.pid", data);
    uint64_t deadline = mono_ms() + EMB_WAIT_MS;

    /* 1. already running (a previous engine was killed and its server survived)? */
    for (;;) {
        PGPing p = pg_ping(e);
        if (p == PQPING_OK) {
            pid_t pid = read_pid_file(pidf);
            if (pid > 0 && pid_alive(pid) && pid_cmdline_has(pid, "postgres")) {
                e->pg_pid = pid;
            } else {
                e->pg_pid = 0;
                x4_warn("embedded", "PostgreSQL answers at %s but %s names no live postmaster: it will not be stopped",
                        run, pidf);
            }
            e->pg_adopted = 1;
            e->pg_child = 0;
            x4_info("embedded", "adopted running PostgreSQL (pid %d) at %s", (int)e->pg_pid, run);
            return pg_create_db(e, err, errlen);
        }
        if (p != PQPING_REJECT || mono_ms() >= deadline) break;
        sleep_ms(100); /* starting up or shutting down: wait for it to settle */
    }

    /* 2. data directory */
    if (pg_initdb(e, id, bin, err, errlen) != 0) return -1;
    if (id->drop) {
        /* a previous run may have created files as another user; postgres must own its data */
        struct stat st;
        if (stat(data, &st) == 0 && st.st_uid != id->uid && chown(data, id->uid, id->gid) != 0) {}
    }

    /* 3. a postmaster killed with -9 can linger as a zombie until reaped, and postgres refuses
     *    to start while that pid exists; wait a little for it to disappear */
    pid_t stale = read_pid_file(pidf);
    if (stale > 0) {
        uint64_t until = mono_ms() + 5000;
        while (kill(stale, 0) == 0 && !pid_alive(stale) && mono_ms() < until) sleep_ms(50);
        if (pid_alive(stale) && pid_cmdline_has(stale, "postgres"))
            x4_warn("embedded", "postmaster pid %d is alive but does not answer at %s", (int)stale, run);
    }

    /* 4. start postgres directly (our child, in its own session) */
    char prog[PATH_MAX + 16], sockopt[PATH_MAX + 64];
    snprintf(prog, sizeof prog, "%s/postgres", bin);
    /* a list setting: double quotes keep commas and spaces in the path literal */
    snprintf(sockopt, sizeof sockopt, "unix_socket_directories=\"%s\"", run);
    char *argv[] = {prog, "-D", data, "-c", "listen_addresses=", "-c", sockopt, "-c", "logging_collector=off", NULL};
    for (int attempt = 1;; attempt++) {
        int logfd = open_log(logp, id, err, errlen);
        if (logfd < 0) return -1;
        pid_t pid = spawn(argv, id, logfd, err, errlen);
        close(logfd);
        if (pid < 0) return -1;
        x4_info("embedded", "starting PostgreSQL (pid %d), socket in %s, log %s", (int)pid, run, logp);
        for (;;) {
            int st = 0;
            if (child_exited(pid, &st)) {
                /* orphaned backends of a killed postmaster may hold its shared memory briefly */
                if (attempt < 8 && mono_ms() + 1000 < deadline &&
                    (log_contains(logp, "shared memory block is still in use") ||
                     log_contains(logp, "lock file") || log_contains(logp, "already in use"))) {
                    sleep_ms(1000);
                    break; /* retry */
                }
                char tail[700];
                log_tail(logp, tail, sizeof tail);
                set_err(err, errlen, "embedded: postgres exited at start-up (see %s): %s", logp, tail);
                return -1;
            }
            PGPing ping = pg_ping(e);
            if (ping == PQPING_NO_ATTEMPT) {
                kill(pid, SIGINT);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
                set_err(err, errlen, "embedded: cannot build a PostgreSQL connection string for %s", run);
                return -1;
            }
            if (ping == PQPING_OK) {
                e->pg_pid = pid;
                e->pg_child = 1;
                e->pg_adopted = 0;
                return pg_create_db(e, err, errlen);
            }
            if (mono_ms() >= deadline) {
                kill(pid, SIGKILL);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
                set_err(err, errlen, "embedded: PostgreSQL did not answer within %d s (see %s)", EMB_WAIT_MS / 1000,
                        logp);
                return -1;
            }
            sleep_ms(50);
        }
    }
}

/* ------------------------------------------------------------------ redis */

/* 1 = PONG, 0 = no answer, -1 = answers but not ready (LOADING, ...). */
static int redis_ping(const char *sock) {
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    if (!c) return 0;
    if (c->err) {
        redisFree(c);
        return 0;
    }
    redisSetTimeout(c, tv);
    redisReply *r = redisCommand(c, "PING");
    int rc = 0;
    if (r) {
        if ((r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) && r->str && strcmp(r->str, "PONG") == 0)
            rc = 1;
        else rc = -1;
        freeReplyObject(r);
    }
    redisFree(c);
    return rc;
}

static int redis_start(x4_embedded *e, char *err, size_t errlen) {
    char sock[PATH_MAX + 32], pidf[PATH_MAX + 32], logp[PATH_MAX + 32];
    snprintf(sock, sizeof sock, "%s/run/redis.sock", e->home);
    snprintf(pidf, sizeof pidf, "%s/run/redis.pid", e->home);
    snprintf(logp, sizeof logp, "%s/redis.log", e->home);
    uint64_t deadline = mono_ms() + EMB_WAIT_MS;

    for (;;) {
        int p = redis_ping(sock);
        if (p == 1) {
            pid_t pid = read_pid_file(pidf);
            if (pid > 0 && pid_alive(pid) && pid_cmdline_has(pid, "redis")) {
                e->redis_pid = pid;
            } else {
                e->redis_pid = 0;
                x4_warn("embedded", "redis answers at %s but %s names no live redis: it will not be stopped", sock,
                        pidf);
            }
            e->redis_adopted = 1;
            e->redis_child = 0;
            x4_info("embedded", "adopted running redis (pid %d) at %s", (int)e->redis_pid, sock);
            return 0;
        }
        if (p == 0 || mono_ms() >= deadline) break;
        sleep_ms(100); /* loading */
    }

    const char *prog = getenv("X4_REDIS_SERVER");
    if (!prog || !*prog) prog = "redis-server";
    char progbuf[PATH_MAX];
    snprintf(progbuf, sizeof progbuf, "%s", prog);
    char *argv[] = {progbuf,        "--port",      "0",         "--unixsocket", sock,       "--unixsocketperm",
                    "700",          "--save",      "",          "--appendonly", "no",       "--dir",
                    e->home,        "--logfile",   logp,        "--pidfile",    pidf,       "--daemonize",
                    "no",           NULL};
    ident none = {0, 0, 0};
    int logfd = open_log(logp, NULL, err, errlen);
    if (logfd < 0) return -1;
    pid_t pid = spawn(argv, &none, logfd, err, errlen);
    close(logfd);
    if (pid < 0) return -1;
    x4_info("embedded", "starting redis (pid %d) at %s, log %s", (int)pid, sock, logp);
    for (;;) {
        if (child_exited(pid, NULL)) {
            char tail[700];
            log_tail(logp, tail, sizeof tail);
            set_err(err, errlen, "embedded: redis-server exited at start-up (see %s): %s", logp, tail);
            return -1;
        }
        if (redis_ping(sock) == 1) {
            e->redis_pid = pid;
            e->redis_child = 1;
            e->redis_adopted = 0;
            return 0;
        }
        if (mono_ms() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
            set_err(err, errlen, "embedded: redis did not answer within %d s (see %s)", EMB_WAIT_MS / 1000, logp);
            return -1;
        }
        sleep_ms(20);
    }
}

/* ------------------------------------------------------------------ public */

/* Percent-encodes a path for a URL query value ('/' kept). */
static void url_path(const char *s, char *out, size_t outlen) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 4 < outlen; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '/' ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = 0;
}

int x4_embedded_start(x4_embedded **out, const char *home, int want_pg, int want_redis, char **pg_url_out,
                      char **redis_url_out, char *err, size_t errlen) {
    *out = NULL;
    if (pg_url_out) *pg_url_out = NULL;
    if (redis_url_out) *redis_url_out = NULL;
    if (!home || !*home) {
        set_err(err, errlen, "embedded: no home directory (set X402R_HOME)");
        return -1;
    }
    char abs[PATH_MAX];
    if (home[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) || snprintf(abs, sizeof abs, "%s/%s", cwd, home) >= (int)sizeof abs) {
            set_err(err, errlen, "embedded: cannot resolve %s", home);
            return -1;
        }
    } else {
        snprintf(abs, sizeof abs, "%s", home);
    }
    if (mkdir_p(abs, err, errlen) != 0) return -1;

    x4_embedded *e = calloc(1, sizeof *e);
    if (!e) {
        set_err(err, errlen, "embedded: out of memory");
        return -1;
    }
    if (!realpath(abs, e->home)) {
        set_err(err, errlen, "embedded: cannot resolve %s: %s", abs, strerror(errno));
        free(e);
        return -1;
    }
    /* libpq's host is a comma-separated list without escapes; postgres's socket list is quoted */
    if (strpbrk(e->home, "\",\n")) {
        set_err(err, errlen, "embedded: X402R_HOME must not contain a comma, '\"' or a newline: %s", e->home);
        free(e);
        return -1;
    }
    /* unix socket paths are limited to 107 bytes */
    if (strlen(e->home) + sizeof "/run/.s.PGSQL.5432" > 107) {
        set_err(err, errlen, "embedded: X402R_HOME path too long for a unix socket: %s", e->home);
        free(e);
        return -1;
    }

    ident id = {0, 0, 0};
    if (want_pg && geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw) {
            set_err(err, errlen,
                    "embedded: running as root, but PostgreSQL refuses root and there is no 'postgres' user; "
                    "set DATABASE_URL or create the user");
            free(e);
            return -1;
        }
        id.drop = 1;
        id.uid = pw->pw_uid;
        id.gid = pw->pw_gid;
    }

    char run[PATH_MAX + 16];
    snprintf(run, sizeof run, "%s/run", e->home);
    if (mkdir(run, 0755) != 0 && errno != EEXIST) {
        set_err(err, errlen, "embedded: cannot create %s: %s", run, strerror(errno));
        free(e);
        return -1;
    }
    chmod(run, 0755);
    if (id.drop) {
        chmod(e->home, 0755);
        make_traversable(e->home);
        if (chown(run, id.uid, id.gid) != 0) {
            set_err(err, errlen, "embedded: cannot chown %s: %s", run, strerror(errno));
            free(e);
            return -1;
        }
    }

    if (want_pg && pg_start(e, &id, err, errlen) != 0) {
        x4_embedded_stop(e);
        return -1;
    }
    if (want_redis && redis_start(e, err, errlen) != 0) {
        x4_embedded_stop(e);
        return -1;
    }

    char enc[PATH_MAX * 3 + 16];
    if (want_pg && pg_url_out) {
        url_path(run, enc, sizeof enc);
        size_t n = strlen(enc) + 64;
        *pg_url_out = malloc(n);
        if (*pg_url_out) snprintf(*pg_url_out, n, "postgresql:///" EMB_DB "?host=%s&user=postgres", enc);
    }
    if (want_redis && redis_url_out) {
        size_t n = strlen(run) + 32;
        *redis_url_out = malloc(n);
        if (*redis_url_out) snprintf(*redis_url_out, n, "unix://%s/redis.sock", run);
    }
    if ((want_pg && pg_url_out && !*pg_url_out) || (want_redis && redis_url_out && !*redis_url_out)) {
        if (pg_url_out) { free(*pg_url_out); *pg_url_out = NULL; }
        if (redis_url_out) { free(*redis_url_out); *redis_url_out = NULL; }
        x4_embedded_stop(e);
        set_err(err, errlen, "embedded: out of memory");
        return -1;
    }
    *out = e;
    return 0;
}

void x4_embedded_stop(x4_embedded *e) {
    if (!e) return;
    if (e->redis_pid > 0) {
        x4_info("embedded", "stopping redis (pid %d)", (int)e->redis_pid);
        kill(e->redis_pid, SIGTERM);
    }
    if (e->pg_pid > 0) {
        x4_info("embedded", "stopping PostgreSQL (pid %d, fast shutdown)", (int)e->pg_pid);
        kill(e->pg_pid, SIGINT);
    }
    uint64_t deadline = mono_ms() + EMB_STOP_MS;
    pid_t pids[2] = {e->redis_pid, e->pg_pid};
    int child[2] = {e->redis_child, e->pg_child};
    const char *names[2] = {"redis", "PostgreSQL"};
    for (int i = 0; i < 2; i++) {
        if (pids[i] <= 0) continue;
        if (!wait_gone(pids[i], child[i], deadline)) {
            x4_warn("embedded", "%s (pid %d) did not stop within %d s: killing it", names[i], (int)pids[i],
                    EMB_STOP_MS / 1000);
            kill(pids[i], SIGKILL);
            wait_gone(pids[i], child[i], mono_ms() + 5000);
        }
    }
    free(e);
}

pid_t x4_embedded_pg_pid(const x4_embedded *e) { return e ? e->pg_pid : 0; }
pid_t x4_embedded_redis_pid(const x4_embedded *e) { return e ? e->redis_pid : 0; }
int x4_embedded_pg_adopted(const x4_embedded *e) { return e ? e->pg_adopted : 0; }
int x4_embedded_redis_adopted(const x4_embedded *e) { return e ? e->redis_adopted : 0; }

void x4_embedded_abandon(x4_embedded *e) { free(e); }
