/* core/engine.c — see engine.h. Start-up order: embedded servers → migrations → PostgreSQL
 * pool → Redis bus → HTTP client → catalog → auth, scheduler, streams → HTTP server → timers
 * → signals. Shutdown runs it backwards: stop accepting and driving, fail what is pending,
 * close every handle, let the loop drain, stop the private servers. */
#include "core/engine.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/bus.h"
#include "core/embedded.h"
#include "core/log.h"
#include "core/util.h"
#include "exec/httpc.h"
#include "exec/approval.h"
#include "exec/compensate.h"
#include "exec/policy.h"
#include "exec/sched.h"
#include "exec/workflow.h"
#include "http/api.h"
#include "http/auth.h"
#include "http/server.h"
#include "pay/escrow.h"
#include "pay/rpc.h"
#include "plan/catalog.h"
#include "plan/sources.h"
#include "store/pg.h"

void x4_sched_free(x4_engine *e);
void x4_streams_free(x4_engine *e);

/* SIGHUP: reload the Lua policies (exec/policy.h); a failure is logged and keeps the old set. */
static void on_hup(uv_signal_t *s, int signum) {
    (void)signum;
    x4_engine *e = s->data;
    char why[512];
    x4_info("engine", "SIGHUP: reloading the policies");
    x4_policy_reload(e, why, sizeof why);
}

static void on_signal(uv_signal_t *s, int signum) {
    x4_engine *e = s->data;
    x4_info("engine", "signal %d: shutting down", signum);
    x4_engine_stop(e, signum == SIGINT ? e->interrupt_code : 0);
}

