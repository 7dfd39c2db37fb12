// bench/lib/common.mjs — what every benchmark script under bench/ shares: child processes with a
// readiness line, CPU time and resident memory from /proc, a keep-alive HTTP client, the private
// PostgreSQL + Redis (scripts/testenv.sh or $X4_TESTENV) with a fresh database, an `x402r serve`
// with a key, the machine line, medians, and bench/RESULTS.md, where each script owns one
// section between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` and rewrites only that.
//
// npm packages (ws, ioredis through bullmq) come from bench/throughput/node_modules
// (`bash scripts/npm-install.sh bench/throughput`).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, '..', '..');
export const BIN = process.env.X402R_BIN || join(ROOT, 'build', 'x402r');
export const benchRequire = createRequire(join(ROOT, 'bench', 'throughput', 'package.json'));
const TICK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

export const log = (...a) => console.error('[bench]', ...a);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// options: opt('--seconds', 60) → the value after the flag (a string) or the default
export function argsOf(argv = process.argv.slice(2)) {
  return {
    argv,
    flag: (n) => argv.includes(n),
    opt: (n, d) => { const i = argv.indexOf(n); return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d; },
  };
}

const children = new Set();
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(sig === 'SIGINT' ? 130 : 143));

// spawnReady(cmd, args, opts, re, what) — spawn and resolve with {proc, match, stderr()} once
// stdout matches re; stdout lines after that go to opts.onLine when given.
export function spawnReady(cmd, args, opts, re, what, timeout = 30000) {
  const { onLine, ...spawnOpts } = opts;
  const proc = spawn(cmd, args, { ...spawnOpts, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  let out = '';
  let err = '';
  let ready = false;
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { err = (err + d).slice(-8000); if (process.env.BENCH_VERBOSE) process.stderr.write(d); });
  proc.stdout.setEncoding('utf8');
  return new Promise((res, rej) => {
    const t = setTimeout(() => { proc.kill('SIGKILL'); rej(new Error(`${what} not ready in ${timeout} ms\n${out}\n${err}`)); }, timeout);
    let pending = '';
    proc.stdout.on('data', (d) => {
      if (ready) {
        if (!onLine) return;
        pending += d;
        const lines = pending.split('\n');
        pending = lines.pop();
        for (const l of lines) onLine(l);
        return;
      }
      out += d;
      const m = re.exec(out);
      if (m) { ready = true; clearTimeout(t); res({ proc, match: m, stderr: () => err }); }
    });
    proc.on('exit', (code, sig) => { clearTimeout(t); if (!ready) rej(new Error(`${what} exited (${code ?? sig}) before ready\n${out}\n${err}`)); });
  });
}

export async function stopProc(proc, ms = 10000) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const done = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), ms);
  await done;
  clearTimeout(t);
}

export function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

// ---------------------------------------------------------------------------------------------
// /proc

function statOf(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
  } catch { return null; }
}
function readdirSafe(p) { try { return readdirSync(p); } catch { return []; } }

