// auth.test.mjs — API keys and per-user isolation (docs/api-contract.md: auth, 401, 404).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  setup, api, ready, createKeyRaw, openStream, step,
} from '../lib/harness.mjs';

let ctx;
let alice;
let bob;
const plan = { steps: [step('e', 'echo', { message: 'hi' })] };

before(async () => {
  ctx = await setup({ users: ['alice', 'bob'] });
  alice = ctx.clients.alice;
  bob = ctx.clients.bob;
});
after(async () => { await ctx?.teardown(); });

function assert401(r) {
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json?.success, false);
  assert.equal(r.json?.error, 'missing or invalid API key');
  assert.match(r.headers.get('www-authenticate') || '', /^Bearer/i);
}

test('a request without a key is 401 with WWW-Authenticate: Bearer', async () => {
  const anon = api(ctx.engine, null);
  assert401(await anon.get('/users/alice/workflows'));
  assert401(await anon.post('/workflows/create', { input: 'x', plan }));
  assert401(await anon.get('/workflows/wf_1_abc'));
});

test('a wrong key is 401', async () => {
  assert401(await api(ctx.engine, 'not-a-key').get('/users/alice/workflows'));
  // a well-formed key with one character changed
  const k = ctx.keys.alice;
  const last = k.at(-1) === 'A' ? 'B' : 'A';
  assert401(await api(ctx.engine, k.slice(0, -1) + last).get('/users/alice/workflows'));
  // a different scheme is not a bearer token
  const r = await alice.raw('GET', '/users/alice/workflows', { key: null, headers: { authorization: `Basic ${k}` } });
  assert401(r);
});

test('a valid key works and no workflow is created by refused requests', async () => {
  const r = await alice.get('/users/alice/workflows');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.success, true);
  assert.ok(Array.isArray(r.json.workflows));
  assert.equal(r.json.workflows.length, 0, 'the 401 create above must not have written anything');
});

test("user B cannot see, approve or cancel user A's workflow (404)", async () => {
  const { id } = await ready(alice, { input: 'alice task', plan });
  for (const r of [
    await bob.get(`/workflows/${id}`),
    await bob.post(`/workflows/${id}/approve`),
    await bob.post(`/workflows/${id}/cancel`),
  ]) {
    assert.equal(r.status, 404, r.text);
    assert.equal(r.json.success, false);
    assert.equal(r.json.error, 'workflow not found');
  }
  // nothing happened to it
  const g = await alice.get(`/workflows/${id}`);
  assert.equal(g.status, 200);
  assert.equal(g.json.workflow.status, 'awaiting_approval');
  assert.equal(g.json.workflow.userId, 'alice');
});

test("user B's 404 for A's workflow looks the same as for a workflow that does not exist", async () => {
  const r = await bob.get('/workflows/wf_1_doesnotexist');
  assert.equal(r.status, 404);
  assert.equal(r.json.error, 'workflow not found');
});

test("user B cannot stream user A's workflow", async () => {
  const { id } = await ready(alice, { input: 'alice streamed task', plan });
  const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.bob });
  await assert.rejects(s.opened, (e) => e.status === 404);
});

test("user B cannot list user A's workflows (404)", async () => {
  const r = await bob.get('/users/alice/workflows');
  assert.equal(r.status, 404, r.text);
  assert.equal(r.json.success, false);
  assert.equal(r.json.error, 'user not found');
  const own = await bob.get('/users/bob/workflows');
  assert.equal(own.status, 200);
  assert.equal(own.json.workflows.length, 0);
});

test("a userId in the body that is not the caller's is 400 on field userId", async () => {
  const r = await alice.post('/workflows/create', { userId: 'bob', input: 'impersonation', plan });
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.success, false);
  assert.ok(r.json.details.some((d) => d.field === 'userId'), JSON.stringify(r.json));
  const l = await bob.get('/users/bob/workflows');
  assert.equal(l.json.workflows.length, 0);
});

test("the caller's own userId in the body is accepted", async () => {
  const r = await alice.post('/workflows/create', { userId: 'alice', input: 'own user id', plan });
  assert.equal(r.status, 201, r.text);
});

test('/health and /metrics need no key', async () => {
  const anon = api(ctx.engine, null);
  const h = await anon.get('/health');
  assert.equal(h.status, 200, h.text);
  assert.equal(h.json.status, 'ok');
  const m = await anon.get('/metrics');
  assert.equal(m.status, 200);
  assert.match(m.text, /^x402r_/m);
});

test('keys create prints one URL-safe key on one line, different every time', async () => {
  const a = await createKeyRaw(ctx.dbUrl, 'carol');
  const b = await createKeyRaw(ctx.dbUrl, 'carol');
  for (const r of [a, b]) {
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^[^\n]+\n?$/, `exactly one line: ${JSON.stringify(r.stdout)}`);
    const key = r.stdout.trim();
    assert.match(key, /^[A-Za-z0-9_~.-]+$/, `URL-safe: ${key}`);
    assert.equal(encodeURIComponent(key), key);
    assert.ok(key.length >= 20, 'a key should be long enough to be unguessable');
  }
  assert.notEqual(a.stdout.trim(), b.stdout.trim());
  // both work, for carol only
  const carol = api(ctx.engine, a.stdout.trim());
  assert.equal((await carol.get('/users/carol/workflows')).status, 200);
  assert.equal((await api(ctx.engine, b.stdout.trim()).get('/users/carol/workflows')).status, 200);
  assert.equal((await carol.get('/users/alice/workflows')).status, 404);
});
