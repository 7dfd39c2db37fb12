#!/usr/bin/env node
// examples/marketplace/deposit.mjs — send a USDC deposit on the local marketplace's chain.
//
//   node examples/marketplace/deposit.mjs --state DIR --from WALLET --amount USDC [--to TOKEN_ACCOUNT]
//
// Reads DIR/marketplace.json, signs a TransferChecked of --amount USDC (a decimal, 6 places at
// most) from the associated token account of test wallet WALLET (user1, user2, underfunded…) to
// --to (default: the escrow's token account, i.e. a deposit to x402r's escrow), sends it, waits
// until the chain reports it confirmed without error and prints its signature alone on one line
// of stdout — ready for `POST /escrow/:userId/deposit {signature}`. Exit 1 with the reason on
// stderr when anything fails. Never prints a secret.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as kit from '@solana/kit';
import * as token from '@solana-program/token';

const MEMO_PROGRAM = kit.address('MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr');

function arg(name) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : undefined;
}
function die(msg) {
  console.error(`deposit: ${msg}`);
  process.exit(1);
}

const state = arg('--state');
const from = arg('--from');
const amountArg = arg('--amount');
if (!state || !from || !amountArg) {
  console.error('usage: node deposit.mjs --state DIR --from WALLET --amount USDC [--to TOKEN_ACCOUNT]');
  process.exit(2);
}
if (!/^\d+(\.\d{1,6})?$/.test(amountArg)) die(`--amount: not a USDC amount: ${amountArg}`);
const [whole, frac = ''] = amountArg.split('.');
const amount = BigInt(whole) * 1_000_000n + BigInt(frac.padEnd(6, '0'));
if (amount === 0n) die('--amount must be more than 0');

let info;
try {
  info = JSON.parse(readFileSync(path.join(state, 'marketplace.json'), 'utf8'));
} catch (e) {
  die(`cannot read ${path.join(state, 'marketplace.json')}: ${e.message}`);
}
const wallet = info.wallets?.[from];
if (!wallet) die(`no wallet '${from}' (have: ${Object.keys(info.wallets ?? {}).join(', ')})`);
const destination = arg('--to') ?? info.escrow.tokenAccount;

let id = 0;
async function rpc(method, params = []) {
  const r = await fetch(info.rpcUrl, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params }),
  });
  const j = await r.json();
  if (j.error) throw new Error(`${method}: ${j.error.message}`);
  return j.result;
}

try {
  const signer = await kit.createKeyPairSignerFromBytes(Buffer.from(wallet.secretBase64, 'base64'));
  const [source] = await token.findAssociatedTokenPda({
    owner: wallet.address, mint: info.mint, tokenProgram: token.TOKEN_PROGRAM_ADDRESS });
  const ix = token.getTransferCheckedInstruction({
    source, mint: info.mint, destination, authority: signer, amount, decimals: 6 });
  // A memo with a random nonce: the chain restarts empty with the same keys and blockhashes, so
  // without it two equal deposits could be the very same transaction (and signature).
  const memo = { programAddress: MEMO_PROGRAM, accounts: [],
    data: new TextEncoder().encode(`x402r deposit ${randomBytes(8).toString('hex')}`) };
  const bh = (await rpc('getLatestBlockhash')).value;
  const msg = kit.pipe(kit.createTransactionMessage({ version: 0 }),
    (m) => kit.setTransactionMessageFeePayerSigner(signer, m),
    (m) => kit.setTransactionMessageLifetimeUsingBlockhash(bh, m),
    (m) => kit.appendTransactionMessageInstructions([ix, memo], m));
  const tx = kit.getBase64EncodedWireTransaction(await kit.signTransactionMessageWithSigners(msg));
  const sig = await rpc('sendTransaction', [tx, { encoding: 'base64' }]);
  for (let i = 0; ; i++) {
    const st = (await rpc('getSignatureStatuses', [[sig]])).value[0];
    if (st?.err) die(`transaction ${sig} failed: ${JSON.stringify(st.err)}`);
    if (st && (st.confirmationStatus === 'confirmed' || st.confirmationStatus === 'finalized')) break;
    if (i >= 100) die(`transaction ${sig} not confirmed after 20 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log(sig);
} catch (e) {
  die(e.message);
}
