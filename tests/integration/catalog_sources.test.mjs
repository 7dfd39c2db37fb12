// tests/integration/catalog_sources.test.mjs — the catalog's remote sources against the real
// local marketplace (examples/marketplace): the x402 Bazaar (facilitator /discovery/resources,
// v1 and v2 items) and the x402-upl registry, de-duplicated by URL, cached in Redis and shared
// by a second engine, and robust to a registry that is down or answers garbage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startMarket } from '../lib/chain.mjs';
import { startEngine, createDb, dropDb, createKey, api, databaseUrl } from '../lib/harness.mjs';

let market, db, key;
const engines = [];

before(async () => {
  market = await startMarket();
  db = await createDb();
  key = await createKey(databaseUrl(db), 'alice');
});
after(async () => {
  for (const e of engines) if (!e.exitInfo()) await e.stop().catch(() => e.kill('SIGKILL'));
  if (market) await market.stop();
  if (db) await dropDb(db).catch(() => {});
});

async function start(env) {
  // A random refresh period keeps the cache key of each test's engines apart from earlier ones
  // only through the source URLs; the TTL is long enough for the shared-cache test.
  const e = await startEngine({ db, env: { NETWORK: 'devnet', ...env } });
  engines.push(e);
  return e;
}

async function services(engine) {
  const r = await api(engine, key).get('/services?limit=500');
  assert.equal(r.status, 200, r.text);
  return r.json;
}

