// policies.test.mjs — Lua policies in the real engine: POLICY_DIR points at a temp dir the tests
// write retry.lua into; retry.decide overrides the built-in retry decision (but never past
// RETRY_MAX_ATTEMPTS); a hostile policy (endless loop) falls back to the built-in decision;
// /health shows the loaded version; SIGHUP and POST /admin/policies/reload (admin keys only,
// others get 403) reload atomically: a broken file → 422 and the old version stays.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setup, runPlan, waitStatus, waitFor, step, createKey, api } from '../lib/harness.mjs';

const stepOf = (wf, id) => wf.steps.find((s) => s.id === id);

const GIVE_UP = `local x = require "x402r"
function decide(step, err, attempt) return x.giveup("policy says no (" .. tostring(err.class) .. ")") end
`;
const RETRY_ALL = `local x = require "x402r"
function decide(step, err, attempt) return x.retry(10) end
`;
const LOOP = `function decide(step, err, attempt)
  while true do end
end
`;
const BROKEN = `function decide(step, err, attempt)
  return {   -- unterminated
`;

describe('Lua retry policy', () => {
  let ctx;
  let c;
  let admin;
  let dir;
  const write = (text) => writeFileSync(join(dir, 'retry.lua'), text);
  const version = async () => {
    const h = await c.get('/health');
    assert.equal(h.status, 200);
    assert.ok(h.json.policies, '/health has policies');
    return h.json.policies.version;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'x4t-policies-'));
    write(GIVE_UP);
    ctx = await setup({ users: ['alice'], env: {
      POLICY_DIR: dir, FAILOVER_MAX: 0, RETRY_MAX_ATTEMPTS: 3, RETRY_BASE_MS: 20, RETRY_MAX_DELAY_MS: 200, STEP_TIMEOUT_MS: 10000,
    } });
    c = ctx.client;
    admin = api(ctx.engine, await createKey(ctx.dbUrl, 'root', { admin: true }));
  });
  after(async () => {
    await ctx?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('/health shows the loaded policy version and hooks', async () => {
    const h = await c.get('/health');
    assert.equal(h.status, 200);
    assert.match(h.json.policies.version, /^[0-9a-f]{16}$/);
    assert.ok(h.json.policies.policies.retry.includes('decide'), JSON.stringify(h.json.policies));
  });

  test('a retry.lua that gives up makes a flaky 503 step fail after 1 attempt', async () => {
    const id = await runPlan(c, { steps: [step('f', 'flaky', { fail: 2 })] });
    const wf = await waitStatus(c, id, ['failed']);
    const f = stepOf(wf, 'f');
    assert.equal(f.status, 'failed');
    assert.equal(f.attempts, 1);
    assert.match(f.error, /policy says no \(status\)/);
    assert.equal(ctx.svc.calls({ path: '/flaky', workflowId: id }).length, 1);
  });

  test('non-admin keys get 403 from POST /admin/policies/reload', async () => {
    const r = await c.post('/admin/policies/reload', {});
    assert.equal(r.status, 403);
    assert.equal(r.json.success, false);
  });

  test('a broken file → 422, the old version stays in force', async () => {
    const before = await version();
    write(BROKEN);
    const r = await admin.post('/admin/policies/reload', {});
    assert.equal(r.status, 422, r.text);
    assert.equal(r.json.success, false);
    assert.match(r.json.error, /retry\.lua/);
    assert.equal(await version(), before);
    // the old (give-up) policy is still the one deciding
    const id = await runPlan(c, { steps: [step('f', 'flaky', { fail: 1 })] });
    const wf = await waitStatus(c, id, ['failed']);
    assert.equal(stepOf(wf, 'f').attempts, 1);
  });

  test('a good file → 200 with a new version; the policy may retry a 4xx', async () => {
    const before = await version();
    write(RETRY_ALL);
    const r = await admin.post('/admin/policies/reload', {});
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.success, true);
    assert.match(r.json.version, /^[0-9a-f]{16}$/);
    assert.notEqual(r.json.version, before);
    assert.equal(await version(), r.json.version);
    const id = await runPlan(c, { steps: [step('f', 'flaky', { fail: 1, code: 404 })] });
    const wf = await waitStatus(c, id, ['completed']);
    assert.equal(stepOf(wf, 'f').attempts, 2);
  });

  test('RETRY_MAX_ATTEMPTS bounds a policy that always retries', async () => {
    const id = await runPlan(c, { steps: [step('f', 'flaky', { fail: 10, code: 404 })] });
    const wf = await waitStatus(c, id, ['failed']);
    assert.equal(stepOf(wf, 'f').attempts, 3);
    assert.equal(ctx.svc.calls({ path: '/flaky', workflowId: id }).length, 3);
  });

  test('SIGHUP reloads: an endless-loop retry.lua falls back to the built-in decision', async () => {
    const before = await version();
    write(LOOP);
    ctx.engine.proc.kill('SIGHUP');
    await waitFor(async () => (await version()) !== before, { message: 'a new policy version after SIGHUP' });
    const t0 = Date.now();
    const id = await runPlan(c, { steps: [step('f', 'flaky', { fail: 2 })] });
    const wf = await waitStatus(c, id, ['completed']);
    const f = stepOf(wf, 'f');
    assert.equal(f.attempts, 3);
    assert.deepEqual(f.output, { ok: true, calls: 3 });
    assert.ok(Date.now() - t0 < 8000, 'the loop did not stall the engine');
    const h = await c.get('/health');
    assert.equal(h.status, 200, 'the engine still answers');
    await waitFor(() => /retry\.decide failed: .*retry\.lua:\d+/.test(ctx.engine.stderr()),
      { message: 'a warning naming retry.lua and the line' });
  });
});
