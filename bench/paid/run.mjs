#!/usr/bin/env node
// bench/paid/run.mjs — paid workflow throughput (issue 6, item 2): the diamond with every step
// paid over x402 through the local marketplace (examples/marketplace: LiteSVM chain behind
// JSON-RPC, the @x402/core + @x402/svm facilitator, @x402/express and @x402/hono services),
// with the facilitator's and the chain's share reported separately.
//
//   node bench/paid/run.mjs [--seconds 30] [--concurrency 16] [--runs 3] [--warmup 3] [--smoke] [--write|--no-write]
//
// Set-up (as scripts/demo.sh and tests/integration/payments.test.mjs): the marketplace on free
// ports (scripts/marketplace.sh), `x402r serve` with its escrow wallet (ESCROW_KEYPAIR,
// SOLANA_RPC_URL, NETWORK=devnet, ESCROW_ASSET = its USDC mint, REGISTRY_URL = its registry, so
// the catalog is the registry's paid services), the user `bench` with an escrow account for the
// test wallet user1, and a real on-chain deposit of 45 USDC credited through
// POST /escrow/bench/deposit. The diamond:
//   a  dex_volume {chain: solana, days: 7}                        $0.001   (express v2)
//   b  trend_analysis {series: a.series}                  ← a     $0.0005  (hono v2)
//   c  token_prices {chain: solana, days: 7}              ← a     $0.002   (express v2)
//   d  report {title, trend: b.trend, series: a.series,
//              prices: c.prices}                          ← b, c  $0.003   (hono v2)
// Each workflow is created, approved (the hold is taken) and waited for over WebSocket; it must
// complete with d.report a string and total cost 6500 atomic units (checked on a sample).
// Every step: request → 402 → the engine signs a payment from the escrow wallet (committed to
// PostgreSQL first) → paid request → the service calls the facilitator's /verify, answers, and
// /settle lands the transfer on the chain → the engine records the settlement.
//
// Where the time goes: the facilitator counts its /verify and /settle calls and the ms spent
// inside them, and the chain's JSON-RPC server its requests and ms (GET /stats, a test aid of
// the marketplace), read before and after the load; per workflow = Δ / workflows completed.
// The facilitator's calls include its own chain requests (simulate, send, confirm), so the chain
// figure overlaps the facilitator's; the engine's own chain requests (blockhash) are in the chain
// figure only. CPU per workflow for the engine, PostgreSQL and the marketplace process.
import { join } from 'node:path';
import {
  ROOT, argsOf, f1, f2, log, machineLine, makeClient, measureLoop, median, pgCommits, pidFile, setupEnv,
  sleep, startEngine, stopEngine, writeSection,
} from '../lib/common.mjs';
import { diamondWorkflow } from '../lib/diamond.mjs';

const { argv, flag, opt } = argsOf();
const SMOKE = flag('--smoke');
const SECONDS = Number(opt('--seconds', SMOKE ? 12 : 30)); // smoke: a paid diamond takes seconds on a loaded machine
const CONC = Number(opt('--concurrency', SMOKE ? 2 : 16));
const RUNS = Number(opt('--runs', SMOKE ? 1 : 3));
const WARMUP = Number(opt('--warmup', SMOKE ? 0 : 3));
const WRITE = flag('--write') || (!SMOKE && !flag('--no-write'));
if (!(SECONDS > 0 && CONC > 0 && RUNS > 0 && WARMUP >= 0)) {
  console.error('usage: node bench/paid/run.mjs [--seconds N] [--concurrency C] [--runs R] [--warmup S] [--smoke] [--write|--no-write]');
  process.exit(2);
}