// cpuMs(rootPid) — CPU time (user+system, waited-for children included) of a process and its
// direct children (PostgreSQL: postmaster + backends), in ms.
export function cpuMs(rootPid) {
  if (!rootPid) return NaN;
  const root = statOf(rootPid);
  if (!root) return NaN;
  let ticks = root.ticks;
  for (const d of readdirSafe('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = statOf(d);
    if (st && st.ppid === rootPid) ticks += st.ticks;
  }
  return (ticks * 1000) / TICK;
}

// rssKb(pid) — VmRSS of one process in KiB (NaN when gone)
export function rssKb(pid) {
  try { return Number((/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8')) || [])[1]); } catch { return NaN; }
}

export function pidFile(f) { try { return Number(readFileSync(f, 'utf8').split('\n')[0].trim()) || 0; } catch { return 0; } }

// ---------------------------------------------------------------------------------------------
// HTTP client (keep-alive; lighter than fetch): req(method, path, body) → {status, json, text}

export function makeClient(port, key, sockets, host = '127.0.0.1') {
  const agent = new http.Agent({ keepAlive: true, maxSockets: sockets });
  return function req(method, path, body) {
    const payload = body === undefined ? null : JSON.stringify(body);
    const headers = {};
    if (key) headers.authorization = `Bearer ${key}`;
    if (payload !== null) { headers['content-type'] = 'application/json'; headers['content-length'] = Buffer.byteLength(payload); } else if (method === 'POST') headers['content-length'] = 0;
    return new Promise((res, rej) => {
      const r = http.request({ agent, host, port, path, method, headers }, (resp) => {
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
// environment: PostgreSQL + Redis and a fresh database

export async function setupEnv() {
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
    dir, own, db,
    psql: (sql) => psql(sql, db),
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

// startEngine(env, {catalog, extraEnv, user, nofile}) → {proc, port, key, home, env}
// `serve` with LOG_LEVEL=warn and RATE_LIMIT_PER_MIN=0; nofile raises its descriptor limit
// (through `prlimit`, which needs the hard limit to allow it or root).
export async function startEngine(env, { catalog, extraEnv = {}, user = 'bench', nofile = 0 } = {}) {
  if (!existsSync(BIN)) throw new Error(`engine binary not found: ${BIN} (build it, or set X402R_BIN)`);
  const home = mkdtempSync(join(tmpdir(), 'x4bench-home-'));
  const e = { ...process.env };
  for (const k of ['ANTHROPIC_API_KEY', 'REGISTRY_URL', 'ESCROW_KEYPAIR', 'CATALOG_FILE']) delete e[k];
  Object.assign(e, {
    PORT: '0', BIND_ADDRESS: '127.0.0.1', DATABASE_URL: env.dbUrl, REDIS_URL: env.redisUrl, X402R_HOME: home,
    LOG_LEVEL: 'warn', RATE_LIMIT_PER_MIN: '0',
  });
  if (catalog) {
    writeFileSync(join(home, 'catalog.json'), JSON.stringify(catalog));
    e.CATALOG_FILE = join(home, 'catalog.json');
  }
  for (const [d, k] of [['sql', 'X402R_SQL_DIR'], ['policies', 'POLICY_DIR'], ['plugins', 'PLUGIN_DIR']]) {
    if (!process.env[k] && existsSync(join(ROOT, d))) e[k] = join(ROOT, d); // an explicit one wins (A/B runs)
  }
  Object.assign(e, extraEnv);
  const [cmd, args] = nofile ? ['prlimit', [`--nofile=${nofile}:${nofile}`, BIN, 'serve']] : [BIN, ['serve']];
  const s = await spawnReady(cmd, args, { cwd: home, env: e }, /listening on (\S+):(\d+)/, 'x402r serve');
  const key = sh(BIN, ['keys', 'create', '--user', user], { env: e });
  return { proc: s.proc, port: Number(s.match[2]), key, home, env: e };
}

export async function stopEngine(engine) {
  if (!engine) return;
  await stopProc(engine.proc);
  rmSync(engine.home, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// the closed-loop load: conc loops run one() back to back for warmup + seconds

// measureLoop({name, wait, one(seq), cpuPids: {k: pid}, counters: {k: () => number}, seconds,
// warmup, conc}) → {name, wait, completed, errors, wps, p50, p99, lat (sorted ms), cpu: {k: per
// workflow, client, ...counters per workflow}, total: every success, warm-up included}. Only workflows that end inside the window count;
// CPU and counters are sampled at the window's edges.
export async function measureLoop({ name, wait, one, cpuPids, counters = {}, seconds, warmup, conc }) {
  const start = Date.now();
  const winStart = start + warmup * 1000;
  const winEnd = winStart + seconds * 1000;
  const lat = [];
  let errors = 0;
  let lastError = '';
  let s0 = null;
  let s1 = null;
  const sample = () => ({
    pids: Object.fromEntries(Object.entries(cpuPids).map(([k, p]) => [k, cpuMs(p)])),
    counters: Object.fromEntries(Object.entries(counters).map(([k, fn]) => [k, fn()])),
    client: process.cpuUsage(),
  });
  const t0 = setTimeout(() => { s0 = sample(); }, winStart - start);
  const t1 = setTimeout(() => { s1 = sample(); }, winEnd - start);
  if (warmup === 0) { clearTimeout(t0); s0 = sample(); }
  let seq = 0;
  let total = 0;
  const loop = async () => {
    while (Date.now() < winEnd) {
      const t = performance.now();
      try {
        await one(seq++);
        total++;
        const end = Date.now();
        if (end <= winEnd && end >= winStart) lat.push(performance.now() - t);
      } catch (e) {
        errors++;
        lastError = e.message;
        await sleep(20);
      }
    }
  };
  await Promise.all(Array.from({ length: conc }, loop));
  clearTimeout(t0); clearTimeout(t1);
  if (!s1) s1 = sample();
  if (!s0) s0 = sample();
  if (errors) log(`${name} (${wait}): ${errors} errors, last: ${lastError}`);
  lat.sort((a, b) => a - b);
  const n = lat.length;
  const per = (a, b) => (n ? (b - a) / n : NaN);
  const cpu = {};
  for (const k of Object.keys(cpuPids)) cpu[k] = per(s0.pids[k], s1.pids[k]);
  for (const k of Object.keys(counters)) cpu[k] = per(s0.counters[k], s1.counters[k]);
  cpu.client = per((s0.client.user + s0.client.system) / 1000, (s1.client.user + s1.client.system) / 1000);
  return { name, wait, completed: n, total, errors, lastError, wps: n / seconds, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), lat, cpu };
}

// pgCommits(env) — a counter of the benchmark database's committed transactions
export const pgCommits = (env) => () => Number(env.psql(`SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`));

// ---------------------------------------------------------------------------------------------
// figures and output

export const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a');
export const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
export const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
export const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
export const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : NaN;
};
// quantile of an ascending array (nearest rank)
export const quantile = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN);

export function machineLine(env) {
  let model = '?';
  try { model = (/model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8')) || [])[1] || '?'; } catch { /* ? */ }
  const nproc = sh('nproc', []);
  const pg = env ? `; PostgreSQL ${env.settings.pg} (fsync=${env.settings.fsync}, synchronous_commit=${env.settings.synchronous_commit}); Redis ${env.settings.redis}` : '';
  return `Machine: nproc ${nproc}, ${model.trim()}; ${new Date().toISOString().slice(0, 10)}; node ${process.version}${pg}.`;
}

// writeSection(name, markdown) — replace (or append) the section `name` of bench/RESULTS.md.
export function writeSection(name, body) {
  const file = join(ROOT, 'bench', 'RESULTS.md');
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (!text.startsWith('# Benchmark results')) text = '# Benchmark results\n\nSee bench/README.md for what is measured and how.\n\n';
  const open = `<!-- bench:${name} -->`;
  const close = `<!-- /bench:${name} -->`;
  const block = `${open}\n${body.trim()}\n${close}`;
  const a = text.indexOf(open);
  const b = text.indexOf(close);
  if (a >= 0 && b > a) text = text.slice(0, a) + block + text.slice(b + close.length);
  else text = `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, text);
  log(`wrote section ${name} of bench/RESULTS.md`);
}
