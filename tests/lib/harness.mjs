// tests/lib/harness.mjs — helpers for the x402r integration tests.
//
// The tests run the real engine binary ($X402R_BIN) against the PostgreSQL and Redis that
// `scripts/testenv.sh up $X4_TESTENV` started (PostgreSQL socket in $X4_TESTENV/pg, user postgres,
// trust auth; Redis at $X4_TESTENV/redis.sock). Every test file isolates itself: its own database
// (createDb/dropDb), its own engine process(es) on ephemeral ports, its own test services.
//
// Written against docs/api-contract.md; nothing here knows the engine's internals.

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));

export const SOURCE_DIR = process.env.X4_SOURCE_DIR || resolve(here, '..', '..');
export const BIN = process.env.X402R_BIN || join(SOURCE_DIR, 'build', 'x402r');
export const TESTENV = process.env.X4_TESTENV || '';

export function testenv() {
  if (!TESTENV) {
    throw new Error('X4_TESTENV is not set: run `scripts/testenv.sh up DIR` and export X4_TESTENV=DIR ' +
                    '(ctest does both)');
  }
  return TESTENV;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// PostgreSQL / Redis

function run(cmd, args, { env, input, timeout = 30000 } = {}) {
  return new Promise((resolveP) => {
    const child = execFile(cmd, args, { env: env || process.env, timeout, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        resolveP({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0,
                   signal: err?.signal || null, stdout, stderr, error: err });
      });
    if (input !== undefined) child.stdin.end(input); else child.stdin.end();
  });
}

export async function psql(sql, { db = 'postgres' } = {}) {
  const conn = `host=${testenv()}/pg user=postgres dbname=${db}`;
  const r = await run('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', conn, '-c', sql]);
  if (r.code !== 0) throw new Error(`psql failed (${r.code}): ${sql}\n${r.stderr}`);
  return r.stdout.trim();
}

export async function createDb() {
  const name = `x4t_${randomBytes(6).toString('hex')}`;
  await psql(`CREATE DATABASE ${name}`);
  return name;
}

