// validation.test.mjs — every invalid create is a 400 (413 for size) with details per field, and
// none of them writes anything (docs/api-contract.md "Errors", "Routes").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, step, ref, rawHttp, httpRequest } from '../lib/harness.mjs';

let ctx;
let c;

before(async () => {
  ctx = await setup({ users: ['val'] });
  c = ctx.client;
});
after(async () => { await ctx?.teardown(); });

const okPlan = () => ({ steps: [step('a', 'add', { a: 1, b: 2 })] });

// expect400(body, field) — 400 "invalid request body" with a detail on `field` (a string, or a
// RegExp for plan paths whose exact spelling may differ, e.g. "plan.steps[1].service").
async function expect400(body, field, { problem } = {}) {
  const r = await c.post('/workflows/create', body);
  assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 200)} → ${r.status} ${r.text}`);
  assert.equal(r.json.success, false);
  assert.equal(r.json.error, 'invalid request body');
  assert.ok(Array.isArray(r.json.details) && r.json.details.length > 0, r.text);
  for (const d of r.json.details) {
    assert.equal(typeof d.field, 'string');
    assert.equal(typeof d.problem, 'string');
    assert.ok(d.problem.length > 0);
  }
  const hit = r.json.details.find((d) => (field instanceof RegExp ? field.test(d.field) : d.field === field));
  assert.ok(hit, `no detail for field ${field}: ${r.text}`);
  if (problem) assert.match(hit.problem, problem);
  return r.json;
}

test('input of the wrong type', async () => {
  await expect400({ input: 42, plan: okPlan() }, 'input');
  await expect400({ input: ['a'], plan: okPlan() }, 'input');
  await expect400({ input: null, plan: okPlan() }, 'input');
});

test('missing input', async () => { await expect400({ plan: okPlan() }, 'input'); });

test('empty input', async () => { await expect400({ input: '', plan: okPlan() }, 'input'); });

test('input longer than 10000 characters', async () => {
  await expect400({ input: 'x'.repeat(10001), plan: okPlan() }, 'input');
  // characters, not bytes: 10001 two-byte characters are still too long
  await expect400({ input: 'é'.repeat(10001), plan: okPlan() }, 'input');
});

test('unknown field', async () => {
  await expect400({ input: 'x', plan: okPlan(), colour: 'blue' }, 'colour', { problem: /unknown field/ });
});

test('several problems are all reported', async () => {
  const j = await expect400({ input: '', maxTime: 5, extra: 1 }, 'input');
  const fields = j.details.map((d) => d.field);
  assert.ok(fields.includes('maxTime'), fields.join());
  assert.ok(fields.includes('extra'), fields.join());
});

test('maxCost negative', async () => {
  await expect400({ input: 'x', plan: okPlan(), maxCost: -1 }, 'maxCost');
  await expect400({ input: 'x', plan: okPlan(), maxCost: '-0.5' }, 'maxCost');
});

test('maxCost with more decimals than USDC has', async () => {
  await expect400({ input: 'x', plan: okPlan(), maxCost: '1.0000001' }, 'maxCost');
  await expect400({ input: 'x', plan: okPlan(), maxCost: 0.0000001 }, 'maxCost');
});

test('maxCost not a number', async () => {
  for (const v of ['abc', '', '1e3x', true, {}, [1], '1,5', 'NaN']) {
    await expect400({ input: 'x', plan: okPlan(), maxCost: v }, 'maxCost');
  }
});

test('maxTime out of range or not an integer', async () => {
  for (const v of [999, 86400001, 0, -1000, 1500.5, '60000', true]) {
    await expect400({ input: 'x', plan: okPlan(), maxTime: v }, 'maxTime');
  }
});

test('plan with an unknown service', async () => {
  await expect400({ input: 'x', plan: { steps: [
    step('a', 'add', { a: 1, b: 2 }),
    step('b', 'no_such_service', {}),
  ] } }, /^(plan\.)?steps\[1\]\.service$/);
});

test('plan with a cycle', async () => {
  await expect400({ input: 'x', plan: { steps: [
    step('a', 'echo', { message: ref('b.echo') }, ['b']),
    step('b', 'echo', { message: ref('a.echo') }, ['a']),
  ] } }, /^(plan\b|steps\[)/);
  await expect400({ input: 'x', plan: { steps: [
    step('a', 'echo', {}, ['c']), step('b', 'echo', {}, ['a']), step('c', 'echo', {}, ['b']),
  ] } }, /^(plan\b|steps\[)/);
});

test('plan with a missing required input', async () => {
  await expect400({ input: 'x', plan: { steps: [step('a', 'add', { a: 1 })] } },
    /^(plan\.)?steps\[0\]\.inputs\.b$/);
});

test('plan $ref to a missing step', async () => {
  await expect400({ input: 'x', plan: { steps: [
    step('a', 'echo', { message: 'hi' }),
    step('b', 'echo', { message: ref('zz.echo') }),
  ] } }, /^(plan\.)?steps\[1\]/);
});

test('plan $ref to the step itself', async () => {
  await expect400({ input: 'x', plan: { steps: [step('a', 'echo', { message: ref('a.echo') })] } },
    /^(plan\.)?steps\[0\]/);
});

test('plan with duplicate step ids, bad ids or dependsOn to nowhere', async () => {
  await expect400({ input: 'x', plan: { steps: [step('a', 'echo'), step('a', 'echo')] } }, /^(plan\.)?steps\[1\]/);
  await expect400({ input: 'x', plan: { steps: [step('a b', 'echo')] } }, /^(plan\.)?steps\[0\]/);
  await expect400({ input: 'x', plan: { steps: [step('a', 'echo', {}, ['ghost'])] } }, /^(plan\.)?steps\[0\]/);
});

test('plan of the wrong shape', async () => {
  await expect400({ input: 'x', plan: 'do it' }, /^plan/);
  await expect400({ input: 'x', plan: { steps: [] } }, /^plan/);
  await expect400({ input: 'x', plan: { steps: [{ id: 'a' }] } }, /^(plan\.)?steps\[0\]/);
  await expect400({ input: 'x', plan: { steps: [step('a', 'echo', 'not an object')] } }, /^(plan\.)?steps\[0\]/);
});

test('malformed JSON names line and column', async () => {
  const r = await c.post('/workflows/create', '{\n  "input": "x",\n  "maxCost": }\n');
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.success, false);
  assert.match(r.json.error, /^malformed JSON at line 3, column \d+: .+/);
  const col = Number(/column (\d+)/.exec(r.json.error)[1]);
  assert.ok(col >= 12 && col <= 15, `column should point at the "}" (column 14), got ${col}`);

  const r2 = await c.post('/workflows/create', '{"input": "x"');
  assert.equal(r2.status, 400);
  assert.match(r2.json.error, /^malformed JSON at line 1, column \d+: /);
});

test('a body over 1 MiB is 413', async () => {
  // The head declares 1.1 MiB and only the start of the body follows: the server must refuse on
  // the declared length (sending all of it would race the server's close against our write).
  const body = JSON.stringify({ input: 'x', plan: { steps: [step('a', 'echo', { message: 'y'.repeat(1100000) })] } });
  const full = httpRequest('POST', '/workflows/create', { key: ctx.keys.val, body });
  const [r] = await rawHttp(ctx.engine.port, full.subarray(0, full.length - body.length + 4096));
  assert.ok(r, 'an answer before the connection closed');
  assert.equal(r.status, 413, r.text.slice(0, 300));
  // h2o refuses an oversized body before any handler runs, so this one answer is its own
  // text/plain message rather than the JSON error shape (docs/api.md says so).
  assert.match(r.text, /too large/i);
});

test('a chunked body over 1 MiB is 413', async () => {
  const chunk = 'z'.repeat(64 * 1024);
  let s = `POST /workflows/create HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ctx.keys.val}\r\n` +
          'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
  const parts = ['{"input":"', ...Array(18).fill(chunk), '"}'];
  for (const p of parts) s += `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`;
  s += '0\r\n\r\n';
  const [r] = await rawHttp(ctx.engine.port, Buffer.from(s));
  assert.ok(r, 'an answer before the connection closed');
  assert.equal(r.status, 413);
});

test('a body of exactly the limit is not 413', async () => {
  const head = '{"input":"';
  const tailS = '"}';
  const body = head + 'q'.repeat(1024 * 1024 - head.length - tailS.length) + tailS;
  assert.equal(Buffer.byteLength(body), 1024 * 1024);
  const r = await c.post('/workflows/create', body);
  assert.equal(r.status, 400, 'too long an input, but within the size limit');
  assert.ok(r.json.details.some((d) => d.field === 'input'));
});

test('a body that is not a JSON object is 400', async () => {
  for (const b of ['[]', '"text"', '42', 'null', 'true', '[{"input":"x"}]']) {
    const r = await c.post('/workflows/create', b);
    assert.equal(r.status, 400, `${b}: ${r.text}`);
    assert.equal(r.json.success, false);
  }
});

test('an empty body is 400', async () => {
  const [r] = await rawHttp(ctx.engine.port, httpRequest('POST', '/workflows/create', { key: ctx.keys.val }));
  assert.equal(r.status, 400);
});

test('after all of these the user has no workflow (no partial write)', async () => {
  const r = await c.get('/users/val/workflows?limit=200');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.workflows, []);
  // and the same engine still accepts a valid create
  const ok = await c.post('/workflows/create', { input: 'valid after all', plan: okPlan() });
  assert.equal(ok.status, 201, ok.text);
});
