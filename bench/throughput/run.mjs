#!/usr/bin/env node
// bench/throughput/run.mjs — workflow throughput of x402r against BullMQ (issue 6, items 1 and 6).
//
//   node bench/throughput/run.mjs [--seconds 60] [--concurrency 64] [--runs 3] [--smoke]
//        [--wait mux|ws|poll|all] [--poll-ms 5] [--warmup S] [--no-peer] [--write] [--no-write]
//
// Needs `npm ci` in bench/throughput (bullmq, ws) and the engine binary ($X402R_BIN, else
// build/x402r; $X402R_SQL_DIR selects its migrations, for A/B runs of two builds). --no-peer
// skips BullMQ (A/B runs of the engine alone). Uses the PostgreSQL + Redis of $X4_TESTENV if set, else starts its own with
// scripts/testenv.sh under a temporary directory (and stops them at the end).
//
// Per run, one after the other on the same PostgreSQL/Redis and the same local service:
//   x402r (ws)   C loops; each: POST /workflows/create with the diamond plan a → b, c → d
//                ($ref wiring) → open /workflows/:id/stream?since=0 and POST approve together →
//                wait for workflow.completed (its output is checked: d.sum = 116).
//   x402r (poll) the same, but after approve it polls GET /workflows/:id every --poll-ms.
//   x402r (mux)  C loops; each: POST /workflows/create {plan, approve: true} (one transaction:
//                stored, held, started) → {"subscribe": id} on one GET /stream socket shared by
//                all loops (as BullMQ's QueueEvents is) → wait for workflow.completed (checked).
//   BullMQ       C loops; each: Queue.add(a) → job a calls the service, then adds the flow
//                d ← {b, c} (FlowProducer); d reads b's and c's outputs (getChildrenValues);
//                the loop waits for d's `completed` on a shared QueueEvents (checks 116).
// Latency = create call issued → completion seen by the client. Only workflows that complete
// inside the measured window (after --warmup) count. CPU per workflow = utime+stime
// (/proc/PID/stat, children included) over the window / workflows completed in it; PostgreSQL
// commits per workflow = Δ pg_stat_database.xact_commit of the benchmark database / workflows.
// The full mode writes its section of bench/RESULTS.md with the median over --runs (3) of
// every figure (bench/lib/common.mjs writeSection).
// --smoke: 3 s per side, concurrency 4, 1 run, no warm-up, no RESULTS.md (unless --write);
// exits 0 only if every side completed at least one workflow.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import {
  argsOf, benchRequire, f1, f2, log, machineLine, makeClient, measureLoop, median, pgCommits, setupEnv,
  spawnReady, startEngine, stopEngine, stopProc, writeSection,
} from '../lib/common.mjs';
import { ADD_SERVICE, diamondWorkflow } from '../lib/diamond.mjs';