export async function dropDb(name) {
  if (!name) return;
  assert.match(name, /^x4t_[a-z0-9]+$/);
  await psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

export function databaseUrl(name) {
  return `postgresql:///${name}?host=${testenv()}/pg&user=postgres`;
}

export function redisUrl() {
  return `unix://${testenv()}/redis.sock`;
}

// ---------------------------------------------------------------------------------------------
// The engine process

const ENV_DROP = ['ANTHROPIC_API_KEY', 'REGISTRY_URL', 'ESCROW_KEYPAIR', 'DATABASE_URL', 'REDIS_URL',
                  'CATALOG_FILE', 'PORT', 'BIND_ADDRESS'];

function baseEnv() {
  const env = { ...process.env };
  for (const k of ENV_DROP) delete env[k];
  return env;
}

const engines = new Set();
process.on('exit', () => { for (const e of engines) { try { e.proc.kill('SIGKILL'); } catch { /* gone */ } } });

// startEngine({db, env, catalog, timeout}) — spawns `$X402R_BIN serve` and resolves once stdout
// says `listening on <bind>:<port>`. `db` (a database name) sets DATABASE_URL; env overrides win.
export async function startEngine({ db, env = {}, catalog, timeout = 20000 } = {}) {
  if (!existsSync(BIN)) throw new Error(`engine binary not found: ${BIN} (set X402R_BIN)`);
  const home = mkdtempSync(join(tmpdir(), 'x4t-home-'));
  const full = {
    ...baseEnv(),
    PORT: '0',
    BIND_ADDRESS: '127.0.0.1',
    REDIS_URL: redisUrl(),
    X402R_HOME: home,
    LOG_LEVEL: 'warn',
  };
  if (db) full.DATABASE_URL = databaseUrl(db);
  for (const [dir, name] of [['sql', 'X402R_SQL_DIR'], ['policies', 'POLICY_DIR'], ['plugins', 'PLUGIN_DIR']]) {
    if (existsSync(join(SOURCE_DIR, dir))) full[name] = join(SOURCE_DIR, dir);
  }
  if (catalog) {
    const file = join(home, 'catalog.json');
    writeFileSync(file, JSON.stringify(catalog, null, 2));
    full.CATALOG_FILE = file;
  }
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || v === null) delete full[k]; else full[k] = String(v);
  }

  const proc = spawn(BIN, ['serve'], { env: full, cwd: home, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const cap = (s, chunk) => (s.length > 1 << 20 ? s.slice(-(1 << 19)) : s) + chunk;
  const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  let exitInfo = null;
  exited.then((x) => { exitInfo = x; engines.delete(engine); cleanupHome(); });
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { stderr = cap(stderr, d); if (process.env.X4_ENGINE_LOG) process.stderr.write(d); });
  proc.stdout.setEncoding('utf8');

  const engine = {
    proc, home, env: full,
    port: 0, url: '',
    stderr: () => stderr,
    stdout: () => stdout,
    exited,
    exitInfo: () => exitInfo,
    // kill(signal) — sends the signal and resolves with {code, signal} once the process is gone.
    async kill(signal = 'SIGKILL') {
      if (!exitInfo) proc.kill(signal);
      return exited;
    },
    // stop() — SIGTERM, wait for exit (10 s, then SIGKILL and fail), assert exit code 0.
    async stop({ expectCode = 0, timeout: t = 10000 } = {}) {
      if (!exitInfo) proc.kill('SIGTERM');
      let timer;
      const r = await Promise.race([exited, new Promise((res) => { timer = setTimeout(() => res(null), t); })]);
      clearTimeout(timer);
      if (!r) {
        proc.kill('SIGKILL');
        await exited;
        cleanupHome();
        throw new Error(`engine did not exit within ${t} ms of SIGTERM\n--- stderr ---\n${tail(stderr)}`);
      }
      cleanupHome();
      if (expectCode !== null && expectCode !== undefined) {
        assert.equal(r.code, expectCode,
          `engine exited with code ${r.code} signal ${r.signal}\n--- stderr ---\n${tail(stderr)}`);
      }
      return r;
    },
  };
  function cleanupHome() { try { rmSync(home, { recursive: true, force: true }); } catch { /* ignore */ } }
  engines.add(engine);

  await new Promise((resolveP, reject) => {
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) { proc.kill('SIGKILL'); reject(err); } else resolveP();
    };
    const timer = setTimeout(() => finish(new Error(
      `engine did not print "listening on" within ${timeout} ms\n--- stdout ---\n${tail(stdout)}\n--- stderr ---\n${tail(stderr)}`)), timeout);
    proc.stdout.on('data', (d) => {
      stdout = cap(stdout, d);
      if (process.env.X4_ENGINE_LOG) process.stderr.write(d);
      const m = /listening on (\S+):(\d+)/.exec(stdout);
      if (m && !engine.port) {
        engine.port = Number(m[2]);
        engine.url = `http://127.0.0.1:${engine.port}`;
        finish();
      }
    });
    proc.on('error', (e) => finish(new Error(`cannot start ${BIN}: ${e.message}`)));
    exited.then(({ code, signal }) => finish(new Error(
      `engine exited (code ${code}, signal ${signal}) before listening\n--- stdout ---\n${tail(stdout)}\n--- stderr ---\n${tail(stderr)}`)));
  });
  return engine;
}

function tail(s, n = 4000) { return s.length > n ? '…' + s.slice(-n) : s; }

// createKey(dbUrl, user, {admin}) — `x402r keys create --user USER [--admin]`; returns the key.
export async function createKey(dbUrl, user, { admin = false } = {}) {
  const r = await createKeyRaw(dbUrl, user, { admin });
  if (r.code !== 0) throw new Error(`keys create --user ${user} failed (${r.code}):\n${r.stderr}`);
  return r.stdout.trim();
}

