#!/usr/bin/env node
// bench/wsscale/run.mjs — WebSocket scale (issue 6, item 4): N concurrent subscribed event streams
// on one engine process; resident memory per connection, and event fan-out latency while
// events are published at a fixed rate.
//
//   node bench/wsscale/run.mjs [--connections 20000, or the descriptor hard limit − 100 if lower] [--per-workflow 1] [--rate 10000] [--seconds 10]
//        [--runs 3] [--clients K] [--warmup-rounds 1] [--smoke] [--write|--no-write]
//
// Per run (a fresh engine each time):
//   1. N / per-workflow real workflows of the user `bench` are inserted straight into PostgreSQL
//      (awaiting approval, no events yet) — creating 20,000 through the API would only measure
//      creation;
//   2. `x402r serve` runs under `prlimit --nofile=min(N+4096, hard limit)`; K client processes
//      (this script with --client, limit raised likewise; default max(4, one per 5,000)) open
//      /workflows/:id/stream?since=0, at most 256 handshakes in flight each, and wait until
//      every stream's initial catch-up read has answered;
//   3. resident memory: the engine's VmRSS before the first connection and with all N open and
//      idle; per connection = (after − before) / N;
//   4. warm-up: `--warmup-rounds` events per workflow (default 1: every connection's first event;
//      0 with --smoke) published exactly as below, their latency reported apart (the first send
//      on each idle connection, in the engine, the kernel and the client alike, is a one-time
//      cost, not the steady state asked for);
//   5. fan-out: this process publishes `--rate` × `--seconds` events at `--rate` per second on the Redis
//      channel x402r:events, in the bus format ("<owner>\n<envelope>", another owner than the
//      engine), round robin over the workflows, seq 1, 2, 3 … per workflow, so each is the next
//      event every subscriber of that workflow expects and goes out at once (http/stream.c).
//      data.t = Date.now() at publish; a client records Date.now() − t on receipt (one clock:
//      same machine). p50 / p99 / max over all deliveries; deliveries received / expected; the
//      engine's CPU time (user + system, /proc) from the first publish to 1.5 s after the last,
//      per 1,000 deliveries and as a share of one core over the publishing seconds, and the
//      machine's 1-minute load average when publishing starts (the noise of the shared machine).
// The clients and the publisher share the machine's cores with the engine and Redis: their own
// event-loop delay is part of the latency measured (an upper bound for the engine's share).
import { fork, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  argsOf, benchRequire, cpuMs, f0, f1, f2, log, machineLine, median, quantile, rssKb, setupEnv, sleep, startEngine, stopEngine,
  writeSection,
} from '../lib/common.mjs';

const SELF = fileURLToPath(import.meta.url);
const { argv, flag, opt } = argsOf();

// ---------------------------------------------------------------------------------------------
// main

