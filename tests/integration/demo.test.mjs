// tests/integration/demo.test.mjs — `make demo` end to end: scripts/demo.sh on a fresh
// X402R_HOME (the embedded default: private PostgreSQL and Redis initialised from nothing) starts
// the local x402 marketplace, funds the user "demo" with an on-chain deposit and runs a paid
// workflow with `x402r run`. The output must show the plan, each settlement's transaction id,
// completion, and balances before and after that differ by exactly the total cost; nothing the
// demo started may be left running. Needs no PostgreSQL or Redis of the test environment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SOURCE_DIR, BIN } from '../lib/harness.mjs';

const DROP = ['DATABASE_URL', 'REDIS_URL', 'REGISTRY_URL', 'ESCROW_KEYPAIR', 'CATALOG_FILE', 'PORT', 'DEMO',
              'DEMO_TASK', 'LOG_LEVEL', 'SOLANA_RPC_URL', 'NETWORK', 'ESCROW_ASSET'];

function runDemo(home, timeoutMs) {
  const env = { ...process.env, X402R_HOME: home };
  for (const k of DROP) delete env[k];
  return new Promise((resolve) => {
    // its own process group, so that a timeout can stop all of it
    const p = spawn('bash', [join(SOURCE_DIR, 'scripts', 'demo.sh'), BIN], {
      cwd: SOURCE_DIR, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => { try { process.kill(-p.pid, 'SIGTERM'); } catch { /* gone */ } }, timeoutMs);
    p.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, out, err, pgid: p.pid }); });
  });
}

function pgrep(args) {
  try {
    return execFileSync('pgrep', args, { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return []; // exit 1: nothing matched
  }
}

const atomic = (s) => {
  const [w, f = ''] = s.split('.');
  return BigInt(w) * 1_000_000n + BigInt(f.padEnd(6, '0'));
};

test('make demo runs a paid workflow: plan, settlements, balance before and after', { timeout: 300000 }, async () => {
  const home = mkdtempSync(join(tmpdir(), 'x4t-demo-'));
  try {
    const r = await runDemo(home, 240000);
    const all = `--- stdout\n${r.out}\n--- stderr\n${r.err}`;
    assert.equal(r.code, 0, `demo exited ${r.code} ${r.signal ?? ''}\n${all}`);

    const plan = r.out.match(/^Plan \((\d+) steps, estimated cost ([\d.]+) USDC\):$/m);
    assert.ok(plan, `no plan\n${all}`);
    assert.ok(Number(plan[1]) >= 2, 'a plan of several steps');
    for (const svc of ['dex_volume', 'report']) assert.match(r.out, new RegExp(`^  s\\d+\\s+${svc}\\s`, 'm'), svc);

    const paid = [...r.out.matchAll(/^paid ([\d.]+) USDC for (\S+) \((\S+)\): tx ([1-9A-HJ-NP-Za-km-z]+)$/gm)];
    assert.ok(paid.length >= 1, `no settlement line\n${all}`);
    for (const p of paid) assert.match(p[4], /^[1-9A-HJ-NP-Za-km-z]{64,90}$/, 'a base58 signature');
    assert.equal(new Set(paid.map((p) => p[4])).size, paid.length, 'one transaction per settlement');
    assert.equal(paid.length, Number(plan[1]), 'every step of the plan was paid once');
    assert.doesNotMatch(r.out, /payment for \S+ refused/);

    const done = r.out.match(/^Workflow wf_\S+ completed\. Total cost: ([\d.]+) USDC$/m);
    assert.ok(done, `not completed\n${all}`);
    const total = atomic(done[1]);
    assert.ok(total > 0n, 'a paid workflow costs something');
    assert.equal(paid.reduce((s, p) => s + atomic(p[1]), 0n), total, 'the settlements add up to the total cost');

    const bal = (which) => {
      const m = r.out.match(new RegExp(`^Balance ${which}: +([\\d.]+) USDC available, ([\\d.]+) held$`, 'm'));
      assert.ok(m, `no "Balance ${which}"\n${all}`);
      return { available: atomic(m[1]), held: atomic(m[2]) };
    };
    const before = bal('before');
    const after = bal('after');
    assert.equal(before.available, 2_000_000n, 'the demo deposit (2 USDC) on a fresh home');
    assert.equal(after.available, before.available - total, 'after = before - total cost');
    assert.equal(after.held, 0n, 'nothing stays held');
    assert.ok(r.out.indexOf('Balance before') < r.out.indexOf('Approved'), 'the balance is shown before approving');
    assert.ok(r.out.indexOf('Balance after') > done.index, 'and after the end');
    const secret = JSON.parse(readFileSync(join(home, 'marketplace', 'marketplace.json'), 'utf8')).escrow.secretBase64;
    assert.ok(!(r.out + r.err).includes(secret), 'the escrow secret is never printed');

    // nothing left running: the demo's process group, anything naming its home, the pid files
    assert.deepEqual(pgrep(['-g', String(r.pgid)]), [], 'a process of the demo is still running');
    assert.deepEqual(pgrep(['-f', home]), [], `a process under ${home} is still running`);
    assert.ok(!existsSync(join(home, 'pgdata', 'postmaster.pid')), 'PostgreSQL stopped');
    assert.ok(!existsSync(join(home, 'run', 'redis.pid')), 'Redis stopped');
    assert.ok(!existsSync(join(home, 'marketplace', 'marketplace.pid')), 'marketplace stopped');
  } finally {
    for (const pid of pgrep(['-f', home])) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
    rmSync(home, { recursive: true, force: true });
  }
});
