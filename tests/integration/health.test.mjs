// health.test.mjs — GET /health (shape, counts) and GET /metrics (Prometheus text).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, api, runPlan, waitStatus, waitFor, assertMoney, step } from '../lib/harness.mjs';

let ctx;
let anon;

before(async () => {
  ctx = await setup({ users: ['alice'], env: { RETRY_MAX_ATTEMPTS: 1 } });
  anon = api(ctx.engine, null);
});
after(async () => { await ctx?.teardown(); });

function assertHealthShape(h) {
  assert.ok(['ok', 'degraded'].includes(h.status));
  assert.equal(typeof h.version, 'string');
  assert.ok(h.version.length > 0);
  assert.equal(typeof h.postgres, 'boolean');
  assert.equal(typeof h.redis, 'boolean');
  const w = h.workflows;
  assert.ok(w && typeof w === 'object');
  for (const f of ['active', 'completed', 'failed', 'averageExecutionMs', 'queueDepth']) {
    assert.equal(typeof w[f], 'number', `workflows.${f}: ${JSON.stringify(w)}`);
    assert.ok(w[f] >= 0, `workflows.${f} >= 0`);
  }
  assert.ok(Number.isInteger(w.active) && Number.isInteger(w.completed) && Number.isInteger(w.failed));
  assert.equal(typeof w.successRate, 'number');
  assertMoney(w.totalCostProcessed);
  assert.ok(h.errorRates && typeof h.errorRates === 'object');
  assert.equal(typeof h.errorRates.http5xx, 'number');
  assert.equal(typeof h.errorRates.stepFailures, 'number');
}

test('/health has the contract shape and sees PostgreSQL and Redis', async () => {
  const r = await anon.get('/health');
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type') || '', /application\/json/);
  const h = r.json;
  assertHealthShape(h);
  assert.equal(h.status, 'ok');
  assert.equal(h.postgres, true);
  assert.equal(h.redis, true);
  assert.equal(h.workflows.completed, 0, 'a fresh database has no completed workflow');
  assert.equal(h.workflows.failed, 0);
  assert.equal(h.workflows.active, 0);
});

test('after one completed and one failed workflow the counts and successRate reflect them', async () => {
  const c = ctx.client;
  const ok = await runPlan(c, { steps: [step('a', 'add', { a: 1, b: 2 })] });
  const bad = await runPlan(c, { steps: [step('b', 'broken', {})] });
  await waitStatus(c, ok, ['completed']);
  await waitStatus(c, bad, ['failed']);
  const h = await waitFor(async () => {
    const r = await anon.get('/health');
    const w = r.json?.workflows;
    return w && w.completed === 1 && w.failed === 1 && r.json;
  }, { timeout: 5000, message: '/health to count 1 completed and 1 failed' });
  assertHealthShape(h);
  assert.ok(h.workflows.successRate === 0.5 || h.workflows.successRate === 50,
    `successRate for 1 of 2: ${h.workflows.successRate}`);
  assert.equal(h.workflows.active, 0);
  // errorRates are rates or counts (the contract does not say which): either way, not zero now
  assert.ok(h.errorRates.stepFailures > 0, `stepFailures: ${JSON.stringify(h.errorRates)}`);
  assert.ok(h.workflows.averageExecutionMs >= 0);
  assertMoney(h.workflows.totalCostProcessed, '0');
});

test('a running workflow counts as active', async () => {
  const c = ctx.client;
  const id = await runPlan(c, { steps: [step('s', 'slow', { ms: 1500 })] });
  const h = await waitFor(async () => {
    const r = await anon.get('/health');
    return r.json?.workflows?.active >= 1 && r.json;
  }, { timeout: 1400, interval: 50, message: 'active >= 1 while a workflow runs' });
  assert.ok(h.workflows.active >= 1);
  await waitStatus(c, id, ['completed']);
});

test('/metrics is Prometheus text with x402r_ metrics', async () => {
  const r = await anon.get('/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') || '', /^text\/plain/);
  const lines = r.text.split('\n').filter((l) => l.length > 0);
  const samples = lines.filter((l) => !l.startsWith('#'));
  assert.ok(samples.length > 0);
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|[+-]Inf)( -?\d+)?$/;
  for (const l of samples) assert.match(l, sample, `not a Prometheus sample line: ${l}`);
  for (const l of lines.filter((x) => x.startsWith('#'))) {
    assert.match(l, /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]*( .*)?$/, `bad comment line: ${l}`);
  }
  const names = new Set(samples.map((l) => /^[^{ ]+/.exec(l)[0]));
  assert.ok([...names].some((n) => n.startsWith('x402r_')), 'x402r_ metrics present');
  for (const l of lines.filter((x) => x.startsWith('# TYPE'))) {
    assert.match(l, / (counter|gauge|histogram|summary|untyped)$/);
  }
  assert.ok([...names].some((n) => /workflow/.test(n)), 'some metric counts workflows');
});
