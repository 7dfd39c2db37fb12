/* core/cli_run.c — `x402r run "task"`: the whole product in one terminal command.
 *
 * Starts the engine in-process (embedded servers by default, no HTTP listener, claiming no
 * other process's work), creates the workflow for the user --user (default "local", created if
 * absent), plans it, prints the plan and its cost, asks for confirmation (--yes skips), approves
 * and runs it, and shows live progress from the engine's own event stream: on a TTY a redrawn
 * step list with a progress bar, otherwise one plain line per event. Each x402 payment shows as
 * it settles (its transaction id) or is refused. Prints the sink outputs and the total cost at
 * the end. When the user has an escrow account (in ESCROW_ASSET), its balance is shown before
 * the approval (read with a blocking query at start-up, before the loop runs) and after the end
 * (read through the pool). An approval refused for money (402 "Insufficient escrow balance…")
 * is printed and exits 1. Exit status 0 only when the workflow completed. Ctrl-C stops the
 * process; an approved workflow stays executing and `x402r serve` on the same database resumes
 * it. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/engine.h"
#include "core/log.h"
#include "core/util.h"
#include "exec/approval.h"
#include "exec/sched.h"
#include "exec/workflow.h"
#include "plan/catalog.h"
#include "store/pg.h"

#define DEFAULT_USER "local"
#define MAX_STEPS 256

typedef struct {
    char id[72];
    char service[96];
    char status[16];
    int attempts;
} row;

typedef struct {
    x4_engine e;
    char wf[96];
    int yes;
    int tty;
    row rows[MAX_STEPS];
    int nrows;
    int drawn;            /* lines of the last redraw */
    uv_tty_t tin;
    uv_pipe_t pin;
    uv_stream_t *in;
    char answer[64];
    size_t alen;
    char est[40];
    const char *user;
    int has_escrow;       /* the user has an escrow account in cfg.escrow_asset */
    char bal_before[160];
    int result;           /* exit code once the workflow ended (the balance is read first) */
    char end_line[600];   /* "completed" / "failed: why", printed once the payments are resolved */
    int settled_seen;     /* payment.settled events shown */
    uv_timer_t settle_timer;
    int timer_on;
    uint64_t settle_deadline;
} run_ui;

static run_ui g_ui;

static void redraw(run_ui *u) {
    if (!u->tty || u->nrows == 0) return;
    if (u->drawn) printf("\033[%dA", u->drawn);
    int done = 0;
    for (int i = 0; i < u->nrows; i++) {
        const char *st = u->rows[i].status;
        if (!strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "skipped")) done++;
        const char *mark = !strcmp(st, "succeeded") ? "\033[32m✔\033[0m"
                         : !strcmp(st, "failed")    ? "\033[31m✘\033[0m"
                         : !strcmp(st, "skipped")   ? "\033[90m-\033[0m"
                         : !strcmp(st, "running")   ? "\033[33m▶\033[0m"
                         : !strcmp(st, "retrying")  ? "\033[35m↻\033[0m"
                                                    : " ";
        printf("\033[K  %s %-12s %-28s %-10s", mark, u->rows[i].id, u->rows[i].service, st);
        if (u->rows[i].attempts > 1) printf(" (attempt %d)", u->rows[i].attempts);
        printf("\n");
    }
    int width = 30, fill = u->nrows ? done * width / u->nrows : 0;
    printf("\033[K  [");
    for (int i = 0; i < width; i++) putchar(i < fill ? '#' : '.');
    printf("] %d/%d steps\n", done, u->nrows);
    u->drawn = u->nrows + 1;
    fflush(stdout);
}

static row *find_row(run_ui *u, const char *id) {
    for (int i = 0; i < u->nrows; i++)
        if (!strcmp(u->rows[i].id, id)) return &u->rows[i];
    return NULL;
}

/* A line printed while the run shows progress: on a TTY above the redrawn step list. */
static void note(run_ui *u, const char *line) {
    if (u->tty && u->drawn) {
        printf("\033[%dA\033[J", u->drawn);
        u->drawn = 0;
        printf("%s\n", line);
        redraw(u);
    } else {
        printf("%s\n", line);
    }
    fflush(stdout);
}

