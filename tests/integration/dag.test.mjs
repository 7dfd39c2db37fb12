// dag.test.mjs — execution: parallel branches, $ref wiring, failure propagation, retries with
// idempotency keys, Retry-After, non-retryable 4xx, per-step timeouts, cancel mid-flight.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  setup, ready, runPlan, waitStatus, waitFor, step, ref, openStream, sleep, psql,
} from '../lib/harness.mjs';

const stepOf = (wf, id) => wf.steps.find((s) => s.id === id);

describe('default retry policy (3 attempts)', () => {
  let ctx;
  let c;
  before(async () => {
    ctx = await setup({ users: ['alice'], env: {
      RETRY_MAX_ATTEMPTS: 3, RETRY_BASE_MS: 50, RETRY_MAX_DELAY_MS: 3000, STEP_TIMEOUT_MS: 10000,
    } });
    c = ctx.client;
  });
  after(async () => { await ctx?.teardown(); });

  test('a join whose dependencies answer together: both successes and the join\'s start are one transaction', async () => {
    // b and c are held by the barrier service and answered in the same tick; the engine stores
    // what one loop turn brought in together (sched.c flush_run). Events of one transaction share
    // their xmin. Twelve diamonds, since two answers may still reach the engine in two turns (about
    // half of them do here).
    let together = 0;
    for (let k = 0; k < 12; k++) {
      const key = `join-${Date.now()}-${k}`;
      const id = await runPlan(c, { steps: [
        step('a', 'add', { a: 1, b: 1 }),
        step('b', 'barrier', { key, n: 2 }, ['a']),
        step('c', 'barrier', { key, n: 2 }, ['a']),
        step('d', 'echo', { message: ref('b.released') }, ['b', 'c']),
      ] });
      const wf = await waitStatus(c, id, ['completed'], { timeout: 15000 });
      assert.deepEqual(wf.output.d, { echo: { message: 2 } });
      const tx = await psql(`SELECT count(DISTINCT xmin::text) FROM events WHERE workflow_id = '${id}' AND ` +
        `((type = 'step.completed' AND data->>'stepId' IN ('b','c')) OR (type = 'step.started' AND data->>'stepId' = 'd'))`,
      { db: ctx.db });
      if (Number(tx) === 1) together++;
    }
    assert.ok(together >= 1, `at least one of 12 joins stored in one transaction (got ${together})`);
  });

  test('two independent 500 ms steps run in parallel: approval to completion < 900 ms', async () => {
    const { id } = await ready(c, { input: 'parallel', plan: { steps: [
      step('x', 'slow', { ms: 500 }), step('y', 'slow', { ms: 500 }),
    ] } });
    const r = await c.post(`/workflows/${id}/approve`);
    assert.equal(r.status, 200);
    await waitStatus(c, id, ['completed'], { interval: 10 });
    // measured on the engine's own clock (event timestamps), so a busy test machine polling late
    // does not count against the engine
    const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
    try {
      await s.opened;
      const done = await s.waitType('workflow.completed');
      const approved = s.messages.find((m) => m.type === 'workflow.approved');
      assert.ok(approved, 'a workflow.approved event');
      const elapsed = Date.parse(done.timestamp) - Date.parse(approved.timestamp);
      assert.ok(elapsed >= 450, `event timestamps should carry milliseconds (${approved.timestamp} → ${done.timestamp})`);
      assert.ok(elapsed < 900, `approval to completion took ${elapsed} ms; the two steps should overlap`);
    } finally {
      s.close();
    }
    const calls = ctx.svc.calls({ path: '/slow', workflowId: id });
    assert.equal(calls.length, 2);
    assert.ok(Math.abs(calls[0].at - calls[1].at) < 300, 'both calls started together');
  });

  test('diamond a → b, c → d wires $ref outputs', async () => {
    const id = await runPlan(c, { steps: [
      step('a', 'add', { a: 1, b: 2 }),
      step('b', 'add', { a: ref('a.sum'), b: 10 }, ['a']),
      step('c', 'add', { a: ref('a.sum'), b: 100 }, ['a']),
      step('d', 'add', { a: ref('b.sum'), b: ref('c.sum') }, ['b', 'c']),
    ] });
    const wf = await waitStatus(c, id, ['completed']);
    assert.deepEqual(stepOf(wf, 'a').output, { sum: 3 });
    assert.deepEqual(stepOf(wf, 'b').output, { sum: 13 });
    assert.deepEqual(stepOf(wf, 'c').output, { sum: 103 });
    assert.deepEqual(stepOf(wf, 'd').output, { sum: 116 });
    assert.deepEqual(wf.output, { d: { sum: 116 } });
    const calls = ctx.svc.calls({ path: '/add', workflowId: id });
    assert.equal(calls.length, 4);
    const byStep = Object.fromEntries(calls.map((x) => [x.stepId, x]));
    assert.deepEqual(byStep.d.body, { a: 13, b: 103 });
    assert.deepEqual(byStep.b.body, { a: 3, b: 10 });
    assert.ok(byStep.d.at >= byStep.b.finishedAt && byStep.d.at >= byStep.c.finishedAt, 'd after b and c');
    assert.ok(byStep.b.at >= byStep.a.finishedAt && byStep.c.at >= byStep.a.finishedAt, 'b, c after a');
    for (const x of calls) {
      assert.equal(x.headers['content-type']?.split(';')[0], 'application/json');
      assert.equal(x.workflowId, id);
      assert.equal(x.idempotencyKey, `${id}:${x.stepId}:1`);
    }
  });

  test('a $ref alone orders the steps and passes nested outputs', async () => {
    const id = await runPlan(c, { steps: [
      step('first', 'slow', { ms: 200 }),
      step('second', 'echo', { message: { waited: ref('first.waited'), fixed: [1, 'two'] } }),
    ] });
    const wf = await waitStatus(c, id, ['completed']);
    assert.deepEqual(stepOf(wf, 'second').output, { echo: { message: { waited: 200, fixed: [1, 'two'] } } });
    const [first] = ctx.svc.calls({ workflowId: id, stepId: 'first' });
    const [second] = ctx.svc.calls({ workflowId: id, stepId: 'second' });
    assert.ok(second.at >= first.finishedAt);
  });

  test('a flaky step succeeds on the third attempt with Idempotency-Key attempts 1, 2, 3', async () => {
    const id = await runPlan(c, { steps: [step('f', 'flaky', { fail: 2 })] });
    const wf = await waitStatus(c, id, ['completed']);
    const f = stepOf(wf, 'f');
    assert.equal(f.status, 'succeeded');
    assert.equal(f.attempts, 3);
    assert.deepEqual(f.output, { ok: true, calls: 3 });
    const calls = ctx.svc.calls({ path: '/flaky', workflowId: id });
    assert.deepEqual(calls.map((x) => x.idempotencyKey), [1, 2, 3].map((n) => `${id}:f:${n}`));
    assert.deepEqual(calls.map((x) => x.stepId), ['f', 'f', 'f']);
    const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
    try {
      await s.opened;
      await s.waitType('workflow.completed');
      const retrying = s.messages.filter((m) => m.type === 'step.retrying');
      assert.equal(retrying.length, 2);
      for (const m of retrying) {
        assert.equal(m.data.stepId, 'f');
        assert.equal(typeof m.data.delayMs, 'number');
        assert.ok(m.data.error);
      }
    } finally {
      s.close();
    }
  });

  test('429 with Retry-After: 1 is honoured', async () => {
    const id = await runPlan(c, { steps: [step('r', 'rate_limited', { fail: 1 })] });
    const wf = await waitStatus(c, id, ['completed']);
    assert.equal(stepOf(wf, 'r').attempts, 2);
    const calls = ctx.svc.calls({ path: '/flaky', workflowId: id });
    assert.equal(calls.length, 2);
    assert.equal(calls[0].query.code, '429');
    const gap = calls[1].at - calls[0].at;
    assert.ok(gap >= 950, `second call ${gap} ms after the first; Retry-After asked for 1000`);
  });

  test('a 400 from a service is not retried', async () => {
    const id = await runPlan(c, { steps: [step('bad', 'bad_request', {})] });
    const wf = await waitStatus(c, id, ['failed']);
    const s = stepOf(wf, 'bad');
    assert.equal(s.status, 'failed');
    assert.equal(s.attempts, 1);
    assert.ok(s.error, 'the step records an error');
    assert.equal(ctx.svc.calls({ path: '/bad-request', workflowId: id }).length, 1);
    await sleep(300);
    assert.equal(ctx.svc.calls({ path: '/bad-request', workflowId: id }).length, 1, 'no late retry');
    assert.ok(wf.error, 'the workflow records an error');
  });

  test('cancel mid-flight aborts the running call and skips pending steps', async () => {
    const id = await runPlan(c, { steps: [
      step('h', 'hang', {}),
      step('after', 'echo', { message: 'never' }, ['h']),
    ] });
    await waitFor(() => ctx.svc.calls({ path: '/hang', workflowId: id }).length === 1, { message: '/hang called' });
    const t0 = Date.now();
    const r = await c.post(`/workflows/${id}/cancel`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { success: true, workflow: { id, status: 'cancelled' } });
    const wf = await waitStatus(c, id, ['cancelled'], { timeout: 5000 });
    assert.ok(Date.now() - t0 < 5000);
    await waitFor(() => ctx.svc.calls({ path: '/hang', workflowId: id })[0].aborted,
      { timeout: 5000, message: 'the service to see the connection dropped' });
    const final = (await c.get(`/workflows/${id}`)).json.workflow;
    assert.equal(final.status, 'cancelled');
    assert.equal(stepOf(final, 'after').status, 'skipped');
    assert.ok(['failed', 'skipped'].includes(stepOf(final, 'h').status), stepOf(final, 'h').status);
    assert.equal(ctx.svc.calls({ path: '/echo', workflowId: id }).length, 0);
    assert.equal(ctx.svc.calls({ path: '/hang', workflowId: id }).length, 1, 'a cancelled step is not retried');
    assert.ok(wf);
    const again = await c.post(`/workflows/${id}/cancel`);
    assert.equal(again.status, 409);
    assert.equal(again.json.status, 'cancelled');
  });
});

