/* store/pg.h — asynchronous PostgreSQL on the libuv loop (libpq non-blocking + pipeline mode).
 *
 * A pool of N connections; each query is sent with PQsendQueryParams followed by its own
 * PQpipelineSync, so every query is its own implicit transaction and one failing query never
 * aborts another. Queries are assigned to the connection with the fewest in flight. Multi-step
 * atomic changes are SQL functions (the files in sql/) or CTEs: one query, one transaction.
 *
 * Connections that drop are re-established with backoff (100 ms doubling to 5 s); queries in
 * flight on a dropped connection complete with an error; queries submitted while no connection
 * is up wait in the pool queue (bounded by X4_PG_MAX_QUEUED, then fail at once).
 *
 * Callbacks run on the loop. `res` is owned by the pool and cleared after the callback returns;
 * on error res is NULL and err is a message (SQLSTATE first: "23505: duplicate key ..."). */
#ifndef X4_STORE_PG_H
#define X4_STORE_PG_H

#include <libpq-fe.h>
#include <uv.h>

#define X4_PG_MAX_QUEUED 100000

typedef struct x4_pg x4_pg;
typedef void (*x4_pg_cb)(PGresult *res, const char *err, void *ud);

/* Connects n connections (blocking is allowed only here, at start-up: the first connection is
 * established synchronously so a bad DATABASE_URL fails fast with a clear message). */
int x4_pg_open(x4_pg **out, uv_loop_t *loop, const char *conninfo, int nconn, char *err, size_t errlen);
/* Queues a parameterised query; params are copied (NULL entries are SQL NULL). cb may be NULL. */
void x4_pg_query(x4_pg *pg, const char *sql, int nparams, const char *const *params, x4_pg_cb cb, void *ud);
/* 1 when at least one connection is up. */
int x4_pg_healthy(const x4_pg *pg);
/* Queries queued or in flight. */
size_t x4_pg_pending(const x4_pg *pg);
/* Fails everything pending with "shutting down", closes handles; the loop must run afterwards
 * for the close callbacks. */
void x4_pg_close(x4_pg *pg);

/* Helpers for reading results. */
const char *x4_pg_val(PGresult *r, int row, const char *col); /* NULL for SQL NULL or no column */
long long x4_pg_ll(PGresult *r, int row, const char *col, long long def);

/* Start-up only (blocking): applies sql/NNN_*.sql files in order that are not yet recorded in
 * schema_migrations, each in its own transaction, under a session advisory lock so two
 * processes migrating at once are safe. Returns the number applied, or -1 with err set. */
int x4_migrate(const char *conninfo, const char *sql_dir, char *err, size_t errlen);

#endif