static void print_outputs(json_t *output) {
    const char *k;
    json_t *v;
    printf("\nOutputs:\n");
    json_object_foreach(output, k, v) {
        printf("── %s ──\n", k);
        /* A report prints as text (it carries its own title). */
        json_t *rep = json_object_get(v, "report");
        if (json_is_object(v) && json_is_string(rep)) {
            printf("%s\n", json_string_value(rep));
            continue;
        }
        /* An object with one string field (a summary) prints as text. */
        if (json_is_object(v) && json_object_size(v) == 1) {
            const char *only = NULL;
            json_t *ov;
            json_object_foreach(v, only, ov) {}
            ov = json_object_get(v, only);
            if (json_is_string(ov)) {
                printf("%s\n", json_string_value(ov));
                continue;
            }
        }
        char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
        printf("%s\n", s ? s : "null");
        free(s);
    }
}

static void close_input(x4_engine *e, void *ud) {
    run_ui *u = ud;
    (void)e;
    if (u->timer_on && !uv_is_closing((uv_handle_t *)&u->settle_timer)) uv_close((uv_handle_t *)&u->settle_timer, NULL);
    if (u->in && !uv_is_closing((uv_handle_t *)u->in)) uv_close((uv_handle_t *)u->in, NULL);
}

static void finish(run_ui *u, int code) { x4_engine_stop(&u->e, code); }

/* "X USDC available, Y held" from a row (available, held) of atomic amounts. */
static void format_balance(const char *avail, const char *held, char *out, size_t outlen) {
    char a[40], h[40];
    x4_money_format(strtoull(avail, NULL, 10), X4_USDC_DECIMALS, a);
    x4_money_format(strtoull(held, NULL, 10), X4_USDC_DECIMALS, h);
    snprintf(out, outlen, "%s USDC available, %s held", a, h);
}

#define BALANCE_SQL "SELECT available::text, held::text FROM escrow_accounts WHERE user_id = $1 AND asset = $2"

static void on_balance_after(PGresult *res, const char *err, void *ud) {
    run_ui *u = ud;
    if (err) fprintf(stderr, "x402r run: cannot read the balance: %s\n", err);
    else if (PQntuples(res) > 0) {
        char b[160];
        format_balance(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), b, sizeof b);
        printf("Balance after:  %s\n", b);
        fflush(stdout);
    }
    finish(u, u->result);
}

static void settle_check(run_ui *u);

static void on_settle_timer(uv_timer_t *t) { settle_check(t->data); }

/* Payments of the workflow that are resolved; the last settlement can commit after the
 * workflow's end (another pool connection), so the total and the balance are read once none is
 * unresolved and every landed one has been shown (or after 10 s). */
static void on_settle_state(PGresult *res, const char *err, void *ud) {
    run_ui *u = ud;
    if (u->e.stopping) return;
    if (err || PQntuples(res) == 0) {
        fprintf(stderr, "x402r run: cannot read the workflow's payments: %s\n", err ? err : "workflow not found");
        finish(u, u->result ? u->result : 1);
        return;
    }
    long unresolved = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    long charged = strtol(PQgetvalue(res, 0, 1), NULL, 10);
    if ((unresolved > 0 || charged > u->settled_seen) && uv_now(u->e.loop) < u->settle_deadline) {
        if (!u->timer_on) {
            uv_timer_init(u->e.loop, &u->settle_timer);
            u->settle_timer.data = u;
            u->timer_on = 1;
        }
        uv_timer_start(&u->settle_timer, on_settle_timer, 100, 0);
        return;
    }
    printf("\nWorkflow %s %s. Total cost: %s USDC\n", u->wf, u->end_line, PQgetvalue(res, 0, 2));
    if (unresolved > 0)
        printf("%ld payment(s) not resolved yet: their share stays held until the engine reconciles them on chain.\n",
               unresolved);
    fflush(stdout);
    if (!u->has_escrow) {
        finish(u, u->result);
        return;
    }
    const char *params[] = {u->user, u->e.cfg.escrow_asset};
    x4_pg_query(u->e.pg, BALANCE_SQL, 2, params, on_balance_after, u);
}

static void settle_check(run_ui *u) {
    const char *params[] = {u->wf};
    x4_pg_query(u->e.pg,
                "SELECT (SELECT count(*) FROM payments p WHERE p.workflow_id = $1 AND p.status = 'signed'), "
                "(SELECT count(*) FROM payments p WHERE p.workflow_id = $1 AND p.charged), x4_amount(w.total_cost) "
                "FROM workflows w WHERE w.id = $1",
                1, params, on_settle_state, u);
}

/* The workflow ended: once its payments are resolved, the total cost and the balance after
 * (when there is an escrow account), then stop. */
static void end_run(run_ui *u, int code) {
    u->result = code;
    if (u->e.stopping) return;
    u->settle_deadline = uv_now(u->e.loop) + 10000;
    settle_check(u);
}

