// failover.test.mjs — matching at execution: a step whose service is unreachable moves to the
// next candidate (matching.lua's order) that can take its inputs within the approved price; the
// move is stored (step.failover, the step's service) so the run goes on; a refusal (4xx) never
// fails over, nor does a step with no acceptable candidate.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, runPlan, waitStatus, openStream, step } from '../lib/harness.mjs';
import { catalogFor, PREMIUM_PRICE } from '../lib/services.mjs';

const obj = (properties, required = []) => ({ type: 'object', properties, required });
const msgIn = obj({ message: { type: 'string', description: 'text to mirror' } }, ['message']);

describe('failover at execution', () => {
  let ctx;
  before(async () => {
    ctx = await setup({ users: ['alice'], env: { RETRY_MAX_ATTEMPTS: '2', RETRY_BASE_MS: '20', CONNECT_TIMEOUT_MS: '500' } });
    const cat = catalogFor(ctx.svc);
    const mirror = (id, url, extra = {}) => ({
      id, name: `Mirror ${id}`, description: 'Mirror service: returns the message it is sent, unchanged.', url,
      method: 'POST', input: msgIn, output: obj({ echo: { type: 'object' } }), tags: ['mirror'], ...extra,
    });
    cat.services.push(
      mirror('mirror_down', 'http://127.0.0.1:1/echo'),
      mirror('mirror_paid', `${ctx.svc.url}/echo?mirror=paid`, { price: { ...PREMIUM_PRICE } }),
      mirror('mirror_strict', `${ctx.svc.url}/echo?mirror=strict`,
        { input: obj({ message: { type: 'string' }, lang: { type: 'string' } }, ['message', 'lang']) }),
      mirror('mirror_up', `${ctx.svc.url}/echo?mirror=up`),
      { id: 'bad_mirror', name: 'Mirror refusing', description: 'Mirror service: refuses every message.',
        url: `${ctx.svc.url}/bad-request?mirror=bad`, method: 'POST', input: msgIn },
    );
    ctx.catalog = cat;
    await ctx.restart();
  });
  after(async () => { await ctx?.teardown(); });

  test('an unreachable service: the step moves to the free candidate that takes its inputs', async () => {
    const id = await runPlan(ctx.client, { steps: [step('m', 'mirror_down', { message: 'hi' })] });
    const wf = await waitStatus(ctx.client, id, ['completed', 'failed'], { timeout: 20000 });
    assert.equal(wf.status, 'completed', JSON.stringify(wf.steps));
    assert.equal(wf.steps[0].service, 'mirror_up', 'not the priced one, not the one needing `lang`');
    assert.deepEqual(wf.output, { m: { echo: { message: 'hi' } } });
    const calls = ctx.svc.calls({ workflowId: id });
    assert.equal(calls.length, 1);
    assert.equal(calls[0].query.mirror, 'up');
    const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
    try {
      await s.opened;
      await s.waitType('workflow.completed');
      const fo = s.messages.filter((m) => m.type === 'step.failover');
      assert.equal(fo.length, 1);
      assert.equal(fo[0].data.from, 'mirror_down');
      assert.equal(fo[0].data.to, 'mirror_up');
      const started = s.messages.filter((m) => m.type === 'step.started');
      assert.equal(started.at(-1).data.service, 'mirror_up');
    } finally {
      s.close();
    }
  });

  test('a refusal (400) does not fail over', async () => {
    const id = await runPlan(ctx.client, { steps: [step('b', 'bad_mirror', { message: 'hi' })] });
    const wf = await waitStatus(ctx.client, id, ['failed'], { timeout: 20000 });
    assert.equal(wf.steps[0].service, 'bad_mirror');
    assert.equal(ctx.svc.calls({ workflowId: id }).length, 1);
  });

  test('no acceptable candidate: the step fails with its own reason', async () => {
    const id = await runPlan(ctx.client, { steps: [step('h', 'broken', {})] });
    const wf = await waitStatus(ctx.client, id, ['failed'], { timeout: 20000 });
    assert.equal(wf.steps[0].service, 'broken');
    assert.match(wf.steps[0].error, /HTTP 500/);
  });
});
