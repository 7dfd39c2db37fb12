#!/usr/bin/env node
// bench/planner/cache.mjs — cached planning latency inside the server (issue 4 item 4: "cached
// planning answers in under 5 ms at p99").
//
//   node bench/planner/cache.mjs                       # 4 users × 250 workflows, NesTools catalog
//   node bench/planner/cache.mjs --users 2 --per-user 50 --concurrency 4 --pg-pool 8 --json
//   node bench/planner/cache.mjs --local off           # every hit from Redis (PLAN_CACHE_LOCAL=off)
//
// Uses $X402R_BIN (else build/x402r). Needs PostgreSQL 15 + redis-server: with X4_TESTENV set it
// uses that scripts/testenv.sh directory, else it brings one up in a temporary directory and
// takes it down at the end. It starts one engine (`x402r serve`) on a fresh database with the
// NesTools catalog (3,034 services), then per user: one workflow to warm the cache (planned by
// the offline planner), then N workflows with the identical task, `--concurrency` at a time. The
// numbers are the server's own, from /metrics — x402r_planning_seconds{source="cache"|"planner"}:
// for a hit (the plan cache is probed at creation) the time from the validated create request
// to the cached plan re-validated against the catalog (the Redis GET and the re-validation: the
// planning answer); for the planner, from the workflow entering planning to its plan validated —
// and apart, x402r_plan_store_seconds: from that valid plan to the workflow committed with it
// (the create's durable commit, which every workflow pays, planned or not). The client only
// drives the load.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const SOURCE_DIR = process.env.X4_SOURCE_DIR || resolve(here, '..', '..');
const DATA_DIR = process.env.X4_BENCH_DATA || resolve(SOURCE_DIR, '..', 'shared', 'bench', 'planner');

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}
const USERS = Number(arg('users', 4));
const PER_USER = Number(arg('per-user', 250));
const CONC = Number(arg('concurrency', 8));
const PG_POOL = Number(arg('pg-pool', 4)); // the engine's PG_POOL (its default is 4)
const JSON_OUT = process.argv.includes('--json');
const LOCAL = arg('local', 'on'); // --local off: PLAN_CACHE_LOCAL=off, every hit a Redis GET
if (LOCAL !== 'on' && LOCAL !== 'off') throw new Error('--local: on or off');
for (const [n, v] of [['users', USERS], ['per-user', PER_USER], ['concurrency', CONC], ['pg-pool', PG_POOL]])
  if (!Number.isInteger(v) || v < 1 || v > 100000) throw new Error(`--${n}: expected a positive integer, got ${v}`);

// One NesTools task per user (a real multi-step task over the pooled catalog); users differ so
// each has its own cache entry (the cache is per user unless PLAN_CACHE_SHARED=1).
const TASKS = readFileSync(join(DATA_DIR, 'nestools', 'dev.jsonl'), 'utf8').split('\n').filter(Boolean)
  .slice(0, USERS).map((l) => JSON.parse(l).task);

let ownEnv = null;
if (!process.env.X4_TESTENV) {
  ownEnv = mkdtempSync(join(tmpdir(), 'x4-cachebench-'));
  execFileSync(join(SOURCE_DIR, 'scripts', 'testenv.sh'), ['up', ownEnv], { stdio: ['ignore', 'ignore', 'inherit'] });
  process.env.X4_TESTENV = ownEnv;
}
// the harness reads X4_TESTENV and X402R_BIN when it is loaded; the engine runs in its own cwd
process.env.X402R_BIN = resolve(process.env.X402R_BIN || join(SOURCE_DIR, 'build', 'x402r'));
const H = await import(join(SOURCE_DIR, 'tests', 'lib', 'harness.mjs'));

function metric(text, source, what) {
  const re = source === 'store'
    ? (what === 'count' ? /^x402r_plan_store_seconds_count (\S+)$/m
      : new RegExp(`^x402r_plan_store_seconds\\{quantile="${what}"\\} (\\S+)$`, 'm'))
    : what === 'count'
      ? new RegExp(`^x402r_planning_seconds_count\\{source="${source}"\\} (\\S+)$`, 'm')
      : new RegExp(`^x402r_planning_seconds\\{source="${source}",quantile="${what}"\\} (\\S+)$`, 'm');
  const m = re.exec(text);
  return m ? Number(m[1]) : NaN;
}