static void on_approved(PGresult *res, const char *err, void *ud) {
    run_ui *u = ud;
    if (err || PQntuples(res) == 0) {
        const char *why = err ? (strncmp(err, "X400", 4) == 0 ? err + 7 : err) : "the workflow is no longer awaiting approval";
        /* a refusal for money (402: balance, daily cap) is part of the story; anything else an error */
        if (err && !strncmp(err, "X400", 4)) printf("Approval refused: %s\n", why);
        else fprintf(stderr, "x402r run: approval failed: %s\n", why);
        finish(u, 1);
        return;
    }
    x4_events_publish_rows(&u->e, res);
    x4_sched_resume(&u->e, u->wf);
}

static void approve(run_ui *u) { x4_approval_approve(&u->e, u->wf, u->user, on_approved, u); }

static void on_cancelled(PGresult *res, const char *err, void *ud) {
    run_ui *u = ud;
    if (!err) x4_events_publish_rows(&u->e, res);
    else finish(u, 1);
}

static void decide(run_ui *u, const char *answer) {
    if (answer[0] == 'y' || answer[0] == 'Y') {
        approve(u);
        return;
    }
    printf("Not approved; cancelling.\n");
    char lease[24];
    snprintf(lease, sizeof lease, "%lld", (long long)u->e.cfg.lease_ms);
    const char *params[] = {u->wf, u->user, u->e.owner, lease};
    x4_pg_query(u->e.pg, "SELECT " X4_EV_COLS " FROM x4_wf_cancel($1, $2, $3, $4::bigint) e", 4, params, on_cancelled,
                u);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char mem[256];
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(mem, sizeof mem);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    run_ui *u = &g_ui;
    if (n < 0) { /* EOF: no answer is a no */
        uv_read_stop(s);
        decide(u, "n");
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf->base[i] == '\n') {
            u->answer[u->alen] = 0;
            uv_read_stop(s);
            decide(u, u->answer);
            return;
        }
        if (u->alen + 1 < sizeof u->answer) u->answer[u->alen++] = buf->base[i];
    }
}

static void ask(run_ui *u) {
    printf("Approve and run it for %s USDC? [y/N] ", u->est);
    fflush(stdout);
    uv_handle_type t = uv_guess_handle(0);
    if (t == UV_TTY && uv_tty_init(u->e.loop, &u->tin, 0, 1) == 0) u->in = (uv_stream_t *)&u->tin;
    else if (t == UV_NAMED_PIPE && uv_pipe_init(u->e.loop, &u->pin, 0) == 0 && uv_pipe_open(&u->pin, 0) == 0)
        u->in = (uv_stream_t *)&u->pin;
    if (u->in) {
        uv_read_start(u->in, on_alloc, on_read);
        return;
    }
    /* A regular file (or nothing): reading it cannot stall. */
    char line[64] = "";
    if (!fgets(line, sizeof line, stdin)) line[0] = 0;
    decide(u, line);
}

