#!/usr/bin/env node
// bench/dispatch/run.mjs — step dispatch overhead (issue 6, item 3): from a step's last dependency
// completing to the step's request on the wire, p50 and p99.
//
//   node bench/dispatch/run.mjs [--seconds 20] [--concurrency 1,16] [--runs 3] [--smoke] [--write|--no-write]
//
// Measured from outside the engine, on one clock: the local service (bench/throughput/service.mjs
// --trace) stamps when each request arrives and when it hands its response to the socket, keyed
// by the X-Workflow-Id / X-Step-Id headers the engine sends. For the diamond a → b, c → d:
//   fan-out  b and c: arrival(b|c) − response(a)
//   join     d:       arrival(d) − max(response(b), response(c))
// What that interval holds, in order: the response on the loopback, the engine reading and
// parsing it, the DURABLE write of the dependency's success (a PostgreSQL commit with
// synchronous_commit=on — the engine makes a result durable before it acts on it), the durable
// write of the dependent's `running` (before any request is sent, so a crash never calls a
// service twice unknowingly), binding the inputs, and the request's bytes reaching the service.
// Since sql/090_perf.sql the two writes are one transaction when the success is what makes the
// dependent ready (the fan-out; a join whose other dependencies had landed already); a join
// whose dependencies finish together still takes two commits. The commits dominate.
// The x402r workflows run as in bench/throughput (create → approve → completion over
// WebSocket), at each concurrency in --concurrency (1 = the bare latency, higher = under load).
import { loadavg } from 'node:os';
import { join } from 'node:path';
import {
  ROOT, argsOf, f2, log, machineLine, makeClient, measureLoop, median, quantile, setupEnv, spawnReady, startEngine,
  stopEngine, stopProc, writeSection,
} from '../lib/common.mjs';
import { ADD_SERVICE, diamondWorkflow } from '../lib/diamond.mjs';

const { argv, flag, opt } = argsOf();
const SMOKE = flag('--smoke');
const SECONDS = Number(opt('--seconds', SMOKE ? 2 : 20));
const CONCS = String(opt('--concurrency', SMOKE ? '1' : '1,16')).split(',').map(Number);
const RUNS = Number(opt('--runs', SMOKE ? 1 : 3));
const WARMUP = Number(opt('--warmup', SMOKE ? 0 : 2));
const WRITE = flag('--write') || (!SMOKE && !flag('--no-write'));
if (!(SECONDS > 0 && RUNS > 0 && WARMUP >= 0 && CONCS.every((c) => Number.isInteger(c) && c > 0))) {
  console.error('usage: node bench/dispatch/run.mjs [--seconds N] [--concurrency C[,C...]] [--runs R] [--warmup S] [--smoke] [--write|--no-write]');
  process.exit(2);
}

// intervals(calls, ids) → {fanout: [ms], join: [ms]} for the workflows in ids
function intervals(calls, ids) {
  const by = new Map();
  for (const [wf, step, tin, tout] of calls) {
    if (!ids.has(wf)) continue;
    let m = by.get(wf);
    if (!m) by.set(wf, (m = {}));
    m[step] = { tin, tout }; // one attempt per step here (the service never fails)
  }
  const fanout = [];
  const join = [];
  for (const m of by.values()) {
    if (!m.a || !m.b || !m.c || !m.d) continue;
    fanout.push(m.b.tin - m.a.tout, m.c.tin - m.a.tout);
    join.push(m.d.tin - Math.max(m.b.tout, m.c.tout));
  }
  fanout.sort((x, y) => x - y);
  join.sort((x, y) => x - y);
  return { fanout, join };
}

