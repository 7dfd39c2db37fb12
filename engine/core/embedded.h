/* core/embedded.h — the "embedded default": private PostgreSQL and redis-server child processes.
 *
 * When DATABASE_URL / REDIS_URL are unset the engine runs its own servers under $X402R_HOME:
 *
 *   home/pgdata          PostgreSQL data directory (initdb -U postgres --auth=trust -E UTF8
 *                        --no-locale on first start; reused afterwards)
 *   home/run/            socket directory: PostgreSQL's .s.PGSQL.5432, redis.sock, redis.pid
 *   home/postgres.log    initdb and postgres output (appended)
 *   home/redis.log       redis log
 *
 * Neither server listens on TCP (listen_addresses='', port 0). When running as root, initdb and
 * postgres run as the `postgres` system user (they refuse root): pgdata and run/ are chowned to
 * it and home (plus any parent the postgres user could not traverse) gets o+x. Redis runs as the
 * calling user, no persistence (save "", appendonly no), socket mode 700.
 *
 * Both servers are started in their own session (setsid) so a terminal's SIGINT reaches only the
 * engine, which then shuts them down in its own order via x4_embedded_stop(). All inherited file
 * descriptors above stderr are closed in the children.
 *
 * Crash recovery: if the engine died (kill -9) and its servers survived, the next start finds
 * their sockets answering and ADOPTS them (pids from pgdata/postmaster.pid and run/redis.pid), so
 * stop() still stops them. A stale postmaster.pid (process gone) is left to postgres to handle.
 *
 * Everything here blocks; call it only at start-up and shut-down, outside the loop. */
#ifndef X4_CORE_EMBEDDED_H
#define X4_CORE_EMBEDDED_H

#include <stddef.h>
#include <sys/types.h>

typedef struct x4_embedded x4_embedded;

/* Starts (or adopts) the wanted servers and waits until each answers (about 30 s each at most).
 * On success returns 0 and sets *out and, for each wanted server, a malloc'd URL the caller frees:
 *   *pg_url_out    = "postgresql:///x402r?host=<abs home>/run&user=postgres"  (database x402r is
 *                    created if missing)
 *   *redis_url_out = "unix://<abs home>/run/redis.sock"
 * The URL pointers of servers not wanted are set to NULL (either pointer may be NULL when its
 * server is not wanted). On failure returns -1 with err set (naming the log file to read); any
 * server this call started is stopped again. Environment overrides: X4_PG_BIN (directory of
 * initdb/postgres, default /usr/lib/postgresql/15/bin or the newest /usr/lib/postgresql/N/bin),
 * X4_REDIS_SERVER (default "redis-server" on PATH). */
int x4_embedded_start(x4_embedded **out, const char *home, int want_pg, int want_redis, char **pg_url_out,
                      char **redis_url_out, char *err, size_t errlen);

/* Stops what this process started or adopted: redis with SIGTERM, PostgreSQL with SIGINT (fast
 * shutdown); waits up to 15 s for both, then SIGKILLs what is left. Frees e. NULL is fine. */
void x4_embedded_stop(x4_embedded *e);

/* Pids of the servers (0 when not running / not wanted). For logs and tests. */
pid_t x4_embedded_pg_pid(const x4_embedded *e);
pid_t x4_embedded_redis_pid(const x4_embedded *e);
/* 1 when that server was adopted from a previous run rather than started by this one. */
int x4_embedded_pg_adopted(const x4_embedded *e);
int x4_embedded_redis_adopted(const x4_embedded *e);

/* TEST ONLY: frees e without stopping anything, as if the engine had been killed with -9. */
void x4_embedded_abandon(x4_embedded *e);

#endif
