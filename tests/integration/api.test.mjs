// api.test.mjs — the workflow routes' shapes and state rules (docs/api-contract.md "Routes").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  setup, api, createWorkflow, ready, approve, waitStatus, step, ref, assertMoney, assertIsoTime,
  createKey, sleep, openStream, assertGapFree, psql,
} from '../lib/harness.mjs';

let ctx;
let c;

before(async () => {
  ctx = await setup({ users: ['alice', 'bob'] });
  c = ctx.client;
});
after(async () => { await ctx?.teardown(); });

const simplePlan = () => ({ steps: [
  step('a', 'add', { a: 2, b: 3 }),
  step('b', 'echo', { message: ref('a.sum') }, ['a']),
] });

const WORKFLOW_FIELDS = ['id', 'userId', 'status', 'input', 'plan', 'estimatedCost', 'totalCost', 'maxCost',
  'steps', 'output', 'error', 'createdAt', 'updatedAt', 'expiresAt'];
const STEP_FIELDS = ['id', 'service', 'status', 'attempts', 'output', 'error', 'startedAt', 'finishedAt'];

test('create with an explicit plan answers 201 with id, status and createdAt', async () => {
  const before = Date.now();
  const r = await c.post('/workflows/create', { input: 'add then echo', plan: simplePlan() });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.success, true);
  const wf = r.json.workflow;
  assert.match(wf.id, /^wf_\d+_[a-z0-9]+$/);
  const ms = Number(/^wf_(\d+)_/.exec(wf.id)[1]);
  assert.ok(Math.abs(ms - before) < 60000, `id carries the creation time in ms: ${wf.id}`);
  assert.ok(['planning', 'awaiting_approval'].includes(wf.status), wf.status);
  assertIsoTime(wf.createdAt, 'createdAt');
  assert.match(r.headers.get('content-type') || '', /application\/json/);
});

test('create with approve: true stores, approves and runs in one call; no awaiting_approval event', async () => {
  const r = await c.post('/workflows/create', { input: 'pre-approved', plan: simplePlan(), approve: true });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.workflow.status, 'executing');
  const id = r.json.workflow.id;
  const wf = await waitStatus(c, id, ['completed'], { timeout: 15000 });
  assert.deepEqual(wf.output.b, { echo: { message: 5 } });
  const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
  try {
    await s.opened;
    await s.waitType('workflow.completed', { timeout: 10000 });
    assertGapFree(s.messages, 1);
    assert.deepEqual(s.messages.slice(0, 5).map((m) => m.type),
      ['workflow.planning', 'workflow.plan_ready', 'workflow.approved', 'workflow.executing', 'step.started']);
    assert.deepEqual(s.messages[4].data, { stepId: 'a', service: 'add', attempt: 1 });
    assert.ok(!s.messages.some((m) => m.type === 'workflow.awaiting_approval'));
    assert.equal(s.messages.filter((m) => m.type === 'step.started' && m.data.stepId === 'a').length, 1,
      'the root started once');
    // the root's start was stored by the creating transaction itself
    const tx = await psql(`SELECT count(DISTINCT xmin::text) FROM events WHERE workflow_id = '${id}' AND seq <= 5`,
      { db: ctx.db });
    assert.equal(tx, '1');
  } finally {
    s.close();
  }
  assert.equal((await c.post(`/workflows/${id}/approve`)).status, 409, 'approved already');
});

test('create with approve: true honours maxTime without reading the workflow back', async () => {
  const r = await c.post('/workflows/create', {
    input: 'pre-approved, too slow', maxTime: 1000, approve: true,
    plan: { steps: [step('s', 'slow', { ms: 4000 })] },
  });
  assert.equal(r.status, 201, r.text);
  const wf = await waitStatus(c, r.json.workflow.id, ['failed'], { timeout: 10000 });
  assert.match(wf.error, /time|deadline|maxTime/i);
});

