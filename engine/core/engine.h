/* core/engine.h — the engine process: one libuv loop and every subsystem hanging off it.
 *
 * x4_engine_open() does all blocking start-up work (embedded servers, migrations, first
 * database connection, catalog file) and then attaches everything to the loop; after it
 * returns nothing blocks. Shutdown (SIGINT/SIGTERM or x4_engine_stop) stops accepting,
 * aborts in-flight calls (their workflows stay leased and are resumed by this or another
 * process after LEASE_MS), closes every handle and stops the private servers it started.
 *
 * The process identity `owner` ("host:pid:random") fences every write a workflow's driver
 * makes (DESIGN.md "Scale-out"). SIGHUP reloads the Lua policies (exec/policy.h). */
#ifndef X4_CORE_ENGINE_H
#define X4_CORE_ENGINE_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"

struct x4_pg;
struct x4_bus;
struct x4_httpc;
struct x4_http;
struct x4_catalog;
struct x4_embedded;
struct x4_sched;
struct x4_streams;
struct x4_auth;
struct x4_escrow;
struct x4_rpc;
struct x4_lua_rt;

#define X4_EVENTS_CHANNEL "x402r:events"
#define X4_MAX_BODY (1u << 20)

/* One stored event, as delivered to listeners (borrowed for the call). */
typedef struct {
    const char *workflow_id;
    long long seq;
    const char *type;
    const char *envelope;  /* the full JSON envelope, as sent to WebSocket clients */
    size_t envelope_len;
    int remote;            /* 1 if it came from another process over Redis */
} x4_event;

typedef void (*x4_event_listener)(const x4_event *ev, void *ud);

typedef struct {
    uint64_t http_requests, http_5xx, http_4xx;
    uint64_t steps_started, steps_succeeded, steps_failed, step_retries;
    uint64_t events_published, events_remote;
    uint64_t ws_dropped_slow;
} x4_stats;

typedef struct x4_engine {
    uv_loop_t *loop;
    x4_config cfg;
    char owner[128];
    char *db_url;
    char *redis_url;
    struct x4_embedded *embedded;
    struct x4_pg *pg;
    struct x4_bus *bus;
    struct x4_httpc *httpc;
    struct x4_http *http;         /* NULL when not serving (x402r run without --port) */
    struct x4_catalog *catalog;   /* current catalog (swapped on refresh) */
    struct x4_sched *sched;
    struct x4_streams *streams;
    struct x4_auth *auth;
    struct x4_escrow *escrow;     /* the escrow wallet (pay/escrow.h) */
    struct x4_rpc *rpc;           /* Solana JSON-RPC (pay/rpc.h) */
    struct x4_lua_rt *lua;        /* Lua policies and plugins (exec/policy.h) */
    x4_stats stats;
    uv_signal_t sig_int, sig_term;
    uv_signal_t sig_hup;          /* reloads the Lua policies */
    uv_timer_t lease_timer, expiry_timer;
    int stopping;
    int exit_code;
    int claim_others;
    int drive;             /* drives workflows (holds leases) */
    int releasing;         /* shutdown: lease hand-back in flight */
    int interrupt_code;    /* exit status after SIGINT (serve: 0, run: 130) */
    void (*on_stop)(struct x4_engine *e, void *ud); /* called once when shutdown begins */
    void *on_stop_ud;
    struct { x4_event_listener fn; void *ud; } listeners[8];
    int nlisteners;
} x4_engine;

typedef struct {
    int serve_http;        /* listen on cfg.port */
    int drive_workflows;   /* run workflows, renew leases, expire approvals */
    int claim_others;      /* also claim lapsed leases of other processes (serve: yes; run: no) */
} x4_engine_opts;

/* Start-up (blocking). err names what failed. */
int x4_engine_open(x4_engine *e, uv_loop_t *loop, const x4_engine_opts *opts, char *err, size_t errlen);
/* Begins an orderly shutdown; x4_engine_run returns when it is done. */
void x4_engine_stop(x4_engine *e, int exit_code);
/* Runs the loop until stopped, then frees everything. Returns exit_code. */
int x4_engine_run(x4_engine *e);

/* Events: publish the rows (workflow_id, seq, type, data::text, ts) of a mutating query. */
void x4_events_publish_rows(x4_engine *e, void *pgresult);
/* The same for rows first .. first + count - 1 only (one workflow's part of a grouped write). */
void x4_events_publish_range(x4_engine *e, void *pgresult, int first, int count);
void x4_events_listen(x4_engine *e, x4_event_listener fn, void *ud);
/* Appends the JSON envelope of one event (values as PostgreSQL text) to b. */
int x4_events_envelope(void *buf, const char *wf, const char *seq, const char *type, const char *data,
                       const char *ts);
/* Called by the bus for every message on the events channel. */
void x4_events_on_bus(const char *channel, const char *payload, size_t len, void *ud);

/* The SELECT prefix that turns a mutating function's rows into publishable ones. */
#define X4_EV_COLS "e.workflow_id, e.seq, e.type, e.data::text AS data, x4_iso(e.ts) AS ts"

#endif
