// tests/integration/bench_smoke.test.mjs — CI smoke run of the throughput benchmark
// (bench/throughput/run.mjs --smoke, issue 6 item 8), so the script never rots. It installs the
// benchmark's npm dependencies (bullmq, ws) with scripts/npm-install.sh if they are missing,
// runs a few seconds at concurrency 4 on the ctest PostgreSQL + Redis ($X4_TESTENV) and checks
// that the script exits 0 and prints its table with positive throughput for x402r and BullMQ.
// No timing assertions: the figures go to bench/RESULTS.md from a full run by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, SOURCE_DIR, TESTENV } from '../lib/harness.mjs';

const dir = join(SOURCE_DIR, 'bench', 'throughput');

test('throughput benchmark smoke run prints positive throughput for x402r and BullMQ', { timeout: 240000 }, () => {
  assert.ok(TESTENV, 'X4_TESTENV must be set (ctest sets it)');
  assert.ok(existsSync(BIN), `engine binary not found: ${BIN}`);
  const inst = spawnSync('bash', [join(SOURCE_DIR, 'scripts', 'npm-install.sh'), 'bench/throughput'],
    { encoding: 'utf8', timeout: 180000 });
  assert.equal(inst.status, 0, `npm install of bench/throughput failed:\n${inst.stderr}`);

  const r = spawnSync('node', [join(dir, 'run.mjs'), '--smoke'],
    { encoding: 'utf8', env: { ...process.env, X402R_BIN: BIN, X4_TESTENV: TESTENV }, timeout: 180000 });
  assert.equal(r.status, 0, `run.mjs --smoke exited ${r.status} ${r.signal || ''}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  assert.match(r.stdout, /^Machine: nproc \d+/m);
  assert.match(r.stdout, /synchronous_commit=on/);
  // | system | completion seen via | workflows/s | p50 ms | p99 ms | completed | errors | …
  const rows = r.stdout.split('\n').filter((l) => /^\| (x402r|BullMQ) \|/.test(l))
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
  const wps = (name, via) => rows.filter((c) => c[0] === name && (!via || c[1].startsWith(via))).map((c) => Number(c[2]));
  for (const [name, via] of [['x402r', 'WebSocket'], ['x402r', 'poll'], ['BullMQ', null]]) {
    const v = wps(name, via);
    assert.equal(v.length, 1, `one ${name} ${via || ''} row in the table:\n${r.stdout}`);
    assert.ok(v[0] > 0, `${name} ${via || ''} throughput is positive: ${v[0]}`);
  }
  assert.match(r.stdout, /Ratio x402r \(WebSocket\) \/ BullMQ workflows\/s: \*\*\d/);
});
