// compensation.test.mjs — the saga against real services: a workflow that fails or is cancelled
// after steps succeeded undoes them in reverse dependency order, each compensation idempotent
// (one Idempotency-Key per workflow and step, on every attempt and across a restart), retried
// on 5xx, failed on 4xx, and the final record says what was undone and what was not.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  setup, runPlan, waitStatus, waitFor, openStream, assertGapFree, step, ref, createWorkflow, psql,
} from '../lib/harness.mjs';

const stepOf = (wf, id) => wf.steps.find((s) => s.id === id);

async function events(ctx, id, until) {
  const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
  try {
    await s.opened;
    await s.waitType(until, { timeout: 20000 });
    assertGapFree(s.messages, 1);
    return s.messages;
  } finally {
    s.close();
  }
}

describe('compensation', () => {
  let ctx;
  const env = { LEASE_MS: 1000, RETRY_BASE_MS: 30, RETRY_MAX_ATTEMPTS: 1, COMPENSATE_MAX_ATTEMPTS: 4 };
  before(async () => { ctx = await setup({ users: ['alice'], env }); });
  after(async () => { await ctx?.teardown(); });

  test('a failed last step: the succeeded steps are undone in reverse dependency order', async () => {
    const id = await runPlan(ctx.client, { steps: [
      step('a', 'reserve', { slot: 'a' }),
      step('b', 'reserve', { slot: ref('a.reservation') }, ['a']),
      step('c', 'reserve', { slot: 'c' }, ['a']),
      step('e', 'echo', { message: 'no compensation declared' }),
      step('d', 'broken', {}, ['b', 'c', 'e']),
    ] });
    const wf = await waitStatus(ctx.client, id, ['failed'], { timeout: 20000 });
    assert.equal(stepOf(wf, 'd').status, 'failed');
    for (const s of ['a', 'b', 'c']) assert.equal(stepOf(wf, s).status, 'compensated', s);
    assert.equal(stepOf(wf, 'e').status, 'succeeded', 'nothing declared to undo it');
    assert.deepEqual(wf.rollback, { undone: ['a', 'b', 'c'], failed: [], notUndone: ['e'], refundDue: [] });
    assert.match(wf.error, /step d failed/);

    const undo = ctx.svc.calls({ path: '/undo', workflowId: id });
    const order = undo.map((x) => x.stepId);
    assert.equal(order.length, 3);
    assert.equal(order[2], 'a', 'a is undone after everything that depends on it');
    assert.deepEqual(order.slice(0, 2).sort(), ['b', 'c']);
    for (const x of undo) {
      assert.equal(x.idempotencyKey, `${id}:${x.stepId}:compensate`);
      assert.equal(x.headers['x-compensation'], '1');
      assert.equal(x.body.workflowId, id);
      assert.equal(x.body.stepId, x.stepId);
      assert.match(x.body.output.reservation, /^r\d+$/);
    }
    const reservationOfA = ctx.svc.calls({ path: '/reserve', workflowId: id, stepId: 'a' })[0];
    assert.ok(reservationOfA.finishedAt <= undo[0].at, 'compensations start after the steps ran');

    const ev = await events(ctx, id, 'workflow.failed');
    const types = ev.map((m) => m.type);
    const iComp = types.indexOf('workflow.compensating');
    assert.ok(iComp > types.indexOf('step.failed'), 'compensating after the failure');
    assert.deepEqual(ev[iComp].data.steps.slice(-1), ['a']);
    assert.deepEqual(ev.filter((m) => m.type === 'step.compensated').map((m) => m.data.stepId), order);
    const fin = ev.at(-1);
    assert.equal(fin.type, 'workflow.failed');
    assert.deepEqual(fin.data.rollback.undone, ['a', 'b', 'c']);
  });

  test('a compensation answering 503 is retried with the same key; a 400 ends in compensation_failed', async () => {
    const id = await runPlan(ctx.client, { steps: [
      step('x', 'reserve_flaky_undo', { slot: 'x' }),
      step('y', 'reserve_bad_undo', { slot: 'y' }),
      step('z', 'broken', {}, ['x', 'y']),
    ] });
    const wf = await waitStatus(ctx.client, id, ['failed'], { timeout: 20000 });
    assert.equal(stepOf(wf, 'x').status, 'compensated');
    assert.equal(stepOf(wf, 'y').status, 'compensation_failed');
    assert.match(stepOf(wf, 'y').compensation.error, /HTTP 400/);
    assert.equal(stepOf(wf, 'y').compensation.attempts, 1, 'a 4xx is not retried');
    assert.equal(stepOf(wf, 'x').compensation.attempts, 3);
    const xs = ctx.svc.calls({ path: '/undo', workflowId: id, stepId: 'x' });
    assert.deepEqual(xs.map((c) => c.status), [503, 503, 200]);
    assert.ok(xs.every((c) => c.idempotencyKey === `${id}:x:compensate`));
    assert.equal(ctx.svc.undone(`${id}:x:compensate`), 1);
    assert.deepEqual(wf.rollback.undone, ['x']);
    assert.deepEqual(wf.rollback.failed.map((f) => f.stepId), ['y']);
    const ev = await events(ctx, id, 'workflow.failed');
    const bad = ev.find((m) => m.type === 'step.compensation_failed');
    assert.equal(bad.data.stepId, 'y');
    assert.equal(bad.data.status, 400);
    assert.equal(ev.find((m) => m.type === 'step.compensated').data.attempt, 3);
  });

  test('a failure before anything succeeded finishes at once, without compensating', async () => {
    const id = await runPlan(ctx.client, { steps: [step('only', 'broken', {})] });
    const wf = await waitStatus(ctx.client, id, ['failed'], { timeout: 20000 });
    assert.deepEqual(wf.rollback, { undone: [], failed: [], notUndone: [], refundDue: [] });
    const ev = await events(ctx, id, 'workflow.failed');
    assert.ok(!ev.some((m) => m.type === 'workflow.compensating'));
  });

  test('cancel while executing: the succeeded step is undone and the workflow ends cancelled', async () => {
    const id = await runPlan(ctx.client, { steps: [
      step('r', 'reserve', { slot: 'r' }),
      step('h', 'hang', {}, ['r']),
    ] });
    await waitFor(() => ctx.svc.calls({ path: '/hang', workflowId: id }).length === 1, { message: 'h to start' });
    const res = await ctx.client.post(`/workflows/${id}/cancel`, {});
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.workflow.status, 'compensating');
    const wf = await waitStatus(ctx.client, id, ['cancelled'], { timeout: 20000 });
    assert.equal(stepOf(wf, 'r').status, 'compensated');
    assert.equal(stepOf(wf, 'h').status, 'failed');
    assert.deepEqual(wf.rollback.undone, ['r']);
    await waitFor(() => ctx.svc.calls({ path: '/hang', workflowId: id })[0].aborted, { message: 'the hanging call aborted' });
    const ev = await events(ctx, id, 'workflow.cancelled');
    const types = ev.map((m) => m.type);
    assert.ok(types.indexOf('workflow.cancelling') < types.indexOf('workflow.compensating'));
    assert.equal(types.filter((t) => t === 'workflow.cancelled').length, 1);
    const again = await ctx.client.post(`/workflows/${id}/cancel`, {});
    assert.equal(again.status, 409);
  });

  test('cancel before approval does not compensate anything', async () => {
    const wid = await createWorkflow(ctx.client, { input: 'reserve', plan: { steps: [step('r', 'reserve', { slot: 'q' })] } });
    const res = await ctx.client.post(`/workflows/${wid}/cancel`, {});
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.workflow.status, 'cancelled');
    assert.equal(ctx.svc.calls({ path: '/reserve', workflowId: wid }).length, 0);
  });

  test('kill -9 midway through the compensations: a new engine finishes them, each applied once', async () => {
    const id = await runPlan(ctx.client, { steps: [
      step('a', 'reserve_slow_undo', { slot: 'a' }),
      step('b', 'reserve', { slot: 'b' }, ['a']),
      step('c', 'broken', {}, ['b']),
    ] });
    await waitFor(() => ctx.svc.calls({ path: '/undo', workflowId: id, stepId: 'a' }).length === 1,
      { timeout: 20000, message: "a's compensation to start" });
    assert.equal(ctx.svc.calls({ path: '/undo', workflowId: id, stepId: 'b' }).length, 1, 'b was undone first');
    await ctx.engine.kill('SIGKILL');
    await ctx.restart(env);
    const wf = await waitStatus(ctx.client, id, ['failed'], { timeout: 30000 });
    assert.equal(stepOf(wf, 'a').status, 'compensated');
    assert.equal(stepOf(wf, 'b').status, 'compensated');
    assert.equal(ctx.svc.calls({ path: '/undo', workflowId: id, stepId: 'b' }).length, 1, 'b is not undone twice');
    const aCalls = ctx.svc.calls({ path: '/undo', workflowId: id, stepId: 'a' });
    assert.ok(aCalls.length >= 2, 'a was sent again after the restart');
    assert.ok(aCalls.every((c) => c.idempotencyKey === `${id}:a:compensate`));
    assert.equal(ctx.svc.undone(`${id}:a:compensate`), 1, 'the service applied it once');
    assert.equal(ctx.svc.undone(`${id}:b:compensate`), 1);
    const ev = await events(ctx, id, 'workflow.failed');
    assert.equal(ev.filter((m) => m.type === 'workflow.compensating').length, 1, 'planned once');
    assert.equal(ev.filter((m) => m.type === 'step.compensated').length, 2);
  });

  test('a step charged without a result is flagged refund_due once, and the record says so', async () => {
    // the ledger functions directly (sql/003, 007): a workflow whose paid step was charged and
    // then failed — the state a service that takes the payment and answers garbage leaves
    const q = (sql) => psql(sql, { db: ctx.db });
    const wf = `wf_refund_${Date.now()}`;
    await q(`SELECT x4_escrow_create('alice', 'MINT', 'wallet1')`);
    await q(`SELECT x4_escrow_deposit('alice', 'MINT', 'sig-${wf}', 5000, 1)`);
    await q(`SELECT count(*) FROM x4_wf_create('${wf}', 'alice', 'paid', NULL, NULL, 'owner-t', 60000,
             '{"steps":[{"id":"p","service":"premium_report","inputs":{},"dependsOn":[]},{"id":"q","service":"echo","inputs":{},"dependsOn":[]}]}'::jsonb,
             1000, 60000)`);
    await q(`SELECT count(*) FROM x4_wf_approve('${wf}', 'alice', 'owner-t', 60000, 'MINT', 0, NULL)`);
    const pid = await q(`SELECT x4_payment_begin('${wf}', 'owner-t', 'p', 1, 2, 'net', 'MINT', 'payto', 1000, 'memo', 'psig-${wf}', 'bh', 10)`);
    assert.equal(await q(`SELECT x4_payment_landed(${pid}, 'tx-${wf}', NULL, 'settled')`), 't');
    await q(`SELECT count(*) FROM x4_step_update('${wf}', 'owner-t', 'p', 'running', 1, NULL, NULL, 'step.started', '{}')`);
    await q(`SELECT count(*) FROM x4_step_update('${wf}', 'owner-t', 'p', 'failed', 1, NULL, 'garbled answer', 'step.failed', '{}')`);
    await q(`SELECT count(*) FROM x4_step_update('${wf}', 'owner-t', 'q', 'skipped', 0, NULL, 'workflow failed', 'step.skipped', '{}')`);
    const fin = await q(`SELECT data::text FROM x4_wf_finish('${wf}', 'owner-t', 'failed', NULL, 'step p failed', 'workflow.failed', '{}')`);
    const data = JSON.parse(fin);
    assert.deepEqual(data.rollback, { undone: [], failed: [], notUndone: [], refundDue: ['p'] });
    assert.equal(data.totalCost.atomic, '1000');
    assert.equal(await q(`SELECT count(*) FROM ledger WHERE workflow_id = '${wf}' AND kind = 'refund_due' AND step_id = 'p'`), '1');
    assert.equal(await q(`SELECT count(*) FROM x4_wf_flag_refunds('${wf}')`), '1', 'still names the step');
    assert.equal(await q(`SELECT count(*) FROM ledger WHERE workflow_id = '${wf}' AND kind = 'refund_due'`), '1', 'flagged once');
    assert.equal(await q('SELECT count(*) FROM x4_escrow_check()'), '0', 'ledger = balances');
    assert.equal((await q(`SELECT rollback::text FROM workflows WHERE id = '${wf}'`)).includes('"refundDue": ["p"]'), true);
  });
});
