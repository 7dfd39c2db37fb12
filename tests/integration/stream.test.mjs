// stream.test.mjs — GET /workflows/:id/stream (WebSocket): replay from `since`, then live events,
// gap-free and without duplicates; access_token; refused handshakes; slow consumers.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  setup, ready, runPlan, waitStatus, waitFor, openStream, assertGapFree, assertIsoTime, step, ref,
} from '../lib/harness.mjs';

let ctx;
let c;
let key;

before(async () => {
  ctx = await setup({ users: ['alice', 'bob'] });
  c = ctx.client;
  key = ctx.keys.alice;
});
after(async () => { await ctx?.teardown(); });

const twoSteps = () => ({ steps: [
  step('a', 'add', { a: 20, b: 22 }),
  step('b', 'echo', { message: ref('a.sum') }, ['a']),
] });

const ORDER = ['workflow.planning', 'workflow.plan_ready', 'workflow.awaiting_approval', 'workflow.approved',
  'workflow.executing'];

async function completedWorkflow() {
  const id = await runPlan(c, twoSteps());
  await waitStatus(c, id, ['completed']);
  return id;
}

async function replay(id, since = 0, opts = {}) {
  const s = openStream(ctx.engine, id, { since, key, ...opts });
  await s.opened;
  return s;
}

test('a completed workflow replays from since=0: seq 1..N, every type in order', async () => {
  const id = await completedWorkflow();
  const s = await replay(id);
  try {
    await s.waitType('workflow.completed');
    const ev = s.messages;
    assertGapFree(ev, 1);
    for (const e of ev) {
      assert.equal(e.workflowId, id);
      assert.equal(typeof e.type, 'string');
      assert.ok(e.data && typeof e.data === 'object', `data is an object: ${JSON.stringify(e)}`);
      assertIsoTime(e.timestamp, 'event timestamp');
    }
    const types = ev.map((e) => e.type);
    assert.equal(types[0], 'workflow.planning');
    assert.equal(types.at(-1), 'workflow.completed');
    const idx = ORDER.map((t) => types.indexOf(t));
    assert.ok(idx.every((i) => i >= 0), `all of ${ORDER} present: ${types}`);
    assert.deepEqual(idx, idx.slice().sort((x, y) => x - y), `in order: ${types}`);
    const exec = types.indexOf('workflow.executing');
    const stepEv = ev.filter((e) => e.type.startsWith('step.'));
    assert.ok(stepEv.every((e) => ev.indexOf(e) > exec), 'step events come after workflow.executing');
    const startA = ev.findIndex((e) => e.type === 'step.started' && e.data.stepId === 'a');
    const doneA = ev.findIndex((e) => e.type === 'step.completed' && e.data.stepId === 'a');
    const startB = ev.findIndex((e) => e.type === 'step.started' && e.data.stepId === 'b');
    const doneB = ev.findIndex((e) => e.type === 'step.completed' && e.data.stepId === 'b');
    assert.ok(startA < doneA && doneA < startB && startB < doneB, types.join());
    assert.deepEqual(ev[doneA].data.output, { sum: 42 });
    assert.equal(ev[doneA].data.attempt, 1);
    assert.equal(typeof ev[doneA].data.durationMs, 'number');
    assert.equal(ev[startA].data.service, 'add');
    assert.equal(ev[startA].data.attempt, 1);
    const planReady = ev.find((e) => e.type === 'workflow.plan_ready');
    assert.deepEqual(planReady.data.plan.steps.map((x) => x.id), ['a', 'b']);
    assert.equal(planReady.data.estimatedCost.atomic, '0');
    assert.equal(typeof ev.find((e) => e.type === 'workflow.awaiting_approval').data.expiresAt, 'string');
    const completed = ev.at(-1);
    assert.deepEqual(completed.data.output, { b: { echo: { message: 42 } } });
    assert.equal(completed.data.totalCost.atomic, '0');
    assert.equal(types.filter((t) => t === 'workflow.completed').length, 1);
  } finally {
    s.close();
  }
});

test('since=K replays only events after K', async () => {
  const id = await completedWorkflow();
  const all = await replay(id, 0);
  await all.waitType('workflow.completed');
  const n = all.messages.length;
  all.close();
  const k = 3;
  const part = await replay(id, k);
  try {
    await part.waitType('workflow.completed');
    assert.equal(part.messages.length, n - k);
    assertGapFree(part.messages, k + 1);
    assert.deepEqual(part.messages, all.messages.slice(k));
  } finally {
    part.close();
  }
  // since = the last seq: nothing to replay
  const none = await replay(id, n);
  try {
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(none.messages, []);
  } finally {
    none.close();
  }
});

test('without since the stream starts from the first event', async () => {
  const id = await completedWorkflow();
  const s = openStream(ctx.engine, id, { key });
  try {
    await s.opened;
    await s.waitType('workflow.completed');
    assertGapFree(s.messages, 1);
  } finally {
    s.close();
  }
});

test('live events follow the replay with no gap and no duplicate', async () => {
  const plan = { steps: [
    step('s1', 'slow', { ms: 300 }),
    step('s2', 'slow', { ms: 300 }, ['s1']),
    step('s3', 'slow', { ms: 300 }, ['s2']),
  ] };
  const id = await runPlan(c, plan);
  await waitFor(() => ctx.svc.calls({ path: '/slow', workflowId: id, stepId: 's1' }).length === 1,
    { message: 'step s1 running' });
  const s = await replay(id, 0);
  try {
    const completed = await s.waitType('workflow.completed', { timeout: 15000 });
    assert.ok(completed);
    assertGapFree(s.messages, 1);
    const types = s.messages.map((m) => m.type);
    assert.equal(types.filter((t) => t === 'step.completed').length, 3);
    assert.equal(types.filter((t) => t === 'step.started').length, 3);
  } finally {
    s.close();
  }
  // the live stream saw exactly what the store holds
  const again = await replay(id, 0);
  try {
    await again.waitType('workflow.completed');
    assert.deepEqual(again.messages, s.messages);
  } finally {
    again.close();
  }
});