const { Queue, QueueEvents } = benchRequire('bullmq');
const HERE = dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------
// options
const { argv, flag, opt } = argsOf();
const SMOKE = flag('--smoke');
const SECONDS = Number(opt('--seconds', SMOKE ? 3 : 60));
const CONC = Number(opt('--concurrency', SMOKE ? 4 : 64));
const RUNS = Number(opt('--runs', SMOKE ? 1 : 3));
const WARMUP = Number(opt('--warmup', SMOKE ? 0 : 3));
const POLL_MS = Number(opt('--poll-ms', 5));
const WAIT = opt('--wait', 'all');
const PEER = !flag('--no-peer');
const WRITE = flag('--write') || (!SMOKE && !flag('--no-write'));
if (!(SECONDS > 0 && CONC > 0 && RUNS > 0 && WARMUP >= 0 && POLL_MS >= 0) || !['mux', 'ws', 'poll', 'all'].includes(WAIT)) {
  console.error('usage: node bench/throughput/run.mjs [--seconds N] [--concurrency C] [--runs R] [--smoke] ' +
                '[--wait mux|ws|poll|all] [--poll-ms MS] [--warmup S] [--no-peer] [--write|--no-write]');
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// the load loop shared by both sides

const measure = (name, wait, one, cpuPids, counters = {}) =>
  measureLoop({ name, wait, one, cpuPids, counters, seconds: SECONDS, warmup: WARMUP, conc: CONC });

// ---------------------------------------------------------------------------------------------
// x402r side

// ---------------------------------------------------------------------------------------------
// BullMQ side

async function bullmqRun(env, svcUrl, pids) {
  const queueName = `x4bench_${randomBytes(4).toString('hex')}`;
  const connection = { path: env.redisSock, maxRetriesPerRequest: null };
  const w = await spawnReady(process.execPath, [join(HERE, 'bullmq_worker.mjs')], {
    cwd: HERE,
    env: { ...process.env, REDIS_PATH: env.redisSock, QUEUE: queueName, SERVICE_URL: `${svcUrl}/add`, CONCURRENCY: String(2 * CONC) },
  }, /ready/, 'BullMQ worker');
  const queue = new Queue(queueName, { connection });
  const events = new QueueEvents(queueName, { connection });
  await events.waitUntilReady();
  const waiters = new Map();
  events.on('completed', ({ jobId, returnvalue }) => {
    const w8 = waiters.get(jobId);
    if (!w8) return;
    waiters.delete(jobId);
    let v = returnvalue;
    if (typeof v === 'string') { try { v = JSON.parse(v); } catch { /* as is */ } }
    if (v?.sum !== 116) w8.rej(new Error(`wrong output ${JSON.stringify(returnvalue)}`)); else w8.res();
  });
  events.on('failed', ({ jobId, failedReason }) => {
    const wf = jobId.replace(/-[abcd]$/, '');
    const w8 = waiters.get(`${wf}-d`);
    if (w8) { waiters.delete(`${wf}-d`); w8.rej(new Error(`${jobId} failed: ${failedReason}`)); }
  });
  const run = randomBytes(3).toString('hex');
  try {
    return await measure('BullMQ', 'QueueEvents', async (n) => {
      const wf = `w${run}${n}`;
      const done = new Promise((res, rej) => waiters.set(`${wf}-d`, { res, rej }));
      done.catch(() => {});
      await queue.add('a', { wf }, { jobId: `${wf}-a` });
      await done;
    }, { workers: w.proc.pid, ...pids });
  } finally {
    await stopProc(w.proc);
    await events.close();
    await queue.obliterate({ force: true }).catch((e) => log(`obliterate: ${e.message}`));
    await queue.close();
  }
}

// ---------------------------------------------------------------------------------------------
// output

function table(rows, ratios) {
  const out = [];
  out.push('| system | completion seen via | workflows/s | p50 ms | p99 ms | completed | errors | engine/workers CPU ms/wf | PostgreSQL CPU ms/wf | PostgreSQL commits/wf | Redis CPU ms/wf | client CPU ms/wf |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    out.push(`| ${r.name} | ${r.wait} | ${f1(r.wps)} | ${f1(r.p50)} | ${f1(r.p99)} | ${r.completed} | ${r.errors} | ` +
      `${f2(r.cpu.engine ?? r.cpu.workers)} | ${r.name === 'BullMQ' ? 'n/a' : f2(r.cpu.pg)} | ${r.name === 'BullMQ' ? 'n/a' : f1(r.cpu.commits)} | ${f2(r.cpu.redis)} | ${f2(r.cpu.client)} |`);
  }
  out.push('');
  for (const [k, v] of Object.entries(ratios)) out.push(`Ratio x402r (${k}) / BullMQ workflows/s: **${f2(v)}**`);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// main

async function main() {
  const env = await setupEnv();
  let svc = null;
  let engine = null;
  try {
    svc = await spawnReady(process.execPath, [join(HERE, 'service.mjs')], {}, /listening on (\d+)/, 'local service');
    const svcUrl = `http://127.0.0.1:${svc.match[1]}`;
    engine = await startEngine(env, { catalog: { services: [ADD_SERVICE(svcUrl)] } });
    log(`engine pid ${engine.proc.pid} on :${engine.port}; ${machineLine(env)}`);
    const req = makeClient(engine.port, engine.key, CONC * 2);
    const waits = WAIT === 'all' ? ['mux', 'ws', 'poll'] : [WAIT];
    const via = { mux: 'one /stream, approve at create', ws: 'WebSocket per workflow', poll: `poll ${POLL_MS} ms` };
    const basePids = { pg: env.pgPid, redis: env.redisPid };
    const perRun = [];
    for (let run = 1; run <= RUNS; run++) {
      const rows = [];
      for (const wait of waits) {
        log(`run ${run}/${RUNS}: x402r (${wait}) ${SECONDS}s × ${CONC} in flight`);
        const one = diamondWorkflow(engine, req, wait, POLL_MS);
        try {
          rows.push(await measure('x402r', via[wait], one, { engine: engine.proc.pid, ...basePids }, { commits: pgCommits(env) }));
        } finally { one.close?.(); }
      }
      if (PEER) {
        log(`run ${run}/${RUNS}: BullMQ ${SECONDS}s × ${CONC} in flight`);
        rows.push(await bullmqRun(env, svcUrl, basePids));
      }
      perRun.push(rows);
      if (RUNS > 1) console.error(table(rows, ratiosOf(rows)));
    }
    // medians per row and per figure over the runs
    const rows = perRun[0].map((r, i) => {
      const col = (fn) => median(perRun.map((rs) => fn(rs[i])));
      const cpu = {};
      for (const k of Object.keys(r.cpu)) cpu[k] = col((x) => x.cpu[k]);
      return { name: r.name, wait: r.wait, wps: col((x) => x.wps), p50: col((x) => x.p50), p99: col((x) => x.p99),
        completed: Math.round(col((x) => x.completed)), errors: Math.round(col((x) => x.errors)), cpu };
    });
    const ratios = {};
    for (const k of Object.keys(ratiosOf(perRun[0]))) ratios[k] = median(perRun.map((rs) => ratiosOf(rs)[k]));
    const head = `${SMOKE ? 'Smoke run' : `Median of ${RUNS} run(s)`}: ${SECONDS} s measured (after ${WARMUP} s warm-up) per side, ` +
      `${CONC} workflows in flight, 4-step diamond a → b, c → d.`;
    const machine = machineLine(env);
    const tbl = table(rows, ratios);
    console.log(`${head}\n${machine}\n\n${tbl}`);
    if (WRITE) {
      const cmd = `node bench/throughput/run.mjs ${argv.filter((a) => a !== '--write').join(' ')}`.trim();
      writeSection('throughput', `## Workflow throughput (issue 6, items 1 and 6)\n\n` +
        `Generated by \`${cmd}\`.\n\n${head}\n\n${machine}\n\n${tbl}\n`);
    }
    const ok = rows.every((r) => r.completed > 0);
    if (!ok) log('a side completed no workflow in the window');
    return ok ? 0 : 1;
  } finally {
    await stopEngine(engine);
    if (svc) await stopProc(svc.proc);
    await env.teardown();
  }
}

function ratiosOf(rows) {
  const b = rows.find((r) => r.name === 'BullMQ');
  const out = {};
  for (const r of rows) if (r.name === 'x402r') out[r.wait] = b && b.wps > 0 ? r.wps / b.wps : NaN;
  return out;
}

main().then((code) => process.exit(code), (e) => { console.error(e.stack || e.message); process.exit(1); });
