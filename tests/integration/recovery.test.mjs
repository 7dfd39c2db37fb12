// recovery.test.mjs — a killed engine's workflow is resumed by another process after its lease
// lapses, without re-running succeeded steps; awaiting approvals expire.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  setup, ready, runPlan, waitStatus, waitFor, openStream, assertGapFree, step, ref,
} from '../lib/harness.mjs';

const stepOf = (wf, id) => wf.steps.find((s) => s.id === id);

describe('crash recovery', () => {
  let ctx;
  const env = { LEASE_MS: 1000, RETRY_BASE_MS: 50, RETRY_MAX_ATTEMPTS: 3 };
  before(async () => { ctx = await setup({ users: ['alice'], env }); });
  after(async () => { await ctx?.teardown(); });

  test('kill -9 during a step: a new engine finishes the workflow, succeeded steps ran once', async () => {
    const c = ctx.client;
    const id = await runPlan(c, { steps: [
      step('a', 'echo', { message: 'first' }),
      step('b', 'slow', { ms: 1500 }, ['a']),
      step('c', 'echo', { message: ref('b.waited') }, ['b']),
    ] });
    await waitFor(() => ctx.svc.calls({ path: '/slow', workflowId: id, stepId: 'b' }).length === 1,
      { message: 'step b to start' });
    const r = await ctx.engine.kill('SIGKILL');
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(ctx.svc.calls({ workflowId: id, stepId: 'c' }).length, 0, 'c had not started');

    await ctx.restart(env); // the old process is gone: this only starts a new one on the same database
    const c2 = ctx.client;
    const wf = await waitStatus(c2, id, ['completed'], { timeout: 20000 });

    const aCalls = ctx.svc.calls({ workflowId: id, stepId: 'a' });
    const bCalls = ctx.svc.calls({ workflowId: id, stepId: 'b' });
    const cCalls = ctx.svc.calls({ workflowId: id, stepId: 'c' });
    assert.equal(aCalls.length, 1, 'a succeeded before the crash and must not run again');
    assert.equal(cCalls.length, 1, 'c ran once');
    assert.ok(bCalls.length >= 2, 'b was interrupted and ran again');
    assert.equal(bCalls.at(-1).status, 200);
    for (const x of [...aCalls, ...bCalls, ...cCalls]) {
      assert.match(x.idempotencyKey, new RegExp(`^${id}:${x.stepId}:\\d+$`));
    }
    assert.deepEqual(cCalls[0].body, { message: 1500 });
    assert.deepEqual(wf.output, { c: { echo: { message: 1500 } } });
    for (const s of wf.steps) assert.equal(s.status, 'succeeded', `${s.id}: ${s.status}`);
    assert.equal(stepOf(wf, 'a').attempts, 1);

    // the event log survived the crash gap-free, with each step completed once
    const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
    try {
      await s.opened;
      await s.waitType('workflow.completed');
      assertGapFree(s.messages, 1);
      const completedSteps = s.messages.filter((m) => m.type === 'step.completed').map((m) => m.data.stepId);
      assert.deepEqual(completedSteps.sort(), ['a', 'b', 'c']);
      assert.equal(s.messages.filter((m) => m.type === 'workflow.completed').length, 1);
    } finally {
      s.close();
    }
  });

  test('an engine restarted cleanly (SIGTERM) keeps serving stored workflows', async () => {
    const id = await runPlan(ctx.client, { steps: [step('a', 'add', { a: 1, b: 1 })] });
    await waitStatus(ctx.client, id, ['completed']);
    await ctx.restart(env);
    const g = await ctx.client.get(`/workflows/${id}`);
    assert.equal(g.status, 200);
    assert.equal(g.json.workflow.status, 'completed');
    assert.deepEqual(g.json.workflow.output, { a: { sum: 2 } });
  });
});

describe('approval expiry', () => {
  let ctx;
  before(async () => { ctx = await setup({ users: ['alice'], env: { APPROVAL_TTL_MS: 1500 } }); });
  after(async () => { await ctx?.teardown(); });

  test('an unapproved workflow expires after APPROVAL_TTL_MS with a workflow.expired event', async () => {
    const c = ctx.client;
    const { id, workflow } = await ready(c, { input: 'will expire', plan: { steps: [step('a', 'echo', {})] } });
    const ttl = Date.parse(workflow.expiresAt) - Date.parse(workflow.createdAt);
    assert.ok(ttl > 0 && ttl <= 3000, `expiresAt about 1.5 s after creation, got ${ttl} ms`);
    const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
    try {
      await s.opened;
      const ev = await s.waitType('workflow.expired', { timeout: 10000 });
      assert.equal(ev.workflowId, id);
      assertGapFree(s.messages, 1);
      const wf = await waitStatus(c, id, ['expired'], { timeout: 5000 });
      assert.equal(wf.status, 'expired');
      const r = await c.post(`/workflows/${id}/approve`);
      assert.equal(r.status, 409);
      assert.deepEqual(r.json, { success: false, error: 'workflow is expired', status: 'expired' });
      assert.equal(ctx.svc.calls({ workflowId: id }).length, 0);
    } finally {
      s.close();
    }
  });

  test('an approved workflow does not expire', async () => {
    const c = ctx.client;
    const id = await runPlan(c, { steps: [step('a', 'slow', { ms: 2000 })] });
    const wf = await waitStatus(c, id, ['completed'], { timeout: 10000 });
    assert.equal(wf.status, 'completed');
  });
});