test('approve must be a boolean and needs an explicit plan', async () => {
  const bad = await c.post('/workflows/create', { input: 'x', plan: simplePlan(), approve: 'yes' });
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.json.details.map((d) => d.field), ['approve']);
  const noPlan = await c.post('/workflows/create', { input: 'add two numbers', approve: true });
  assert.equal(noPlan.status, 400);
  assert.match(noPlan.json.details[0].problem, /needs an explicit plan/);
  const off = await c.post('/workflows/create', { input: 'x', plan: simplePlan(), approve: false });
  assert.equal(off.status, 201);
  assert.equal(off.json.workflow.status, 'awaiting_approval');
});

test('ids are unique', async () => {
  const ids = await Promise.all(Array.from({ length: 10 }, () =>
    createWorkflow(c, { input: 'unique ids', plan: simplePlan() })));
  assert.equal(new Set(ids).size, ids.length);
});

test('an explicit plan reaches awaiting_approval with an estimatedCost in the money shape', async () => {
  const { workflow } = await ready(c, { input: 'add then echo', plan: simplePlan() });
  assert.equal(workflow.status, 'awaiting_approval');
  assertMoney(workflow.estimatedCost, '0');
});

test('GET /workflows/:id has every field of the contract', async () => {
  const { id } = await ready(c, { input: 'shape check', plan: simplePlan(), maxCost: '5', maxTime: 60000 });
  const r = await c.get(`/workflows/${id}`);
  assert.equal(r.status, 200);
  assert.equal(r.json.success, true);
  const wf = r.json.workflow;
  for (const f of WORKFLOW_FIELDS) assert.ok(Object.hasOwn(wf, f), `workflow.${f} missing: ${JSON.stringify(wf)}`);
  assert.equal(wf.id, id);
  assert.equal(wf.userId, 'alice');
  assert.equal(wf.status, 'awaiting_approval');
  assert.equal(wf.input, 'shape check');
  assert.deepEqual(wf.plan.steps.map((s) => s.id), ['a', 'b']);
  assert.deepEqual(wf.plan.steps.map((s) => s.service), ['add', 'echo']);
  assertMoney(wf.estimatedCost, '0');
  assertMoney(wf.maxCost, '5000000');
  assert.equal(wf.output, null);
  assert.equal(wf.error, null);
  assertIsoTime(wf.createdAt, 'createdAt');
  assertIsoTime(wf.updatedAt, 'updatedAt');
  assertIsoTime(wf.expiresAt, 'expiresAt');
  assert.ok(Date.parse(wf.expiresAt) > Date.now(), 'an awaiting workflow expires in the future');
  assert.equal(wf.steps.length, 2);
  for (const s of wf.steps) {
    for (const f of STEP_FIELDS) assert.ok(Object.hasOwn(s, f), `step.${f} missing: ${JSON.stringify(s)}`);
    assert.equal(s.status, 'pending');
    assert.equal(s.attempts, 0);
    assert.equal(s.output, null);
    assert.equal(s.startedAt, null);
    assert.equal(s.finishedAt, null);
  }
  assert.deepEqual(wf.steps.map((s) => [s.id, s.service]), [['a', 'add'], ['b', 'echo']]);
});

test('approve answers 200 and runs the workflow to completed; a second approve is 409', async () => {
  const { id } = await ready(c, { input: 'approve me', plan: simplePlan() });
  const r = await c.post(`/workflows/${id}/approve`);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { success: true, message: 'Workflow approved and execution started' });
  const again = await c.post(`/workflows/${id}/approve`);
  assert.equal(again.status, 409, again.text);
  assert.equal(again.json.success, false);
  assert.ok(['executing', 'completed'].includes(again.json.status), again.text);
  assert.equal(again.json.error, `workflow is ${again.json.status}`);

  const wf = await waitStatus(c, id, ['completed']);
  assert.deepEqual(wf.output, { b: { echo: { message: 5 } } });
  assertMoney(wf.totalCost, '0');
  for (const s of wf.steps) {
    assert.equal(s.status, 'succeeded');
    assert.equal(s.attempts, 1);
    assert.equal(s.error, null);
    assertIsoTime(s.startedAt, 'startedAt');
    assertIsoTime(s.finishedAt, 'finishedAt');
    assert.ok(Date.parse(s.finishedAt) >= Date.parse(s.startedAt));
  }
  assert.deepEqual(wf.steps.find((s) => s.id === 'a').output, { sum: 5 });
  const done = await c.post(`/workflows/${id}/approve`);
  assert.equal(done.status, 409);
  assert.equal(done.json.status, 'completed');
  assert.equal(done.json.error, 'workflow is completed');
});