test('many subscribers connecting at different moments all see the same gap-free sequence', async () => {
  const plan = { steps: Array.from({ length: 6 }, (_, i) => step(`p${i}`, 'slow', { ms: 100 + 50 * i })) };
  const id = await runPlan(c, plan);
  const streams = [];
  for (let i = 0; i < 5; i++) {
    streams.push(openStream(ctx.engine, id, { since: 0, key }));
    await new Promise((r) => setTimeout(r, 60));
  }
  try {
    await Promise.all(streams.map((s) => s.opened));
    await Promise.all(streams.map((s) => s.waitType('workflow.completed')));
    for (const s of streams) {
      assertGapFree(s.messages, 1);
      assert.deepEqual(s.messages, streams[0].messages);
    }
  } finally {
    for (const s of streams) s.close();
  }
});

test('streams opened every few ms around the end of a workflow all end with workflow.completed', async () => {
  // The route's ownership check doubles as the first catch-up read (the subscription is
  // registered before it, so an event published meanwhile re-arms a read); every stream, however
  // its opening interleaves with the last writes, ends gap-free with the final event.
  // Streams keep opening, every few ms, until the first one has seen the end.
  const plan = { steps: Array.from({ length: 4 }, (_, i) => step(`q${i}`, 'slow', { ms: 40 }, i ? [`q${i - 1}`] : [])) };
  const id = await runPlan(c, plan);
  const streams = [openStream(ctx.engine, id, { since: 0, key })];
  const ended = () => streams[0].messages.some((m) => m.type === 'workflow.completed');
  for (let extra = 0; streams.length < 400 && extra < 20; ) {
    streams.push(openStream(ctx.engine, id, { since: 0, key }));
    if (ended()) extra++;
    await new Promise((r) => setTimeout(r, 2));
  }
  try {
    await Promise.all(streams.map((s) => s.opened));
    await Promise.all(streams.map((s) => s.waitType('workflow.completed', { timeout: 10000 })));
    for (const s of streams) assertGapFree(s.messages, 1);
  } finally {
    for (const s of streams) s.close();
  }
});

test('the key may be given as the access_token query parameter', async () => {
  const id = await completedWorkflow();
  const s = openStream(ctx.engine, id, { since: 0, key, viaQuery: true });
  try {
    await s.opened;
    await s.waitType('workflow.completed');
    assertGapFree(s.messages, 1);
  } finally {
    s.close();
  }
});

test('a bad key, or none, refuses the handshake with 401', async () => {
  const id = await completedWorkflow();
  for (const opts of [{ key: 'bad-key' }, { key: 'bad-key', viaQuery: true }, {}]) {
    const s = openStream(ctx.engine, id, { since: 0, ...opts });
    await assert.rejects(s.opened, (e) => e.status === 401, JSON.stringify(opts));
  }
});

test('a stream of an unknown workflow is refused with 404', async () => {
  const s = openStream(ctx.engine, 'wf_1_nosuchworkflow', { since: 0, key });
  await assert.rejects(s.opened, (e) => e.status === 404);
});

describe('slow consumer', () => {
  let sc;
  before(async () => {
    sc = await setup({ users: ['alice'], env: { WS_QUEUE_MAX: 64, WORKFLOW_CONCURRENCY: 8 } });
  });
  after(async () => { await sc?.teardown(); });

  test('a consumer that never reads is disconnected; a normal subscriber still gets everything', async () => {
    // 96 steps of 128 KiB outputs: ~12 MiB of step.completed events, far more than the kernel
    // buffers hold (~4 MiB on loopback), so the engine must queue for the stalled client and cut it
    // off past WS_QUEUE_MAX. WS_QUEUE_MAX is 64, not 4: a healthy reader can see a burst of a few
    // dozen events in one loop turn (WORKFLOW_CONCURRENCY steps starting or finishing together),
    // and it must not be cut off for that.
    const c = sc.client;
    const key = sc.keys.alice;
    const blobs = Array.from({ length: 96 }, (_, i) => step(`b${i}`, 'blob', { kb: 128 }));
    const plan = { steps: [...blobs, step('done', 'echo', { message: 'done' }, blobs.map((b) => b.id))] };
    const { id } = await ready(c, { input: 'many big events', plan });

    const stalled = openStream(sc.engine, id, { since: 0, key });
    await stalled.opened;
    stalled.ws.pause(); // stop reading from the socket
    const normal = openStream(sc.engine, id, { since: 0, key });
    await normal.opened;

    const r = await c.post(`/workflows/${id}/approve`);
    assert.equal(r.status, 200, r.text);
    try {
      await normal.waitType('workflow.completed', { timeout: 45000 });
      assertGapFree(normal.messages, 1);
      assert.equal(normal.messages.filter((m) => m.type === 'step.completed').length, 97);
      const total = normal.messages.length;

      // now read what the stalled client was sent: it must have been cut off before the end
      stalled.ws.resume();
      await stalled.waitClose({ timeout: 10000 });
      assert.ok(stalled.messages.length < total,
        `the stalled client was disconnected (got ${stalled.messages.length} of ${total})`);
      assertGapFree(stalled.messages, 1); // what it did get was in order
      await waitStatus(c, id, ['completed']);
    } finally {
      stalled.close();
      normal.close();
    }
  });
});
