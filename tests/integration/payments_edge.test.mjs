// tests/integration/payments_edge.test.mjs — payment edge cases against the real x402 peers of the
// local marketplace (examples/marketplace): the facilitator down, an escrow wallet whose token
// account is drained on chain while the ledger still owes the user money, a price over
// MAX_PAYMENT_PER_TX, DAILY_SPEND_CAP and maxCost. In every case nothing is charged: not in the
// ledger, not on chain. After every test: the ledger sums to the balances and the escrow wallet
// on chain covers them.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { setup, psql, step, ready, approve, waitStatus, waitFor, startEngine, api } from '../lib/harness.mjs';
import { startMarket, transfer } from '../lib/chain.mjs';

let market, ctx, c, svc, env;

before(async () => {
  market = await startMarket();
  const i = market.info;
  svc = Object.fromEntries(i.services.map((s) => [s.id, s]));
  env = {
    ESCROW_KEYPAIR: i.escrow.secretBase64, SOLANA_RPC_URL: i.rpcUrl, NETWORK: 'devnet', ESCROW_ASSET: i.mint,
    REGISTRY_URL: i.registryUrl, RECONCILE_AFTER_MS: '500', RATE_LIMIT_PER_MIN: '0',
    RETRY_MAX_ATTEMPTS: '2', RETRY_BASE_MS: '50',
    // between the prices: dex_volume ($0.001) may be paid, report ($0.003) may not
    MAX_PAYMENT_PER_TX: '0.0025',
  };
  ctx = await setup({ users: ['alice'], catalog: { services: [] }, env });
  c = ctx.client;
  const created = await c.post('/escrow/alice/create', { userWallet: i.wallets.user1.address });
  assert.equal(created.status, 201, created.text);
  const sig = await transfer(market, { from: 'user1', mint: i.mint, toAccount: i.escrow.tokenAccount, amount: 10_000_000n });
  const dep = await c.post('/escrow/alice/deposit', { signature: sig });
  assert.equal(dep.status, 200, dep.text);
});

after(async () => {
  await market?.rpc('x402r_facilitator', ['up']).catch(() => {});
  await ctx?.teardown();
  await market?.stop();
});

afterEach(async () => {
  assert.equal(await psql('SELECT count(*) FROM x4_escrow_check()', { db: ctx.db }), '0', 'ledger = balances');
  const owed = BigInt(await psql('SELECT COALESCE(sum(available + held), 0) FROM escrow_accounts', { db: ctx.db }));
  const onChain = await market.tokenBalance(market.info.escrow.tokenAccount);
  assert.ok(onChain >= owed, `escrow holds ${onChain} on chain, owes ${owed}`);
});

const balance = async (client = c) => (await client.get('/escrow/alice/balance')).json.balance;
const stats = async () => (await fetch(`${market.info.facilitatorUrl}/stats`)).json();
const q = (sql) => psql(sql, { db: ctx.db });
const chargesOf = (id) => q(`SELECT count(*) FROM ledger WHERE workflow_id = '${id}' AND kind = 'charge'`);
const stepErrors = (wf) => JSON.stringify(wf.steps.map((s) => [s.id, s.status, s.error]));

// After a failed paid workflow: every payment of it is resolved (no 'signed' left, none charged)
// once its blockhash can no longer land, and the whole hold is back in available.
async function settleDown(id, before) {
  await market.rpc('x402r_warpSlots', [400]); // expire every blockhash it signed with
  await waitFor(async () => (await q(`SELECT count(*) FROM payments WHERE workflow_id = '${id}' AND status = 'signed'`)) === '0',
    { timeout: 30000, message: `payments of ${id} resolved` });
  await waitFor(async () => (await balance()).held.atomic === '0', { timeout: 30000, message: 'hold released' });
  const after = await balance();
  assert.equal(after.available.atomic, before.available.atomic, 'the whole hold came back: nothing charged');
  assert.equal(await q(`SELECT count(*) FROM payments WHERE workflow_id = '${id}' AND (charged OR status NOT IN ('failed', 'absent'))`), '0',
    'every payment ends failed/absent and not charged');
}

