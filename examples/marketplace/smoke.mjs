#!/usr/bin/env node
// examples/marketplace/smoke.mjs — proves the marketplace works with the REAL x402 peers:
// @x402/fetch (client, v2 and v1) pays @x402/express, @x402/hono and x402-express services
// through the @x402/core + @x402/svm facilitator on the LiteSVM chain.
//
//   node examples/marketplace/smoke.mjs [--state DIR]
//
// With --state it uses the marketplace described by DIR/marketplace.json (already running);
// without it, it starts one in-process on free ports. Exits 0 when every check passed.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createKeyPairSignerFromBytes } from '@solana/kit';
import { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } from '@x402/fetch';
import { ExactSvmScheme } from '@x402/svm/exact/client';
import { ExactSvmSchemeV1 } from '@x402/svm/exact/v1/client';
import {
  pipe, createTransactionMessage, setTransactionMessageFeePayerSigner, setTransactionMessageLifetimeUsingBlockhash,
  appendTransactionMessageInstruction, signTransactionMessageWithSigners, getBase64EncodedWireTransaction,
} from '@solana/kit';
import { getTransferCheckedInstruction } from '@solana-program/token';
import { startMarketplace } from './lib/market.mjs';

const i = process.argv.indexOf('--state');
let info; let stop = async () => {};
if (i > 0) {
  info = JSON.parse(readFileSync(path.join(process.argv[i + 1], 'marketplace.json'), 'utf8'));
} else {
  const m = await startMarketplace({ portBase: 0, quiet: true });
  info = m.info; stop = m.stop;
}

let passed = 0; let failed = 0;
function check(name, cond, detail = '') {
  if (cond) { passed++; console.log(`ok   ${name}${detail ? ' — ' + detail : ''}`); } else { failed++; console.log(`FAIL ${name}${detail ? ' — ' + detail : ''}`); }
}

let rpcId = 0;
async function rpc(method, params = []) {
  const r = await fetch(info.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params }) });
  const j = await r.json();
  if (j.error) { const e = new Error(`${method}: ${j.error.code} ${j.error.message}`); e.rpc = j.error; throw e; }
  return j.result;
}
const tokenBalance = async (acct) => BigInt((await rpc('getTokenAccountBalance', [acct])).value.amount);
const svc = (id) => info.services.find((s) => s.id === id);

