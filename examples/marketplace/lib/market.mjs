// lib/market.mjs — wires the whole marketplace in one process: chain + RPC, wallets, facilitator,
// paid services (express v2, hono v2, x402-express v1) and the x402-upl-style registry.
import http from 'node:http';
import express from 'express';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { createKeyPairSignerFromBytes } from '@solana/kit';
import { x402Facilitator } from '@x402/core/facilitator';
import { HTTPFacilitatorClient } from '@x402/core/server';
import { toFacilitatorSvmSigner } from '@x402/svm';
import { ExactSvmScheme as ExactSvmFacilitator } from '@x402/svm/exact/facilitator';
import { ExactSvmSchemeV1 as ExactSvmFacilitatorV1 } from '@x402/svm/exact/v1/facilitator';
import { ExactSvmScheme as ExactSvmServer } from '@x402/svm/exact/server';
import { paymentMiddleware as expressPayment, x402ResourceServer as ExpressResourceServer } from '@x402/express';
import { paymentMiddleware as honoPayment, x402ResourceServer as HonoResourceServer } from '@x402/hono';
import { declareDiscoveryExtension, bazaarResourceServerExtension } from '@x402/extensions/bazaar';
import { paymentMiddleware as v1Payment } from 'x402-express';
import { Chain, startRpcServer } from './chain.mjs';
import { makeWallet, ataOf, USDC_DEVNET_MINT, DEVNET_CAIP2 } from './solana.mjs';
import { SERVICES, checkInput, InputError, priceAtomic, priceDecimal } from './catalog.mjs';
import { IdempotencyStore, expressIdempotency, honoIdempotency } from './idempotency.mjs';

const V1_NETWORK = 'solana-devnet';
const SOL = 1_000_000_000n;
const USDC = 1_000_000n;

function listen(server, host, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(server.address().port); });
  });
}

