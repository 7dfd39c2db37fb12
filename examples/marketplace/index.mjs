#!/usr/bin/env node
// examples/marketplace/index.mjs — start the whole local x402 marketplace in this process.
//
//   node examples/marketplace/index.mjs --state DIR [--port-base N] [--host H] [--seed S|random]
//        [--slot-ms MS] [--blockhash-window SLOTS] [--quiet]
//
// Writes DIR/marketplace.json (every URL, the mint, the wallets and their secrets, the payTo
// owners, the services and their prices) and DIR/marketplace.pid, then prints
// `marketplace: ready DIR/marketplace.json`. --port-base 0 picks free ports. SIGTERM/SIGINT stop it.
import { mkdirSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { startMarketplace } from './lib/market.mjs';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const stateArg = arg('--state');
if (!stateArg) {
  console.error('usage: node index.mjs --state DIR [--port-base N] [--host H] [--seed S|random] [--slot-ms MS] [--blockhash-window N] [--quiet]');
  process.exit(2);
}
const stateDir = path.resolve(stateArg);
mkdirSync(stateDir, { recursive: true });
const opts = {
  stateDir,
  host: arg('--host', process.env.MARKETPLACE_HOST ?? '127.0.0.1'),
  portBase: Number(arg('--port-base', process.env.MARKETPLACE_PORT_BASE ?? 5500)),
  seed: arg('--seed', process.env.MARKETPLACE_SEED ?? 'x402r'),
  slotMs: Number(arg('--slot-ms', process.env.MARKETPLACE_SLOT_MS ?? 400)),
  blockhashWindow: Number(arg('--blockhash-window', process.env.MARKETPLACE_BLOCKHASH_WINDOW ?? 150)),
  quiet: process.argv.includes('--quiet'),
  log: (...a) => console.log(...a),
};
if (!Number.isInteger(opts.portBase) || opts.portBase < 0 || opts.portBase > 65530) {
  console.error('marketplace: --port-base must be 0 or a port number'); process.exit(2);
}

const t0 = Date.now();
let m;
try {
  m = await startMarketplace(opts);
} catch (e) {
  console.error(`marketplace: failed to start: ${e.stack ?? e}`);
  process.exit(1);
}
const file = path.join(stateDir, 'marketplace.json');
const doc = { ...m.info, pid: process.pid, startedAt: new Date().toISOString() };
writeFileSync(`${file}.tmp`, JSON.stringify(doc, null, 2) + '\n', { mode: 0o600 });
renameSync(`${file}.tmp`, file);
writeFileSync(path.join(stateDir, 'marketplace.pid'), `${process.pid}\n`);
console.log(`marketplace: rpc ${m.info.rpcUrl} facilitator ${m.info.facilitatorUrl} registry ${m.info.registryUrl}`);
console.log(`marketplace: services express ${m.info.servers.express} hono ${m.info.servers.hono} v1 ${m.info.servers.v1}`);
console.log(`marketplace: escrow ${m.info.escrow.address} (ESCROW_KEYPAIR in ${file})`);
console.log(`marketplace: ready ${file} (${Date.now() - t0} ms)`);

let stopping = false;
async function shutdown(sig) {
  if (stopping) return;
  stopping = true;
  console.log(`marketplace: ${sig}, stopping`);
  const force = setTimeout(() => process.exit(0), 3000);
  force.unref();
  try { await m.stop(); } catch { /* closing anyway */ }
  rmSync(path.join(stateDir, 'marketplace.pid'), { force: true });
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