describe('two attempts', () => {
  let ctx;
  let c;
  before(async () => {
    ctx = await setup({ users: ['alice'], env: { RETRY_MAX_ATTEMPTS: 2, RETRY_BASE_MS: 50 } });
    c = ctx.client;
  });
  after(async () => { await ctx?.teardown(); });

  test('a failing step fails the workflow and skips its dependants', async () => {
    const id = await runPlan(c, { steps: [
      step('bad', 'broken', {}),
      step('dep', 'echo', { message: 'after bad' }, ['bad']),
      step('dep2', 'echo', { message: ref('dep.echo') }, ['dep']),
      step('indep', 'slow', { ms: 200 }),
    ] });
    const wf = await waitStatus(c, id, ['failed'], { timeout: 15000 });
    assert.ok(wf.error, 'the workflow says why it failed');
    const bad = stepOf(wf, 'bad');
    assert.equal(bad.status, 'failed');
    assert.equal(bad.attempts, 2);
    assert.ok(bad.error);
    assert.equal(stepOf(wf, 'dep').status, 'skipped');
    assert.equal(stepOf(wf, 'dep2').status, 'skipped');
    assert.ok(['succeeded', 'failed', 'skipped'].includes(stepOf(wf, 'indep').status), stepOf(wf, 'indep').status);
    assert.equal(wf.output, null);
    const calls = ctx.svc.calls({ path: '/fail', workflowId: id });
    assert.deepEqual(calls.map((x) => x.idempotencyKey), [`${id}:bad:1`, `${id}:bad:2`]);
    assert.equal(ctx.svc.calls({ path: '/echo', workflowId: id }).length, 0, 'dependants never called');
    const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
    try {
      await s.opened;
      await s.waitType('workflow.failed');
      const types = s.messages.map((m) => m.type);
      assert.ok(types.includes('step.failed'));
      const skipped = s.messages.filter((m) => m.type === 'step.skipped').map((m) => m.data.stepId).sort();
      assert.ok(skipped.includes('dep') && skipped.includes('dep2'), JSON.stringify(skipped));
      assert.equal(types.filter((t) => t === 'workflow.failed').length, 1);
      assert.ok(!types.includes('workflow.completed'));
    } finally {
      s.close();
    }
  });
});