/** A server that can be taken down and brought back on the same port (facilitator-down tests). */
class Switchable {
  constructor(handler, host, port) { this.handler = handler; this.host = host; this.port = port; this.server = null; this.sockets = new Set(); }
  async up() {
    if (this.server) return this.port;
    this.server = http.createServer(this.handler);
    this.server.on('connection', (s) => { this.sockets.add(s); s.on('close', () => this.sockets.delete(s)); });
    this.port = await listen(this.server, this.host, this.port);
    return this.port;
  }
  async down() {
    if (!this.server) return;
    const s = this.server; this.server = null;
    await new Promise((r) => { s.close(() => r()); for (const k of this.sockets) k.destroy(); });
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function svcHandler(svc) {
  return async (body) => {
    if (svc.fail) return { status: 500, body: { error: 'internal error: this service always fails after payment verification' } };
    try {
      checkInput(svc.input, body ?? {});
      const out = svc.run(body);
      if (svc.delayMs) await sleep(svc.delayMs(body)); // keeps going even if the caller hung up
      return { status: 200, body: out };
    } catch (e) {
      if (e instanceof InputError) return { status: 400, body: { error: e.message } };
      return { status: 500, body: { error: String(e.message ?? e) } };
    }
  };
}

export async function startMarketplace({ stateDir, host = '127.0.0.1', portBase = 5500, seed = 'x402r', slotMs = 400, blockhashWindow = 150, log = console.log, quiet = false }) {
  const say = quiet ? () => {} : log;
  const port = (k) => (portBase === 0 ? 0 : portBase + k);
  const chain = new Chain({ slotMs, blockhashWindow, log: say });

  // ---- wallets and the test mint -----------------------------------------------------------
  const W = (name) => makeWallet(name, seed === 'random' ? null : seed);
  const wallets = {
    facilitator: W('facilitator'),
    escrow: W('escrow'),
    user1: W('user1'),
    user2: W('user2'),
    underfunded: W('underfunded'),
    mintAuthority: W('mint-authority'),
  };
  const wrongMint = W('wrong-asset-mint');
  chain.createMint(USDC_DEVNET_MINT, { decimals: 6, mintAuthority: wallets.mintAuthority.address });
  chain.createMint(wrongMint.address, { decimals: 6, mintAuthority: wallets.mintAuthority.address });
  chain.setLamports(wallets.facilitator.address, 100n * SOL);
  chain.setLamports(wallets.mintAuthority.address, 1n * SOL);
  chain.setLamports(wallets.escrow.address, 10n * SOL);
  await chain.setTokenBalance(wallets.escrow.address, USDC_DEVNET_MINT, 100n * USDC);
  for (const u of ['user1', 'user2']) {
    chain.setLamports(wallets[u].address, 2n * SOL);
    await chain.setTokenBalance(wallets[u].address, USDC_DEVNET_MINT, 50n * USDC);
    await chain.setTokenBalance(wallets[u].address, wrongMint.address, 50n * USDC);
  }
  chain.setLamports(wallets.underfunded.address, 1n * SOL);
  await chain.setTokenBalance(wallets.underfunded.address, USDC_DEVNET_MINT, 100n); // 0.0001 USDC
  const payTo = {};
  for (const s of SERVICES) {
    const w = W(`payto-${s.id}`);
    payTo[s.id] = { owner: w.address, tokenAccount: await chain.setTokenBalance(w.address, USDC_DEVNET_MINT, 0n) };
  }
  const tokenAccounts = {};
  for (const k of ['escrow', 'user1', 'user2', 'underfunded']) tokenAccounts[k] = await ataOf(wallets[k].address, USDC_DEVNET_MINT);

  // ---- RPC -----------------------------------------------------------------------------------
  const rpcServer = await startRpcServer(chain, { host, port: port(0) });
  const rpcUrl = `http://${host}:${rpcServer.address().port}`;

  // Idempotency-Key stores of the paid servers (lib/idempotency.mjs), one per server
  const idem = { express: new IdempotencyStore(), hono: new IdempotencyStore(), v1: new IdempotencyStore() };

  // ---- facilitator ---------------------------------------------------------------------------
  const feePayer = await createKeyPairSignerFromBytes(wallets.facilitator.secret);
  const svmSigner = toFacilitatorSvmSigner(feePayer, { defaultRpcUrl: rpcUrl });
  const facilitator = new x402Facilitator()
    .register(DEVNET_CAIP2, new ExactSvmFacilitator(svmSigner))
    .registerV1(V1_NETWORK, new ExactSvmFacilitatorV1(svmSigner));
  const fapp = express();
  fapp.use(express.json({ limit: '1mb' }));
  const facCounters = { verify: 0, settle: 0, settled: 0, verifyMs: 0, settleMs: 0 };
  fapp.get('/supported', (_req, res) => res.json(facilitator.getSupported()));
  fapp.post('/verify', async (req, res) => {
    facCounters.verify++;
    const { paymentPayload, paymentRequirements } = req.body ?? {};
    if (!paymentPayload || !paymentRequirements) return res.status(400).json({ error: 'paymentPayload and paymentRequirements are required' });
    const t0 = performance.now();
    try { res.json(await facilitator.verify(paymentPayload, paymentRequirements)); } catch (e) {
      res.status(500).json({ error: String(e.message ?? e) });
    } finally { facCounters.verifyMs += performance.now() - t0; }
  });
  fapp.post('/settle', async (req, res) => {
    facCounters.settle++;
    const { paymentPayload, paymentRequirements } = req.body ?? {};
    if (!paymentPayload || !paymentRequirements) return res.status(400).json({ error: 'paymentPayload and paymentRequirements are required' });
    const t0 = performance.now();
    try {
      const r = await facilitator.settle(paymentPayload, paymentRequirements);
      if (r.success) facCounters.settled++;
      say(`facilitator: settle ${r.success ? 'ok ' + r.transaction : 'FAILED ' + (r.errorReason ?? '')}`);
      res.json(r);
    } catch (e) {
      res.status(500).json({ error: String(e.message ?? e) });
    } finally { facCounters.settleMs += performance.now() - t0; }
  });
  // test aid: how many /verify and /settle calls (and the ms spent in them), the chain's JSON-RPC
  // requests and ms, and what the services' Idempotency-Key stores did
  fapp.get('/stats', (_req, res) => res.json({ ...facCounters, rpc: { ...rpcServer.rpcStats }, idempotency: Object.fromEntries(Object.entries(idem).map(([k, v]) => [k, v.stats])) }));
  let discoveryItems = [];
  fapp.get('/discovery/resources', (req, res) => {
    const limit = Math.max(1, Math.min(1000, Number(req.query.limit ?? 100) || 100));
    const offset = Math.max(0, Number(req.query.offset ?? 0) || 0);
    const type = req.query.type;
    const all = type ? discoveryItems.filter((i) => i.type === type) : discoveryItems;
    res.json({ x402Version: 2, items: all.slice(offset, offset + limit), pagination: { limit, offset, total: all.length } });
  });
  const facSwitch = new Switchable(fapp, host, port(1));
  const facilitatorUrl = `http://${host}:${await facSwitch.up()}`;

  // ---- paid services -------------------------------------------------------------------------
  const facClient = new HTTPFacilitatorClient({ url: facilitatorUrl });
  const bazaarExt = (svc) => declareDiscoveryExtension({ method: 'POST', bodyType: 'json', input: svc.example, inputSchema: svc.input, output: { example: svc.run(svc.example), schema: svc.output } });
  const routeV2 = (svc) => ({
    accepts: { scheme: 'exact', price: svc.price, network: DEVNET_CAIP2, payTo: payTo[svc.id].owner, maxTimeoutSeconds: 60 },
    description: svc.description, mimeType: 'application/json', extensions: bazaarExt(svc),
  });

  // express v2
  const eapp = express();
  eapp.use(express.json({ limit: '1mb' }));
  const eServer = new ExpressResourceServer(facClient).register(DEVNET_CAIP2, new ExactSvmServer());
  eServer.registerExtension?.(bazaarResourceServerExtension);
  const eRoutes = {};
  for (const s of SERVICES.filter((x) => x.server === 'express')) eRoutes[`POST /${s.id}`] = routeV2(s);
  eapp.use(expressIdempotency(idem.express)); // before the payment middleware: a replay never reaches it
  eapp.use(expressPayment(eRoutes, eServer));
  for (const s of SERVICES.filter((x) => x.server === 'express')) {
    const h = svcHandler(s);
    eapp.post(`/${s.id}`, async (req, res) => { const r = await h(req.body); res.status(r.status).json(r.body); });
  }
  const eHttp = http.createServer(eapp);
  const expressUrl = `http://${host}:${await listen(eHttp, host, port(2))}`;

  // hono v2
  const happ = new Hono();
  const hServer = new HonoResourceServer(facClient).register(DEVNET_CAIP2, new ExactSvmServer());
  hServer.registerExtension?.(bazaarResourceServerExtension);
  const hRoutes = {};
  for (const s of SERVICES.filter((x) => x.server === 'hono')) hRoutes[`POST /${s.id}`] = routeV2(s);
  happ.use(honoIdempotency(idem.hono));
  happ.use(honoPayment(hRoutes, hServer));
  for (const s of SERVICES.filter((x) => x.server === 'hono')) {
    const h = svcHandler(s);
    happ.post(`/${s.id}`, async (c) => {
      let body;
      try { body = await c.req.json(); } catch { return c.json({ error: 'body must be JSON' }, 400); }
      const r = await h(body);
      return c.json(r.body, r.status);
    });
  }
  const honoPort = await new Promise((resolve, reject) => {
    const srv = serve({ fetch: happ.fetch, hostname: host, port: port(3) }, (info) => resolve(info.port));
    srv.once('error', reject);
    happ._server = srv;
  });
  const honoUrl = `http://${host}:${honoPort}`;

  // x402-express v1 (its facilitator path goes to our facilitator over HTTP)
  const v1app = express();
  v1app.use(express.json({ limit: '1mb' }));
  v1app.use(expressIdempotency(idem.v1));
  for (const s of SERVICES.filter((x) => x.server === 'v1')) {
    v1app.use(v1Payment(payTo[s.id].owner, {
      [`POST /${s.id}`]: {
        price: s.price, network: V1_NETWORK,
        config: {
          description: s.description, mimeType: 'application/json', maxTimeoutSeconds: 60,
          inputSchema: { bodyType: 'json', bodyFields: s.input.properties }, outputSchema: s.output,
        },
      },
    }, { url: facilitatorUrl }));
    const h = svcHandler(s);
    v1app.post(`/${s.id}`, async (req, res) => { const r = await h(req.body); res.status(r.status).json(r.body); });
  }
  const v1Http = http.createServer(v1app);
  const v1Url = `http://${host}:${await listen(v1Http, host, port(4))}`;

  const urlOf = (s) => `${{ express: expressUrl, hono: honoUrl, v1: v1Url }[s.server]}/${s.id}`;

  // ---- Bazaar listing (static: built from the same definitions the servers use) ------------
  const now = new Date().toISOString();
  discoveryItems = SERVICES.map((s) => {
    const amount = priceAtomic(s.price);
    if (s.server === 'v1') {
      return {
        resource: urlOf(s), type: 'http', x402Version: 1, lastUpdated: now, metadata: { name: s.name, category: s.category, tags: s.tags },
        accepts: [{
          scheme: 'exact', network: V1_NETWORK, maxAmountRequired: amount, resource: urlOf(s), description: s.description,
          mimeType: 'application/json', payTo: payTo[s.id].owner, maxTimeoutSeconds: 60, asset: USDC_DEVNET_MINT,
          outputSchema: { input: { type: 'http', method: 'POST', discoverable: true, bodyType: 'json', bodyFields: s.input.properties }, output: s.output },
          extra: { feePayer: wallets.facilitator.address },
        }],
      };
    }
    return {
      resource: urlOf(s), type: 'http', x402Version: 2, lastUpdated: now, description: s.description, mimeType: 'application/json',
      serviceName: s.name, tags: s.tags, metadata: { name: s.name, category: s.category },
      accepts: [{ scheme: 'exact', network: DEVNET_CAIP2, asset: USDC_DEVNET_MINT, amount, payTo: payTo[s.id].owner, maxTimeoutSeconds: 60, extra: { feePayer: wallets.facilitator.address } }],
      extensions: bazaarExt(s),
    };
  });

  // ---- x402-upl-style registry ---------------------------------------------------------------
  const rapp = express();
  const registry = SERVICES.map((s) => ({
    id: s.id, url: urlOf(s), name: s.name, description: s.description, category: s.category,
    pricePerCall: priceDecimal(s.price), inputSchema: JSON.stringify(s.input), outputSchema: JSON.stringify(s.output),
    capabilities: s.capabilities, tags: s.tags,
    method: 'POST', x402Version: s.server === 'v1' ? 1 : 2, network: s.server === 'v1' ? V1_NETWORK : DEVNET_CAIP2,
    asset: USDC_DEVNET_MINT, payTo: payTo[s.id].owner,
  }));
  rapp.get('/services/discover', (req, res) => {
    let out = registry;
    if (req.query.category) out = out.filter((s) => s.category === req.query.category);
    if (req.query.query) { const q = String(req.query.query).toLowerCase(); out = out.filter((s) => `${s.name} ${s.description} ${s.tags.join(' ')}`.toLowerCase().includes(q)); }
    if (req.query.maxPrice) out = out.filter((s) => Number(s.pricePerCall) <= Number(req.query.maxPrice));
    res.json(out);
  });
  rapp.get('/health', (_q, res) => res.json({ ok: true }));
  const rHttp = http.createServer(rapp);
  const registryUrl = `http://${host}:${await listen(rHttp, host, port(5))}`;

  // admin: take the facilitator down / up (through the chain's RPC method x402r_facilitator)
  chain.adminFacilitator = async (what) => {
    if (what === 'down') await facSwitch.down();
    else if (what === 'up') await facSwitch.up();
    else throw new Error('x402r_facilitator: expected "down" or "up"');
    return what;
  };

  const info = {
    network: DEVNET_CAIP2, networkV1: V1_NETWORK, rpcUrl, facilitatorUrl, registryUrl,
    discoveryUrl: `${facilitatorUrl}/discovery/resources`,
    servers: { express: expressUrl, hono: honoUrl, v1: v1Url },
    mint: USDC_DEVNET_MINT, decimals: 6, wrongMint: wrongMint.address,
    chain: { slotMs, blockhashWindow, seed },
    wallets: Object.fromEntries(Object.entries(wallets).map(([k, w]) => [k, { address: w.address, secretBase64: w.secretBase64, tokenAccount: tokenAccounts[k] }])),
    escrow: { address: wallets.escrow.address, secretBase64: wallets.escrow.secretBase64, tokenAccount: tokenAccounts.escrow },
    feePayer: wallets.facilitator.address,
    payTo,
    services: SERVICES.map((s) => ({ id: s.id, url: urlOf(s), x402Version: s.server === 'v1' ? 1 : 2, server: s.server, price: s.price, amount: priceAtomic(s.price), payTo: payTo[s.id].owner, payToTokenAccount: payTo[s.id].tokenAccount, failsAfterVerify: !!s.fail })),
  };

  async function stop() {
    chain.stop();
    await facSwitch.down();
    for (const s of [rpcServer, eHttp, v1Http, rHttp, happ._server]) await new Promise((r) => s.close(() => r())).catch(() => {});
  }
  return { info, chain, stop, facCounters, idempotency: idem };
}