static void on_event(const x4_event *ev, void *ud) {
    run_ui *u = ud;
    if (strcmp(ev->workflow_id, u->wf) != 0) return;
    json_error_t jerr;
    json_t *env = json_loadb(ev->envelope, ev->envelope_len, 0, &jerr);
    json_t *d = json_object_get(env, "data");
    const char *step = json_string_value(json_object_get(d, "stepId"));
    const char *t = ev->type;
    if (!strcmp(t, "workflow.plan_ready")) {
        json_t *steps = json_object_get(json_object_get(d, "plan"), "steps");
        const char *amount = json_string_value(json_object_get(json_object_get(d, "estimatedCost"), "amount"));
        snprintf(u->est, sizeof u->est, "%s", amount ? amount : "?");
        printf("Plan (%zu steps, estimated cost %s USDC):\n", json_array_size(steps), u->est);
        size_t i;
        json_t *s;
        json_array_foreach(steps, i, s) {
            if (u->nrows >= MAX_STEPS) break;
            row *r = &u->rows[u->nrows++];
            snprintf(r->id, sizeof r->id, "%s", json_string_value(json_object_get(s, "id")) ?: "?");
            snprintf(r->service, sizeof r->service, "%s", json_string_value(json_object_get(s, "service")) ?: "?");
            snprintf(r->status, sizeof r->status, "pending");
            char *inputs = json_dumps(json_object_get(s, "inputs"), JSON_COMPACT);
            json_t *deps = json_object_get(s, "dependsOn");
            char *dj = json_dumps(deps, JSON_COMPACT);
            printf("  %-12s %-28s inputs %s%s%s\n", r->id, r->service, inputs ? inputs : "{}",
                   json_array_size(deps) ? "  after " : "", json_array_size(deps) ? dj : "");
            free(inputs);
            free(dj);
        }
    } else if (!strcmp(t, "workflow.awaiting_approval")) {
        if (u->has_escrow) printf("Balance before: %s\n", u->bal_before);
        if (u->yes) {
            printf("Approved (--yes).\n");
            approve(u);
        } else {
            ask(u);
        }
    } else if (!strcmp(t, "workflow.executing")) {
        printf("Executing:\n");
        redraw(u);
    } else if (step && !strcmp(t, "payment.settled")) {
        row *r = find_row(u, step);
        const char *amount = json_string_value(json_object_get(json_object_get(d, "amount"), "amount"));
        const char *tx = json_string_value(json_object_get(d, "transaction"));
        char line[512];
        snprintf(line, sizeof line, "paid %s USDC for %s (%s): tx %s", amount ? amount : "?", step,
                 r ? r->service : "?", tx && *tx ? tx : "?");
        u->settled_seen++;
        note(u, line);
    } else if (step && !strcmp(t, "payment.failed")) {
        const char *why = json_string_value(json_object_get(d, "reason"));
        char line[640];
        snprintf(line, sizeof line, "payment for %s refused: %s", step, why ? why : "no reason given");
        note(u, line);
    } else if (step && !strncmp(t, "step.", 5)) {
        row *r = find_row(u, step);
        const char *st = !strcmp(t, "step.started")     ? "running"
                       : !strcmp(t, "step.completed")   ? "succeeded"
                       : !strcmp(t, "step.retrying")    ? "retrying"
                       : !strcmp(t, "step.failed")      ? "failed"
                       : !strcmp(t, "step.skipped")     ? "skipped"
                       : !strcmp(t, "step.compensated") ? "compensated"
                       : !strcmp(t, "step.compensation_failed") ? "undo failed"
                       : !strcmp(t, "step.failover")    ? "failing over"
                                                        : NULL;
        const char *to = json_string_value(json_object_get(d, "to"));
        if (r && to && !strcmp(t, "step.failover")) snprintf(r->service, sizeof r->service, "%s", to);
        json_t *att = json_object_get(d, "attempt");
        if (r && st) {
            snprintf(r->status, sizeof r->status, "%s", st);
            if (json_is_integer(att)) r->attempts = (int)json_integer_value(att);
        }
        if (u->tty) redraw(u);
        else {
            const char *er = json_string_value(json_object_get(d, "error"));
            printf("step %s %s%s%s\n", step, st ? st : t + 5, er ? ": " : "", er ? er : "");
            fflush(stdout);
        }
    } else if (!strcmp(t, "workflow.compensating")) {
        json_t *steps = json_object_get(d, "steps");
        char line[160];
        snprintf(line, sizeof line, "undoing %zu succeeded step(s) before the workflow ends", json_array_size(steps));
        note(u, line);
    } else if (!strcmp(t, "workflow.completed")) {
        print_outputs(json_object_get(d, "output"));
        snprintf(u->end_line, sizeof u->end_line, "completed");
        end_run(u, 0);
    } else if (!strcmp(t, "workflow.failed") || !strcmp(t, "workflow.cancelled") || !strcmp(t, "workflow.expired")) {
        const char *er = json_string_value(json_object_get(d, "error"));
        snprintf(u->end_line, sizeof u->end_line, "%s%s%s", t + 9, er ? ": " : "", er ? er : "");
        end_run(u, 1);
    }
    json_decref(env);
}

static void on_created(PGresult *res, const char *err, void *ud) {
    run_ui *u = ud;
    if (err) {
        fprintf(stderr, "x402r run: cannot create the workflow: %s\n", err);
        finish(u, 1);
        return;
    }
    x4_events_publish_rows(&u->e, res);
    printf("Workflow %s: planning…\n", u->wf);
    x4_wf_plan(&u->e, u->wf);
}

/* Blocking, before the loop runs: creates the user if absent and reads its escrow balance. */
static int ensure_user(run_ui *u, char *err, size_t errlen) {
    PGconn *c = PQconnectdb(u->e.db_url);
    int rc = -1;
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(c));
        goto out;
    }
    const char *uparams[] = {u->user};
    PGresult *r = PQexecParams(c, "INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", 1, NULL, uparams,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        PQclear(r);
        goto out;
    }
    PQclear(r);
    const char *bparams[] = {u->user, u->e.cfg.escrow_asset};
    r = PQexecParams(c, BALANCE_SQL, 2, NULL, bparams, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) snprintf(err, errlen, "%s", PQresultErrorMessage(r));
    else {
        rc = 0;
        if (PQntuples(r) > 0) {
            u->has_escrow = 1;
            format_balance(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), u->bal_before, sizeof u->bal_before);
        }
    }
    PQclear(r);
