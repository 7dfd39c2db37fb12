/* core/main.c — the x402r command line: serve, run, plan, migrate, keys.
 *
 * Configuration comes from the environment (core/config.h); a bad value exits with status 2
 * and a message naming the variable. Every subcommand answers --help. */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/cli.h"
#include "core/config.h"
#include "core/embedded.h"
#include "core/engine.h"
#include "core/log.h"
#include "core/util.h"
#include "http/auth.h"
#include "http/server.h"
#include "lua/lua.h"
#include "pay/solana.h"
#include "plan/catalog.h"
#include "plan/matcher.h"
#include "plan/plan.h"
#include "store/pg.h"

static const char *const USAGE =
    "x402r " X4_VERSION " — plain-language tasks as paid, parallel, recoverable workflows over x402 services\n"
    "\n"
    "Usage: x402r <command> [options]\n"
    "\n"
    "Commands:\n"
    "  serve      run the engine: REST + WebSocket API on PORT, workflow execution\n"
    "  run        plan a task, show its cost, ask, execute it with live progress\n"
    "  plan       print the plan for a task (or a batch of tasks) without running it\n"
    "  migrate    apply the SQL migrations in sql/ and exit\n"
    "  keys       manage API keys (keys create --user NAME [--admin])\n"
    "\n"
    "Options: --help, --version. Each command answers --help.\n"
    "Configuration is read from the environment; see README.md (Configuration). Without DATABASE_URL\n"
    "and REDIS_URL the engine runs private PostgreSQL and Redis servers under X402R_HOME.\n";

static int load_config(x4_config *cfg) {
    char err[512];
    if (x4_config_load(cfg, err, sizeof err) < 0) {
        fprintf(stderr, "x402r: configuration error: %s\n", err);
        return -1;
    }
    return 0;
}

static int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

/* ---- serve ---- */

static int cmd_serve(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        printf("Usage: x402r serve\n\n"
               "Runs the engine: the REST and WebSocket API on PORT (default 5000, 0 = any free port) and\n"
               "the execution of approved workflows. Prints 'listening on ADDRESS:PORT' once ready.\n"
               "Several processes may share one PostgreSQL and Redis (and one port: SO_REUSEPORT).\n"
               "Stops cleanly on SIGINT/SIGTERM.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "x402r serve: unexpected argument '%s' (see --help)\n", argv[1]);
        return 2;
    }
    x4_engine e;
    memset(&e, 0, sizeof e);
    if (load_config(&e.cfg) < 0) return 2;
    uv_loop_t *loop = uv_default_loop();
    char err[1024];
    x4_engine_opts opts = {1, 1, 1};
    if (x4_engine_open(&e, loop, &opts, err, sizeof err) < 0) {
        fprintf(stderr, "x402r serve: %s\n", err);
        x4_engine_stop(&e, 1);
        x4_engine_run(&e);
        return 1;
    }
    printf("listening on %s:%d\n", e.cfg.bind, x4_http_port(e.http));
    fflush(stdout);
    return x4_engine_run(&e);
}

/* ---- migrate ---- */

static int cmd_migrate(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        printf("Usage: x402r migrate\n\n"
               "Applies the numbered SQL files in X402R_SQL_DIR (default: the sql/ folder of the source\n"
               "tree) that DATABASE_URL has not seen yet, each in its own transaction. Safe to run twice\n"
               "and from two processes at once. Without DATABASE_URL it migrates the private server.\n");
        return 0;
    }
    x4_config cfg;
    if (load_config(&cfg) < 0) return 2;
    char err[1024], *url = NULL;
    x4_embedded *emb = NULL;
    int rc = 1;
    if (!cfg.database_url) {
        if (x4_embedded_start(&emb, cfg.home, 1, 0, &url, NULL, err, sizeof err) < 0) {
            fprintf(stderr, "x402r migrate: %s\n", err);
            goto out;
        }
    } else {
        url = strdup(cfg.database_url);
    }
    int n = x4_migrate(url, cfg.sql_dir, err, sizeof err);
    if (n < 0) {
        fprintf(stderr, "x402r migrate: %s\n", err);
        goto out;
    }
    printf("applied %d migration(s)\n", n);
    rc = 0;