test('facilitator down: the paid step fails with a clear reason and nothing is charged', async () => {
  const before = await balance();
  const payTo = await market.tokenBalance(svc.dex_volume.payToTokenAccount);
  const escrowOnChain = await market.tokenBalance(market.info.escrow.tokenAccount);
  const st0 = await stats();
  const { id } = await ready(c, { input: 'facilitator down', plan: { steps: [step('v', 'dex_volume', { chain: 'solana', days: 2 })] } });
  assert.equal(await market.rpc('x402r_facilitator', ['down']), 'down');
  let done;
  try {
    await approve(c, id);
    done = await waitStatus(c, id, ['failed', 'completed'], { timeout: 30000 });
  } finally {
    assert.equal(await market.rpc('x402r_facilitator', ['up']), 'up');
  }
  assert.equal(done.status, 'failed', stepErrors(done));
  assert.equal(done.totalCost.atomic, '0');
  // the engine did sign and send a payment (so this is the paid path, not an earlier refusal) …
  assert.ok(Number(await q(`SELECT count(*) FROM payments WHERE workflow_id = '${id}'`)) >= 1, 'a payment was signed');
  // … and the reason says the payment was refused and why
  // (through @x402/express the facilitator's connection error comes back as a second 402)
  assert.match(done.steps[0].error, /the service refused the payment: \S/, stepErrors(done));
  assert.doesNotMatch(done.steps[0].error, /per-transaction cap|not resolved yet/, stepErrors(done));
  const st1 = await stats();
  assert.equal(st1.settle, st0.settle, 'the facilitator never settled anything');
  assert.equal(await chargesOf(id), '0', 'no charge in the ledger');
  assert.equal(await market.tokenBalance(svc.dex_volume.payToTokenAccount), payTo, 'the service got nothing');
  assert.equal(await market.tokenBalance(market.info.escrow.tokenAccount), escrowOnChain, 'the escrow wallet paid nothing');
  await settleDown(id, before);
  // the facilitator is back: the same service is paid again normally
  const ok = await ready(c, { input: 'facilitator back', plan: { steps: [step('v', 'dex_volume', { chain: 'solana', days: 2 })] } });
  await approve(c, ok.id);
  const done2 = await waitStatus(c, ok.id, ['completed', 'failed'], { timeout: 30000 });
  assert.equal(done2.status, 'completed', stepErrors(done2));
  assert.equal(await market.tokenBalance(svc.dex_volume.payToTokenAccount), payTo + 1000n);
});

test('an underfunded escrow wallet: the service answers a second 402 whose reason reaches the step; nothing charged', async () => {
  const i = market.info;
  const before = await balance();
  assert.ok(BigInt(before.available.atomic) > 1000n, 'the user can afford the step in the ledger');
  const payTo = await market.tokenBalance(svc.dex_volume.payToTokenAccount);
  const onChain = await market.tokenBalance(i.escrow.tokenAccount);
  const { id } = await ready(c, { input: 'underfunded escrow', plan: { steps: [step('v', 'dex_volume', { chain: 'solana', days: 2 })] } });
  await market.rpc('x402r_setTokenBalance', [i.escrow.address, i.mint, '0']);
  let done;
  try {
    assert.equal(await market.tokenBalance(i.escrow.tokenAccount), 0n, 'drained');
    await approve(c, id);
    done = await waitStatus(c, id, ['failed', 'completed'], { timeout: 30000 });
  } finally {
    await market.rpc('x402r_setTokenBalance', [i.escrow.address, i.mint, onChain.toString()]);
  }
  assert.equal(await market.tokenBalance(i.escrow.tokenAccount), onChain, 'restored');
  assert.equal(done.status, 'failed', stepErrors(done));
  assert.match(done.steps[0].error, /invalid_exact_svm_transaction_simulation_failed|insufficient/i, stepErrors(done));
  assert.equal(done.totalCost.atomic, '0');
  assert.equal(await chargesOf(id), '0');
  assert.equal(await market.tokenBalance(svc.dex_volume.payToTokenAccount), payTo, 'the service got nothing');
  await settleDown(id, before);
});

