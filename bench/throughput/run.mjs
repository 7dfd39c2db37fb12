#!/usr/bin/env node
// bench/throughput/run.mjs — workflow throughput of x402r against BullMQ (issue 6, items 1 and 6).
//
//   node bench/throughput/run.mjs [--seconds 60] [--concurrency 64] [--runs 3] [--smoke]
//        [--wait ws|poll|both] [--poll-ms 5] [--warmup S] [--write] [--no-write]
//
// Needs `npm ci` in bench/throughput (bullmq, ws) and the engine binary ($X402R_BIN, else
// build/x402r). Uses the PostgreSQL + Redis of $X4_TESTENV if set, else starts its own with
// scripts/testenv.sh under a temporary directory (and stops them at the end).
//
// Per run, one after the other on the same PostgreSQL/Redis and the same local service:
//   x402r (ws)   C loops; each: POST /workflows/create with the diamond plan a → b, c → d
//                ($ref wiring) → open /workflows/:id/stream?since=0 and POST approve together →
//                wait for workflow.completed (its output is checked: d.sum = 116).
//   x402r (poll) the same, but after approve it polls GET /workflows/:id every --poll-ms.
//   BullMQ       C loops; each: Queue.add(a) → job a calls the service, then adds the flow
//                d ← {b, c} (FlowProducer); d reads b's and c's outputs (getChildrenValues);
//                the loop waits for d's `completed` on a shared QueueEvents (checks 116).
// Latency = create call issued → completion seen by the client. Only workflows that complete
// inside the measured window (after --warmup) count. CPU per workflow = utime+stime
// (/proc/PID/stat, children included) over the window / workflows completed in it.
// The full mode writes bench/RESULTS.md with the median over --runs (3) of every figure.
// --smoke: 3 s per side, concurrency 4, 1 run, no warm-up, no RESULTS.md (unless --write);
// exits 0 only if every side completed at least one workflow.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { Queue, QueueEvents } from 'bullmq';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const BIN = process.env.X402R_BIN || join(ROOT, 'build', 'x402r');
const TICK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

// ---------------------------------------------------------------------------------------------
// options
const argv = process.argv.slice(2);
const flag = (n) => argv.includes(n);
const opt = (n, d) => { const i = argv.indexOf(n); return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d; };
const SMOKE = flag('--smoke');
const SECONDS = Number(opt('--seconds', SMOKE ? 3 : 60));
const CONC = Number(opt('--concurrency', SMOKE ? 4 : 64));
const RUNS = Number(opt('--runs', SMOKE ? 1 : 3));
const WARMUP = Number(opt('--warmup', SMOKE ? 0 : 3));
const POLL_MS = Number(opt('--poll-ms', 5));
const WAIT = opt('--wait', 'both');
const WRITE = flag('--write') || (!SMOKE && !flag('--no-write'));
if (!(SECONDS > 0 && CONC > 0 && RUNS > 0 && WARMUP >= 0 && POLL_MS >= 0) || !['ws', 'poll', 'both'].includes(WAIT)) {
  console.error('usage: node bench/throughput/run.mjs [--seconds N] [--concurrency C] [--runs R] [--smoke] ' +
                '[--wait ws|poll|both] [--poll-ms MS] [--warmup S] [--write|--no-write]');
  process.exit(2);
}

const log = (...a) => console.error('[bench]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = new Set();
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(sig === 'SIGINT' ? 130 : 143));

// ---------------------------------------------------------------------------------------------
// processes and CPU accounting

// spawnReady(cmd, args, opts, re) — spawn and resolve with {proc, match} once stdout matches re.
function spawnReady(cmd, args, opts, re, what, timeout = 30000) {
  const proc = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  let out = '';
  let err = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { err = (err + d).slice(-8000); if (process.env.BENCH_VERBOSE) process.stderr.write(d); });
  proc.stdout.setEncoding('utf8');
  return new Promise((res, rej) => {
    const t = setTimeout(() => { proc.kill('SIGKILL'); rej(new Error(`${what} not ready in ${timeout} ms\n${out}\n${err}`)); }, timeout);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = re.exec(out);
      if (m) { clearTimeout(t); res({ proc, match: m, stderr: () => err }); }
    });
    proc.on('exit', (code, sig) => { clearTimeout(t); rej(new Error(`${what} exited (${code ?? sig}) before ready\n${out}\n${err}`)); });
  });
}

async function stopProc(proc, ms = 10000) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const done = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), ms);
  await done;
  clearTimeout(t);
}