async function main() {
  const env = await setupEnv();
  let svc = null;
  let engine = null;
  try {
    svc = await spawnReady(process.execPath, [join(ROOT, 'bench', 'throughput', 'service.mjs'), '--trace'], {}, /listening on (\d+)/, 'local service');
    const svcPort = Number(svc.match[1]);
    const svcReq = makeClient(svcPort, null, 2);
    engine = await startEngine(env, { catalog: { services: [ADD_SERVICE(`http://127.0.0.1:${svcPort}`)] } });
    log(`engine pid ${engine.proc.pid} on :${engine.port}`);
    const req = makeClient(engine.port, engine.key, Math.max(...CONCS) * 2);
    const rows = [];
    for (const conc of CONCS) {
      const runs = [];
      for (let run = 1; run <= RUNS; run++) {
        log(`concurrency ${conc}, run ${run}/${RUNS}: ${SECONDS} s`);
        await svcReq('GET', '/trace'); // forget the warm-up of the previous round
        const ids = new Set();
        const load1 = loadavg()[0]; // the shared machine's noise, reported with the run
        const one = diamondWorkflow(engine, req, 'ws');
        const m = await measureLoop({
          name: 'x402r', wait: 'ws', cpuPids: {}, seconds: SECONDS, warmup: WARMUP, conc,
          one: async () => { const id = await one(); ids.add(id); },
        });
        const t = await svcReq('GET', '/trace');
        const iv = intervals(t.json.calls, ids);
        runs.push({ wps: m.wps, n: iv.join.length, fo50: quantile(iv.fanout, 0.5), fo99: quantile(iv.fanout, 0.99),
          j50: quantile(iv.join, 0.5), j99: quantile(iv.join, 0.99), e50: m.p50, load1 });
        log(`  fan-out p50 ${f2(runs.at(-1).fo50)} ms, join p50 ${f2(runs.at(-1).j50)} ms p99 ${f2(runs.at(-1).j99)} ms over ` +
          `${iv.join.length} workflows (load average ${f2(load1)})`);
      }
      const col = (k) => median(runs.map((r) => r[k]));
      rows.push({ conc, wps: col('wps'), n: Math.round(col('n')), fo50: col('fo50'), fo99: col('fo99'), j50: col('j50'), j99: col('j99'), e50: col('e50'), load1: col('load1') });
    }
    const head = `${SMOKE ? 'Smoke run' : `Median of ${RUNS} run(s)`}: ${SECONDS} s measured (after ${WARMUP} s warm-up) per concurrency; ` +
      'the free diamond a → b, c → d of bench/throughput, completion over WebSocket.';
    const out = [];
    out.push('| workflows in flight | workflows/s | workflows measured | fan-out a → b, c p50 ms | fan-out p99 ms | join b, c → d p50 ms | join p99 ms | end-to-end p50 ms | load average (1 min) |');
    out.push('|---|---|---|---|---|---|---|---|---|');
    for (const r of rows) out.push(`| ${r.conc} | ${f2(r.wps)} | ${r.n} | ${f2(r.fo50)} | ${f2(r.fo99)} | ${f2(r.j50)} | ${f2(r.j99)} | ${f2(r.e50)} | ${f2(r.load1)} |`);
    const tbl = out.join('\n');
    const machine = machineLine(env);
    console.log(`${head}\n${machine}\n\n${tbl}`);
    if (WRITE) {
      const cmd = `node bench/dispatch/run.mjs ${argv.filter((a) => a !== '--write').join(' ')}`.trim();
      writeSection('dispatch', `## Step dispatch overhead (issue 6, item 3)\n\nGenerated by \`${cmd}\`.\n\n${head}\n\n${machine}\n\n${tbl}\n\n` +
        'Interval = the service handing the last dependency\'s response to its socket → the dependent\'s request ' +
        `arriving at the service (one clock, the service\'s). The engine ran with DISPATCH=${process.env.DISPATCH || 'eager'}: ` +
        'with eager (the default) the dependent\'s request goes out beside the commit of the success that made it ready ' +
        'and of its own `running`, and its answer waits for that commit; with durable the request waits for the ' +
        'commit, which is then inside the interval. Load average: the machine\'s 1-minute load when each run starts ' +
        '(2 cores, shared).\n');
    }
    const ok = rows.every((r) => r.n > 0 && Number.isFinite(r.j50));
    if (!ok) log('no workflow measured');
    return ok ? 0 : 1;
  } finally {
    await stopEngine(engine);
    if (svc) await stopProc(svc.proc);
    await env.teardown();
  }
}

main().then((code) => process.exit(code), (e) => { console.error(e.stack || e.message); process.exit(1); });