const ref = (p) => ({ $ref: p });
const PLAN = { steps: [
  { id: 'a', service: 'dex_volume', inputs: { chain: 'solana', days: 7 }, dependsOn: [] },
  { id: 'b', service: 'trend_analysis', inputs: { series: ref('a.series') }, dependsOn: ['a'] },
  { id: 'c', service: 'token_prices', inputs: { chain: 'solana', days: 7 }, dependsOn: ['a'] },
  { id: 'd', service: 'report', inputs: { title: 'bench', trend: ref('b.trend'), series: ref('a.series'), prices: ref('c.prices') }, dependsOn: ['b', 'c'] },
] };
const COST = 6500n;
const check = (out) => { if (typeof out?.d?.report !== 'string') throw new Error(`wrong output ${JSON.stringify(out).slice(0, 300)}`); };

async function main() {
  // tests/lib/chain.mjs: the marketplace through scripts/marketplace.sh, and signed transfers
  const { startMarket, transfer } = await import(join(ROOT, 'tests', 'lib', 'chain.mjs'));
  const env = await setupEnv();
  let market = null;
  let engine = null;
  try {
    log('starting the marketplace');
    market = await startMarket();
    const i = market.info;
    const marketPid = pidFile(join(market.dir, 'marketplace.pid'));
    engine = await startEngine(env, { extraEnv: {
      ESCROW_KEYPAIR: i.escrow.secretBase64, SOLANA_RPC_URL: i.rpcUrl, NETWORK: 'devnet', ESCROW_ASSET: i.mint,
      REGISTRY_URL: i.registryUrl, MAX_CONCURRENCY: '1024',
    } });
    const req = makeClient(engine.port, engine.key, CONC * 2);
    for (let k = 0; ; k++) { // the catalog comes from the registry
      const s = await req('GET', '/services?limit=100');
      const ids = new Set((s.json?.services ?? []).map((x) => x.id));
      if (['dex_volume', 'trend_analysis', 'token_prices', 'report'].every((x) => ids.has(x))) break;
      if (k > 100) throw new Error(`the registry's services never reached the catalog: ${s.text.slice(0, 300)}`);
      await sleep(100);
    }
    const cr = await req('POST', '/escrow/bench/create', { userWallet: i.wallets.user1.address });
    if (cr.status !== 201) throw new Error(`escrow create: ${cr.status} ${cr.text}`);
    const sig = await transfer(market, { from: 'user1', mint: i.mint, toAccount: i.escrow.tokenAccount, amount: 45_000_000n });
    const dep = await req('POST', '/escrow/bench/deposit', { signature: sig });
    if (dep.status !== 200) throw new Error(`deposit: ${dep.status} ${dep.text}`);
    const stats = async () => (await fetch(`${i.facilitatorUrl}/stats`)).json();
    const runs = [];
    for (let run = 1; run <= RUNS; run++) {
      log(`run ${run}/${RUNS}: paid diamond ${SECONDS} s × ${CONC} in flight`);
      const s0 = await stats();
      const ids = [];
      const one = diamondWorkflow(engine, req, 'ws', 0, { plan: PLAN, check });
      const m = await measureLoop({
        name: 'x402r paid', wait: 'WebSocket', seconds: SECONDS, warmup: WARMUP, conc: CONC,
        cpuPids: { engine: engine.proc.pid, pg: env.pgPid, market: marketPid }, counters: { commits: pgCommits(env) },
        one: async () => { ids.push(await one()); },
      });
      const s1 = await stats();
      const n = Math.max(1, m.total);
      const d = (f) => (f(s1) - f(s0)) / n;
      const r = {
        ...m, verify: d((s) => s.verify), verifyMs: d((s) => s.verifyMs), settle: d((s) => s.settle), settleMs: d((s) => s.settleMs),
        rpc: d((s) => s.rpc?.requests ?? NaN), rpcMs: d((s) => s.rpc?.ms ?? NaN),
      };
      // a sample is checked in full: completed at exactly its price
      const last = ids.at(-1);
      if (last) {
        const g = await req('GET', `/workflows/${last}`);
        const cost = BigInt(g.json?.workflow?.totalCost?.atomic ?? -1);
        if (cost !== COST) throw new Error(`${last}: total cost ${cost}, expected ${COST}`);
      }
      log(`  ${f1(r.wps)} wf/s p50 ${f1(r.p50)} ms; facilitator ${f1(r.verifyMs + r.settleMs)} ms/wf, chain ${f1(r.rpcMs)} ms/wf`);
      runs.push(r);
    }
    const col = (fn) => median(runs.map(fn));
    const row = {
      wps: col((r) => r.wps), p50: col((r) => r.p50), p99: col((r) => r.p99), completed: col((r) => r.completed),
      errors: col((r) => r.errors), engine: col((r) => r.cpu.engine), pg: col((r) => r.cpu.pg), market: col((r) => r.cpu.market),
      commits: col((r) => r.cpu.commits), verify: col((r) => r.verify), verifyMs: col((r) => r.verifyMs), settle: col((r) => r.settle),
      settleMs: col((r) => r.settleMs), rpc: col((r) => r.rpc), rpcMs: col((r) => r.rpcMs),
    };
    const head = `${SMOKE ? 'Smoke run' : `Median of ${RUNS} run(s)`}: ${SECONDS} s measured (after ${WARMUP} s warm-up), ` +
      `${CONC} workflows in flight, the paid 4-step diamond (4 x402 payments per workflow, $0.0065); ` +
      `marketplace chain slot ${market.info.chain?.slotMs ?? '?'} ms.`;
    const tbl = [
      '| workflows/s | p50 ms | p99 ms | completed | errors | engine CPU ms/wf | PostgreSQL CPU ms/wf | PostgreSQL commits/wf | marketplace CPU ms/wf |',
      '|---|---|---|---|---|---|---|---|---|',
      `| ${f1(row.wps)} | ${f1(row.p50)} | ${f1(row.p99)} | ${Math.round(row.completed)} | ${Math.round(row.errors)} | ${f2(row.engine)} | ${f2(row.pg)} | ${f1(row.commits)} | ${f2(row.market)} |`,
      '',
      '| where the time goes, per workflow | calls/wf | ms/wf | ms/call | share of p50 (serial sum) |',
      '|---|---|---|---|---|',
      `| facilitator /verify | ${f1(row.verify)} | ${f1(row.verifyMs)} | ${f1(row.verifyMs / row.verify)} | ${f1((100 * row.verifyMs) / row.p50)} % |`,
      `| facilitator /settle | ${f1(row.settle)} | ${f1(row.settleMs)} | ${f1(row.settleMs / row.settle)} | ${f1((100 * row.settleMs) / row.p50)} % |`,
      `| chain JSON-RPC (all callers) | ${f1(row.rpc)} | ${f1(row.rpcMs)} | ${f2(row.rpcMs / row.rpc)} | ${f1((100 * row.rpcMs) / row.p50)} % |`,
    ].join('\n');
    const machine = machineLine(env);
    console.log(`${head}\n${machine}\n\n${tbl}`);
    if (WRITE) {
      const cmd = `node bench/paid/run.mjs ${argv.filter((a) => a !== '--write').join(' ')}`.trim();
      writeSection('paid', `## Paid throughput (issue 6, item 2)\n\nGenerated by \`${cmd}\`.\n\n${head}\n\n${machine}\n\n${tbl}\n\n` +
        'Facilitator and chain figures: the marketplace\'s own counters (GET /stats), Δ over the load / workflows ' +
        'completed. The facilitator\'s time includes its chain requests; "share of p50" divides the per-workflow sum ' +
        'by the p50 end-to-end latency — b and c run in parallel, so it overstates the critical path. Everything ' +
        '(marketplace, engine, PostgreSQL, Redis, client) shares the machine\'s cores.\n');
    }
    const ok = runs.every((r) => r.completed > 0);
    if (!ok) log('no paid workflow completed in the window');
    return ok ? 0 : 1;
  } finally {
    await stopEngine(engine);
    if (market) await market.stop();
    await env.teardown();
  }
}

main().then((code) => process.exit(code), (e) => { console.error(e.stack || e.message); process.exit(1); });