export async function createKeyRaw(dbUrl, user, { admin = false } = {}) {
  const args = ['keys', 'create', '--user', user];
  if (admin) args.push('--admin');
  const env = { ...baseEnv(), DATABASE_URL: dbUrl, REDIS_URL: redisUrl(), LOG_LEVEL: 'warn' };
  if (existsSync(join(SOURCE_DIR, 'sql'))) env.X402R_SQL_DIR = join(SOURCE_DIR, 'sql');
  return run(BIN, args, { env });
}

// ---------------------------------------------------------------------------------------------
// HTTP client

// api(engine, key) — {get, post, raw}; each resolves with {status, headers, json, text}.
export function api(engine, key) {
  const base = () => `http://127.0.0.1:${engine.port}`;
  async function raw(method, path, { body, headers = {}, key: k = key } = {}) {
    const h = { ...headers };
    if (k) h.authorization = `Bearer ${k}`;
    let payload;
    if (body !== undefined) {
      payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      if (!Object.keys(h).some((x) => x.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
    }
    const res = await fetch(base() + path, { method, headers: h, body: payload });
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = null; }
    return { status: res.status, headers: res.headers, json, text };
  }
  return {
    key,
    raw,
    get: (path, opts) => raw('GET', path, opts),
    post: (path, body, opts) => raw('POST', path, { ...opts, body }),
  };
}

// waitFor(fn, {timeout, interval, message}) — polls fn until it returns a truthy value.
export async function waitFor(fn, { timeout = 10000, interval = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) { lastErr = e; }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${message}` +
                      (lastErr ? `; last error: ${lastErr.message}` : '') +
                      (last !== undefined ? `; last value: ${JSON.stringify(last)?.slice(0, 2000)}` : ''));
    }
    await sleep(interval);
  }
}

export const TERMINAL = ['completed', 'failed', 'cancelled', 'expired'];

// waitStatus(client, id, statuses) — polls GET /workflows/:id until status ∈ statuses; fails at
// once if the workflow reaches another terminal state. Returns the workflow object.
export async function waitStatus(client, id, statuses, { timeout = 15000, interval = 40 } = {}) {
  if (typeof statuses === 'string') statuses = [statuses];
  let wf = null;
  const deadline = Date.now() + timeout;
  for (;;) {
    const r = await client.get(`/workflows/${id}`);
    assert.equal(r.status, 200, `GET /workflows/${id}: ${r.status} ${r.text}`);
    wf = r.json.workflow;
    if (statuses.includes(wf.status)) return wf;
    if (TERMINAL.includes(wf.status)) {
      assert.fail(`workflow ${id} reached ${wf.status}, expected ${statuses.join('|')}: ${JSON.stringify(wf)}`);
    }
    if (Date.now() > deadline) {
      assert.fail(`workflow ${id} still ${wf.status} after ${timeout} ms, expected ${statuses.join('|')}: ${JSON.stringify(wf)}`);
    }
    await sleep(interval);
  }
}

// createWorkflow(client, body) — POST /workflows/create, asserts 201, returns the id.
export async function createWorkflow(client, body) {
  const r = await client.post('/workflows/create', body);
  assert.equal(r.status, 201, `create: ${r.status} ${r.text}`);
  assert.equal(r.json.success, true);
  return r.json.workflow.id;
}

// ready(client, body) — create and wait for awaiting_approval; returns {id, workflow}.
export async function ready(client, body) {
  const id = await createWorkflow(client, body);
  const workflow = await waitStatus(client, id, ['awaiting_approval']);
  return { id, workflow };
}

export async function approve(client, id) {
  const r = await client.post(`/workflows/${id}/approve`);
  assert.equal(r.status, 200, `approve ${id}: ${r.status} ${r.text}`);
  return r;
}

// runPlan(client, plan, extra) — create with an explicit plan, wait for approval, approve.
export async function runPlan(client, plan, extra = {}) {
  const { id } = await ready(client, { input: extra.input || 'integration test workflow', plan, ...extra });
  await approve(client, id);
  return id;
}

export function step(id, service, inputs = {}, dependsOn = []) {
  return { id, service, inputs, dependsOn };
}

export function ref(path) { return { $ref: path }; }

// assertMoney(m, atomic?) — the contract's money shape {amount:"2.000000", atomic:"2000000"}.
export function assertMoney(m, atomic) {
  assert.ok(m && typeof m === 'object', `money object expected, got ${JSON.stringify(m)}`);
  assert.equal(typeof m.amount, 'string');
  assert.equal(typeof m.atomic, 'string');
  assert.match(m.amount, /^\d+\.\d{6}$/);
  assert.match(m.atomic, /^\d+$/);
  assert.equal(BigInt(m.amount.replace('.', '')), BigInt(m.atomic), `amount and atomic disagree: ${JSON.stringify(m)}`);
  if (atomic !== undefined) assert.equal(m.atomic, String(atomic));
}

export function assertIsoTime(s, what = 'timestamp') {
  assert.equal(typeof s, 'string', `${what} should be a string, got ${JSON.stringify(s)}`);
  assert.ok(!Number.isNaN(Date.parse(s)), `${what} is not a date: ${s}`);
}

// ---------------------------------------------------------------------------------------------
// WebSocket streams

// openStream(engine, id, {since, key, viaQuery}) — connects to /workflows/:id/stream (id null:
// the multiplexed /stream, driven with send({subscribe, since}) / send({unsubscribe})) and
// collects parsed messages. `opened` resolves on open and rejects with err.status on a refused
// handshake.
export function openStream(engine, id, { since, key, viaQuery = false, headers = {} } = {}) {
  const q = [];
  if (since !== undefined) q.push(`since=${since}`);
  if (key && viaQuery) q.push(`access_token=${encodeURIComponent(key)}`);
  const path = id === null ? '/stream' : `/workflows/${id}/stream`;
  const url = `ws://127.0.0.1:${engine.port}${path}${q.length ? '?' + q.join('&') : ''}`;
  const h = { ...headers };
  if (key && !viaQuery) h.authorization = `Bearer ${key}`;
  const ws = new WebSocket(url, { headers: h, perMessageDeflate: false });
  const messages = [];
  const raw = [];
  const waiters = new Set();
  let closed = null;
  const notify = () => { for (const w of waiters) w(); };

  const opened = new Promise((resolveP, reject) => {
    ws.on('open', () => resolveP());
    ws.on('unexpected-response', (req, res) => {
      const err = new Error(`WebSocket handshake refused: HTTP ${res.statusCode}`);
      err.status = res.statusCode;
      err.headers = res.headers;
      res.resume();
      req.destroy();
      reject(err);
    });
    ws.on('error', (e) => reject(e));
  });
  opened.catch(() => {});
  ws.on('message', (data, isBinary) => {
    const s = data.toString('utf8');
    raw.push({ text: s, isBinary });
    try { messages.push(JSON.parse(s)); } catch { messages.push({ unparsable: s }); }
    notify();
  });
  ws.on('close', (code, reason) => { closed = { code, reason: reason.toString() }; notify(); });
  ws.on('error', () => { notify(); });

  function waitUntil(pred, { timeout = 15000, what = 'stream condition' } = {}) {
    return new Promise((resolveP, reject) => {
      const check = () => {
        let v;
        try { v = pred(); } catch (e) { cleanup(); reject(e); return; }
        if (v) { cleanup(); resolveP(v); return true; }
        return false;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeout} ms waiting for ${what}; got ${messages.length} messages: ` +
                         JSON.stringify(messages.map((m) => [m.seq, m.type])) + (closed ? ` (closed ${closed.code})` : '')));
      }, timeout);
      const cleanup = () => { clearTimeout(timer); waiters.delete(waiter); };
      const waiter = () => { check(); };
      waiters.add(waiter);
      check();
    });
  }

  return {
    ws, url, messages, raw, opened, waitUntil,
    closed: () => closed,
    send(obj) { ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); },
    waitType(type, opts = {}) {
      return waitUntil(() => messages.find((m) => m.type === type), { what: `event ${type}`, ...opts });
    },
    waitCount(n, opts = {}) {
      return waitUntil(() => messages.length >= n && messages.slice(0, n), { what: `${n} events`, ...opts });
    },
    waitClose(opts = {}) {
      return waitUntil(() => closed, { what: 'close', ...opts });
    },
    close() {
      try { ws.close(); } catch { /* ignore */ }
      // never leave a socket behind if the server does not answer the close frame
      setTimeout(() => { try { ws.terminate(); } catch { /* ignore */ } }, 1000).unref();
    },
  };
}

// assertGapFree(events, from) — seq from..from+n-1 with no gap or duplicate.
export function assertGapFree(events, from = 1) {
  const seqs = events.map((e) => e.seq);
  const want = seqs.map((_, i) => from + i);
  assert.deepEqual(seqs, want, `seq should be gap-free from ${from}: ${JSON.stringify(seqs)}`);
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over one TCP connection

// parseResponses(buf) — parses as many complete HTTP/1.1 responses as buf holds.
// Returns {responses, rest}. Handles Content-Length, chunked and 1xx interim responses.
export function parseResponses(buf, { headOnly = false } = {}) {
  const responses = [];
  let off = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (end < 0) break;
    const head = buf.subarray(off, end).toString('latin1');
    const lines = head.split('\r\n');
    const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const status = Number(m[2]);
    const headers = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      const k = line.slice(0, i).trim().toLowerCase();
      const v = line.slice(i + 1).trim();
      headers[k] = headers[k] !== undefined ? `${headers[k]}, ${v}` : v;
    }
    let p = end + 4;
    let body;
    if (status < 200 || status === 204 || status === 304 || headOnly) {
      body = Buffer.alloc(0);
    } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
      const parts = [];
      let complete = false;
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le < 0) break;
        const size = parseInt(buf.subarray(p, le).toString('latin1').split(';')[0], 16);
        if (Number.isNaN(size)) throw new Error('bad chunk size');
        if (size === 0) {
          const te = buf.indexOf('\r\n\r\n', le, 'latin1');
          if (te < 0) break;
          p = te + 4;
          complete = true;
          break;
        }
        if (buf.length < le + 2 + size + 2) break;
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      if (!complete) break;
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (buf.length < p + n) break;
      body = buf.subarray(p, p + n);
      p += n;
    } else {
      // body until close: only complete when the caller says the connection ended
      break;
    }
    const text = body.toString('utf8');
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = null; }
    responses.push({ version: m[1], status, reason: m[3] || '', headers, body, text, json });
    off = p;
  }
  return { responses, rest: buf.subarray(off) };
}

// rawConn(port) — one TCP connection; write() bytes; next() resolves with the next parsed
// response (1xx interim responses included); ended() tells whether the server closed.
export async function rawConn(port, { host = '127.0.0.1' } = {}) {
  const sock = net.connect({ port, host });
  await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  let buf = Buffer.alloc(0);
  const queue = [];
  const waiters = [];
  let ended = false;
  let writeError = null;
  const pump = () => {
    const { responses, rest } = parseResponses(buf);
    buf = rest;
    queue.push(...responses);
    while (waiters.length && (queue.length || ended)) waiters.shift()();
  };
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); pump(); });
  sock.on('end', () => { ended = true; pump(); });
  sock.on('close', () => { ended = true; pump(); });
  sock.on('error', (e) => { writeError = e; ended = true; pump(); });
  return {
    sock,
    write(bytes) { return new Promise((r) => sock.write(bytes, () => r())); },
    ended: () => ended,
    writeError: () => writeError,
    // next({timeout}) — the next response, or null if the connection ended / timed out.
    async next({ timeout = 10000 } = {}) {
      if (!queue.length && !ended) {
        await new Promise((r) => {
          const t = setTimeout(() => { const i = waiters.indexOf(w); if (i >= 0) waiters.splice(i, 1); r(); }, timeout);
          const w = () => { clearTimeout(t); r(); };
          waiters.push(w);
        });
      }
      return queue.shift() || null;
    },
    close() { sock.destroy(); },
  };
}

// rawHttp(port, bytes, {responses, timeout}) — writes bytes in ONE write and collects final
// (non-1xx) responses until `responses` of them are parsed, the connection ends or timeout.
export async function rawHttp(port, bytes, { responses: n = 1, timeout = 10000 } = {}) {
  const c = await rawConn(port);
  try {
    c.sock.write(bytes);
    const out = [];
    const deadline = Date.now() + timeout;
    while (out.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const r = await c.next({ timeout: left });
      if (!r) break;
      if (r.status >= 200) out.push(r);
    }
    return out;
  } finally {
    c.close();
  }
}

// httpRequest(method, path, {key, body, headers, host}) — bytes of one HTTP/1.1 request.
export function httpRequest(method, path, { key, body, headers = {}, host = '127.0.0.1' } = {}) {
  const b = body === undefined ? null : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  let s = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
  if (key) s += `Authorization: Bearer ${key}\r\n`;
  if (b) s += 'Content-Type: application/json\r\n';
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`;
  if (b && !Object.keys(headers).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) {
    s += `Content-Length: ${b.length}\r\n`;
  } else if (!b && method !== 'GET' && method !== 'HEAD') {
    s += 'Content-Length: 0\r\n';
  }
  s += '\r\n';
  return b ? Buffer.concat([Buffer.from(s, 'latin1'), b]) : Buffer.from(s, 'latin1');
}

// ---------------------------------------------------------------------------------------------
// A whole test file's fixture

// setup({env, users, catalog}) — test services, a fresh database, an engine, one key per user.
// Returns {svc, db, dbUrl, engine, keys, client (first user's), clients, restart(env), teardown()}.
export async function setup({ env = {}, users = ['alice', 'bob'], catalog } = {}) {
  const { startServices, catalogFor } = await import('./services.mjs');
  const svc = await startServices();
  const ctx = { svc, db: null, dbUrl: null, engine: null, keys: {}, clients: {}, client: null };
  try {
    ctx.db = await createDb();
    ctx.dbUrl = databaseUrl(ctx.db);
    ctx.catalog = catalog || catalogFor(svc);
    ctx.engine = await startEngine({ db: ctx.db, env, catalog: ctx.catalog });
    for (const u of users) {
      ctx.keys[u] = await createKey(ctx.dbUrl, u);
      ctx.clients[u] = api(ctx.engine, ctx.keys[u]);
    }
    ctx.client = ctx.clients[users[0]];
  } catch (e) {
    if (ctx.engine) await ctx.engine.kill('SIGKILL');
    if (ctx.db) await dropDb(ctx.db).catch(() => {});
    await svc.close();
    throw e;
  }
  // restart(env) — stop the engine (SIGTERM, exit 0) and start another on the same database.
  ctx.restart = async (newEnv = env) => {
    if (ctx.engine && !ctx.engine.exitInfo()) await ctx.engine.stop();
    ctx.engine = await startEngine({ db: ctx.db, env: newEnv, catalog: ctx.catalog });
    for (const u of Object.keys(ctx.keys)) ctx.clients[u] = api(ctx.engine, ctx.keys[u]);
    ctx.client = ctx.clients[users[0]];
    return ctx.engine;
  };
  ctx.teardown = async () => {
    let err = null;
    try {
      if (ctx.engine && !ctx.engine.exitInfo()) await ctx.engine.stop();
    } catch (e) { err = e; }
    await svc.close().catch(() => {});
    await dropDb(ctx.db).catch((e) => { err = err || e; });
    if (err) throw err;
  };
  return ctx;
}
