// tests/integration/marketplace.test.mjs — the local x402 marketplace (examples/marketplace)
// against the REAL protocol peers: its own smoke run pays v1 and v2 services with @x402/fetch
// through the @x402/core + @x402/svm facilitator on the LiteSVM chain and checks every balance.
// Also the start/stop script the demo and the payment tests use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SOURCE_DIR } from '../lib/harness.mjs';

function run(cmd, args, timeout = 120000) {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: SOURCE_DIR, timeout, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? -1) : 0, stdout, stderr }));
  });
}

test('the smoke run passes against the real @x402 peers', async () => {
  const r = await run('node', [join(SOURCE_DIR, 'examples/marketplace/smoke.mjs')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const m = /smoke: (\d+) passed, (\d+) failed/.exec(r.stdout + r.stderr);
  assert.ok(m, 'smoke prints its tally');
  assert.equal(Number(m[2]), 0);
  assert.ok(Number(m[1]) >= 19);
});

test('scripts/marketplace.sh starts it, describes it, and stops it idempotently', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'x4t-market-'));
  try {
    const up = await run('bash', ['scripts/marketplace.sh', 'start', dir, '--port-base', '0']);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    const info = JSON.parse(readFileSync(join(dir, 'marketplace.json'), 'utf8'));
    assert.equal(info.network, 'solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1');
    assert.match(info.escrow.address, /^[1-9A-HJ-NP-Za-km-z]{32,44}$/);
    assert.equal(Buffer.from(info.escrow.secretBase64, 'base64').length, 64);
    const reg = await fetch(`${info.registryUrl}/services/discover`);
    assert.equal(reg.status, 200);
    const services = await reg.json();
    assert.ok(Array.isArray(services) ? services.length > 0 : Object.values(services).some(Array.isArray));
    const disc = await (await fetch(`${info.discoveryUrl}?limit=2&offset=0`)).json();
    assert.equal(disc.items.length, 2);
    assert.ok(disc.pagination.total >= info.services.length - 1);
    const rpc = await (await fetch(info.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'getTokenAccountBalance', params: [info.escrow.tokenAccount] }) })).json();
    assert.equal(rpc.result.value.decimals, 6);
    assert.ok(BigInt(rpc.result.value.amount) > 0n, 'the escrow wallet is funded');
    const down = await run('bash', ['scripts/marketplace.sh', 'stop', dir]);
    assert.equal(down.code, 0, down.stderr);
    const again = await run('bash', ['scripts/marketplace.sh', 'stop', dir]);
    assert.equal(again.code, 0, 'stop is idempotent');
  } finally {
    await run('bash', ['scripts/marketplace.sh', 'stop', dir]);
    rmSync(dir, { recursive: true, force: true });
  }
});