test('20 concurrent approves: exactly one 200, the rest 409', async () => {
  const { id } = await ready(c, { input: 'race', plan: { steps: [step('s', 'slow', { ms: 300 })] } });
  const rs = await Promise.all(Array.from({ length: 20 }, () => c.post(`/workflows/${id}/approve`)));
  const codes = rs.map((r) => r.status);
  assert.equal(codes.filter((x) => x === 200).length, 1, JSON.stringify(codes));
  assert.equal(codes.filter((x) => x === 409).length, 19, JSON.stringify(codes));
  await waitStatus(c, id, ['completed']);
  assert.equal(ctx.svc.calls({ path: '/slow', workflowId: id }).length, 1, 'the step ran once');
});

test('approve of a cancelled workflow is 409 with its status', async () => {
  const { id } = await ready(c, { input: 'cancel then approve', plan: simplePlan() });
  assert.equal((await c.post(`/workflows/${id}/cancel`)).status, 200);
  const r = await c.post(`/workflows/${id}/approve`);
  assert.equal(r.status, 409, r.text);
  assert.deepEqual(r.json, { success: false, error: 'workflow is cancelled', status: 'cancelled' });
});

test('a task nothing in the catalog matches fails planning with an error; approve is then 409', async () => {
  const id = await createWorkflow(c, { input: 'zqxj vorpal frumious bandersnatch' });
  const wf = await waitStatus(c, id, ['failed']);
  assert.equal(typeof wf.error, 'string');
  assert.ok(wf.error.length > 0);
  const r = await c.post(`/workflows/${id}/approve`);
  assert.equal(r.status, 409);
  assert.equal(r.json.status, 'failed');
});

test('cancel from awaiting_approval answers the cancelled workflow; a second cancel is 409', async () => {
  const { id } = await ready(c, { input: 'cancel me', plan: simplePlan() });
  const r = await c.post(`/workflows/${id}/cancel`);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { success: true, workflow: { id, status: 'cancelled' } });
  const g = await c.get(`/workflows/${id}`);
  assert.equal(g.json.workflow.status, 'cancelled');
  for (const s of g.json.workflow.steps) assert.ok(['pending', 'skipped'].includes(s.status), s.status);
  assert.equal(ctx.svc.calls({ workflowId: id }).length, 0, 'no service was called');
  const again = await c.post(`/workflows/${id}/cancel`);
  assert.equal(again.status, 409);
  assert.deepEqual(again.json, { success: false, error: 'workflow is cancelled', status: 'cancelled' });
});

