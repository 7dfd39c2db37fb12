// adapters.test.mjs — step adapters (plugins/*.lua) in the real engine: a "transform" step
// reshapes an earlier output with no network call; an operator's own adapter in PLUGIN_DIR
// shapes the request (its header, the engine's Idempotency-Key kept) and parses the answer; a
// missing adapter plugin fails the step with a clear reason; an adapter's compensate() is what
// a failed workflow sends to undo its step.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setup, runPlan, waitStatus, step, ref, SOURCE_DIR } from '../lib/harness.mjs';
import { catalogFor } from '../lib/services.mjs';

const SHOUT = `local x = require "x402r"
function prepare(step, ctx)
  return { headers = { ["X-Shout"] = "yes" }, inputs_as = "body" }
end
function parse(response, ctx)
  if response.status ~= 200 then return { error = "shout: HTTP " .. response.status } end
  return { output = { shouted = string.upper(tostring(response.body.echo.message)) } }
end
function compensate(step, ctx)
  return { url = step.service.url:gsub("/echo.*$", "/undo"), method = "POST", body = { unshout = step.output.shouted } }
end
`;
const SNEAKY = `function prepare(step, ctx) return { headers = { ["Idempotency-Key"] = "mine" }, inputs_as = "body" } end
`;

describe('step adapters', () => {
  let ctx;
  let dir;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'x4t-plugins-'));
    for (const f of ['http.lua', 'x402.lua', 'transform.lua']) copyFileSync(join(SOURCE_DIR, 'plugins', f), join(dir, f));
    writeFileSync(join(dir, 'shout.lua'), SHOUT);
    writeFileSync(join(dir, 'sneaky.lua'), SNEAKY);
    ctx = await setup({ users: ['alice'], env: { PLUGIN_DIR: dir, RETRY_MAX_ATTEMPTS: '1' } });
    // the catalog, now with the real services' URL plus the adapter records
    const cat = catalogFor(ctx.svc);
    cat.services.push(
      { id: 'reshape', name: 'Reshape', description: 'Reshapes JSON.', adapter: 'transform', input: { type: 'object' } },
      { id: 'shout', name: 'Shout', description: 'Echo, shouted.', url: `${ctx.svc.url}/echo?shout=1`, method: 'POST',
        adapter: 'shout', input: { type: 'object' } },
      { id: 'sneaky', name: 'Sneaky', description: 'Tries to set the key.', url: `${ctx.svc.url}/echo?sneaky=1`,
        adapter: 'sneaky', input: { type: 'object' } },
      { id: 'ghost', name: 'Ghost', description: 'No plugin for it.', url: `${ctx.svc.url}/echo?ghost=1`,
        adapter: 'ghost', input: { type: 'object' } },
    );
    ctx.catalog = cat;
    await ctx.restart();
  });
  after(async () => {
    await ctx?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a transform step reshapes an earlier output without a network call', async () => {
    const id = await runPlan(ctx.client, { steps: [
      step('a', 'echo', { message: 'hello', n: 2 }),
      step('t', 'reshape', { op: 'shape', from: ref('a.echo'), fields: { greeting: 'message', count: 'n' } }),
      step('b', 'echo', { message: ref('t.greeting') }),
    ] });
    const wf = await waitStatus(ctx.client, id, ['completed', 'failed'], { timeout: 15000 });
    assert.equal(wf.status, 'completed', JSON.stringify(wf.steps));
    assert.deepEqual(wf.steps.find((s) => s.id === 't').output, { greeting: 'hello', count: 2 });
    assert.deepEqual(wf.output, { b: { echo: { message: 'hello' } } });
    assert.equal(ctx.svc.calls({ workflowId: id, stepId: 't' }).length, 0, 'no request for a pure step');
  });

  test("an operator's adapter shapes the request and parses the answer; the engine's headers stay", async () => {
    const id = await runPlan(ctx.client, { steps: [step('s', 'shout', { message: 'quiet' })] });
    const wf = await waitStatus(ctx.client, id, ['completed', 'failed'], { timeout: 15000 });
    assert.equal(wf.status, 'completed', JSON.stringify(wf.steps));
    assert.deepEqual(wf.output, { s: { shouted: 'QUIET' } });
    const [call] = ctx.svc.calls({ workflowId: id, stepId: 's' });
    assert.equal(call.headers['x-shout'], 'yes');
    assert.equal(call.idempotencyKey, `${id}:s:1`);
    assert.deepEqual(call.body, { message: 'quiet' });
  });

  test('an adapter that tries to set the Idempotency-Key fails its step, nothing is sent', async () => {
    const id = await runPlan(ctx.client, { steps: [step('k', 'sneaky', { message: 1 })] });
    const wf = await waitStatus(ctx.client, id, ['failed'], { timeout: 15000 });
    assert.match(wf.steps[0].error, /Idempotency-Key is set by the engine/);
    assert.equal(ctx.svc.calls({ workflowId: id }).length, 0);
  });

  test('a step whose adapter plugin is not loaded fails with the reason', async () => {
    const id = await runPlan(ctx.client, { steps: [step('g', 'ghost', {})] });
    const wf = await waitStatus(ctx.client, id, ['failed'], { timeout: 15000 });
    assert.match(wf.steps[0].error, /no adapter plugin 'ghost' loaded/);
    assert.equal(ctx.svc.calls({ workflowId: id }).length, 0);
  });

  test("the adapter's compensate() undoes its step when the workflow fails", async () => {
    const id = await runPlan(ctx.client, { steps: [
      step('s', 'shout', { message: 'undo me' }),
      step('x', 'broken', {}, ['s']),
    ] });
    const wf = await waitStatus(ctx.client, id, ['failed'], { timeout: 20000 });
    assert.equal(wf.steps.find((s) => s.id === 's').status, 'compensated');
    const undo = ctx.svc.calls({ path: '/undo', workflowId: id });
    assert.equal(undo.length, 1);
    assert.deepEqual(undo[0].body, { unshout: 'UNDO ME' });
    assert.equal(undo[0].idempotencyKey, `${id}:s:compensate`);
  });
});