function statOf(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
  } catch { return null; }
}

// cpuMs(rootPid) — CPU time (user+system, waited-for children included) of a process and its
// direct children (PostgreSQL: postmaster + backends), in ms.
function cpuMs(rootPid) {
  if (!rootPid) return NaN;
  let ticks = 0;
  const root = statOf(rootPid);
  if (!root) return NaN;
  ticks += root.ticks;
  for (const d of readdirSafe('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = statOf(d);
    if (st && st.ppid === rootPid) ticks += st.ticks;
  }
  return (ticks * 1000) / TICK;
}
function readdirSafe(p) { try { return readdirSync(p); } catch { return []; } }

function pidFile(f) { try { return Number(readFileSync(f, 'utf8').split('\n')[0].trim()) || 0; } catch { return 0; } }

// ---------------------------------------------------------------------------------------------
// HTTP client (keep-alive; lighter than fetch)

function makeClient(port, key, sockets) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: sockets });
  return function req(method, path, body) {
    const payload = body === undefined ? null : JSON.stringify(body);
    const headers = { authorization: `Bearer ${key}` };
    if (payload !== null) { headers['content-type'] = 'application/json'; headers['content-length'] = Buffer.byteLength(payload); } else if (method === 'POST') headers['content-length'] = 0;
    return new Promise((res, rej) => {
      const r = http.request({ agent, host: '127.0.0.1', port, path, method, headers }, (resp) => {
        const chunks = [];
        resp.on('data', (c) => chunks.push(c));
        resp.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json = null;
          try { json = JSON.parse(text); } catch { /* not JSON */ }
          res({ status: resp.statusCode, json, text });
        });
      });
      r.on('error', rej);
      r.end(payload ?? undefined);
    });
  };
}

// ---------------------------------------------------------------------------------------------
// the load loop shared by both sides

// measure(oneWorkflow, {pids}) — C loops for WARMUP + SECONDS; returns the window's figures.
async function measure(name, wait, oneWorkflow, cpuPids) {
  const start = Date.now();
  const winStart = start + WARMUP * 1000;
  const winEnd = winStart + SECONDS * 1000;
  const lat = [];
  let errors = 0;
  let lastError = '';
  let cpu0 = null;
  let cpu1 = null;
  const sample = () => ({ pids: Object.fromEntries(Object.entries(cpuPids).map(([k, p]) => [k, cpuMs(p)])), client: process.cpuUsage() });
  const t0 = setTimeout(() => { cpu0 = sample(); }, winStart - start);
  const t1 = setTimeout(() => { cpu1 = sample(); }, winEnd - start);
  if (WARMUP === 0) { clearTimeout(t0); cpu0 = sample(); }
  let seq = 0;
  const loop = async () => {
    while (Date.now() < winEnd) {
      const t = performance.now();
      try {
        await oneWorkflow(seq++);
        const end = Date.now();
        if (end <= winEnd && end >= winStart) lat.push(performance.now() - t);
      } catch (e) {
        errors++;
        lastError = e.message;
        await sleep(20);
      }
    }
  };
  await Promise.all(Array.from({ length: CONC }, loop));
  clearTimeout(t0); clearTimeout(t1);
  if (!cpu1) cpu1 = sample();
  if (!cpu0) cpu0 = sample();
  if (errors) log(`${name} (${wait}): ${errors} errors, last: ${lastError}`);
  lat.sort((a, b) => a - b);
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : NaN);
  const n = lat.length;
  const per = (a, b) => (n ? (b - a) / n : NaN);
  const cpu = {};
  for (const k of Object.keys(cpuPids)) cpu[k] = per(cpu0.pids[k], cpu1.pids[k]);
  cpu.client = per((cpu0.client.user + cpu0.client.system) / 1000, (cpu1.client.user + cpu1.client.system) / 1000);
  return { name, wait, completed: n, errors, wps: n / SECONDS, p50: q(0.5), p99: q(0.99), cpu };
}

// ---------------------------------------------------------------------------------------------
// x402r side

const PLAN = {
  steps: [
    { id: 'a', service: 'add', inputs: { a: 1, b: 2 }, dependsOn: [] },
    { id: 'b', service: 'add', inputs: { a: { $ref: 'a.sum' }, b: 10 }, dependsOn: ['a'] },
    { id: 'c', service: 'add', inputs: { a: { $ref: 'a.sum' }, b: 100 }, dependsOn: ['a'] },
    { id: 'd', service: 'add', inputs: { a: { $ref: 'b.sum' }, b: { $ref: 'c.sum' } }, dependsOn: ['b', 'c'] },
  ],
};

