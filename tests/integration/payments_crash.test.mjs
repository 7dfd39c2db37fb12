// tests/integration/payments_crash.test.mjs — exactly-once payment across a crash: the engine is
// killed with -9 right after a paid request went out (the payment row committed, the header
// sent, the service still working). Another engine takes the workflow over, finds the step's
// payment unresolved, reconciles it on chain, and — the payment having landed — replays the
// same paid request (same header, same Idempotency-Key), which the idempotent service answers
// from its record. The service is paid exactly once, the user charged exactly once, the step
// completes — also when the background reconciler has already charged the landed payment before
// the step runs again (the replay is then of the charged payment). After each test: the ledger
// sums to the balances, the chain covers them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createDb, dropDb, databaseUrl, startEngine, createKey, api, psql, step, ready, approve, waitStatus,
  waitFor, sleep } from '../lib/harness.mjs';
import { startMarket, transfer } from '../lib/chain.mjs';

let market, db, A, B, key, svc;

before(async () => {
  market = await startMarket();
  svc = Object.fromEntries(market.info.services.map((s) => [s.id, s]));
  db = await createDb();
  key = await createKey(databaseUrl(db), 'alice');
});

after(async () => {
  for (const e of [A, B]) if (e && !e.exitInfo()) await e.kill('SIGKILL');
  if (db) await dropDb(db);
  await market?.stop();
});

function env() {
  const i = market.info;
  return { ESCROW_KEYPAIR: i.escrow.secretBase64, SOLANA_RPC_URL: i.rpcUrl, NETWORK: 'devnet', ESCROW_ASSET: i.mint,
    REGISTRY_URL: i.registryUrl, LEASE_MS: '1000', RECONCILE_AFTER_MS: '500', RETRY_MAX_ATTEMPTS: '20',
    RETRY_BASE_MS: '100', RATE_LIMIT_PER_MIN: '0' };
}

test('kill -9 right after a paid request is sent: paid exactly once, and the step completes', async () => {
  A = await startEngine({ db, env: env(), catalog: { services: [] } });
  const c = api(A, key);
  const i = market.info;
  assert.equal((await c.post('/escrow/alice/create', { userWallet: i.wallets.user1.address })).status, 201);
  const sig = await transfer(market, { from: 'user1', mint: i.mint, toAccount: i.escrow.tokenAccount, amount: 2_000_000n });
  assert.equal((await c.post('/escrow/alice/deposit', { signature: sig })).status, 200);
  const payTo = await market.tokenBalance(svc.slow_report.payToTokenAccount);

  const { id } = await ready(c, { input: 'slow paid report', plan: { steps: [step('s', 'slow_report', { title: 't', delayMs: 3000 })] } });
  await approve(c, id);
  // the payment row is committed before the header is sent; give the request a moment to leave
  await waitFor(async () => (await psql(`SELECT count(*) FROM payments WHERE workflow_id = '${id}'`, { db })) === '1',
    { timeout: 15000, message: 'payment committed' });
  await sleep(400);
  await A.kill('SIGKILL');

  B = await startEngine({ db, env: env(), catalog: { services: [] } });
  const done = await waitStatus(api(B, key), id, ['completed', 'failed'], { timeout: 90000 });
  assert.equal(done.status, 'completed', JSON.stringify(done.steps));
  assert.equal(await psql(`SELECT count(*) FROM payments WHERE workflow_id = '${id}'`, { db }), '1', 'one payment, never a second');
  assert.equal(await market.tokenBalance(svc.slow_report.payToTokenAccount), payTo + 1000n, 'the service got its price once');
  assert.equal(await psql(`SELECT count(*) FROM ledger WHERE workflow_id = '${id}' AND kind = 'charge'`, { db }), '1');
  assert.equal(done.totalCost.atomic, '1000');
  assert.ok(done.steps[0].attempts >= 2, `the step was resumed after the crash (attempts ${done.steps[0].attempts})`);
  assert.match(await psql(`SELECT status FROM payments WHERE workflow_id = '${id}'`, { db }), /^(landed|settled)$/);
  assert.equal(await psql('SELECT count(*) FROM x4_escrow_check()', { db }), '0', 'ledger = balances');
  const owed = BigInt(await psql('SELECT COALESCE(sum(available + held), 0) FROM escrow_accounts', { db }));
  assert.ok(await market.tokenBalance(i.escrow.tokenAccount) >= owed);
});

test('the reconciler charged the landed payment before the step ran again: still replayed, paid once', async () => {
  for (const e of [A, B]) if (e && !e.exitInfo()) await e.kill('SIGKILL');
  A = await startEngine({ db, env: env(), catalog: { services: [] } });
  const c = api(A, key);
  const payTo = await market.tokenBalance(svc.slow_report.payToTokenAccount);
  const { id } = await ready(c, { input: 'slow paid report 2', plan: { steps: [step('s', 'slow_report', { title: 'u', delayMs: 1500 })] } });
  await approve(c, id);
  await waitFor(async () => (await psql(`SELECT count(*) FROM payments WHERE workflow_id = '${id}'`, { db })) === '1',
    { timeout: 15000, message: 'payment committed' });
  await sleep(400);
  await A.kill('SIGKILL');
  // keep the workflow away from any process until the payment is charged by the reconciler
  await psql(`UPDATE workflows SET lease_until = clock_timestamp() + interval '1 hour' WHERE id = '${id}'`, { db });
  B = await startEngine({ db, env: env(), catalog: { services: [] } });
  await waitFor(async () => (await psql(`SELECT charged FROM payments WHERE workflow_id = '${id}'`, { db })) === 't',
    { timeout: 30000, message: 'the reconciler charged the landed payment' });
  await psql(`UPDATE workflows SET lease_until = clock_timestamp() - interval '1 second' WHERE id = '${id}'`, { db });
  const done = await waitStatus(api(B, key), id, ['completed', 'failed'], { timeout: 30000 });
  assert.equal(done.status, 'completed', JSON.stringify(done.steps));
  assert.equal(await psql(`SELECT count(*) FROM payments WHERE workflow_id = '${id}'`, { db }), '1', 'never a second payment');
  assert.equal(await market.tokenBalance(svc.slow_report.payToTokenAccount), payTo + 1000n, 'the service got its price once');
  assert.equal(await psql(`SELECT count(*) FROM ledger WHERE workflow_id = '${id}' AND kind = 'charge'`, { db }), '1');
  assert.equal(await psql(`SELECT count(*) FROM ledger WHERE workflow_id = '${id}' AND kind = 'refund_due'`, { db }), '0');
  assert.equal(await psql('SELECT count(*) FROM x4_escrow_check()', { db }), '0', 'ledger = balances');
});
