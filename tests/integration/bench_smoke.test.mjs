// tests/integration/bench_smoke.test.mjs — CI smoke runs of the benchmark scripts (issue 6, item 8)
// so they never rot: bench/throughput, bench/dispatch, bench/wsscale and bench/paid, each with
// --smoke (a few seconds, a small size, one run, RESULTS.md untouched) on the ctest PostgreSQL +
// Redis ($X4_TESTENV). Each must exit 0 and print its table with figures that show it measured
// something real: positive throughput on both sides of the peer comparison, dispatch intervals,
// every WebSocket opened and events delivered, paid workflows completed with the facilitator's
// calls counted (4 verify + 4 settle per workflow). No timing assertions: the figures in
// bench/RESULTS.md come from full runs by hand. The npm dependencies (bench/throughput,
// examples/marketplace) are installed with scripts/npm-install.sh when missing.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, SOURCE_DIR, TESTENV } from '../lib/harness.mjs';

const bench = join(SOURCE_DIR, 'bench');

// run(script) → stdout of `node bench/<script> --smoke`, asserting exit 0
function run(script, extra = []) {
  const r = spawnSync('node', [join(bench, script), '--smoke', ...extra],
    { encoding: 'utf8', env: { ...process.env, X402R_BIN: BIN, X4_TESTENV: TESTENV }, timeout: 120000 });
  assert.equal(r.status, 0, `${script} --smoke exited ${r.status} ${r.signal || ''}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  assert.match(r.stdout, /^Machine: nproc \d+/m);
  return r.stdout;
}

// the table rows of a markdown table whose first cell matches re, as arrays of trimmed cells
const rows = (out, re) => out.split('\n').filter((l) => l.startsWith('| ') && re.test(l.split('|')[1].trim()))
  .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));

before(() => {
  assert.ok(TESTENV, 'X4_TESTENV must be set (ctest sets it)');
  assert.ok(existsSync(BIN), `engine binary not found: ${BIN}`);
  const inst = spawnSync('bash', [join(SOURCE_DIR, 'scripts', 'npm-install.sh'), 'bench/throughput', 'examples/marketplace'],
    { encoding: 'utf8', timeout: 300000 });
  assert.equal(inst.status, 0, `npm install failed:\n${inst.stderr}`);
});

test('throughput: positive workflows/s for x402r (one stream, WebSocket each, poll) and BullMQ, and a ratio', { timeout: 150000 }, () => {
  const out = run('throughput/run.mjs');
  assert.match(out, /synchronous_commit=on/);
  const r = rows(out, /^(x402r|BullMQ)$/);
  const wps = (name, via) => r.filter((c) => c[0] === name && (!via || c[1].startsWith(via))).map((c) => Number(c[2]));
  for (const [name, via] of [['x402r', 'one /stream'], ['x402r', 'WebSocket'], ['x402r', 'poll'], ['BullMQ', null]]) {
    const v = wps(name, via);
    assert.equal(v.length, 1, `one ${name} ${via || ''} row in the table:\n${out}`);
    assert.ok(v[0] > 0, `${name} ${via || ''} throughput is positive: ${v[0]}`);
  }
  // engine CPU and PostgreSQL commits per workflow are measured, not n/a (a diamond commits at
  // least its create, two batched step writes and its finish; a 3 s window blurs the count)
  const x = r.find((c) => c[0] === 'x402r');
  assert.ok(Number(x[7]) > 0 && Number(x[9]) >= 2, `CPU ms/wf and commits/wf measured: ${x.join(' | ')}`);
  assert.match(out, /Ratio x402r \(WebSocket per workflow\) \/ BullMQ workflows\/s: \*\*\d/);
  assert.match(out, /Ratio x402r \(one \/stream, approve at create\) \/ BullMQ workflows\/s: \*\*\d/);
});

test('dispatch: fan-out and join intervals measured at the service', { timeout: 150000 }, () => {
  const out = run('dispatch/run.mjs');
  const [r] = rows(out, /^\d+$/);
  assert.ok(r, `a concurrency row:\n${out}`);
  assert.ok(Number(r[2]) > 0, `workflows measured: ${r[2]}`);
  for (const i of [3, 4, 5, 6]) assert.ok(Number(r[i]) > 0 && Number(r[i]) < 10000, `interval column ${i} = ${r[i]}`);
  assert.ok(Number(r[6]) >= Number(r[5]), 'join p99 ≥ p50');
});

test('wsscale: every stream opens, memory per connection and fan-out latency measured', { timeout: 150000 }, () => {
  const out = run('wsscale/run.mjs');
  const [r] = rows(out, /^\d+$/);
  assert.ok(r, `a result row:\n${out}`);
  assert.equal(Number(r[0]), 200, 'all 200 connections open');
  assert.ok(Number(r[4]) > 0, `KiB per connection: ${r[4]}`);
  const [got, want] = r[6].split('/').map((x) => Number(x.trim()));
  assert.ok(want > 0 && got === want, `every published event delivered: ${r[6]}`);
  assert.ok(Number(r[8]) >= 0, `fan-out p99: ${r[8]}`);
});

test('paid: paid diamonds complete, 4 verify + 4 settle per workflow', { timeout: 150000 }, () => {
  const out = run('paid/run.mjs');
  const [r] = rows(out, /^\d/);
  assert.ok(r && Number(r[0]) > 0, `paid throughput positive:\n${out}`);
  const verify = rows(out, /^facilitator \/verify$/)[0];
  const settle = rows(out, /^facilitator \/settle$/)[0];
  assert.ok(verify && settle, `facilitator rows:\n${out}`);
  assert.equal(Number(verify[1]), 4, 'one verify per paid step');
  assert.equal(Number(settle[1]), 4, 'one settle per paid step');
  assert.ok(Number(settle[2]) > 0, 'settle time measured');
});