async function payingFetch(secretBase64) {
  const signer = await createKeyPairSignerFromBytes(Buffer.from(secretBase64, 'base64'));
  const client = new x402Client()
    .register(info.network, new ExactSvmScheme(signer, { rpcUrl: info.rpcUrl }))
    .registerV1(info.networkV1, new ExactSvmSchemeV1(signer, { rpcUrl: info.rpcUrl }));
  return wrapFetchWithPayment(fetch, client);
}
const post = (f, url, body) => f(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

try {
  const escrowFetch = await payingFetch(info.escrow.secretBase64);
  const escrowAta = info.escrow.tokenAccount;

  // 1. v2 (express): 402 -> pay -> 200 + PAYMENT-RESPONSE; exact amount moved
  {
    const s = svc('dex_volume');
    const bare = await post(fetch, s.url, { chain: 'solana', days: 3 });
    check('v2 express: unpaid request is a 402 with PAYMENT-REQUIRED', bare.status === 402 && !!bare.headers.get('payment-required'));
    const before = await tokenBalance(s.payToTokenAccount);
    const eBefore = await tokenBalance(escrowAta);
    const r = await post(escrowFetch, s.url, { chain: 'solana', days: 3 });
    const body = await r.json();
    const settle = r.headers.get('payment-response') ? decodePaymentResponseHeader(r.headers.get('payment-response')) : null;
    check('v2 express: paid request is a 200 with a settlement header', r.status === 200 && settle?.success === true, `tx ${settle?.transaction}`);
    check('v2 express: answer is the service output', Array.isArray(body.series) && body.series.length === 3);
    const after = await tokenBalance(s.payToTokenAccount);
    const eAfter = await tokenBalance(escrowAta);
    check('v2 express: payTo balance moved by exactly the price', after - before === BigInt(s.amount), `${before} -> ${after} (+${s.amount})`);
    check('v2 express: payer balance moved by exactly the price', eBefore - eAfter === BigInt(s.amount));
    const sigs = await rpc('getSignaturesForAddress', [escrowAta, { limit: 5 }]);
    const mine = sigs.find((x) => x.signature === settle?.transaction);
    check('getSignaturesForAddress(payer ATA) lists the payment, newest first, with its memo', mine && sigs[0].signature === settle.transaction && /^\[\d+\] /.test(mine.memo ?? ''), `memo ${mine?.memo}`);
    const tx = await rpc('getTransaction', [settle.transaction, { encoding: 'json', maxSupportedTransactionVersion: 0, commitment: 'confirmed' }]);
    const pre = tx.meta.preTokenBalances.find((b) => b.owner === s.payTo);
    const postB = tx.meta.postTokenBalances.find((b) => b.owner === s.payTo);
    check('getTransaction shows the token balance change and the fee payer', tx.version === 0 && BigInt(postB.uiTokenAmount.amount) - BigInt(pre.uiTokenAmount.amount) === BigInt(s.amount) && tx.transaction.message.accountKeys[0] === info.feePayer);
    let verr = null;
    try { await rpc('getTransaction', [settle.transaction, { encoding: 'json' }]); } catch (e) { verr = e.rpc; }
    check('getTransaction without maxSupportedTransactionVersion is -32015 (like a real node)', verr?.code === -32015);
  }

  // 2. v2 (hono), paid by a user wallet
  {
    const s = svc('sentiment_analysis');
    const f = await payingFetch(info.wallets.user1.secretBase64);
    const before = await tokenBalance(s.payToTokenAccount);
    const r = await post(f, s.url, { text: 'volume is up, very bullish' });
    const body = await r.json();
    const settle = r.headers.get('payment-response') ? decodePaymentResponseHeader(r.headers.get('payment-response')) : null;
    const after = await tokenBalance(s.payToTokenAccount);
    check('v2 hono: paid 200 + settlement, exact amount', r.status === 200 && settle?.success && body.sentiment === 'positive' && after - before === BigInt(s.amount), `tx ${settle?.transaction}`);
  }

  // 3. v1 (x402-express)
  {
    const s = svc('whale_alerts');
    const bare = await post(fetch, s.url, { chain: 'solana' });
    const bj = await bare.json();
    check('v1: unpaid request is a 402 with a v1 body', bare.status === 402 && bj.x402Version === 1 && bj.accepts?.[0]?.maxAmountRequired === s.amount && bj.accepts[0].network === 'solana-devnet');
    const before = await tokenBalance(s.payToTokenAccount);
    const r = await post(escrowFetch, s.url, { chain: 'solana' });
    const body = await r.json();
    const hdr = r.headers.get('x-payment-response');
    const settle = hdr ? JSON.parse(Buffer.from(hdr, 'base64').toString('utf8')) : null;
    const after = await tokenBalance(s.payToTokenAccount);
    check('v1: paid 200 + X-PAYMENT-RESPONSE, exact amount', r.status === 200 && settle?.success && Array.isArray(body.alerts) && after - before === BigInt(s.amount), `tx ${settle?.transaction}`);
  }

  // 3b. Idempotency-Key: a replay of a paid request (same key, same payment header) gets the stored
  // answer and settlement back without verifying or settling again; another payment is a 409
  {
    const stats = async () => (await fetch(`${info.facilitatorUrl}/stats`)).json();
    // a paying fetch that records the paid request it sent (the payment header in particular)
    const recording = async (secretBase64) => {
      const rec = { paid: null, onPaid: null };
      const signer = await createKeyPairSignerFromBytes(Buffer.from(secretBase64, 'base64'));
      const client = new x402Client()
        .register(info.network, new ExactSvmScheme(signer, { rpcUrl: info.rpcUrl }))
        .registerV1(info.networkV1, new ExactSvmSchemeV1(signer, { rpcUrl: info.rpcUrl }));
      rec.fetch = wrapFetchWithPayment(async (req) => {
        if (req.headers.get('payment-signature') || req.headers.get('x-payment')) { rec.paid = Object.fromEntries(req.headers); rec.onPaid?.(); }
        return fetch(req);
      }, client);
      return rec;
    };
    const keyed = (key, extra = {}) => ({ 'content-type': 'application/json', 'idempotency-key': key, ...extra });
    const replayCase = async (label, id, body, payHdr, setHdr) => {
      const s = svc(id);
      const rec = await recording(info.escrow.secretBase64);
      const key = `wf_smoke_${id}:s1:1`;
      const first = await rec.fetch(s.url, { method: 'POST', headers: keyed(key), body: JSON.stringify(body) });
      const firstBody = await first.text();
      const p0 = await tokenBalance(s.payToTokenAccount);
      const e0 = await tokenBalance(escrowAta);
      const st0 = await stats();
      const again = await fetch(s.url, { method: 'POST', headers: keyed(key, { [payHdr]: rec.paid[payHdr] }), body: JSON.stringify(body) });
      const againBody = await again.text();
      const st1 = await stats();
      check(`${label}: replay with the same key + payment gets the same answer and settlement, no verify/settle, no money moved`,
        first.status === 200 && again.status === 200 && againBody === firstBody && !!first.headers.get(setHdr) &&
        again.headers.get(setHdr) === first.headers.get(setHdr) && again.headers.get('idempotent-replayed') === 'true' &&
        st1.verify === st0.verify && st1.settle === st0.settle &&
        (await tokenBalance(s.payToTokenAccount)) === p0 && (await tokenBalance(escrowAta)) === e0,
        `status ${first.status}/${again.status}, verify +${st1.verify - st0.verify}, settle +${st1.settle - st0.settle}`);
      const none = await fetch(s.url, { method: 'POST', headers: keyed(key), body: JSON.stringify(body) });
      const noneJ = await none.json().catch(() => null);
      const other = await fetch(s.url, { method: 'POST', headers: keyed(key, { [payHdr]: Buffer.from('{"other":1}').toString('base64') }), body: JSON.stringify(body) });
      const otherJ = await other.json().catch(() => null);
      check(`${label}: the same key with a missing or different payment is a 409`,
        none.status === 409 && noneJ?.error === 'idempotency key reused with a different payment' &&
        other.status === 409 && otherJ?.error === 'idempotency key reused with a different payment', `${none.status} ${other.status}`);
    };
    await replayCase('idempotency v2 express', 'dex_volume', { chain: 'solana', days: 2 }, 'payment-signature', 'payment-response');
    await replayCase('idempotency v2 hono', 'sentiment_analysis', { text: 'great gain' }, 'payment-signature', 'payment-response');
    await replayCase('idempotency v1', 'whale_alerts', { chain: 'base' }, 'x-payment', 'x-payment-response');

    // a paid request in flight whose caller hangs up (an engine killed mid-call): the service still
    // settles once; the replay sent meanwhile waits for it and gets its answer
    const s = svc('slow_report');
    const p0 = await tokenBalance(s.payToTokenAccount);
    const st0 = await stats();
    const rec = await recording(info.escrow.secretBase64);
    const paidSent = new Promise((r) => { rec.onPaid = r; });
    const ac = new AbortController();
    const key = 'wf_smoke_slow:s1:1';
    const body = JSON.stringify({ title: 'slow', delayMs: 1500 });
    const t0 = Date.now();
    const firstP = rec.fetch(s.url, { method: 'POST', headers: keyed(key), body, signal: ac.signal }).then((r) => r.status, (e) => `aborted (${e.name})`);
    await paidSent;
    await new Promise((r) => setTimeout(r, 300));
    ac.abort();
    const firstOutcome = await firstP;
    const again = await fetch(s.url, { method: 'POST', headers: keyed(key, { 'payment-signature': rec.paid['payment-signature'] }), body });
    const againJ = await again.json().catch(() => null);
    const waitedMs = Date.now() - t0;
    const settle = again.headers.get('payment-response') ? decodePaymentResponseHeader(again.headers.get('payment-response')) : null;
    const st1 = await stats();
    const p1 = await tokenBalance(s.payToTokenAccount);
    check('idempotency in flight: caller gone, the replay waits for the first request and gets its paid answer; paid exactly once',
      String(firstOutcome).startsWith('aborted') && again.status === 200 && againJ?.title === 'slow' && settle?.success === true &&
      again.headers.get('idempotent-replayed') === 'true' && waitedMs >= 1500 && p1 - p0 === BigInt(s.amount) &&
      st1.settle === st0.settle + 1 && st1.verify === st0.verify + 1,
      `first ${firstOutcome}, replay ${again.status} after ${waitedMs} ms, payTo +${p1 - p0}, settle +${st1.settle - st0.settle}`);

    // no Idempotency-Key: the normal path (a bare request is a 402 even after the keyed ones)
    const bare = await fetch(svc('dex_volume').url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chain: 'solana', days: 2 }) });
    await bare.text();
    check('no Idempotency-Key: the normal x402 path (402)', bare.status === 402);
  }

  // 4. a service that fails after verification is not charged
  {
    const s = svc('flaky_after_verify');
    const before = await tokenBalance(s.payToTokenAccount);
    const eBefore = await tokenBalance(escrowAta);
    const st0 = await (await fetch(`${info.facilitatorUrl}/stats`)).json();
    const r = await post(escrowFetch, s.url, { text: 'x' });
    await r.text();
    const st1 = await (await fetch(`${info.facilitatorUrl}/stats`)).json();
    const after = await tokenBalance(s.payToTokenAccount);
    const eAfter = await tokenBalance(escrowAta);
    check('500 after verification: verified, not settled, no money moved', r.status === 500 && !r.headers.get('payment-response') && after === before && eAfter === eBefore && st1.verify === st0.verify + 1 && st1.settle === st0.settle, `status ${r.status}, verify +${st1.verify - st0.verify}, settle +${st1.settle - st0.settle}`);
  }

  // 5. an underfunded payer gets a 402 naming the reason
  {
    const s = svc('dex_volume');
    const f = await payingFetch(info.wallets.underfunded.secretBase64);
    const before = await tokenBalance(s.payToTokenAccount);
    let status; let reason;
    try {
      const r = await post(f, s.url, { chain: 'solana', days: 1 });
      status = r.status;
      const h = r.headers.get('payment-required');
      reason = h ? JSON.parse(Buffer.from(h, 'base64').toString('utf8')).error : (await r.text());
    } catch (e) { reason = `client threw: ${e.message}`; }
    const after = await tokenBalance(s.payToTokenAccount);
    check('underfunded payer: 402 whose error names the reason, nothing moved', status === 402 && /insufficient|simulation/i.test(reason ?? '') && after === before, `reason ${reason}`);
  }

  // 6. over-cap service advertises its price
  {
    const s = svc('premium_report');
    const r = await post(fetch, s.url, { title: 'x' });
    const pr = JSON.parse(Buffer.from(r.headers.get('payment-required') ?? '', 'base64').toString('utf8') || '{}');
    check('over-cap service: 402 asks for $5.00 (5000000)', r.status === 402 && pr.accepts?.[0]?.amount === '5000000');
  }

  // 7. discovery and registry
  {
    const d1 = await (await fetch(`${info.discoveryUrl}?limit=5&offset=0`)).json();
    const d2 = await (await fetch(`${info.discoveryUrl}?limit=5&offset=5`)).json();
    const items = [...d1.items, ...d2.items];
    const v1 = items.find((x) => x.x402Version === 1);
    const v2 = items.find((x) => x.x402Version === 2);
    check('bazaar /discovery/resources pages every service with v1 and v2 shapes and schemas',
      d1.pagination.total === info.services.length && items.length === info.services.length &&
      !!v1?.accepts[0].outputSchema?.input && !!v2?.extensions?.bazaar?.schema?.properties?.input?.properties?.body,
      `total ${d1.pagination.total}`);
    const reg = await (await fetch(`${info.registryUrl}/services/discover`)).json();
    check('registry /services/discover lists every service', Array.isArray(reg) && reg.length === info.services.length && typeof reg[0].inputSchema === 'string' && reg.find((x) => x.id === 'sentiment_analysis').pricePerCall === '0.0015');
  }

  // 8. facilitator down: the service cannot verify, nothing moves; then back up
  {
    const s = svc('dex_volume');
    const before = await tokenBalance(s.payToTokenAccount);
    await rpc('x402r_facilitator', ['down']);
    let status; let err = '';
    try { const r = await post(escrowFetch, s.url, { chain: 'solana', days: 1 }); status = r.status; err = (await r.text()).slice(0, 80); } catch (e) { err = e.message; }
    await rpc('x402r_facilitator', ['up']);
    const after = await tokenBalance(s.payToTokenAccount);
    check('facilitator down: request fails, nothing moved', status !== 200 && after === before, `status ${status ?? 'thrown'} ${err}`);
    const r2 = await post(escrowFetch, s.url, { chain: 'solana', days: 1 });
    await r2.text();
    check('facilitator back up: paid request works again', r2.status === 200);
  }

  // 9. raw RPC: preflight failure, a failed transaction that lands, an expired blockhash
  {
    const signer = await createKeyPairSignerFromBytes(Buffer.from(info.wallets.underfunded.secretBase64, 'base64'));
    const s = svc('dex_volume');
    const build = async (amount, blockhash) => {
      const ix = getTransferCheckedInstruction({ source: info.wallets.underfunded.tokenAccount, mint: info.mint, destination: s.payToTokenAccount, authority: signer, amount, decimals: 6 });
      const msg = pipe(createTransactionMessage({ version: 0 }), (m) => setTransactionMessageFeePayerSigner(signer, m),
        (m) => setTransactionMessageLifetimeUsingBlockhash(blockhash, m), (m) => appendTransactionMessageInstruction(ix, m));
      return getBase64EncodedWireTransaction(await signTransactionMessageWithSigners(msg));
    };
    const bh = (await rpc('getLatestBlockhash')).value;
    const tooMuch = await build(1000n, bh);
    let pre = null;
    try { await rpc('sendTransaction', [tooMuch, { encoding: 'base64' }]); } catch (e) { pre = e.rpc; }
    check('sendTransaction preflight failure is -32002 with the error in data', pre?.code === -32002 && pre.data?.err?.InstructionError?.[0] === 0, JSON.stringify(pre?.data?.err));
    const sig = await rpc('sendTransaction', [tooMuch, { encoding: 'base64', skipPreflight: true }]);
    const st = (await rpc('getSignatureStatuses', [[sig]])).value[0];
    const tx = await rpc('getTransaction', [sig, { encoding: 'json', maxSupportedTransactionVersion: 0 }]);
    check('a failing transaction sent with skipPreflight lands with its err (fee paid)', st?.err && tx?.meta?.err && tx.meta.fee === 5000 && tx.meta.preBalances[0] - tx.meta.postBalances[0] === 5000);
    const ok = await build(10n, bh);
    await rpc('x402r_warpSlots', [bh.lastValidBlockHeight - (await rpc('getBlockHeight')) + 1]);
    const sig2 = await rpc('sendTransaction', [ok, { encoding: 'base64', skipPreflight: true }]);
    const st2 = (await rpc('getSignatureStatuses', [[sig2]])).value[0];
    let pre2 = null;
    try { await rpc('sendTransaction', [ok, { encoding: 'base64' }]); } catch (e) { pre2 = e.rpc; }
    check('expired blockhash: dropped with skipPreflight, BlockhashNotFound in preflight', st2 === null && pre2?.code === -32002 && pre2.data?.err === 'BlockhashNotFound');
    let bad = null;
    try { await rpc('getBalance', ['not-an-address']); } catch (e) { bad = e.rpc; }
    check('invalid params are -32602', bad?.code === -32602);
  }

  // 10. blockhashes expire
  {
    const { value } = await rpc('getLatestBlockhash');
    await rpc('x402r_warpSlots', [value.lastValidBlockHeight - (await rpc('getBlockHeight')) + 1]);
    const valid = (await rpc('isBlockhashValid', [value.blockhash])).value;
    const h = await rpc('getBlockHeight');
    check('blockhash expires after lastValidBlockHeight', valid === false && h > value.lastValidBlockHeight, `lastValid ${value.lastValidBlockHeight}, height now ${h}`);
  }
} catch (e) {
  failed++;
  console.log(`FAIL unexpected error: ${e.stack ?? e}`);
} finally {
  await stop();
}
console.log(`smoke: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
