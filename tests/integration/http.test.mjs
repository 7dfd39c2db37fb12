// http.test.mjs — HTTP/1.1 behaviour on raw sockets: keep-alive, pipelining, chunked request
// bodies, Expect: 100-continue.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, ready, rawConn, rawHttp, httpRequest, step, sleep } from '../lib/harness.mjs';

let ctx;
let key;
const plan = { steps: [step('a', 'add', { a: 1, b: 2 })] };

before(async () => {
  ctx = await setup({ users: ['alice'] });
  key = ctx.keys.alice;
});
after(async () => { await ctx?.teardown(); });

test('keep-alive: two requests on one socket are both answered', async () => {
  const { id } = await ready(ctx.client, { input: 'keep-alive', plan });
  const conn = await rawConn(ctx.engine.port);
  try {
    await conn.write(httpRequest('GET', '/health'));
    const r1 = await conn.next();
    assert.ok(r1, 'first response');
    assert.equal(r1.status, 200);
    assert.notEqual((r1.headers.connection || '').toLowerCase(), 'close');
    assert.equal(conn.ended(), false, 'the server keeps the connection open');
    await conn.write(httpRequest('GET', `/workflows/${id}`, { key }));
    const r2 = await conn.next();
    assert.ok(r2, 'second response on the same socket');
    assert.equal(r2.status, 200);
    assert.equal(r2.json.workflow.id, id);
    await conn.write(httpRequest('POST', '/workflows/create', { key, body: { input: 'third on one socket', plan } }));
    const r3 = await conn.next();
    assert.equal(r3?.status, 201);
  } finally {
    conn.close();
  }
});

test('an error response (401, 404) keeps the connection usable', async () => {
  const conn = await rawConn(ctx.engine.port);
  try {
    await conn.write(httpRequest('GET', '/users/alice/workflows'));
    assert.equal((await conn.next())?.status, 401);
    await conn.write(httpRequest('GET', '/no/such/route', { key }));
    assert.equal((await conn.next())?.status, 404);
    await conn.write(httpRequest('GET', '/users/alice/workflows', { key }));
    assert.equal((await conn.next())?.status, 200);
  } finally {
    conn.close();
  }
});

test('pipelined create + get in ONE write are answered in order', async () => {
  const { id: prev } = await ready(ctx.client, { input: 'pipelined previous', plan });
  const bytes = Buffer.concat([
    httpRequest('POST', '/workflows/create', { key, body: { input: 'pipelined create', plan } }),
    httpRequest('GET', `/workflows/${prev}`, { key }),
    httpRequest('GET', '/health'),
  ]);
  const rs = await rawHttp(ctx.engine.port, bytes, { responses: 3 });
  assert.equal(rs.length, 3, `three responses, got ${rs.map((r) => r.status)}`);
  assert.equal(rs[0].status, 201, rs[0].text);
  assert.match(rs[0].json.workflow.id, /^wf_\d+_[a-z0-9]+$/);
  assert.notEqual(rs[0].json.workflow.id, prev);
  assert.equal(rs[1].status, 200, rs[1].text);
  assert.equal(rs[1].json.workflow.id, prev);
  assert.equal(rs[1].json.workflow.input, 'pipelined previous');
  assert.equal(rs[2].status, 200);
  assert.ok('postgres' in rs[2].json, 'third answer is /health');
});

test('ten pipelined GETs in one write come back in order', async () => {
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await ready(ctx.client, { input: `pipe ${i}`, plan })).id);
  const order = Array.from({ length: 10 }, (_, i) => ids[i % 3]);
  const bytes = Buffer.concat(order.map((id) => httpRequest('GET', `/workflows/${id}`, { key })));
  const rs = await rawHttp(ctx.engine.port, bytes, { responses: 10 });
  assert.deepEqual(rs.map((r) => r.json?.workflow?.id), order);
});

test('a chunked request body is accepted', async () => {
  const body = JSON.stringify({ input: 'chunked body', plan });
  const parts = [body.slice(0, 5), body.slice(5, 20), body.slice(20)];
  const head = `POST /workflows/create HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
               'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
  const conn = await rawConn(ctx.engine.port);
  try {
    await conn.write(head);
    for (const p of parts) {
      await conn.write(`${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`);
      await sleep(20); // separate TCP segments
    }
    await conn.write('0\r\n\r\n');
    const r = await conn.next();
    assert.equal(r?.status, 201, r?.text);
    const g = await ctx.client.get(`/workflows/${r.json.workflow.id}`);
    assert.equal(g.json.workflow.input, 'chunked body');
  } finally {
    conn.close();
  }
});

test('Expect: 100-continue gets 100 Continue, then the real answer', async () => {
  const body = Buffer.from(JSON.stringify({ input: 'expect continue', plan }));
  const head = `POST /workflows/create HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
               `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`;
  const conn = await rawConn(ctx.engine.port);
  try {
    await conn.write(head);
    const interim = await conn.next({ timeout: 3000 });
    assert.ok(interim, 'the server answers the headers before the body is sent');
    assert.equal(interim.status, 100, `expected 100 Continue, got ${interim.status} ${interim.text}`);
    await conn.write(body);
    const r = await conn.next();
    assert.equal(r?.status, 201, r?.text);
    assert.match(r.json.workflow.id, /^wf_/);
  } finally {
    conn.close();
  }
});

test('Connection: close is honoured', async () => {
  const conn = await rawConn(ctx.engine.port);
  try {
    await conn.write(httpRequest('GET', '/health', { headers: { Connection: 'close' } }));
    const r = await conn.next();
    assert.equal(r?.status, 200);
    for (let i = 0; i < 50 && !conn.ended(); i++) await sleep(20);
    assert.equal(conn.ended(), true, 'the server closes after answering');
  } finally {
    conn.close();
  }
});