function x402rWorkflow(engine, req, key, wait) {
  return async () => {
    const r = await req('POST', '/workflows/create', { input: 'bench diamond', plan: PLAN });
    if (r.status !== 201 || r.json?.workflow?.status !== 'awaiting_approval') throw new Error(`create: ${r.status} ${r.text.slice(0, 300)}`);
    const id = r.json.workflow.id;
    if (wait === 'ws') {
      const ws = new WebSocket(`ws://127.0.0.1:${engine.port}/workflows/${id}/stream?since=0`,
        { headers: { authorization: `Bearer ${key}` }, perMessageDeflate: false });
      const done = new Promise((res, rej) => {
        ws.on('message', (data) => {
          let m;
          try { m = JSON.parse(data.toString('utf8')); } catch { return; }
          if (m.type === 'workflow.completed') {
            if (m.data?.output?.d?.sum !== 116) rej(new Error(`wrong output ${JSON.stringify(m.data?.output)}`)); else res();
          } else if (/^workflow\.(failed|cancelled|expired)$/.test(m.type)) rej(new Error(`${id}: ${m.type} ${JSON.stringify(m.data)}`));
        });
        ws.on('error', rej);
        ws.on('close', () => rej(new Error(`${id}: stream closed before completion`)));
      });
      done.catch(() => {});
      try {
        const a = await req('POST', `/workflows/${id}/approve`);
        if (a.status !== 200) throw new Error(`approve: ${a.status} ${a.text.slice(0, 300)}`);
        await done;
      } finally { ws.terminate(); }
    } else {
      const a = await req('POST', `/workflows/${id}/approve`);
      if (a.status !== 200) throw new Error(`approve: ${a.status} ${a.text.slice(0, 300)}`);
      for (;;) {
        if (POLL_MS) await sleep(POLL_MS);
        const g = await req('GET', `/workflows/${id}`);
        const st = g.json?.workflow?.status;
        if (st === 'completed') {
          if (g.json.workflow.output?.d?.sum !== 116) throw new Error(`wrong output ${JSON.stringify(g.json.workflow.output)}`);
          return;
        }
        if (g.status !== 200 || ['failed', 'cancelled', 'expired'].includes(st)) throw new Error(`${id}: ${g.status} ${g.text.slice(0, 300)}`);
      }
    }
  };
}

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
// environment: PostgreSQL + Redis, database, service, engine, key

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