// A tiny HTTP server: answer(req) → {status, body}; close() makes its port dead.
async function fakeServer(answer) {
  const srv = createServer(async (req, res) => {
    const { status, body, type } = await answer(req);
    res.writeHead(status, { 'content-type': type || 'application/json' });
    res.end(body);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${srv.address().port}`, close: () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(r); }) };
}

function byUrl(list) {
  const m = new Map();
  for (const s of list) if (s.url) m.set(s.url, s);
  return m;
}

test('FACILITATOR_URL alone: the Bazaar services are listed with prices from accepts (v1 and v2)', async () => {
  const e = await start({ FACILITATOR_URL: market.info.facilitatorUrl });
  const body = await services(e);
  const got = byUrl(body.services);
  let v1 = 0, v2 = 0;
  for (const s of market.info.services) {
    const rec = got.get(s.url);
    assert.ok(rec, `${s.id} (${s.url}) is listed: ${JSON.stringify(body.services.map((x) => x.url))}`);
    assert.equal(String(rec.price.amount), String(s.amount), `${s.id} price`);
    assert.equal(rec.price.network, market.info.network, `${s.id} network is the CAIP-2 id`);
    if (s.x402Version === 1) v1++; else v2++;
  }
  assert.ok(v1 >= 1 && v2 >= 1, 'both item shapes are covered');
  await e.stop();
});

test('with REGISTRY_URL too: no duplicate by URL', async () => {
  const e = await start({ FACILITATOR_URL: market.info.facilitatorUrl, REGISTRY_URL: market.info.registryUrl });
  const body = await services(e);
  const urls = body.services.map((s) => s.url).filter(Boolean);
  assert.equal(new Set(urls).size, urls.length, `duplicates in ${JSON.stringify(urls)}`);
  for (const s of market.info.services) assert.ok(urls.includes(s.url), `${s.id} listed`);
  await e.stop();
});

test('a second engine reads the fresh cache even when the registry has gone', async () => {
  // The registry is reached through a proxy we can kill: the same REGISTRY_URL, then a dead port.
  const proxy = await fakeServer(async (req) => {
    const r = await fetch(market.info.registryUrl + req.url);
    return { status: r.status, body: await r.text() };
  });
  let calls = 0;
  const fac = await fakeServer(async (req) => {
    calls++;
    const r = await fetch(market.info.facilitatorUrl + req.url);
    return { status: r.status, body: await r.text() };
  });
  const env = { FACILITATOR_URL: fac.url, REGISTRY_URL: proxy.url, CATALOG_CACHE_TTL_MS: '600000' };
  const e1 = await start(env);
  const first = await services(e1);
  assert.ok(first.services.length >= market.info.services.length);
  await proxy.close();
  const before = calls;
  const e2 = await start(env);
  const second = await services(e2);
  assert.deepEqual(second.services, first.services);
  assert.equal(second.catalogVersion, first.catalogVersion);
  assert.equal(calls, before, 'the second engine did not fetch the Bazaar');
  await e1.stop();
  await e2.stop();
  await fac.close();
});

test('a registry answering garbage does not stop start-up; the Bazaar still counts', async () => {
  const bad = await fakeServer(async () => ({ status: 200, body: '<html>not json', type: 'text/html' }));
  const e = await start({ REGISTRY_URL: bad.url, FACILITATOR_URL: market.info.facilitatorUrl });
  const body = await services(e);
  assert.ok(byUrl(body.services).size >= market.info.services.length);
  assert.match(e.stderr(), /registry unavailable/);
  await e.stop();
  await bad.close();
});

test('a registry that is down and an empty facilitator: the engine starts on the file', async () => {
  const dead = await fakeServer(async () => ({ status: 200, body: '[]' }));
  await dead.close();
  const e = await startEngine({ db, env: { REGISTRY_URL: dead.url },
    catalog: { services: [{ id: 'local', name: 'local', description: 'a local one', url: 'http://127.0.0.1:9/x',
      price: { amount: '1' } }] } });
  engines.push(e);
  const body = await services(e);
  assert.deepEqual(body.services.map((s) => s.id), ['local']);
  await e.stop();
});

test('background refresh: one fetcher at a time, both engines follow, garbage keeps the old records', async () => {
  const rec = (id) => ({ id, name: id, description: `the ${id} service`, url: `http://127.0.0.1:9/${id}`,
    pricePerCall: '0.001', category: 'test', tags: ['test'] });
  let answer = JSON.stringify([rec('alpha')]);
  let hits = 0;
  const reg = await fakeServer(async () => { hits++; return { status: 200, body: answer }; });
  const env = { REGISTRY_URL: reg.url, CATALOG_REFRESH_MS: '1000', CATALOG_CACHE_TTL_MS: '600000' };
  const e1 = await start(env);
  const e2 = await start(env);
  const ids = async (e) => (await services(e)).services.map((s) => s.id).sort();
  assert.deepEqual(await ids(e1), ['alpha']);
  assert.deepEqual(await ids(e2), ['alpha']);

  answer = JSON.stringify([rec('alpha'), rec('beta')]);
  const t0 = Date.now(), h0 = hits;
  const deadline = Date.now() + 8000;
  while (Date.now() < deadline) {
    if ((await ids(e1)).includes('beta') && (await ids(e2)).includes('beta')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(await ids(e1), ['alpha', 'beta']);
  assert.deepEqual(await ids(e2), ['alpha', 'beta']);

  await new Promise((r) => setTimeout(r, 3000));
  const periods = (Date.now() - t0) / 1000;
  assert.ok(hits - h0 <= periods + 2, `the lock keeps it to one fetch per period: ${hits - h0} in ${periods.toFixed(1)} s`);

  answer = '{"oops": true';
  await new Promise((r) => setTimeout(r, 3500));
  assert.deepEqual(await ids(e1), ['alpha', 'beta']);
  assert.deepEqual(await ids(e2), ['alpha', 'beta']);
  const warned = (e1.stderr() + e2.stderr()).match(/registry unavailable/g) || [];
  assert.ok(warned.length >= 1 && warned.length <= 2, `logged once per fetcher, got ${warned.length}`);

  await e1.stop();
  await e2.stop();
  await reg.close();
});

test('the Bazaar is read page by page until pagination.total', async () => {
  const real = await (await fetch(`${market.info.facilitatorUrl}/discovery/resources?limit=100&offset=0`)).json();
  const v2 = real.items.find((it) => it.x402Version === 2);
  const N = 250;
  const all = Array.from({ length: N }, (_, i) => ({ ...v2, resource: `http://127.0.0.1:9/paged/${i}` }));
  const offsets = [];
  const fac = await fakeServer(async (req) => {
    const u = new URL(req.url, 'http://x');
    const limit = Number(u.searchParams.get('limit')), offset = Number(u.searchParams.get('offset'));
    offsets.push(offset);
    return { status: 200, body: JSON.stringify({ x402Version: 2, items: all.slice(offset, offset + limit),
      pagination: { limit, offset, total: N } }) };
  });
  const e = await start({ FACILITATOR_URL: fac.url });
  const body = await services(e);
  assert.equal(body.pagination.total, N);
  assert.deepEqual(offsets, [0, 100, 200]);
  await e.stop();
  await fac.close();
});
