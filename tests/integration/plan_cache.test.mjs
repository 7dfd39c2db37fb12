// tests/integration/plan_cache.test.mjs — the plan cache: an identical task from the same user
// is answered from Redis (planner "cache:…"), another user's is not shared (unless
// PLAN_CACHE_SHARED=1), and concurrent identical requests plan once (single-flight); the
// server's planning latency shows in /metrics per source (cache / planner) and the store apart;
// the engine's offline planner follows POLICY_DIR/matching.lua; and a process answers a repeated
// task from its own copy (PLAN_CACHE_LOCAL). The last test restarts the engine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setup, openStream, SOURCE_DIR } from '../lib/harness.mjs';

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

test('a cached task is created already planned, in one transaction, and timed in /metrics', async () => {
  const task = `Add 4 and 5 then echo the sum (${randomBytes(4).toString('hex')})`;
  assert.equal(await planner('alice', task), 'offline');
  const c = ctx.clients.alice;
  const before = await c.get('/metrics');
  const count = (t) => Number((/x402r_planning_seconds_count\{source="cache"\} (\d+)/.exec(t) || [0, 0])[1]);
  const r = await c.post('/workflows/create', { input: task });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.workflow.status, 'awaiting_approval', 'no planning phase: the cache answered at creation');
  const wf = (await c.get(`/workflows/${r.json.workflow.id}`)).json.workflow;
  assert.equal(wf.steps.length, 2);
  const after = await c.get('/metrics');
  assert.equal(count(after.text), count(before.text) + 1, 'the cache hit is in x402r_planning_seconds{source="cache"}');
});

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

test('/metrics has the planning latency per source', async () => {
  const task = `Add 2 and 3 then echo the sum (${randomBytes(4).toString('hex')})`;
  const before = await (await fetch(`${ctx.engine.url}/metrics`)).text();
  const count = (t, src) => Number(new RegExp(`^x402r_planning_seconds_count\\{source="${src}"\\} (\\d+)$`, 'm').exec(t)?.[1]);
  const stored = (t) => Number(/^x402r_plan_store_seconds_count (\d+)$/m.exec(t)?.[1]);
  assert.equal(await planner('alice', task), 'offline');
  assert.equal(await planner('alice', task), 'cache:offline');
  assert.equal(await planner('alice', task), 'cache:offline');
  let text = '';
  for (let i = 0; i < 50; i++) { // the store is recorded when plan_ready is written, the event follows
    text = await (await fetch(`${ctx.engine.url}/metrics`)).text();
    if (count(text, 'cache') >= count(before, 'cache') + 2 && stored(text) >= stored(before) + 3) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(count(text, 'cache') >= count(before, 'cache') + 2, text);
  assert.ok(count(text, 'planner') >= count(before, 'planner') + 1, text);
  for (const q of ['0.5', '0.99', '1']) {
    const v = Number(new RegExp(`^x402r_planning_seconds\\{source="cache",quantile="${q}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.ok(v > 0 && v < 10, `cache quantile ${q}: ${v}`);
  }
  assert.match(text, /# TYPE x402r_planning_seconds summary/);
  // apart: from the valid plan to the workflow committed with it, once per plan stored
  assert.ok(stored(text) >= stored(before) + 3, text);
  const p99 = Number(/^x402r_plan_store_seconds\{quantile="0.99"\} (\S+)$/m.exec(text)?.[1]);
  assert.ok(p99 > 0 && p99 < 10, `store p99: ${p99}`);
});

test('the engine plans with POLICY_DIR/matching.lua', async () => {
  // the shipped policies, with matching.lua's weights raising match_min out of reach: the
  // offline planner then finds no service and says so
  const dir = mkdtempSync(join(tmpdir(), 'x4-policies-'));
  for (const f of ['retry.lua', 'approval.lua', 'rollback.lua'])
    writeFileSync(join(dir, f), readFileSync(join(SOURCE_DIR, 'policies', f)));
  writeFileSync(join(dir, 'matching.lua'), readFileSync(join(SOURCE_DIR, 'policies', 'matching.lua'), 'utf8')
    .replace(/function weights\(defaults\)[\s\S]*?\nend\n/, 'function weights(defaults)\n  return { match_min = 50 }\nend\n'));
  const strict = await setup({ users: ['carol'], env: { RATE_LIMIT_PER_MIN: '0', POLICY_DIR: dir, PLAN_CACHE: 'off' } });
  try {
    const r = await strict.clients.carol.post('/workflows/create', { input: 'Add 2 and 3 then echo the sum' });
    assert.equal(r.status, 201, r.text);
    const s = openStream(strict.engine, r.json.workflow.id, { since: 0, key: strict.keys.carol });
    await s.opened;
    const failed = await s.waitType('workflow.failed', { timeout: 20000 });
    s.close();
    assert.match(JSON.stringify(failed.data), /no service in the catalog matches/);
  } finally {
    await strict.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
  // and the shipped policy plans it (the first test above)
});

// Redis keys are hashed; this test's is the one whose cached plan holds its unique tag.
async function dropCachedPlan(tag) {
  const { execFile } = await import('node:child_process');
  const { testenv } = await import('../lib/harness.mjs');
  const cli = (...args) => new Promise((res, rej) => execFile('redis-cli', ['-s', `${testenv()}/redis.sock`, ...args],
    (err, stdout) => (err ? rej(err) : res(stdout))));
  const keys = (await cli('--scan', '--pattern', 'x402r:plan:*')).split('\n').filter((k) => k && !k.endsWith(':lock'));
  let dropped = 0;
  for (const k of keys) {
    if ((await cli('GET', k)).includes(tag)) dropped += Number((await cli('DEL', k)).trim());
  }
  return dropped;
}

test('a repeated task is answered by the process itself when Redis has lost the entry; PLAN_CACHE_LOCAL=off always asks Redis', async () => {
  const tag = randomBytes(6).toString('hex');
  const task = `Echo the message "note ${tag}"`;
  assert.equal(await planner('alice', task), 'offline');
  assert.equal(await dropCachedPlan(tag), 1, 'the plan was cached in Redis');
  assert.equal(await planner('alice', task), 'cache:offline', "answered from the process's own copy");
  // another process has no copy of its own, and this one is told not to keep one
  await ctx.restart({ RATE_LIMIT_PER_MIN: '0', PLAN_CACHE_LOCAL: 'off' });
  assert.equal(await planner('alice', task), 'offline', 'Redis lost it and the new process never had it: planned again');
  assert.equal(await planner('alice', task), 'cache:offline', 'from Redis');
  assert.equal(await dropCachedPlan(tag), 1);
  assert.equal(await planner('alice', task), 'offline', 'no copy in the process: planned again');
});