test('a price over MAX_PAYMENT_PER_TX is refused before signing: no payments row at all', async () => {
  const before = await balance();
  const st0 = await stats();
  const payTo = await market.tokenBalance(svc.report.payToTokenAccount);
  // report asks $0.003; the cap is $0.0025 (dex_volume at $0.001 is paid under the same cap above)
  const { id, workflow } = await ready(c, { input: 'over the per-tx cap', plan: { steps: [step('r', 'report', { title: 'x' })] } });
  assert.equal(workflow.estimatedCost.atomic, '3000');
  await approve(c, id);
  const done = await waitStatus(c, id, ['failed', 'completed'], { timeout: 30000 });
  assert.equal(done.status, 'failed');
  assert.match(done.steps[0].error, /per-transaction cap/, stepErrors(done));
  assert.equal(await q(`SELECT count(*) FROM payments WHERE workflow_id = '${id}'`), '0', 'nothing was signed');
  const st1 = await stats();
  assert.equal(st1.verify, st0.verify, 'no payment reached the facilitator');
  assert.equal(await market.tokenBalance(svc.report.payToTokenAccount), payTo);
  await waitFor(async () => (await balance()).held.atomic === '0', { timeout: 10000, message: 'hold released' });
  assert.equal((await balance()).available.atomic, before.available.atomic);
});

test('DAILY_SPEND_CAP under the estimate: approve is a 402 "Daily spending cap" and nothing is held', async () => {
  // a second engine on the same database, with a daily cap of $0.0005 (dex_volume costs $0.001)
  const capped = await startEngine({ db: ctx.db, env: { ...env, DAILY_SPEND_CAP: '0.0005' }, catalog: ctx.catalog });
  try {
    const c2 = api(capped, ctx.keys.alice);
    const before = await balance(c2);
    const { id, workflow } = await ready(c2, { input: 'daily cap', plan: { steps: [step('v', 'dex_volume', { chain: 'solana', days: 1 })] } });
    assert.equal(workflow.estimatedCost.atomic, '1000');
    const r = await c2.post(`/workflows/${id}/approve`);
    assert.equal(r.status, 402, r.text);
    assert.equal(r.json.success, false);
    assert.match(r.json.error, /^Daily spending cap/);
    const after = await balance(c2);
    assert.deepEqual(after, before, 'nothing held');
    assert.equal(await q(`SELECT count(*) FROM ledger WHERE workflow_id = '${id}'`), '0', 'no ledger row for it');
    assert.equal((await c2.get(`/workflows/${id}`)).json.workflow.status, 'awaiting_approval', 'still waiting');
    // control: the same workflow on the engine without a daily cap is approved, so the 402 was the cap
    await approve(c, id);
    const done = await waitStatus(c, id, ['completed', 'failed'], { timeout: 30000 });
    assert.equal(done.status, 'completed', stepErrors(done));
  } finally {
    await capped.stop();
  }
});

test('a priced plan over maxCost is a 400 on field maxCost at create', async () => {
  const plan = { steps: [step('v', 'dex_volume', { chain: 'solana', days: 1 }), step('r', 'report', { title: 'x' })] }; // $0.004
  const before = await q("SELECT count(*) FROM workflows WHERE user_id = 'alice'");
  const r = await c.post('/workflows/create', { input: 'over maxCost', maxCost: '0.0039', plan });
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.success, false);
  assert.ok(r.json.details?.some((d) => d.field === 'maxCost'), r.text);
  assert.equal(await q("SELECT count(*) FROM workflows WHERE user_id = 'alice'"), before, 'no workflow created');
  // control: exactly the plan's price is allowed
  const ok = await c.post('/workflows/create', { input: 'at maxCost', maxCost: '0.004', plan });
  assert.equal(ok.status, 201, ok.text);
  assert.equal(ok.json.workflow.status, 'awaiting_approval');
});
