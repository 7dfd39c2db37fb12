// policies_reload.test.mjs — reloading the Lua policies and plugins under load loses no step:
// while 24 four-step workflows run (steps through the http plugin, a flaky step through
// retry.lua), the policy set is swapped a dozen times by POST /admin/policies/reload and SIGHUP,
// one of those a broken file (refused, old set kept). Every workflow completes, every step
// succeeded exactly once (flaky ones after their retries), and every event log is gap-free.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  setup, runPlan, waitStatus, step, ref, api, createKey, openStream, assertGapFree, SOURCE_DIR, sleep,
} from '../lib/harness.mjs';

let ctx, dir, admin;
const retryLua = (delay) => `local x = require "x402r"
function decide(step, err, attempt)
  if attempt >= 5 then return x.giveup("enough") end
  return x.retry(${delay})
end
`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'x4t-reload-'));
  writeFileSync(join(dir, 'retry.lua'), retryLua(10));
  ctx = await setup({ users: ['alice'], env: {
    POLICY_DIR: dir, RETRY_MAX_ATTEMPTS: '6', RATE_LIMIT_PER_MIN: '0', PLUGIN_DIR: join(SOURCE_DIR, 'plugins'),
  } });
  admin = api(ctx.engine, await createKey(ctx.dbUrl, 'root', { admin: true }));
});

after(async () => {
  await ctx?.teardown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a dozen reloads while 24 workflows run: every step runs once and every workflow completes', async () => {
  const N = 24;
  const ids = await Promise.all(Array.from({ length: N }, (_, k) => runPlan(ctx.client, { steps: [
    step('a', 'echo', { message: k }),
    step('s', 'slow', { ms: 150 }, ['a']),
    step('f', 'flaky', { fail: 2, key: `reload-${k}-${Date.now()}` }, ['a']),
    step('z', 'echo', { message: ref('s.waited'), ok: ref('f.ok') }, ['s', 'f']),
  ] })));
  const versions = new Set();
  for (let r = 0; r < 12; r++) {
    writeFileSync(join(dir, 'retry.lua'), retryLua(5 + r));
    if (r % 4 === 3) {
      ctx.engine.proc.kill('SIGHUP');
    } else if (r === 6) {
      writeFileSync(join(dir, 'retry.lua'), 'function decide(  -- broken');
      const bad = await admin.post('/admin/policies/reload', {});
      assert.equal(bad.status, 422, bad.text);
      writeFileSync(join(dir, 'retry.lua'), retryLua(5 + r));
    } else {
      const ok = await admin.post('/admin/policies/reload', {});
      assert.equal(ok.status, 200, ok.text);
      versions.add(ok.json.version);
    }
    await sleep(40);
  }
  assert.ok(versions.size >= 5, `the set really changed (${versions.size} versions)`);
  for (const id of ids) {
    const wf = await waitStatus(ctx.client, id, ['completed', 'failed'], { timeout: 30000 });
    assert.equal(wf.status, 'completed', `${id}: ${JSON.stringify(wf.steps.map((s) => [s.id, s.status, s.error]))}`);
    for (const s of ['a', 's', 'z']) {
      const ok = ctx.svc.calls({ workflowId: id, stepId: s }).filter((c) => c.status === 200);
      assert.equal(ok.length, 1, `${id}.${s} ran once`);
    }
    const f = ctx.svc.calls({ workflowId: id, stepId: 'f' });
    assert.deepEqual(f.map((c) => c.status), [503, 503, 200], `${id}.f retried by the policy, then once`);
  }
  const st = openStream(ctx.engine, ids[0], { since: 0, key: ctx.keys.alice });
  try {
    await st.opened;
    await st.waitType('workflow.completed');
    assertGapFree(st.messages, 1);
  } finally {
    st.close();
  }
});
