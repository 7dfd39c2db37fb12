// tests/lib/chain.mjs — the local x402 marketplace (examples/marketplace) for the payment and
// escrow tests: start/stop it through scripts/marketplace.sh, talk JSON-RPC to its LiteSVM
// chain, and send real token transfers signed by its test wallets (deposits, wrong-asset and
// wrong-destination transfers) with @solana/kit from the marketplace's own node_modules.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SOURCE_DIR } from './harness.mjs';

const marketDir = join(SOURCE_DIR, 'examples', 'marketplace');
const req = createRequire(join(marketDir, 'package.json'));
const load = (name) => import(pathToFileURL(req.resolve(name)).href);

function sh(args) {
  return new Promise((resolve) => {
    execFile('bash', args, { cwd: SOURCE_DIR, timeout: 180000, maxBuffer: 8 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? -1) : 0, stdout, stderr }));
  });
}

// startMarket() → {dir, info (marketplace.json), rpc(method, params), stop()}
export async function startMarket() {
  const dir = mkdtempSync(join(tmpdir(), 'x4t-chain-'));
  const up = await sh(['scripts/marketplace.sh', 'start', dir, '--port-base', '0']);
  if (up.code !== 0) throw new Error(`marketplace did not start:\n${up.stdout}\n${up.stderr}`);
  const info = JSON.parse(readFileSync(join(dir, 'marketplace.json'), 'utf8'));
  let id = 0;
  async function rpc(method, params = []) {
    const r = await fetch(info.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params }) });
    const j = await r.json();
    if (j.error) { const e = new Error(`${method}: ${j.error.message}`); e.rpc = j.error; throw e; }
    return j.result;
  }
  return {
    dir, info, rpc,
    async stop() { await sh(['scripts/marketplace.sh', 'stop', dir]); rmSync(dir, { recursive: true, force: true }); },
    async tokenBalance(account) {
      try { return BigInt((await rpc('getTokenAccountBalance', [account])).value.amount); } catch { return 0n; }
    },
  };
}

// transfer(market, {from: wallet name, mint, toOwner, amount (atomic bigint), toAccount?}) →
// signature. TransferChecked from the wallet's associated token account for `mint` to
// `toAccount`, or to the ATA of `toOwner` (which must exist); confirmed before returning.
export async function transfer(market, { from, mint, toOwner, toAccount, amount }) {
  const kit = await load('@solana/kit');
  const token = await load('@solana-program/token');
  const w = market.info.wallets[from];
  const signer = await kit.createKeyPairSignerFromBytes(Buffer.from(w.secretBase64, 'base64'));
  const [source] = await token.findAssociatedTokenPda({ owner: w.address, mint, tokenProgram: token.TOKEN_PROGRAM_ADDRESS });
  let destination = toAccount;
  if (!destination) {
    [destination] = await token.findAssociatedTokenPda({ owner: toOwner, mint, tokenProgram: token.TOKEN_PROGRAM_ADDRESS });
  }
  const ix = token.getTransferCheckedInstruction({ source, mint, destination, authority: signer, amount, decimals: 6 });
  const bh = (await market.rpc('getLatestBlockhash')).value;
  const msg = kit.pipe(kit.createTransactionMessage({ version: 0 }),
    (m) => kit.setTransactionMessageFeePayerSigner(signer, m),
    (m) => kit.setTransactionMessageLifetimeUsingBlockhash(bh, m),
    (m) => kit.appendTransactionMessageInstruction(ix, m));
  const tx = kit.getBase64EncodedWireTransaction(await kit.signTransactionMessageWithSigners(msg));
  return market.rpc('sendTransaction', [tx, { encoding: 'base64' }]);
}