// A client is forked with an IPC channel, then its descriptor limit is raised with
// `prlimit --pid` (root, or a hard limit that allows it).
function forkClient() {
  const c = fork(SELF, ['--client'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const msgs = [];
  const waiters = [];
  c.on('message', (m) => { const w = waiters.shift(); if (w) w(m); else msgs.push(m); });
  const next = () => new Promise((r) => { const m = msgs.shift(); if (m) r(m); else waiters.push(r); });
  return { c, next };
}

// the descriptor limit a process here may raise itself to (without CAP_SYS_RESOURCE, the hard one)
const HARD_NOFILE = ((h) => (h === 'unlimited' ? Infinity : Number(h) || 1024))(spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim());
const DEFAULT_N = Math.min(20000, HARD_NOFILE === Infinity ? 20000 : HARD_NOFILE - 100);

function raiseNofile(pid, want) {
  const n = Math.min(want, HARD_NOFILE);
  const r = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${n}:${n}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`prlimit --pid ${pid} --nofile=${n}: ${r.stderr}`);
}

async function oneRun(env, o) {
  const W = Math.ceil(o.N / o.perWf);
  const tag = randomBytes(3).toString('hex');
  const ids = Array.from({ length: W }, (_, i) => `wsb${tag}_${i}`);
  const engine = await startEngine(env, { nofile: Math.min(o.N + 4096, HARD_NOFILE) });
  const Redis = benchRequire('ioredis');
  const pub = new Redis({ path: env.redisSock, lazyConnect: false, maxRetriesPerRequest: null });
  const clients = [];
  try {
    env.psql(`INSERT INTO workflows (id, user_id, status, input, expires_at)
              SELECT 'wsb${tag}_' || g, 'bench', 'awaiting_approval', 'ws scale', now() + interval '1 day'
                FROM generate_series(0, ${W - 1}) g`);
    await sleep(1000);
    const rss0 = rssKb(engine.proc.pid);
    // connections: N ids (each workflow perWf times), split over K clients
    const all = [];
    for (let r = 0; r < o.perWf; r++) for (const id of ids) if (all.length < o.N) all.push(id);
    const K = o.clients || Math.max(4, Math.ceil(o.N / 5000));
    for (let k = 0; k < K; k++) {
      const cl = forkClient();
      await cl.next(); // ready
      raiseNofile(cl.c.pid, Math.ceil(o.N / K) + 1024);
      clients.push(cl);
    }
    const t0 = Date.now();
    clients.forEach((cl, k) => cl.c.send({ cmd: 'open', port: engine.port, key: engine.key, ids: all.filter((_, i) => i % K === k) }));
    const opened = await Promise.all(clients.map((cl) => cl.next()));
    const nOpen = opened.reduce((a, m) => a + m.opened, 0);
    const nFail = opened.reduce((a, m) => a + m.failed, 0);
    const connectS = (Date.now() - t0) / 1000;
    log(`${nOpen} streams open (${nFail} failed${nFail ? `: ${opened.find((m) => m.failed)?.lastErr}` : ''}) in ${f1(connectS)} s`);
    // every stream's initial catch-up read must have answered before live events are sent
    const health = async () => { try { return (await (await fetch(`http://127.0.0.1:${engine.port}/health`)).json()); } catch { return null; } };
    for (let i = 0; i < 100; i++) {
      const h = await health();
      if ((h?.websockets ?? h?.streams ?? nOpen) >= nOpen && (h?.db?.pending ?? 0) === 0) break;
      await sleep(100);
    }
    await sleep(2000);
    const rss1 = rssKb(engine.proc.pid);
    // fan-out
    const seqs = new Array(W).fill(0);
    let rr = 0;
    const owner = `bench-${tag}`;
    // publishes `total` events at o.rate, round robin over the workflows; returns the start time
    const publish = async (total) => {
      let sent = 0;
      const start = Date.now();
      while (sent < total) {
        const due = Math.min(Math.floor(((Date.now() - start) / 1000) * o.rate), total);
        if (due > sent) {
          const p = pub.pipeline();
          const t = Date.now();
          for (; sent < due; sent++) {
            const w = rr++ % W;
            const seq = ++seqs[w];
            p.publish('x402r:events', `${owner}\n{"workflowId":"${ids[w]}","seq":${seq},"type":"bench.tick","data":{"t":${t}},"timestamp":"${new Date(t).toISOString()}"}`);
          }
          await p.exec();
        }
        if (sent < total) await sleep(5);
      }
      const elapsed = (Date.now() - start) / 1000;
      await sleep(1500); // let the last deliveries arrive
      return { start, elapsed };
    };
    const collect = () => Promise.all(clients.map((cl) => { cl.c.send({ cmd: 'report' }); return cl.next(); }));
    // warm-up: every connection's first event(s), at the same rate, measured apart
    let warm = [];
    let warmCpu = NaN;
    if (o.warmRounds > 0) {
      const c0 = cpuMs(engine.proc.pid);
      await publish(o.warmRounds * W);
      warmCpu = cpuMs(engine.proc.pid) - c0;
      warm = (await collect()).flatMap((m) => m.lat).sort((a, b) => a - b);
    }
    const sent = o.rate * o.seconds;
    const load1 = loadavg()[0];
    const cpu0 = cpuMs(engine.proc.pid);
    const { start, elapsed } = await publish(sent);
    const engCpu = cpuMs(engine.proc.pid) - cpu0;
    const reps = await collect();
    const lat = reps.flatMap((m) => m.lat).sort((a, b) => a - b);
    // where the tail comes from: the publish-time windows (100 ms) with the slowest deliveries
    const win = new Map();
    for (const m of reps) {
      for (let i = 0; i < m.lat.length; i++) {
        const w = Math.floor((m.pubT[i] - start) / 100);
        const x = win.get(w) || { n: 0, max: 0, over50: 0 };
        x.n++;
        x.max = Math.max(x.max, m.lat[i]);
        if (m.lat[i] > 50) x.over50++;
        win.set(w, x);
      }
    }
    const worst = [...win.entries()].sort((a, b) => b[1].max - a[1].max).slice(0, 5)
      .map(([w, x]) => `${(w / 10).toFixed(1)} s: max ${x.max} ms, ${x.over50}/${x.n} over 50 ms`);
    const slowWindows = [...win.values()].filter((x) => x.over50 > 0).length;
    log(`  100-ms publish windows with a delivery over 50 ms: ${slowWindows} of ${win.size}; worst: ${worst.join('; ')}`);
    const expected = sent * o.perWf;
    const openEnd = reps.reduce((a, m) => a + m.open, 0);
    return {
      N: o.N, W, nOpen, nFail, openEnd, connectS, rss0, rss1, perConnKb: (rss1 - rss0) / Math.max(1, nOpen),
      sent, rate: sent / elapsed, expected, received: lat.length, load1,
      cpuPer1k: (engCpu / Math.max(1, lat.length)) * 1000, cpuShare: (engCpu / (elapsed * 1000)) * 100,
      warmN: warm.length, warmP50: quantile(warm, 0.5), warmP99: quantile(warm, 0.99),
      warmCpuPer1k: (warmCpu / Math.max(1, warm.length)) * 1000,
      p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), max: lat.length ? lat[lat.length - 1] : NaN,
    };
  } finally {
    for (const cl of clients) { try { cl.c.send({ cmd: 'exit' }); } catch { /* gone */ } }
    pub.disconnect();
    await stopEngine(engine);
  }
}