int x4_engine_open(x4_engine *e, uv_loop_t *loop, const x4_engine_opts *opts, char *err, size_t errlen) {
    char why[512];
    e->loop = loop;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char host[64] = "host", rnd[12];
    gethostname(host, sizeof host - 1);
    x4_random_token(6, rnd, sizeof rnd);
    snprintf(e->owner, sizeof e->owner, "%s:%d:%s", host, (int)getpid(), rnd);

    /* First of all: the escrow secret goes into secure memory and out of the environment,
     * before any child process (the private servers) could inherit it. */
    if (x4_escrow_open(e, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    char *pg_url = NULL, *redis_url = NULL;
    int want_pg = !e->cfg.database_url, want_redis = !e->cfg.redis_url;
    if (want_pg || want_redis) {
        x4_info("engine", "starting private %s%s%s under %s", want_pg ? "PostgreSQL" : "",
                want_pg && want_redis ? " and " : "", want_redis ? "Redis" : "", e->cfg.home);
        if (x4_embedded_start(&e->embedded, e->cfg.home, want_pg, want_redis, &pg_url, &redis_url, why, sizeof why) <
            0) {
            snprintf(err, errlen, "embedded servers: %s", why);
            return -1;
        }
    }
    e->db_url = want_pg ? pg_url : strdup(e->cfg.database_url);
    e->redis_url = want_redis ? redis_url : strdup(e->cfg.redis_url);
    if (!want_pg) free(pg_url);
    if (!want_redis) free(redis_url);

    int applied = x4_migrate(e->db_url, e->cfg.sql_dir, why, sizeof why);
    if (applied < 0) {
        snprintf(err, errlen, "migrations: %s", why);
        return -1;
    }
    if (applied > 0) x4_info("engine", "applied %d migration(s)", applied);
    if (x4_pg_open(&e->pg, loop, e->db_url, e->cfg.pg_pool, why, sizeof why) < 0) {
        snprintf(err, errlen, "DATABASE_URL: %s", why);
        return -1;
    }
    if (x4_bus_open(&e->bus, loop, e->redis_url, why, sizeof why) < 0) {
        snprintf(err, errlen, "REDIS_URL: %s", why);
        return -1;
    }
    x4_bus_subscribe(e->bus, X4_EVENTS_CHANNEL, x4_events_on_bus, e);
    if (x4_httpc_open(&e->httpc, loop) < 0) {
        snprintf(err, errlen, "cannot initialise the HTTP client");
        return -1;
    }
    e->rpc = x4_rpc_new(e->httpc, e->cfg.solana_rpc_url, e->cfg.commitment, 30000);
    if (!e->rpc) {
        snprintf(err, errlen, "SOLANA_RPC_URL: cannot initialise the RPC client");
        return -1;
    }
    e->catalog = x4_catalog_new();
    if (!e->catalog) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (e->cfg.catalog_file) {
        int n = x4_catalog_load_file(e->catalog, e->cfg.catalog_file, why, sizeof why);
        if (n < 0) {
            snprintf(err, errlen, "CATALOG_FILE: %s", why);
            return -1;
        }
        x4_info("catalog", "%d services from %s", n, e->cfg.catalog_file);
    }
    x4_sources_start(e);
    if (x4_policy_open(e, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (x4_auth_open(e) < 0 || x4_sched_open(e) < 0 || x4_streams_open(e) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (opts->serve_http) {
        x4_http_opts ho = {e->cfg.bind, e->cfg.port, 1, X4_MAX_BODY, (size_t)e->cfg.ws_queue_max,
                           (size_t)e->cfg.ws_queue_max * 65536, x4_api_handle, e};
        if (x4_http_open(&e->http, loop, &ho, why, sizeof why) < 0) {
            snprintf(err, errlen, "PORT: %s", why);
            return -1;
        }
    }
    e->claim_others = opts->claim_others;
    e->drive = opts->drive_workflows;
    if (opts->drive_workflows) x4_wf_open(e);
    if (opts->drive_workflows && opts->serve_http) x4_approval_open(e);
    uv_signal_init(loop, &e->sig_int);
    uv_signal_init(loop, &e->sig_term);
    e->sig_int.data = e->sig_term.data = e;
    uv_signal_start(&e->sig_int, on_signal, SIGINT);
    uv_signal_start(&e->sig_term, on_signal, SIGTERM);
    uv_signal_init(loop, &e->sig_hup);
    e->sig_hup.data = e;
    uv_signal_start(&e->sig_hup, on_hup, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static void force_close(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_grace(uv_timer_t *t) {
    x4_warn("engine", "shutdown grace period over; closing the remaining handles");
    uv_walk(t->loop, force_close, NULL);
}

/* Phase 2 of shutdown: close every client and handle. */
static void stop_clients(x4_engine *e) {
    /* The bus first: closing it completes pending commands, whose callbacks (the rate limiter)
     * may still want the database; then the pool, whose failing callbacks may publish. */
    if (e->bus) x4_bus_close(e->bus);
    e->bus = NULL;
    if (e->pg) x4_pg_close(e->pg);
    e->pg = NULL;
    if (e->rpc) x4_rpc_free(e->rpc);
    e->rpc = NULL;
    if (e->httpc) x4_httpc_close(e->httpc);
    e->httpc = NULL;
    if (e->sig_int.loop && !uv_is_closing((uv_handle_t *)&e->sig_int)) {
        uv_close((uv_handle_t *)&e->sig_int, NULL);
        uv_close((uv_handle_t *)&e->sig_term, NULL);
    }
    if (e->sig_hup.loop && !uv_is_closing((uv_handle_t *)&e->sig_hup)) uv_close((uv_handle_t *)&e->sig_hup, NULL);
    static uv_timer_t grace;
    uv_timer_init(e->loop, &grace);
    uv_timer_start(&grace, on_grace, 10000, 0);
    uv_unref((uv_handle_t *)&grace);
}

static uv_timer_t g_release_timer;

static void release_done(x4_engine *e) {
    if (!e->releasing) return;
    e->releasing = 0;
    uv_timer_stop(&g_release_timer);
    uv_close((uv_handle_t *)&g_release_timer, NULL);
    stop_clients(e);
}

static void on_leases_released(PGresult *res, const char *err, void *ud) {
    x4_engine *e = ud;
    if (err) x4_warn("engine", "could not hand back leases (%s); they lapse after LEASE_MS", err);
    else if (PQntuples(res) > 0) x4_info("engine", "handed back %d workflow lease(s)", PQntuples(res));
    release_done(e);
}

static void on_release_timeout(uv_timer_t *t) {
    x4_engine *e = t->data;
    x4_warn("engine", "PostgreSQL did not answer the lease hand-back in time; they lapse after LEASE_MS");
    release_done(e);
}

void x4_engine_stop(x4_engine *e, int exit_code) {
    if (e->stopping) return;
    e->stopping = 1;
    e->exit_code = exit_code;
    if (e->on_stop) e->on_stop(e, e->on_stop_ud);
    x4_wf_close(e);
    x4_sched_close(e);
    x4_comp_abort_all(e, "shutting down");
    x4_streams_close(e);
    x4_sources_close(e);
    if (e->http) x4_http_close(e->http);
    e->http = NULL;
    if (!e->pg || !e->drive) {
        stop_clients(e);
        return;
    }
    /* Hand our leases back so another process resumes our workflows at once (a rolling
     * restart loses no time); bounded by a 2 s timer so a dead database cannot stall exit. */
    e->releasing = 1;
    uv_timer_init(e->loop, &g_release_timer);
    g_release_timer.data = e;
    uv_timer_start(&g_release_timer, on_release_timeout, 2000, 0);
    const char *params[] = {e->owner};
    x4_pg_query(e->pg,
                "UPDATE workflows SET lease_until = clock_timestamp() - interval '1 millisecond' "
                "WHERE lease_owner = $1 AND status IN ('planning','executing','compensating') RETURNING id",
                1, params, on_leases_released, e);
}

int x4_engine_run(x4_engine *e) {
    uv_run(e->loop, UV_RUN_DEFAULT);
    if (!e->stopping) x4_engine_stop(e, e->exit_code);
    uv_run(e->loop, UV_RUN_DEFAULT);
    x4_auth_close(e);
    x4_escrow_close(e);
    x4_sched_free(e);
    x4_streams_free(e);
    x4_policy_close(e);
    if (e->catalog) x4_catalog_unref(e->catalog);
    e->catalog = NULL;
    if (e->embedded) x4_embedded_stop(e->embedded);
    e->embedded = NULL;
    free(e->db_url);
    free(e->redis_url);
    curl_global_cleanup();
    x4_config_free(&e->cfg);
    return e->exit_code;
}