out:
    PQfinish(c);
    return rc;
}

int x4_cli_run(int argc, char **argv) {
    run_ui *u = &g_ui;
    const char *task = NULL, *catalog = NULL, *max_cost = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("Usage: x402r run [--yes] [--user NAME] [--catalog FILE] [--max-cost AMOUNT] \"task\"\n\n"
                   "Plans the task over the catalog (--catalog, else CATALOG_FILE / REGISTRY_URL), prints the\n"
                   "plan and its estimated cost, asks for approval (--yes approves), runs it with live\n"
                   "progress and each x402 payment's transaction id, and prints the outputs and the total\n"
                   "cost. --user NAME (default \"local\", created if absent) pays from NAME's escrow balance,\n"
                   "shown before and after when NAME has an escrow account. Exit status 0 only when the\n"
                   "workflow completed. Uses DATABASE_URL/REDIS_URL, or private servers under X402R_HOME.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--yes") || !strcmp(argv[i], "-y")) u->yes = 1;
        else if (!strcmp(argv[i], "--catalog") && i + 1 < argc) catalog = argv[++i];
        else if (!strcmp(argv[i], "--user") && i + 1 < argc) u->user = argv[++i];
        else if (!strncmp(argv[i], "--user=", 7)) u->user = argv[i] + 7;
        else if (!strcmp(argv[i], "--max-cost") && i + 1 < argc) max_cost = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "x402r run: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        } else if (!task) task = argv[i];
        else {
            fprintf(stderr, "x402r run: give the task as one quoted argument\n");
            return 2;
        }
    }
    if (!u->user) u->user = DEFAULT_USER;
    if (!*u->user || strlen(u->user) > 64) {
        fprintf(stderr, "x402r run: --user: give a name of 1 to 64 characters\n");
        return 2;
    }
    if (!task || !*task) {
        fprintf(stderr, "x402r run: no task given (see --help)\n");
        return 2;
    }
    char err[1024];
    if (x4_config_load(&u->e.cfg, err, sizeof err) < 0) {
        fprintf(stderr, "x402r: configuration error: %s\n", err);
        return 2;
    }
    char mc[24] = "";
    if (max_cost) {
        uint64_t v;
        const char *why = NULL;
        if (x4_money_parse(max_cost, X4_USDC_DECIMALS, &v, &why) < 0) {
            fprintf(stderr, "x402r run: --max-cost: %s\n", why);
            return 2;
        }
        snprintf(mc, sizeof mc, "%llu", (unsigned long long)v);
    }
    if (catalog) {
        free(u->e.cfg.catalog_file);
        u->e.cfg.catalog_file = strdup(catalog);
    }
    if (!getenv("LOG_LEVEL")) x4_log_set_level("warn");
    u->tty = isatty(1);
    uv_loop_t *loop = uv_default_loop();
    x4_engine_opts opts = {0, 1, 0};
    if (x4_engine_open(&u->e, loop, &opts, err, sizeof err) < 0 || ensure_user(u, err, sizeof err) < 0) {
        fprintf(stderr, "x402r run: %s\n", err);
        x4_engine_stop(&u->e, 1);
        x4_engine_run(&u->e);
        return 1;
    }
    x4_events_listen(&u->e, on_event, u);
    u->e.interrupt_code = 130;
    u->e.on_stop = close_input;
    u->e.on_stop_ud = u;
    x4_make_id("wf", u->wf, sizeof u->wf);
    char lease[24], ttl[24];
    snprintf(lease, sizeof lease, "%lld", (long long)u->e.cfg.lease_ms);
    snprintf(ttl, sizeof ttl, "%lld", (long long)u->e.cfg.approval_ttl_ms);
    const char *params[] = {u->wf, u->user, task, mc[0] ? mc : NULL, NULL, u->e.owner, lease, NULL, NULL, ttl};
    x4_pg_query(u->e.pg,
                "SELECT " X4_EV_COLS " FROM x4_wf_create($1, $2, $3, $4::bigint, $5::bigint, $6, $7::bigint, "
                "$8::jsonb, $9::bigint, $10::bigint) e",
                10, params, on_created, u);
    return x4_engine_run(&u->e);
}
