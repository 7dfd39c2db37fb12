// tests/integration/payments.test.mjs — paid workflows against the real x402 peers of the local
// marketplace (@x402/express and @x402/hono v2, x402-express v1, the @x402/core + @x402/svm
// facilitator on a LiteSVM chain), with services discovered from its registry. Each paid step
// is charged exactly its price, once, on chain and in the ledger; a service that fails after
// verification is not charged; caps are enforced before anything is signed. After every test:
// the ledger sums to the balances and the escrow wallet on chain covers them.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { setup, psql, step, ref, ready, approve, waitStatus, waitFor, openStream } from '../lib/harness.mjs';
import { startMarket, transfer } from '../lib/chain.mjs';

let market, ctx, c, svc;

before(async () => {
  market = await startMarket();
  const i = market.info;
  svc = Object.fromEntries(i.services.map((s) => [s.id, s]));
  ctx = await setup({ users: ['alice'], catalog: { services: [] }, env: {
    ESCROW_KEYPAIR: i.escrow.secretBase64, SOLANA_RPC_URL: i.rpcUrl, NETWORK: 'devnet', ESCROW_ASSET: i.mint,
    REGISTRY_URL: i.registryUrl, MAX_PAYMENT_PER_TX: '1', RECONCILE_AFTER_MS: '500', RATE_LIMIT_PER_MIN: '0',
    RETRY_MAX_ATTEMPTS: '2', RETRY_BASE_MS: '50',
  } });
  c = ctx.client;
  const created = await c.post('/escrow/alice/create', { userWallet: i.wallets.user1.address });
  assert.equal(created.status, 201, created.text);
  const sig = await transfer(market, { from: 'user1', mint: i.mint, toAccount: i.escrow.tokenAccount, amount: 10_000_000n });
  const dep = await c.post('/escrow/alice/deposit', { signature: sig });
  assert.equal(dep.status, 200, dep.text);
});

after(async () => {
  await ctx?.teardown();
  await market?.stop();
});

afterEach(async () => {
  assert.equal(await psql('SELECT count(*) FROM x4_escrow_check()', { db: ctx.db }), '0', 'ledger = balances');
  const owed = BigInt(await psql('SELECT COALESCE(sum(available + held), 0) FROM escrow_accounts', { db: ctx.db }));
  const onChain = await market.tokenBalance(market.info.escrow.tokenAccount);
  assert.ok(onChain >= owed, `escrow holds ${onChain} on chain, owes ${owed}`);
});

const balance = async () => (await c.get('/escrow/alice/balance')).json.balance;

test('the registry services are in the catalog with their prices', async () => {
  const r = await c.get('/services?limit=50');
  const byId = Object.fromEntries(r.json.services.map((s) => [s.id, s]));
  assert.equal(byId.dex_volume.price.amount, '1000');
  assert.equal(byId.whale_alerts.price.amount, '1000');
});

test('a paid v2 diamond: each step charged its price once, on chain and in the ledger', async () => {
  const before = await balance();
  const payTo = await market.tokenBalance(svc.dex_volume.payToTokenAccount);
  const plan = { steps: [
    step('vol', 'dex_volume', { chain: 'solana', days: 7 }),
    step('px', 'token_prices', { chain: 'solana', days: 7 }),
    step('trend', 'trend_analysis', { series: ref('vol.series') }),
  ] };
  const { id, workflow } = await ready(c, { input: 'paid diamond', plan });
  assert.equal(workflow.estimatedCost.atomic, '3500');
  const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
  await s.opened;
  await approve(c, id);
  const done = await waitStatus(c, id, ['completed', 'failed'], { timeout: 30000 });
  assert.equal(done.status, 'completed', JSON.stringify(done.steps.map((x) => [x.id, x.status, x.error])));
  assert.equal(done.totalCost.atomic, '3500');
  await s.waitType('workflow.completed');
  const settled = s.messages.filter((m) => m.type === 'payment.settled');
  assert.equal(settled.length, 3);
  assert.ok(settled.every((m) => /^[1-9A-HJ-NP-Za-km-z]{80,90}$/.test(m.data.transaction)));
  assert.equal(s.messages.filter((m) => m.type === 'payment.signed').length, 3);
  s.close();
  const after = await balance();
  assert.equal(BigInt(after.available.atomic), BigInt(before.available.atomic) - 3500n);
  assert.equal(after.held.atomic, '0');
  assert.equal(await market.tokenBalance(svc.dex_volume.payToTokenAccount), payTo + 1000n, 'the service got exactly its price');
  const hist = (await c.get('/escrow/alice/history?limit=10')).json.history.filter((h) => h.workflowId === id);
  // the hold was exactly the estimate and all of it was charged: nothing to release
  assert.deepEqual(hist.map((h) => h.kind).sort(), ['charge', 'charge', 'charge', 'hold']);
  assert.ok(hist.filter((h) => h.kind === 'charge').every((h) => h.signature));
});

test('a v1 service (x402-express 1.2.0) is paid too', async () => {
  const payTo = await market.tokenBalance(svc.whale_alerts.payToTokenAccount);
  const plan = { steps: [step('w', 'whale_alerts', { chain: 'solana' })] };
  const { id } = await ready(c, { input: 'v1', plan });
  await approve(c, id);
  const done = await waitStatus(c, id, ['completed', 'failed'], { timeout: 30000 });
  assert.equal(done.status, 'completed', JSON.stringify(done.steps));
  assert.equal(await market.tokenBalance(svc.whale_alerts.payToTokenAccount), payTo + 1000n);
});

test('a service that fails after verification is not charged', async () => {
  const before = await balance();
  const payTo = await market.tokenBalance(svc.flaky_after_verify.payToTokenAccount);
  const { id } = await ready(c, { input: 'fails after verify', plan: { steps: [step('f', 'flaky_after_verify', {})] } });
  await approve(c, id);
  const done = await waitStatus(c, id, ['failed', 'completed'], { timeout: 30000 });
  assert.equal(done.status, 'failed');
  assert.equal(done.totalCost.atomic, '0');
  assert.equal(await market.tokenBalance(svc.flaky_after_verify.payToTokenAccount), payTo, 'no money moved');
  // the unresolved payment is proven absent once its blockhash has expired, and released
  await market.rpc('x402r_warpSlots', [400]);
  await waitFor(async () => (await balance()).held.atomic === '0', { timeout: 30000, message: 'hold released' });
  assert.equal((await balance()).available.atomic, before.available.atomic);
  const st = await psql(`SELECT status FROM payments WHERE workflow_id = '${id}'`, { db: ctx.db });
  assert.equal(st, 'absent');
});

test('a price over MAX_PAYMENT_PER_TX is refused before anything is signed', async () => {
  // premium_report asks $5.00 — the catalog says so too, so the plan itself is fine with maxCost unset
  const { id } = await ready(c, { input: 'too expensive', plan: { steps: [step('p', 'premium_report', {})] } });
  const r = await c.post(`/workflows/${id}/approve`);
  assert.equal(r.status, 200, r.text);
  const done = await waitStatus(c, id, ['failed', 'completed'], { timeout: 30000 });
  assert.equal(done.status, 'failed');
  assert.match(done.steps[0].error, /per-transaction cap/);
  assert.equal(await psql(`SELECT count(*) FROM payments WHERE workflow_id = '${id}'`, { db: ctx.db }), '0');
});