describe('per-step timeout', () => {
  let ctx;
  let c;
  before(async () => {
    ctx = await setup({ users: ['alice'], env: { STEP_TIMEOUT_MS: 300, RETRY_MAX_ATTEMPTS: 1 } });
    c = ctx.client;
  });
  after(async () => { await ctx?.teardown(); });

  test('a hanging service fails the step with a timeout error', async () => {
    const id = await runPlan(c, { steps: [step('h', 'hang', {})] });
    const wf = await waitStatus(c, id, ['failed'], { timeout: 10000 });
    const h = stepOf(wf, 'h');
    assert.equal(h.status, 'failed');
    assert.equal(h.attempts, 1);
    assert.match(String(h.error), /time(d)?\s*out|timeout/i);
    const calls = ctx.svc.calls({ path: '/hang', workflowId: id });
    assert.equal(calls.length, 1);
    await waitFor(() => calls[0].aborted, { timeout: 3000, message: 'the timed-out call to be dropped' });
    assert.ok(calls[0].finishedAt - calls[0].at < 3000, 'dropped near the 300 ms timeout');
  });
});

describe('MAX_CONCURRENCY with create-and-approve (roots started by the creating transaction)', () => {
  let ctx;
  before(async () => { ctx = await setup({ users: ['alice'], env: { MAX_CONCURRENCY: 2 } }); });
  after(async () => { await ctx?.teardown(); });

  test('never more than MAX_CONCURRENCY requests in flight, and every workflow completes', async () => {
    const key = `cap-${Date.now()}`;
    const creates = Array.from({ length: 6 }, (_, k) => ctx.client.post('/workflows/create', {
      input: `capped ${k}`, approve: true,
      plan: { steps: [step('x', 'slow', { ms: 250, key }), step('y', 'slow', { ms: 250, key: `${key}-y` })] },
    }));
    const ids = (await Promise.all(creates)).map((r) => { assert.equal(r.status, 201, r.text); return r.json.workflow.id; });
    for (const id of ids) await waitStatus(ctx.client, id, ['completed'], { timeout: 20000 });
    const calls = ctx.svc.calls({ path: '/slow' }).filter((c) => ids.includes(c.workflowId));
    assert.equal(calls.length, 12, 'each root called once');
    // the most requests open at one instant (service's clock: arrival → response)
    let most = 0;
    for (const c of calls) {
      const open = calls.filter((o) => o.at <= c.at && o.finishedAt > c.at).length;
      if (open > most) most = open;
    }
    assert.ok(most <= 2, `at most 2 at once, saw ${most}`);
  });
});
