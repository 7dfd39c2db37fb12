// tests/integration/plan_cache.test.mjs — the plan cache: an identical task from the same user
// is answered from Redis (planner "cache:…"), another user's is not shared (unless
// PLAN_CACHE_SHARED=1), and concurrent identical requests plan once (single-flight).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setup, openStream } from '../lib/harness.mjs';

let ctx;
before(async () => { ctx = await setup({ users: ['alice', 'bob'], env: { RATE_LIMIT_PER_MIN: '0' } }); });
after(async () => { await ctx?.teardown(); });

async function planner(user, input) {
  const c = ctx.clients[user];
  const r = await c.post('/workflows/create', { input });
  assert.equal(r.status, 201, r.text);
  const s = openStream(ctx.engine, r.json.workflow.id, { since: 0, key: ctx.keys[user] });
  await s.opened;
  const ready = await s.waitType('workflow.plan_ready', { timeout: 20000 });
  s.close();
  return ready.data.planner;
}

test('an identical task is planned once and then answered from the cache', async () => {
  const task = `Add 2 and 3 then echo the sum (${randomBytes(4).toString('hex')})`;
  assert.equal(await planner('alice', task), 'offline');
  assert.equal(await planner('alice', task), 'cache:offline');
  assert.equal(await planner('alice', `  ${task.toUpperCase()}  `), 'cache:offline', 'normalised: case and blanks');
  assert.equal(await planner('bob', task), 'offline', 'not shared between users');
});

test('concurrent identical requests plan once', async () => {
  const task = `Add 2 and 3 then echo the sum (${randomBytes(4).toString('hex')})`;
  const got = await Promise.all(Array.from({ length: 10 }, () => planner('alice', task)));
  assert.equal(got.filter((p) => p === 'offline').length, 1, JSON.stringify(got));
  assert.equal(got.filter((p) => p === 'cache:offline').length, 9);
});