async function metrics(engine) {
  const r = await fetch(`http://127.0.0.1:${engine.port}/metrics`);
  return r.text();
}

async function pool(n, limit, fn) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, n) }, async () => {
    while (next < n) await fn(next++);
  });
  await Promise.all(workers);
}

let db = null, engine = null;
try {
  db = await H.createDb();
  const catalog = JSON.parse(readFileSync(join(DATA_DIR, 'nestools', 'catalog.json'), 'utf8'));
  engine = await H.startEngine({ db, catalog, env: { RATE_LIMIT_PER_MIN: '0', LOG_LEVEL: 'error', PLAN_CACHE_TTL_MS: '600000', PG_POOL: String(PG_POOL), PLAN_CACHE_LOCAL: LOCAL } });
  const dbUrl = H.databaseUrl(db);
  const clients = [];
  for (let u = 0; u < USERS; u++) clients.push(H.api(engine, await H.createKey(dbUrl, `bench${u}`)));

  const create = async (c, task) => {
    const r = await c.post('/workflows/create', { input: task });
    if (r.status !== 201) throw new Error(`create: ${r.status} ${r.text}`);
    return r.json.workflow.id;
  };
  const planned = async (n) => H.waitFor(async () => {
    const t = await metrics(engine);
    return metric(t, 'store', 'count') >= n ? t : null;
  }, { timeout: 120000, interval: 100, message: `${n} plans stored` });

  // warm: one planned workflow per user (a cache miss each)
  for (let u = 0; u < USERS; u++) await create(clients[u], TASKS[u]);
  await planned(USERS);
  // the measured run: identical tasks, answered from the cache
  const t0 = process.hrtime.bigint();
  await pool(USERS * PER_USER, CONC, async (i) => { await create(clients[i % USERS], TASKS[i % USERS]); });
  const text = await planned(USERS + USERS * PER_USER);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;

  const row = (source) => ({
    source,
    count: metric(text, source, 'count'),
    p50_ms: metric(text, source, '0.5') * 1e3,
    p99_ms: metric(text, source, '0.99') * 1e3,
    max_ms: metric(text, source, '1') * 1e3,
  });
  const out = { users: USERS, perUser: PER_USER, concurrency: CONC, pgPool: PG_POOL, local: LOCAL, seconds: secs,
                workflowsPerSecond: (USERS * PER_USER) / secs, rows: [row('cache'), row('planner'), row('store')] };
  if (JSON_OUT) {
    console.log(JSON.stringify(out, null, 2));
  } else {
    console.log(`${USERS} users × ${PER_USER} workflows with identical tasks, ${CONC} concurrent requests, ` +
                `PG_POOL ${PG_POOL}, in-process copy ${LOCAL}; ` +
                `${out.workflowsPerSecond.toFixed(0)} workflows/s created and planned\n`);
    console.log('| source (store: the valid plan → the workflow committed) | plans | p50 ms | p99 ms | max ms |');
    console.log('|---|---|---|---|---|');
    for (const r of out.rows)
      console.log(`| ${r.source} | ${r.count} | ${r.p50_ms.toFixed(2)} | ${r.p99_ms.toFixed(2)} | ${r.max_ms.toFixed(2)} |`);
    const hit = out.rows[0];
    console.log(`\ncached planning p99 ${hit.p99_ms.toFixed(2)} ms: ${hit.p99_ms < 5 ? 'under' : 'OVER'} the 5 ms target`);
  }
} finally {
  if (engine) await engine.stop({ expectCode: null }).catch(() => {});
  if (db) await H.dropDb(db).catch(() => {});
  if (ownEnv) {
    try { execFileSync(join(SOURCE_DIR, 'scripts', 'testenv.sh'), ['down', ownEnv], { stdio: 'ignore' }); } catch { /* best effort */ }
    if (existsSync(ownEnv)) rmSync(ownEnv, { recursive: true, force: true });
  }
}
