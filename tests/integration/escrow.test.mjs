// tests/integration/escrow.test.mjs — the escrow ledger against a real chain (LiteSVM in the
// local marketplace): create is idempotent, deposits are verified on chain and credited once
// for the amount the chain shows, someone else's / wrong-asset / wrong-address deposits are
// refused, approval holds money (or answers the seed's exact refusal), withdrawals go only to
// the registered wallet and concurrent ones cannot overdraw. After every test the ledger
// invariant holds and the escrow wallet on chain holds at least the sum of all balances.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { setup, psql, step, ready, api, sleep } from '../lib/harness.mjs';
import { startMarket, transfer } from '../lib/chain.mjs';

let market, ctx, c;
const USDC = (n) => BigInt(Math.round(n * 1e6));

before(async () => {
  market = await startMarket();
  const i = market.info;
  ctx = await setup({ users: ['alice', 'bob'], env: {
    ESCROW_KEYPAIR: i.escrow.secretBase64, SOLANA_RPC_URL: i.rpcUrl, NETWORK: 'devnet', ESCROW_ASSET: i.mint,
    RATE_LIMIT_PER_MIN: '0',
  } });
  c = ctx.clients.alice;
});

after(async () => {
  await ctx?.teardown();
  await market?.stop();
});

afterEach(async () => {
  // the ledger sums to the balances
  const bad = await psql('SELECT count(*) FROM x4_escrow_check()', { db: ctx.db });
  assert.equal(bad, '0', 'every balance equals the sum of its ledger rows');
  // the escrow wallet on chain holds at least the sum of all users' balances
  const owed = BigInt(await psql('SELECT COALESCE(sum(available + held), 0) FROM escrow_accounts', { db: ctx.db }));
  const onChain = await market.tokenBalance(market.info.escrow.tokenAccount);
  assert.ok(onChain >= owed, `escrow holds ${onChain} on chain, owes ${owed}`);
});

test('GET /escrow/address names the wallet and its token account', async () => {
  const r = await c.get('/escrow/address');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.address, market.info.escrow.address);
  assert.equal(r.json.tokenAccount, market.info.escrow.tokenAccount);
  assert.equal(r.json.asset, market.info.mint);
});

test('create is idempotent, never resets, and refuses a different wallet', async () => {
  const w = market.info.wallets.user1.address;
  const a = await c.post('/escrow/alice/create', { userWallet: w });
  assert.equal(a.status, 201, a.text);
  assert.equal(a.json.created, true);
  const b = await c.post('/escrow/alice/create', { userWallet: w });
  assert.equal(b.status, 200);
  assert.equal(b.json.created, false);
  const other = await c.post('/escrow/alice/create', { userWallet: market.info.wallets.user2.address });
  assert.equal(other.status, 409);
  const bad = await c.post('/escrow/alice/create', { userWallet: 'not-a-key' });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.details[0].field, 'userWallet');
  assert.equal((await ctx.clients.bob.get('/escrow/alice/balance')).status, 404, "someone else's escrow");
});

test('a deposit is verified on chain and credited once, for the amount the chain shows', async () => {
  const sig = await transfer(market, { from: 'user1', mint: market.info.mint, toAccount: market.info.escrow.tokenAccount, amount: USDC(5) });
  const wrongAmount = await c.post('/escrow/alice/deposit', { signature: sig, amount: '4.0' });
  assert.equal(wrongAmount.status, 400, wrongAmount.text);
  assert.match(wrongAmount.json.error, /does not match the chain, which shows 5\.000000/);
  const ok = await c.post('/escrow/alice/deposit', { signature: sig, amount: 5 });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.credited.atomic, '5000000');
  assert.equal(ok.json.balance.available.atomic, '5000000');
  const replay = await c.post('/escrow/alice/deposit', { signature: sig });
  assert.equal(replay.status, 409);
  const bal = await c.get('/escrow/alice/balance');
  assert.equal(bal.json.balance.available.atomic, '5000000', 'credited once');
});

test("someone else's deposit, the wrong asset and the wrong address are refused", async () => {
  await ctx.clients.bob.post('/escrow/bob/create', { userWallet: market.info.wallets.user2.address });
  // user1 (alice's wallet) pays the escrow; bob claims it
  const alices = await transfer(market, { from: 'user1', mint: market.info.mint, toAccount: market.info.escrow.tokenAccount, amount: USDC(1) });
  const claim = await ctx.clients.bob.post('/escrow/bob/deposit', { signature: alices });
  assert.equal(claim.status, 400);
  assert.match(claim.json.error, /registered wallet/);
  // the wrong mint, into the escrow's own token account for that mint (created for the test)
  await market.rpc('x402r_setTokenBalance', [market.info.escrow.address, market.info.wrongMint, '0']);
  const wrongAsset = await transfer(market, { from: 'user2', mint: market.info.wrongMint, toOwner: market.info.escrow.address, amount: USDC(1) });
  const r = await ctx.clients.bob.post('/escrow/bob/deposit', { signature: wrongAsset });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error, /escrow asset/);
  // the right asset to somebody else
  const elsewhere = await transfer(market, { from: 'user2', mint: market.info.mint, toOwner: market.info.wallets.user1.address, amount: USDC(1) });
  const r2 = await ctx.clients.bob.post('/escrow/bob/deposit', { signature: elsewhere });
  assert.equal(r2.status, 400);
  assert.match(r2.json.error, /escrow's token account/);
  const unknown = await ctx.clients.bob.post('/escrow/bob/deposit', { signature: '5'.repeat(88) });
  assert.ok([400, 502].includes(unknown.status));
  assert.equal((await ctx.clients.bob.get('/escrow/bob/balance')).json.balance.available.atomic, '0');
});

