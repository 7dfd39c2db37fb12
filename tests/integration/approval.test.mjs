// approval.test.mjs — approval.lua in the real engine. The shipped policy with
// AUTO_APPROVE_BELOW runs cheap workflows at once (still through the escrow hold) and leaves
// the rest to the user; an operator's policy can deny (the workflow fails with the reason) or
// set its own expiry (re-announced with workflow.awaiting_approval); a policy that errors or
// loops leaves the built-in decision (manual, APPROVAL_TTL_MS) in force.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  setup, createWorkflow, waitStatus, openStream, assertGapFree, step, SOURCE_DIR, api, createKey,
} from '../lib/harness.mjs';

async function eventsUntil(ctx, id, type) {
  const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
  try {
    await s.opened;
    await s.waitType(type, { timeout: 15000 });
    assertGapFree(s.messages, 1);
    return s.messages;
  } finally {
    s.close();
  }
}

describe('shipped approval.lua with AUTO_APPROVE_BELOW', () => {
  let ctx;
  before(async () => {
    ctx = await setup({ users: ['alice'], env: { POLICY_DIR: join(SOURCE_DIR, 'policies'), AUTO_APPROVE_BELOW: '500000' } });
  });
  after(async () => { await ctx?.teardown(); });

  test('a free plan under the threshold runs without an approve call', async () => {
    const id = await createWorkflow(ctx.client, { input: 'auto', plan: { steps: [step('a', 'echo', { message: 1 })] } });
    const wf = await waitStatus(ctx.client, id, ['completed'], { timeout: 15000 });
    assert.deepEqual(wf.output, { a: { echo: { message: 1 } } });
    const ev = await eventsUntil(ctx, id, 'workflow.completed');
    const types = ev.map((m) => m.type);
    assert.deepEqual(types.slice(0, 5), ['workflow.planning', 'workflow.plan_ready', 'workflow.awaiting_approval',
      'workflow.approved', 'workflow.executing']);
    assert.equal(ctx.svc.calls({ path: '/echo', workflowId: id }).length, 1);
  });

  test('a plan at or over the threshold waits for the user', async () => {
    const id = await createWorkflow(ctx.client, {
      input: 'manual', plan: { steps: [step('p', 'premium_report', { topic: 'x' })] },
    });
    const wf = await waitStatus(ctx.client, id, ['awaiting_approval']);
    await new Promise((r) => setTimeout(r, 300));
    const again = await ctx.client.get(`/workflows/${id}`);
    assert.equal(again.json.workflow.status, 'awaiting_approval');
    assert.equal(again.json.workflow.expiresAt, wf.expiresAt, 'the built-in expiry stands');
    assert.equal(ctx.svc.calls({ workflowId: id }).length, 0);
  });
});

describe('an operator approval.lua', () => {
  let ctx;
  let dir;
  const write = (text) => writeFileSync(join(dir, 'approval.lua'), text);
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'x4t-approval-'));
    write(`local x = require "x402r"
function decide(workflow, estimate, limits)
  if workflow.input:find("forbidden") then return x.deny("no forbidden tasks") end
  if workflow.input:find("quick") then return x.approve_manual(60000, "answer within a minute") end
  if workflow.input:find("loop") then while true do end end
  if workflow.input:find("crash") then error("policy bug") end
  if workflow.input:find("auto") and x.amount(limits.available) == 0 then return x.approve_auto("free") end
  return x.approve_manual(tonumber(limits.approvalTtlMs))
end
`);
    ctx = await setup({ users: ['alice'], env: { POLICY_DIR: dir, LUA_BUDGET: '100000' } });
  });
  after(async () => {
    await ctx?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('deny: the workflow fails with the policy\'s reason and nothing runs', async () => {
    const id = await createWorkflow(ctx.client, { input: 'forbidden thing', plan: { steps: [step('a', 'echo', {})] } });
    const wf = await waitStatus(ctx.client, id, ['failed']);
    assert.equal(wf.error, 'denied: no forbidden tasks');
    assert.equal(ctx.svc.calls({ workflowId: id }).length, 0);
    const ev = await eventsUntil(ctx, id, 'workflow.failed');
    assert.equal(ev.at(-1).data.error, 'denied: no forbidden tasks');
    const ap = await ctx.client.post(`/workflows/${id}/approve`);
    assert.equal(ap.status, 409);
  });

  test('create with approve: true is refused with 403 when the policy denies; nothing is stored', async () => {
    const before = (await ctx.client.get('/users/alice/workflows?limit=100')).json.workflows.length;
    const r = await ctx.client.post('/workflows/create', {
      input: 'forbidden, pre-approved', plan: { steps: [step('a', 'echo', {})] }, approve: true,
    });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.error, 'denied by the approval policy: no forbidden tasks');
    assert.equal((await ctx.client.get('/users/alice/workflows?limit=100')).json.workflows.length, before);
    // a manual answer does not stop the caller's own approval: it runs
    const ok = await ctx.client.post('/workflows/create', {
      input: 'quick, pre-approved', plan: { steps: [step('a', 'echo', { message: 3 })] }, approve: true,
    });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.json.workflow.status, 'executing');
    const wf = await waitStatus(ctx.client, ok.json.workflow.id, ['completed'], { timeout: 15000 });
    assert.deepEqual(wf.output, { a: { echo: { message: 3 } } });
  });

  test('manual with its own expiry: expiresAt moves and is re-announced with the reason', async () => {
    const id = await createWorkflow(ctx.client, { input: 'quick one', plan: { steps: [step('a', 'echo', {})] } });
    const ev = await eventsUntil(ctx, id, 'workflow.awaiting_approval');
    const s = openStream(ctx.engine, id, { since: ev.at(-1).seq, key: ctx.keys.alice });
    let second;
    try {
      await s.opened;
      second = ev.filter((m) => m.type === 'workflow.awaiting_approval').length > 1
        ? ev.filter((m) => m.type === 'workflow.awaiting_approval')[1]
        : await s.waitType('workflow.awaiting_approval', { timeout: 10000 });
    } finally {
      s.close();
    }
    assert.equal(second.data.reason, 'answer within a minute');
    const left = Date.parse(second.data.expiresAt) - Date.now();
    assert.ok(left > 30000 && left <= 60000, `expires in about a minute (${left} ms)`);
    const wf = (await ctx.client.get(`/workflows/${id}`)).json.workflow;
    assert.equal(wf.expiresAt, second.data.expiresAt);
  });

  test('auto: approved and run by the policy', async () => {
    const id = await createWorkflow(ctx.client, { input: 'auto please', plan: { steps: [step('a', 'echo', { message: 2 })] } });
    await waitStatus(ctx.client, id, ['completed'], { timeout: 15000 });
  });

  test('a looping or failing policy leaves the built-in decision: manual, and the engine stays up', async () => {
    for (const input of ['loop forever', 'crash now']) {
      const id = await createWorkflow(ctx.client, { input, plan: { steps: [step('a', 'echo', {})] } });
      await waitStatus(ctx.client, id, ['awaiting_approval']);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await ctx.client.get(`/workflows/${id}`)).json.workflow.status, 'awaiting_approval');
      const ap = await ctx.client.post(`/workflows/${id}/approve`);
      assert.equal(ap.status, 200, ap.text);
      await waitStatus(ctx.client, id, ['completed']);
    }
    assert.match(ctx.engine.stderr(), /approval\.decide failed: .*approval\.lua:\d+/);
    const admin = api(ctx.engine, await createKey(ctx.dbUrl, 'root', { admin: true }));
    assert.equal((await admin.get('/health')).status, 200);
  });
});