async function setupEnv() {
  let dir = process.env.X4_TESTENV || '';
  let own = false;
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), 'x4bench-env-'));
    own = true;
    log(`starting PostgreSQL + Redis under ${dir}`);
    sh('bash', [join(ROOT, 'scripts/testenv.sh'), 'up', dir]);
  }
  const psql = (sql, db = 'postgres') => sh('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', `host=${dir}/pg user=postgres dbname=${db}`, '-c', sql]);
  const db = `x4b_${randomBytes(5).toString('hex')}`;
  psql(`CREATE DATABASE ${db}`);
  const env = {
    dir, own, db, psql,
    dbUrl: `postgresql:///${db}?host=${dir}/pg&user=postgres`,
    redisSock: `${dir}/redis.sock`,
    redisUrl: `unix://${dir}/redis.sock`,
    pgPid: pidFile(`${dir}/pgdata/postmaster.pid`),
    redisPid: pidFile(`${dir}/redis.pid`),
    settings: {
      synchronous_commit: psql('SHOW synchronous_commit'),
      fsync: psql('SHOW fsync'),
      pg: psql('SHOW server_version').split(' ')[0],
      redis: (/redis_version:(\S+)/.exec(spawnSync('redis-cli', ['-s', `${dir}/redis.sock`, 'info', 'server'], { encoding: 'utf8' }).stdout || '') || [])[1] || '?',
    },
  };
  env.teardown = async () => {
    try { psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`); } catch (e) { log(e.message); }
    if (own) {
      spawnSync('bash', [join(ROOT, 'scripts/testenv.sh'), 'down', dir], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    }
  };
  return env;
}

async function startEngine(env, svcUrl) {
  if (!existsSync(BIN)) throw new Error(`engine binary not found: ${BIN} (build it, or set X402R_BIN)`);
  const home = mkdtempSync(join(tmpdir(), 'x4bench-home-'));
  const catalog = { services: [{
    id: 'add', name: 'Add numbers', description: 'Add two numbers a and b and return their sum.',
    url: `${svcUrl}/add`, method: 'POST',
    input: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] },
    output: { type: 'object', properties: { sum: { type: 'number' } }, required: ['sum'] },
    tags: ['bench'],
  }] };
  writeFileSync(join(home, 'catalog.json'), JSON.stringify(catalog));
  const e = { ...process.env };
  for (const k of ['ANTHROPIC_API_KEY', 'REGISTRY_URL', 'ESCROW_KEYPAIR']) delete e[k];
  Object.assign(e, {
    PORT: '0', BIND_ADDRESS: '127.0.0.1', DATABASE_URL: env.dbUrl, REDIS_URL: env.redisUrl, X402R_HOME: home,
    LOG_LEVEL: 'warn', RATE_LIMIT_PER_MIN: '0', CATALOG_FILE: join(home, 'catalog.json'),
  });
  for (const [d, k] of [['sql', 'X402R_SQL_DIR'], ['policies', 'POLICY_DIR'], ['plugins', 'PLUGIN_DIR']]) {
    if (existsSync(join(ROOT, d))) e[k] = join(ROOT, d);
  }
  const s = await spawnReady(BIN, ['serve'], { cwd: home, env: e }, /listening on (\S+):(\d+)/, 'x402r serve');
  const key = sh(BIN, ['keys', 'create', '--user', 'bench'], { env: e });
  return { proc: s.proc, port: Number(s.match[2]), key, home, env: e };
}

// ---------------------------------------------------------------------------------------------
// output

const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const median = (xs) => { const v = xs.filter(Number.isFinite).sort((a, b) => a - b); return v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : NaN; };

function machineLine(env) {
  let model = '?';
  try { model = (/model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8')) || [])[1] || '?'; } catch { /* ? */ }
  const nproc = sh('nproc', []);
  return `Machine: nproc ${nproc}, ${model.trim()}; ${new Date().toISOString().slice(0, 10)}; node ${process.version}; ` +
    `PostgreSQL ${env.settings.pg} (fsync=${env.settings.fsync}, synchronous_commit=${env.settings.synchronous_commit}); Redis ${env.settings.redis}.`;
}

function table(rows, ratios) {
  const out = [];
  out.push('| system | completion seen via | workflows/s | p50 ms | p99 ms | completed | errors | engine/workers CPU ms/wf | PostgreSQL CPU ms/wf | Redis CPU ms/wf | client CPU ms/wf |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    out.push(`| ${r.name} | ${r.wait} | ${f1(r.wps)} | ${f1(r.p50)} | ${f1(r.p99)} | ${r.completed} | ${r.errors} | ` +
      `${f2(r.cpu.engine ?? r.cpu.workers)} | ${r.name === 'BullMQ' ? 'n/a' : f2(r.cpu.pg)} | ${f2(r.cpu.redis)} | ${f2(r.cpu.client)} |`);
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
    engine = await startEngine(env, svcUrl);
    log(`engine pid ${engine.proc.pid} on :${engine.port}; ${machineLine(env)}`);
    const req = makeClient(engine.port, engine.key, CONC * 2);
    const waits = WAIT === 'both' ? ['ws', 'poll'] : [WAIT];
    const basePids = { pg: env.pgPid, redis: env.redisPid };
    const perRun = [];
    for (let run = 1; run <= RUNS; run++) {
      const rows = [];
      for (const wait of waits) {
        log(`run ${run}/${RUNS}: x402r (${wait}) ${SECONDS}s × ${CONC} in flight`);
        rows.push(await measure('x402r', wait === 'ws' ? 'WebSocket' : `poll ${POLL_MS} ms`,
          x402rWorkflow(engine, req, engine.key, wait), { engine: engine.proc.pid, ...basePids }));
      }
      log(`run ${run}/${RUNS}: BullMQ ${SECONDS}s × ${CONC} in flight`);
      rows.push(await bullmqRun(env, svcUrl, basePids));
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
      writeFileSync(join(ROOT, 'bench', 'RESULTS.md'),
        `# Benchmark results\n\nSee bench/README.md for what is measured and how.\n\n## Workflow throughput (issue 6, items 1 and 6)\n\n` +
        `Generated by \`${cmd}\`.\n\n${head}\n\n${machine}\n\n${tbl}\n`);
      log('wrote bench/RESULTS.md');
    }
    const ok = rows.every((r) => r.completed > 0);
    if (!ok) log('a side completed no workflow in the window');
    return ok ? 0 : 1;
  } finally {
    if (engine) await stopProc(engine.proc);
    if (engine) rmSync(engine.home, { recursive: true, force: true });
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