test('approval holds the estimate, or answers the exact refusal; the end releases the rest', async () => {
  const plan = { steps: [step('r', 'premium_report', { topic: 'x' })] }; // 1.000000 USDC in the test catalog
  // bob has nothing
  const { id: poor } = await ready(ctx.clients.bob, { input: 'premium', plan });
  const no = await ctx.clients.bob.post(`/workflows/${poor}/approve`);
  assert.equal(no.status, 402, no.text);
  assert.equal(no.json.error, 'Insufficient escrow balance. Available: 0.000000, Required: 1.000000. Please top up.');
  assert.equal((await ctx.clients.bob.get(`/workflows/${poor}`)).json.workflow.status, 'awaiting_approval');
  // create with approve: the same refusal, and nothing is stored
  const listed = async () => (await ctx.clients.bob.get('/users/bob/workflows?limit=100')).json.workflows.length;
  const n0 = await listed();
  const pre = await ctx.clients.bob.post('/workflows/create', { input: 'premium, pre-approved', plan, approve: true });
  assert.equal(pre.status, 402, pre.text);
  assert.equal(pre.json.error, 'Insufficient escrow balance. Available: 0.000000, Required: 1.000000. Please top up.');
  assert.equal(await listed(), n0, 'a refused create-with-approve stores nothing');
  // alice has 5: twenty concurrent approves hold once
  const { id } = await ready(c, { input: 'premium', plan });
  const answers = await Promise.all(Array.from({ length: 20 }, () => c.post(`/workflows/${id}/approve`)));
  assert.equal(answers.filter((a) => a.status === 200).length, 1);
  // the workflow may already have ended (its call is fast): the ledger shows the one hold
  const holds = (await c.get('/escrow/alice/history')).json.history.filter((h) => h.kind === 'hold' && h.workflowId === id);
  assert.equal(holds.length, 1, 'held once');
  assert.equal(holds[0].amount.atomic, '1000000');
  // the service is free to call here (it is not a paid x402 service in the test catalog), so
  // nothing is charged and the whole hold comes back when the workflow ends
  const { waitStatus } = await import('../lib/harness.mjs');
  await waitStatus(c, id, ['completed', 'failed'], { timeout: 15000 });
  const after = (await c.get('/escrow/alice/balance')).json.balance;
  assert.equal(after.held.atomic, '0');
  assert.equal(after.available.atomic, '5000000');
  const hist = (await c.get('/escrow/alice/history')).json.history.map((h) => h.kind);
  assert.deepEqual(hist.slice(0, 3), ['release', 'hold', 'deposit']);
});

test('create with approve: true holds in the same transaction and releases at the end', async () => {
  const plan = { steps: [step('r', 'premium_report', { topic: 'y' })] }; // 1.000000 USDC
  const before = (await c.get('/escrow/alice/balance')).json.balance.available.atomic;
  const r = await c.post('/workflows/create', { input: 'premium, pre-approved', plan, approve: true });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.workflow.status, 'executing');
  const id = r.json.workflow.id;
  const holds = (await c.get('/escrow/alice/history')).json.history.filter((h) => h.kind === 'hold' && h.workflowId === id);
  assert.equal(holds.length, 1);
  assert.equal(holds[0].amount.atomic, '1000000');
  const { waitStatus } = await import('../lib/harness.mjs');
  await waitStatus(c, id, ['completed', 'failed'], { timeout: 15000 });
  const after = (await c.get('/escrow/alice/balance')).json.balance;
  assert.equal(after.held.atomic, '0');
  assert.equal(after.available.atomic, before, 'a free call: the whole hold came back');
});

test('withdrawals go to the registered wallet, and concurrent ones cannot overdraw', async () => {
  const w = await c.post('/escrow/alice/withdraw', { amount: '1.5' });
  assert.equal(w.status, 200, w.text);
  assert.equal(w.json.status, 'confirmed');
  assert.equal(w.json.to, market.info.wallets.user1.address);
  assert.match(w.json.signature, /^[1-9A-HJ-NP-Za-km-z]{80,90}$/);
  assert.equal((await c.get('/escrow/alice/balance')).json.balance.available.atomic, '3500000');
  // 3.5 left: five concurrent withdrawals of 1.0 — at most three succeed, none overdraws
  const many = await Promise.all(Array.from({ length: 5 }, () => c.post('/escrow/alice/withdraw', { amount: '1.0' })));
  const okCount = many.filter((r) => r.status === 200 || r.status === 202).length;
  assert.equal(okCount, 3, JSON.stringify(many.map((r) => [r.status, r.json?.error])));
  assert.ok(many.filter((r) => r.status === 402).every((r) => /Insufficient escrow balance/.test(r.json.error)));
  await sleep(500);
  assert.equal((await c.get('/escrow/alice/balance')).json.balance.available.atomic, '500000');
  const over = await c.post('/escrow/alice/withdraw', { amount: '1000' });
  assert.equal(over.status, 402);
  const hist = (await c.get('/escrow/alice/history?limit=3')).json.history;
  assert.ok(hist.every((h) => h.kind === 'withdrawal' && h.signature), 'withdrawals carry their signature');
});
