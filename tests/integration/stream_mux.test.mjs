// stream_mux.test.mjs — GET /stream: one WebSocket carrying the events of many workflows,
// chosen by {"subscribe", "since"} / {"unsubscribe"} messages. Each subscription is gap-free and
// duplicate-free from its `since`; another user's workflow is "not found" and none of its events
// leak; malformed messages are answered with an error notice and the socket stays usable.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, openStream, assertGapFree, waitStatus, step, ref, ready, createKey } from '../lib/harness.mjs';

let ctx;
let c;

before(async () => {
  ctx = await setup({ users: ['alice', 'bob'] });
  c = ctx.client;
});
after(async () => { await ctx?.teardown(); });

const plan = (n) => ({ steps: [
  step('a', 'add', { a: n, b: 1 }),
  step('b', 'echo', { message: ref('a.sum') }, ['a']),
] });

async function runApproved(client, n) {
  const r = await client.post('/workflows/create', { input: `mux ${n}`, plan: plan(n), approve: true });
  assert.equal(r.status, 201, r.text);
  return r.json.workflow.id;
}

const eventsOf = (s, id) => s.messages.filter((m) => m.workflowId === id && typeof m.seq === 'number');
const noticesOf = (s, type, id) => s.messages.filter((m) => m.type === type && (id === undefined || m.workflowId === id));

async function mux(key = ctx.keys.alice, opts = {}) {
  const s = openStream(ctx.engine, null, { key, ...opts });
  await s.opened;
  return s;
}

test('two workflows on one socket: each stream is gap-free from 1 to completion, after "subscribed"', async () => {
  const s = await mux();
  try {
    const ids = [await runApproved(c, 1), await runApproved(c, 2)];
    for (const id of ids) s.send({ subscribe: id, since: 0 });
    for (const id of ids) {
      await s.waitUntil(() => eventsOf(s, id).some((m) => m.type === 'workflow.completed'), { what: `${id} completed` });
      const ev = eventsOf(s, id);
      assertGapFree(ev, 1);
      assert.deepEqual(ev.slice(0, 4).map((m) => m.type),
        ['workflow.planning', 'workflow.plan_ready', 'workflow.approved', 'workflow.executing']);
      const first = s.messages.findIndex((m) => m.workflowId === id);
      assert.deepEqual(s.messages[first], { type: 'subscribed', workflowId: id }, 'the notice comes before any event');
      assert.equal(ev.at(-1).data.output.b.echo.message, ids.indexOf(id) + 2);
    }
  } finally { s.close(); }
});

test('since resumes after the given seq; a subscription to a finished workflow replays and stays quiet', async () => {
  const id = await runApproved(c, 5);
  await waitStatus(c, id, ['completed']);
  const s = await mux();
  try {
    s.send({ subscribe: id, since: 3 });
    await s.waitUntil(() => eventsOf(s, id).some((m) => m.type === 'workflow.completed'));
    assertGapFree(eventsOf(s, id), 4);
  } finally { s.close(); }
});

test('another user\'s workflow is not found and none of its events are sent; an admin key may follow it', async () => {
  const bobs = await runApproved(ctx.clients.bob, 7);
  const s = await mux();
  try {
    s.send({ subscribe: bobs });
    await s.waitUntil(() => noticesOf(s, 'error', bobs).length === 1);
    assert.equal(noticesOf(s, 'error', bobs)[0].error, 'workflow not found');
    await waitStatus(ctx.clients.bob, bobs, ['completed']);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(eventsOf(s, bobs).length, 0, 'nothing of bob\'s workflow reached alice');
    // the socket still works after the refusal
    const mine = await runApproved(c, 8);
    s.send({ subscribe: mine });
    await s.waitUntil(() => eventsOf(s, mine).some((m) => m.type === 'workflow.completed'));
  } finally { s.close(); }
  const admin = await mux(await createKey(ctx.dbUrl, 'root', { admin: true }));
  try {
    admin.send({ subscribe: bobs });
    await admin.waitUntil(() => eventsOf(admin, bobs).some((m) => m.type === 'workflow.completed'));
    assertGapFree(eventsOf(admin, bobs), 1);
  } finally { admin.close(); }
});

test('unsubscribe stops the events of that workflow only', async () => {
  const { id: waiting } = await ready(c, { input: 'mux wait', plan: plan(3) });
  const s = await mux();
  try {
    s.send({ subscribe: waiting });
    await s.waitUntil(() => eventsOf(s, waiting).some((m) => m.type === 'workflow.awaiting_approval'));
    s.send({ unsubscribe: waiting });
    await s.waitUntil(() => noticesOf(s, 'unsubscribed', waiting).length === 1);
    const seen = eventsOf(s, waiting).length;
    const ap = await c.post(`/workflows/${waiting}/approve`);
    assert.equal(ap.status, 200);
    const other = await runApproved(c, 4);
    s.send({ subscribe: other });
    await s.waitUntil(() => eventsOf(s, other).some((m) => m.type === 'workflow.completed'));
    await waitStatus(c, waiting, ['completed']);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(eventsOf(s, waiting).length, seen, 'no event after unsubscribe');
    s.send({ unsubscribe: waiting });
    await s.waitUntil(() => noticesOf(s, 'error', waiting).some((m) => m.error === 'not subscribed'));
  } finally { s.close(); }
});

test('malformed messages get an error notice each and the socket stays open', async () => {
  const s = await mux();
  try {
    const id = await runApproved(c, 9);
    const bad = [
      ['not json', 'expected a JSON object'],
      [[1, 2], 'expected a JSON object'],
      [{ subscribe: id, colour: 'red' }, 'unknown field'],
      [{ subscribe: id, unsubscribe: id }, 'expected exactly one of subscribe, unsubscribe'],
      [{}, 'expected exactly one of subscribe, unsubscribe'],
      [{ subscribe: 'has space' }, 'expected a workflow id'],
      [{ subscribe: 42 }, 'expected a workflow id'],
      [{ subscribe: id, since: -1 }, 'since: expected a non-negative integer event seq'],
      [{ subscribe: id, since: '3' }, 'since: expected a non-negative integer event seq'],
      [{ unsubscribe: id, since: 2 }, 'since goes with subscribe'],
      ['x'.repeat(5000), 'message too long'],
    ];
    for (const [m] of bad) s.send(m);
    await s.waitUntil(() => noticesOf(s, 'error').length === bad.length, { what: `${bad.length} errors` });
    assert.deepEqual(noticesOf(s, 'error').map((m) => m.error), bad.map(([, e]) => e));
    assert.equal(eventsOf(s, id).length, 0);
    s.send({ subscribe: id });
    s.send({ subscribe: id });
    await s.waitUntil(() => noticesOf(s, 'error', id).some((m) => m.error === 'already subscribed'));
    await s.waitUntil(() => eventsOf(s, id).some((m) => m.type === 'workflow.completed'));
    assertGapFree(eventsOf(s, id), 1);
    assert.equal(s.closed(), null);
  } finally { s.close(); }
});

test('the handshake needs a key (header or access_token) and a WebSocket upgrade', async () => {
  const none = openStream(ctx.engine, null, {});
  await assert.rejects(none.opened, (e) => e.status === 401);
  const q = openStream(ctx.engine, null, { key: ctx.keys.alice, viaQuery: true });
  await q.opened;
  q.close();
  const plain = await c.get('/stream');
  assert.equal(plain.status, 400);
  assert.match(plain.json.error, /WebSocket/);
});