out:
    free(url);
    x4_embedded_stop(emb);
    x4_config_free(&cfg);
    return rc;
}

/* ---- keys ---- */

/* Opens the database for a CLI command: DATABASE_URL, or the private server (started and
 * migrated here, stopped by keys_close). */
static int cli_db(x4_config *cfg, char **url, x4_embedded **emb, char *err, size_t errlen) {
    char why[900];
    *url = NULL;
    *emb = NULL;
    if (!cfg->database_url) {
        if (x4_embedded_start(emb, cfg->home, 1, 0, url, NULL, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s", why);
            return -1;
        }
    } else {
        *url = strdup(cfg->database_url);
    }
    if (x4_migrate(*url, cfg->sql_dir, why, sizeof why) < 0) {
        snprintf(err, errlen, "migrations: %s", why);
        return -1;
    }
    return 0;
}

static int cmd_keys(int argc, char **argv) {
    if (argc < 2 || wants_help(argc, argv)) {
        printf("Usage: x402r keys create --user NAME [--admin]\n"
               "       x402r keys list --user NAME\n"
               "       x402r keys revoke KEY_OR_ID\n"
               "       x402r keys escrow-new\n\n"
               "create: creates the user if absent and a new API key for it, printed alone on one line of\n"
               "stdout. Only a BLAKE2b hash of the key is stored: keep the printed key, it cannot be shown\n"
               "again. --admin lets the key read any user's workflows.\n"
               "list: the user's keys (public id, created, active or revoked) — never the keys themselves.\n"
               "revoke: disables a key everywhere within AUTH_CACHE_MS (30 s) (rotation: create a new one, then revoke).\n"
               "escrow-new: prints a new escrow wallet as ESCROW_KEYPAIR=<base64 of the 64-byte secret key> and its\n"
               "base58 Address (the seed's format). Nothing is stored: keep the printed secret safe.\n");
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1], *user = NULL, *target = NULL;
    if (!strcmp(sub, "escrow-new")) {
        if (argc > 2) {
            fprintf(stderr, "x402r keys escrow-new: unexpected argument '%s'\n", argv[2]);
            return 2;
        }
        return x4_solana_cli_escrow_new(stdout) == 0 ? 0 : 1;
    }
    int admin = 0;
    if (strcmp(sub, "create") && strcmp(sub, "list") && strcmp(sub, "revoke")) {
        fprintf(stderr, "x402r keys: unknown subcommand '%s' (see --help)\n", sub);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--user") && i + 1 < argc) user = argv[++i];
        else if (!strncmp(argv[i], "--user=", 7)) user = argv[i] + 7;
        else if (!strcmp(argv[i], "--admin") && !strcmp(sub, "create")) admin = 1;
        else if (!strcmp(sub, "revoke") && !target && argv[i][0] != '-') target = argv[i];
        else {
            fprintf(stderr, "x402r keys %s: unexpected argument '%s' (see --help)\n", sub, argv[i]);
            return 2;
        }
    }
    if (strcmp(sub, "revoke") ? !user : !target) {
        fprintf(stderr, "x402r keys %s: %s is required\n", sub, strcmp(sub, "revoke") ? "--user NAME" : "KEY_OR_ID");
        return 2;
    }
    x4_config cfg;
    if (load_config(&cfg) < 0) return 2;
    char err[1024], key[X4_KEY_MAX + 1], *url = NULL;
    x4_embedded *emb = NULL;
    int rc = 1;
    if (cli_db(&cfg, &url, &emb, err, sizeof err) < 0) goto fail;
    if (!strcmp(sub, "create")) {
        if (x4_auth_create_key(url, user, admin, key, sizeof key, err, sizeof err) < 0) goto fail;
        printf("%s\n", key);
        fflush(stdout);
        sodium_memzero(key, sizeof key);
    } else if (!strcmp(sub, "list")) {
        if (x4_auth_list_keys(url, user, stdout, err, sizeof err) < 0) goto fail;
    } else {
        if (x4_auth_revoke_key(url, target, err, sizeof err) < 0) goto fail;
        printf("revoked\n");
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "x402r keys %s: %s\n", sub, err);
out:
    free(url);
    x4_embedded_stop(emb);
    x4_config_free(&cfg);
    return rc;
}

/* ---- plan ---- */

/* The operator's policies for the planner (policies/matching.lua): POLICY_DIR, default
 * "policies" in the working directory, else the source tree's (PLUGIN_DIR likewise, as the
 * runtime loads both); NULL (built-in rules, said on stderr) when none loads. */
static x4_lua_rt *plan_policies(const x4_config *cfg) {
    struct stat st;
    const char *dir = cfg->policy_dir;
    if (!getenv("POLICY_DIR") && stat(dir, &st) != 0) dir = X4_SOURCE_DIR "/policies";
    const char *lib = getenv("X402R_LUA_DIR");
    if (!lib || !*lib) lib = X4_SOURCE_DIR "/lua";
    const char *plugins = cfg->plugin_dir;
    if (!getenv("PLUGIN_DIR") && stat(plugins, &st) != 0) plugins = X4_SOURCE_DIR "/plugins";
    x4_lua_opts o = {dir, plugins, lib, (size_t)cfg->lua_mem_cap, (uint64_t)cfg->lua_budget};
    char err[512];
    x4_lua_rt *rt = x4_lua_open(&o, err, sizeof err);
    if (!rt) {
        fprintf(stderr, "x402r plan: Lua runtime: %s; planning with the built-in rules\n", err);
        return NULL;
    }
    if (x4_lua_reload(rt, err, sizeof err) < 0) {
        fprintf(stderr, "x402r plan: policies not loaded (%s); planning with the built-in rules\n", err);
        x4_lua_close(rt);
        return NULL;
    }
    return rt;
}

/* draft (batch mode only, may be NULL): the planner's rejected plan when validation fails. */
static int plan_one(const x4_catalog *cat, x4_lua_rt *lua, const char *task, json_t **out, json_t **draft, char *err,
                    size_t errlen) {
    json_t *plan = NULL, *errors = NULL;
    x4_plan *p = NULL;
    if (x4_planner_plan_lua(cat, task, X4_NO_MAX_COST, NULL, lua, &plan, draft, err, errlen) < 0) return -1;
    if (x4_plan_parse(plan, cat, X4_NO_MAX_COST, &p, &errors) < 0) {
        json_t *first = json_array_get(errors, 0);
        snprintf(err, errlen, "invalid plan: %s: %s", json_string_value(json_object_get(first, "field")) ?: "",
                 json_string_value(json_object_get(first, "problem")) ?: "");
        json_decref(plan);
        json_decref(errors);
        return -1;
    }
    *out = x4_plan_to_json(p);
    json_object_set_new(*out, "estimatedCost", json_string(""));
    char est[40], atomic[24];
    x4_money_format(p->estimate, X4_USDC_DECIMALS, est);
    snprintf(atomic, sizeof atomic, "%llu", (unsigned long long)p->estimate);
    json_object_set_new(*out, "estimatedCost", json_pack("{s:s, s:s}", "amount", est, "atomic", atomic));
    x4_plan_free(p);
    json_decref(plan);
    return 0;
}

static int cmd_plan(int argc, char **argv) {
    const char *catalog = NULL, *batch = NULL, *task = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("Usage: x402r plan [--catalog FILE] [--offline] \"task\"\n"
                   "       x402r plan [--catalog FILE] [--offline] --batch IN.jsonl\n\n"
                   "Prints the plan (DESIGN.md format, plus estimatedCost) for a task, planned offline over\n"
                   "the catalog (--catalog, else CATALOG_FILE). With --batch, reads lines {\"id\",\"task\"} and\n"
                   "writes one line {\"id\",\"plan\"} or {\"id\",\"error\",\"draft\"?} per task, loading the catalog once\n"
                   "(a line may carry its own \"catalog\": {\"services\":[...]}).\n"
                   "The planner's weights and rank follow POLICY_DIR/matching.lua (default policies/ here, else\n"
                   "the source tree's; see docs/lua.md).\n");
            return 0;
        }
        if (!strcmp(argv[i], "--catalog") && i + 1 < argc) catalog = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = argv[++i];
        else if (!strcmp(argv[i], "--offline")) continue; /* the only planner so far */
        else if (argv[i][0] == '-') {
            fprintf(stderr, "x402r plan: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        } else if (!task) task = argv[i];
        else {
            fprintf(stderr, "x402r plan: give the task as one quoted argument\n");
            return 2;
        }
    }
    x4_config cfg;
    if (load_config(&cfg) < 0) return 2;
    if (!catalog) catalog = cfg.catalog_file;
    int rc = 1;
    char err[1024];
    x4_lua_rt *lua = NULL;
    x4_catalog *cat = x4_catalog_new();
    if (!catalog) {
        fprintf(stderr, "x402r plan: no catalog: pass --catalog FILE or set CATALOG_FILE\n");
        rc = 2;
        goto out;
    }
    if (!batch && !task) {
        fprintf(stderr, "x402r plan: no task given (see --help)\n");
        rc = 2;
        goto out;
    }
    if (!cat || x4_catalog_load_file(cat, catalog, err, sizeof err) < 0) {
        fprintf(stderr, "x402r plan: %s\n", cat ? err : "out of memory");
        goto out;
    }
    lua = plan_policies(&cfg);
    if (!batch) {
        json_t *plan;
        if (plan_one(cat, lua, task, &plan, NULL, err, sizeof err) < 0) {
            fprintf(stderr, "x402r plan: %s\n", err);
            goto out;
        }
        json_dumpf(plan, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(plan);
        rc = 0;
        goto out;
    }
    FILE *in = strcmp(batch, "-") ? fopen(batch, "r") : stdin;
    if (!in) {
        fprintf(stderr, "x402r plan: cannot open %s\n", batch);
        goto out;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    while ((n = getline(&line, &cap, in)) > 0) {
        lineno++;
        json_error_t jerr;
        json_t *rec = json_loadb(line, (size_t)n, 0, &jerr), *out, *plan = NULL, *draft = NULL;
        const char *id = json_string_value(json_object_get(rec, "id"));
        const char *t = json_string_value(json_object_get(rec, "task"));
        /* an optional per-line catalog: {"services":[...]} or a bare array of records */
        const json_t *lc = json_object_get(rec, "catalog");
        x4_catalog *own = NULL;
        if (lc) {
            const json_t *arr = json_is_array(lc) ? lc : json_object_get(lc, "services");
            size_t k;
            json_t *r;
            own = x4_catalog_new();
            if (own) json_array_foreach(arr, k, r) x4_catalog_add_record(own, r, "batch", err, sizeof err);
        }
        if (!rec || !t || (lc && !own)) {
            char msg[128];
            snprintf(msg, sizeof msg, "line %ld: expected {\"id\", \"task\", \"catalog\"?}", lineno);
            out = json_pack("{s:s?, s:s}", "id", id, "error", msg);
        } else if (plan_one(own ? own : cat, lua, t, &plan, &draft, err, sizeof err) < 0) {
            out = json_pack("{s:s?, s:s, s:o?}", "id", id, "error", err, "draft", draft);
        } else {
            out = json_pack("{s:s?, s:o}", "id", id, "plan", plan);
        }
        json_dumpf(out, stdout, JSON_COMPACT);
        printf("\n");
        json_decref(out);
        json_decref(rec);
        if (own) x4_catalog_unref(own);
    }
    free(line);
    if (in != stdin) fclose(in);
    rc = 0;
out:
    if (lua) x4_lua_close(lua);
    if (cat) x4_catalog_unref(cat);
    x4_config_free(&cfg);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("x402r %s\n", X4_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return x4_cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "plan")) return cmd_plan(argc - 1, argv + 1);
    if (!strcmp(cmd, "migrate")) return cmd_migrate(argc - 1, argv + 1);
    if (!strcmp(cmd, "keys")) return cmd_keys(argc - 1, argv + 1);
    fprintf(stderr, "x402r: unknown command '%s'\n\n%s", cmd, USAGE);
    return 2;
}