async function main() {
  const SMOKE = flag('--smoke');
  const o = {
    N: Number(opt('--connections', SMOKE ? 200 : DEFAULT_N)),
    perWf: Number(opt('--per-workflow', 1)),
    rate: Number(opt('--rate', SMOKE ? 1000 : 10000)),
    seconds: Number(opt('--seconds', SMOKE ? 2 : 10)),
    runs: Number(opt('--runs', SMOKE ? 1 : 3)),
    clients: Number(opt('--clients', 0)),
    warmRounds: Number(opt('--warmup-rounds', SMOKE ? 0 : 1)),
  };
  const WRITE = flag('--write') || (!SMOKE && !flag('--no-write'));
  if (!(o.N > 0 && o.perWf > 0 && o.rate > 0 && o.seconds > 0 && o.runs > 0 && o.clients >= 0 &&
        Number.isInteger(o.warmRounds) && o.warmRounds >= 0)) {
    console.error('usage: node bench/wsscale/run.mjs [--connections N] [--per-workflow P] [--rate EV/S] [--seconds S] [--runs R] [--clients K] [--warmup-rounds R] [--smoke] [--write|--no-write]');
    return 2;
  }
  const env = await setupEnv();
  try {
    const runs = [];
    for (let i = 1; i <= o.runs; i++) {
      log(`run ${i}/${o.runs}: ${o.N} connections, ${o.rate} events/s for ${o.seconds} s`);
      const r = await oneRun(env, o);
      log(`  ${f1(r.perConnKb)} KiB/connection, fan-out p50 ${f1(r.p50)} ms p99 ${f1(r.p99)} ms, ${r.received}/${r.expected} delivered, ` +
        `engine ${f1(r.cpuShare)} % of a core (${f1(r.cpuPer1k)} ms CPU per 1,000 deliveries), load average ${f2(r.load1)}; ` +
        `warm-up (first ${o.warmRounds} event(s) per connection, ${r.warmN} deliveries): p50 ${f1(r.warmP50)} ms p99 ${f1(r.warmP99)} ms, ` +
        `engine ${f1(r.warmCpuPer1k)} ms CPU per 1,000 deliveries`);
      runs.push(r);
    }
    const col = (k) => median(runs.map((r) => r[k]));
    const head = `${SMOKE ? 'Smoke run' : `Median of ${o.runs} run(s)`}: ${o.N} connections on one engine process over ` +
      `${Math.ceil(o.N / o.perWf)} workflows (${o.perWf} per workflow); ${o.rate} events/s published for ${o.seconds} s` +
      (o.warmRounds ? `, after a warm-up of ${o.warmRounds} event(s) per workflow at the same rate (measured apart).` : '.');
    const tbl = [
      '| connections open | connect time s | engine RSS idle MiB | engine RSS with N open MiB | KiB per connection | events/s published | deliveries received / expected | fan-out p50 ms | fan-out p99 ms | max ms | warm-up p99 ms | engine CPU % of one core | engine CPU ms per 1,000 deliveries | load average (1 min) |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
      `| ${f0(col('nOpen'))} | ${f1(col('connectS'))} | ${f1(col('rss0') / 1024)} | ${f1(col('rss1') / 1024)} | ${f2(col('perConnKb'))} | ` +
        `${f0(col('rate'))} | ${f0(col('received'))} / ${f0(col('expected'))} | ${f1(col('p50'))} | ${f1(col('p99'))} | ${f0(col('max'))} | ` +
        `${o.warmRounds ? f1(col('warmP99')) : 'n/a'} | ${f1(col('cpuShare'))} | ${f1(col('cpuPer1k'))} | ${f2(col('load1'))} |`,
    ].join('\n');
    const machine = machineLine(env);
    console.log(`${head}\n${machine}\n\n${tbl}`);
    if (WRITE) {
      const cmd = `node bench/wsscale/run.mjs ${argv.filter((a) => a !== '--write').join(' ')}`.trim();
      writeSection('wsscale', `## WebSocket scale (issue 6, item 4)\n\nGenerated by \`${cmd}\`.\n\n${head}\n\n${machine}\n\n${tbl}\n\n` +
        'KiB per connection = (engine VmRSS with all N streams open and idle − VmRSS before the first) / N. ' +
        'Fan-out latency = publish (Date.now() in the publisher, just before the Redis PUBLISH) → receipt by the client ' +
        '(Date.now()), over every delivery; the clients\' and publisher\'s own delays are included. Warm-up p99: ' +
        'the same over each connection\'s first event (published before the measured window). Engine CPU: ' +
        'user + system time of the engine process from the first publish to 1.5 s after the last; load average: ' +
        'the machine\'s, when publishing starts.\n');
    }
    const ok = runs.every((r) => r.nOpen === o.N && r.received > 0);
    if (!ok) log('not every connection opened, or nothing was delivered');
    return ok ? 0 : 1;
  } finally {
    await env.teardown();
  }
}

