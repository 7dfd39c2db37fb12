// tests/integration/cli.test.mjs — the x402r command line: help and version, configuration
// errors (exit 2, naming the variable), `migrate` twice, `plan`, and `run` end to end against
// the example services (plan → --yes → live progress → outputs, exit 0 only on completion).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, SOURCE_DIR, createDb, dropDb, databaseUrl, redisUrl } from '../lib/harness.mjs';

function x4(args, env = {}, input) {
  return new Promise((resolve) => {
    const child = execFile(BIN, args, { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, timeout: 60000 },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

let db, svc, svcUrl;
before(async () => {
  db = await createDb();
  svc = spawn('node', [join(SOURCE_DIR, 'examples/services/server.mjs'), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  svcUrl = await new Promise((resolve, reject) => {
    let out = '';
    svc.stdout.on('data', (d) => {
      out += d;
      const m = /(http:\/\/[0-9.]+:\d+)/.exec(out);
      if (m) resolve(m[1]);
    });
    svc.on('exit', () => reject(new Error('example services exited: ' + out)));
  });
});
after(async () => {
  svc?.kill();
  if (db) await dropDb(db);
});

test('--help and --version, and every subcommand has --help', async () => {
  const h = await x4(['--help']);
  assert.equal(h.code, 0);
  for (const c of ['serve', 'run', 'plan', 'migrate', 'keys']) assert.match(h.stdout, new RegExp(`\\b${c}\\b`));
  const v = await x4(['--version']);
  assert.match(v.stdout, /^x402r \d+\.\d+\.\d+/);
  for (const c of ['serve', 'run', 'plan', 'migrate', 'keys']) {
    const r = await x4([c, '--help']);
    assert.equal(r.code, 0, `${c} --help`);
    assert.match(r.stdout, new RegExp(`Usage: x402r ${c}`));
  }
  const bad = await x4(['frobnicate']);
  assert.equal(bad.code, 2);
});

test('a bad configuration value exits 2 and names the variable', async () => {
  for (const [name, value] of [['PORT', 'eighty'], ['DATABASE_URL', 'mysql://x'], ['NETWORK', 'ethereum'],
                               ['STEP_TIMEOUT_MS', '-5'], ['ESCROW_KEYPAIR', 'short']]) {
    const r = await x4(['serve'], { [name]: value });
    assert.equal(r.code, 2, `${name}=${value}`);
    assert.match(r.stderr, new RegExp(name));
  }
});

test('migrate applies once, then nothing', async () => {
  const env = { DATABASE_URL: databaseUrl(db) };
  const a = await x4(['migrate'], env);
  assert.equal(a.code, 0, a.stderr);
  const b = await x4(['migrate'], env);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /applied 0 migration/);
});

test('plan prints a valid plan for the demo task', async () => {
  const r = await x4(['plan', '--catalog', join(SOURCE_DIR, 'examples/catalog.json'),
    'Analyze last 30 days of Solana DEX volume and create a trend report'], { EXAMPLES_URL: svcUrl });
  assert.equal(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout);
  assert.ok(plan.steps.length >= 3);
  assert.ok(plan.estimatedCost.atomic);
});

test('run executes the demo task end to end and exits 0', async () => {
  const r = await x4(['run', '--yes', '--catalog', join(SOURCE_DIR, 'examples/catalog.json'),
    'Analyze last 30 days of Solana DEX volume and create a trend report'],
    { EXAMPLES_URL: svcUrl, DATABASE_URL: databaseUrl(db), REDIS_URL: redisUrl() });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Plan \(\d+ steps/);
  assert.match(r.stdout, /step \S+ succeeded/);
  assert.match(r.stdout, /completed\. Total cost: 0\.000000 USDC/);
});

test('run without --yes and a "n" answer cancels and exits 1', async () => {
  const r = await x4(['run', '--catalog', join(SOURCE_DIR, 'examples/catalog.json'),
    'Analyze last 30 days of Solana DEX volume and create a trend report'],
    { EXAMPLES_URL: svcUrl, DATABASE_URL: databaseUrl(db), REDIS_URL: redisUrl() }, 'n\n');
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /cancelled/);
});

test('run of a task nothing matches fails with the reason and exits 1', async () => {
  const r = await x4(['run', '--yes', '--catalog', join(SOURCE_DIR, 'examples/catalog.json'), 'zzqx wvvt plorb'],
    { EXAMPLES_URL: svcUrl, DATABASE_URL: databaseUrl(db), REDIS_URL: redisUrl() });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /failed/);
});

test('keys escrow-new prints a base64 64-byte secret and its base58 address, and they agree', async () => {
  const r = await x4(['keys', 'escrow-new']);
  assert.equal(r.code, 0, r.stderr);
  const m = /^ESCROW_KEYPAIR=([A-Za-z0-9+/=]{88})\nAddress: ([1-9A-HJ-NP-Za-km-z]{32,44})\n$/.exec(r.stdout);
  assert.ok(m, r.stdout.replace(/=.*/, '=<secret>'));
  const secret = Buffer.from(m[1], 'base64');
  assert.equal(secret.length, 64);
  // the engine accepts it: /escrow/address would show it; here `serve` must not refuse the key
  const bad = await x4(['serve'], { ESCROW_KEYPAIR: m[1].slice(0, 80) + 'AAAAAA==', DATABASE_URL: 'postgresql:///nonexistent?host=/nonexistent' });
  assert.equal(bad.code, 1, 'a key whose halves disagree is refused at start');
  assert.match(bad.stderr, /ESCROW_KEYPAIR/);
  assert.ok(!bad.stderr.includes(m[1].slice(0, 40)), 'the secret is never echoed');
  const second = await x4(['keys', 'escrow-new']);
  assert.notEqual(second.stdout, r.stdout, 'a fresh key each time');
});