test('list pages newest first with limit and cursor, without duplicates', async () => {
  const key = await createKey(ctx.dbUrl, 'lister');
  const lc = api(ctx.engine, key);
  const created = [];
  for (let i = 0; i < 5; i++) {
    created.push(await createWorkflow(lc, { input: `list item ${i}`, plan: simplePlan() }));
    await sleep(15);
  }
  const seen = [];
  let cursor = null;
  let pages = 0;
  do {
    const r = await lc.get(`/users/lister/workflows?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.success, true);
    assert.ok(r.json.workflows.length <= 2);
    for (const w of r.json.workflows) {
      for (const f of ['id', 'status', 'input', 'estimatedCost', 'totalCost', 'createdAt', 'updatedAt']) {
        assert.ok(Object.hasOwn(w, f), `list item lacks ${f}: ${JSON.stringify(w)}`);
      }
      seen.push(w.id);
    }
    assert.ok(r.json.nextCursor === null || typeof r.json.nextCursor === 'string');
    cursor = r.json.nextCursor;
    pages++;
    assert.ok(pages <= 5, 'pagination does not end');
  } while (cursor);
  assert.equal(pages, 3);
  assert.equal(new Set(seen).size, seen.length, `duplicates across pages: ${seen}`);
  assert.deepEqual(seen, created.slice().reverse());

  const all = await lc.get('/users/lister/workflows');
  assert.deepEqual(all.json.workflows.map((w) => w.id), created.slice().reverse());
  assert.equal(all.json.nextCursor, null);
  assert.equal(all.json.workflows[0].input, 'list item 4');
});

test('list limit outside 1..200 is 400', async () => {
  for (const l of ['0', '201', 'abc', '-1']) {
    const r = await c.get(`/users/alice/workflows?limit=${l}`);
    assert.equal(r.status, 400, `limit=${l}: ${r.text}`);
  }
  assert.equal((await c.get('/users/alice/workflows?limit=200')).status, 200);
});

test('unknown route is 404 "not found"', async () => {
  for (const p of ['/nope', '/workflows', '/workflows/x/y/z', '/users/alice']) {
    const r = await c.get(p);
    assert.equal(r.status, 404, `${p}: ${r.text}`);
    assert.deepEqual(r.json, { success: false, error: 'not found' });
  }
});

test('wrong method is 405 with an Allow header', async () => {
  const { id } = await ready(c, { input: 'method check', plan: simplePlan() });
  const cases = [
    ['GET', '/workflows/create', 'POST'],
    ['DELETE', `/workflows/${id}`, 'GET'],
    ['PUT', `/workflows/${id}`, 'GET'],
    ['GET', `/workflows/${id}/approve`, 'POST'],
    ['GET', `/workflows/${id}/cancel`, 'POST'],
    ['POST', '/users/alice/workflows', 'GET'],
    ['POST', '/health', 'GET'],
  ];
  for (const [method, path, allowed] of cases) {
    const r = await c.raw(method, path);
    assert.equal(r.status, 405, `${method} ${path}: ${r.status} ${r.text}`);
    assert.equal(r.json?.error, 'method not allowed');
    const allow = (r.headers.get('allow') || '').split(',').map((x) => x.trim());
    assert.ok(allow.includes(allowed), `${method} ${path}: Allow "${r.headers.get('allow')}" lacks ${allowed}`);
  }
  const g = await c.get(`/workflows/${id}`);
  assert.equal(g.json.workflow.status, 'awaiting_approval', 'a 405 changes nothing');
});

test('create without a plan: the offline planner plans over the catalog', async () => {
  const id = await createWorkflow(c, { input: 'Add 2 and 3 then echo the sum' });
  const wf = await waitStatus(c, id, ['awaiting_approval']);
  const services = wf.plan.steps.map((s) => s.service);
  assert.ok(services.includes('add'), `plan: ${JSON.stringify(wf.plan)}`);
  assert.ok(!services.includes('premium_report'));
  const add = wf.plan.steps.find((s) => s.service === 'add');
  assert.equal(Number(add.inputs.a) + Number(add.inputs.b), 5, JSON.stringify(add));
  assertMoney(wf.estimatedCost, '0');
  await approve(c, id);
  const done = await waitStatus(c, id, ['completed']);
  assert.deepEqual(done.steps.find((s) => s.service === 'add').output, { sum: 5 });
});

test('a priced plan: estimatedCost is the catalog price; maxCost too small is 400 on field maxCost', async () => {
  const plan = { steps: [step('r', 'premium_report', { topic: 'markets' })] };
  const low = await c.post('/workflows/create', { input: 'premium', plan, maxCost: '0.5' });
  assert.equal(low.status, 400, low.text);
  assert.equal(low.json.success, false);
  assert.ok(low.json.details.some((d) => d.field === 'maxCost'), JSON.stringify(low.json));

  const lowNum = await c.post('/workflows/create', { input: 'premium', plan, maxCost: 0.999999 });
  assert.equal(lowNum.status, 400, lowNum.text);
  assert.ok(lowNum.json.details.some((d) => d.field === 'maxCost'));

  const { workflow } = await ready(c, { input: 'premium', plan, maxCost: 1 });
  assertMoney(workflow.estimatedCost, '1000000');
  assert.equal(workflow.estimatedCost.amount, '1.000000');
  assertMoney(workflow.maxCost, '1000000');
  const two = await ready(c, { input: 'premium twice', plan: { steps: [
    step('r1', 'premium_report', { topic: 'a' }), step('r2', 'premium_report', { topic: 'b' }),
  ] }, maxCost: '2.5' });
  assertMoney(two.workflow.estimatedCost, '2000000');
});