function clientMode() {
  const WebSocket = benchRequire('ws');
  const socks = [];
  const lat = [];
  const pubT = []; // publish time of each delivery in lat (same index)
  let opened = 0;
  let failed = 0;
  let lastErr = '';
  let stray = 0;
  process.on('message', async (m) => {
    if (m.cmd === 'open') {
      const { port, key, ids } = m;
      let next = 0;
      const one = () => new Promise((res) => {
        const id = ids[next++];
        const ws = new WebSocket(`ws://127.0.0.1:${port}/workflows/${id}/stream?since=0`,
          { headers: { authorization: `Bearer ${key}` }, perMessageDeflate: false });
        let done = false;
        const fin = (ok, e) => { if (!done) { done = true; if (ok) opened++; else { failed++; lastErr = String(e?.message ?? e); } res(); } };
        ws.on('open', () => fin(true));
        ws.on('error', (e) => fin(false, e));
        ws.on('close', () => fin(false, 'closed'));
        ws.on('message', (data) => {
          const now = Date.now();
          let ev;
          try { ev = JSON.parse(data.toString('utf8')); } catch { stray++; return; }
          if (ev.type === 'bench.tick' && typeof ev.data?.t === 'number') { lat.push(now - ev.data.t); pubT.push(ev.data.t); }
          else stray++;
        });
        socks.push(ws);
      });
      const lane = async () => { while (next < ids.length) await one(); };
      await Promise.all(Array.from({ length: Math.min(256, ids.length) }, lane));
      process.send({ cmd: 'opened', opened, failed, lastErr });
    } else if (m.cmd === 'report') {
      process.send({ cmd: 'report', lat, pubT, stray, open: socks.filter((s) => s.readyState === 1).length });
      lat.length = 0;
      pubT.length = 0;
    } else if (m.cmd === 'exit') {
      for (const s of socks) s.terminate();
      process.exit(0);
    }
  });
  process.send({ cmd: 'ready' });
}

if (flag('--client')) clientMode();
else main().then((code) => process.exit(code), (e) => { console.error(e.stack || e.message); process.exit(1); });
