// tests/integration/scaleout.test.mjs — several engine processes on one PostgreSQL and one
// Redis (DESIGN.md "Scale-out"): a stream on one process sees everything another process
// executes; losing Redis mid-run loses no event (streams catch up from PostgreSQL after the
// reconnect); a cancel sent to one process stops the run on the other (and, after a step
// succeeded, that process undoes it); a process killed with
// -9 has its workflow taken over by a live one after LEASE_MS, no succeeded step run twice.
// This file runs its own redis-server so it can kill it without disturbing other tests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createDb, dropDb, databaseUrl, startEngine, createKey, api, openStream, assertGapFree,
  ready, approve, waitStatus, waitFor, step, ref, sleep,
} from '../lib/harness.mjs';
import { startServices, catalogFor } from '../lib/services.mjs';

let svc, db, dir, sock, redis, A, B, key, ca, cb;

function startRedis() {
  const p = spawn('redis-server', ['--port', '0', '--unixsocket', sock, '--unixsocketperm', '700',
    '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  return p;
}

async function redisUp() {
  redis = startRedis();
  await waitFor(async () => {
    const r = await new Promise((res) => {
      const c = spawn('redis-cli', ['-s', sock, 'ping']);
      let out = '';
      c.stdout.on('data', (d) => { out += d; });
      c.on('exit', () => res(out.trim()));
    });
    return r === 'PONG';
  }, { timeout: 10000, message: 'private redis up' });
}

async function redisDown() {
  const exited = new Promise((r) => redis.on('exit', r));
  redis.kill('SIGKILL');
  await exited;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'x4t-scale-'));
  sock = join(dir, 'redis.sock');
  await redisUp();
  svc = await startServices();
  db = await createDb();
  const env = { REDIS_URL: `unix://${sock}`, LEASE_MS: '1000', RETRY_MAX_ATTEMPTS: '1' };
  const catalog = catalogFor(svc);
  A = await startEngine({ db, env, catalog });
  B = await startEngine({ db, env, catalog });
  key = await createKey(databaseUrl(db), 'alice');
  ca = api(A, key);
  cb = api(B, key);
});

after(async () => {
  for (const e of [A, B]) if (e && !e.exitInfo()) await e.kill('SIGKILL');
  if (redis && redis.exitCode === null) await redisDown();
  await svc?.close();
  if (db) await dropDb(db);
  rmSync(dir, { recursive: true, force: true });
});

const chain = (ms) => ({ steps: [
  step('a', 'slow', { ms }), step('b', 'slow', { ms }, ['a']), step('c', 'echo', { message: ref('b.waited') }, ['b']),
] });

test('a stream on one process sees every event of a workflow another process runs', async () => {
  const { id } = await ready(ca, { input: 'scale out', plan: chain(150) });
  const s = openStream(B, id, { since: 0, key });
  await s.opened;
  await approve(ca, id);
  await s.waitType('workflow.completed', { timeout: 15000 });
  assertGapFree(s.messages);
  const wf = (await ca.get(`/workflows/${id}`)).json.workflow;
  assert.equal(s.messages.at(-1).seq, wf.lastSeq);
  s.close();
});

test('Redis lost mid-run: the workflow completes and the remote stream still gets every event once', async () => {
  const { id } = await ready(ca, { input: 'redis outage', plan: chain(700) });
  const s = openStream(B, id, { since: 0, key });
  await s.opened;
  await approve(ca, id);
  await s.waitType('step.started', { timeout: 10000 });
  await redisDown();
  const done = await waitStatus(ca, id, ['completed'], { timeout: 20000 });
  assert.equal(done.status, 'completed');
  const health = await ca.get('/health');
  assert.equal(health.json.redis, false, 'health reports Redis down');
  assert.equal(health.status, 503);
  await redisUp();
  await s.waitType('workflow.completed', { timeout: 20000 });
  assertGapFree(s.messages);
  assert.equal(s.messages.at(-1).seq, done.lastSeq);
  s.close();
  await waitFor(async () => (await ca.get('/health')).json.redis === true, { timeout: 15000, message: 'redis back' });
});

test('a cancel sent to one process stops the run on the other', async () => {
  const plan = { steps: [step('h', 'hang', {}), step('after', 'echo', { message: 'never' }, ['h'])] };
  const { id } = await ready(ca, { input: 'cancel across processes', plan });
  await approve(ca, id);
  await waitFor(() => svc.calls({ workflowId: id, path: '/hang' }).length === 1, { message: 'hang called' });
  const r = await cb.post(`/workflows/${id}/cancel`);
  assert.equal(r.status, 200, r.text);
  await waitFor(() => svc.calls({ workflowId: id, path: '/hang' })[0].aborted, { timeout: 5000, message: 'A aborted the call' });
  const wf = (await ca.get(`/workflows/${id}`)).json.workflow;
  assert.equal(wf.status, 'cancelled');
  assert.deepEqual(wf.steps.map((x) => x.status), ['failed', 'skipped']);
  assert.equal(svc.calls({ workflowId: id, path: '/echo' }).length, 0);
});

test('a cancel sent to the other process after a step succeeded: it undoes the step, the run stops', async () => {
  const plan = { steps: [step('r', 'reserve', { slot: 'x' }), step('h', 'hang', {}, ['r'])] };
  const { id } = await ready(ca, { input: 'cancel and undo across processes', plan });
  await approve(ca, id);
  await waitFor(() => svc.calls({ workflowId: id, path: '/hang' }).length === 1, { message: 'hang called' });
  const r = await cb.post(`/workflows/${id}/cancel`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.workflow.status, 'compensating');
  await waitFor(() => svc.calls({ workflowId: id, path: '/hang' })[0].aborted, { timeout: 5000, message: 'A aborted the call' });
  const wf = await waitStatus(ca, id, ['cancelled'], { timeout: 15000 });
  assert.equal(wf.steps[0].status, 'compensated');
  const undo = svc.calls({ workflowId: id, path: '/undo' });
  assert.equal(undo.length, 1, 'undone once, by the process that took the cancel');
  assert.equal(undo[0].idempotencyKey, `${id}:r:compensate`);
});

test('kill -9 of the driving process: a live process takes the workflow over', async () => {
  const { id } = await ready(ca, { input: 'takeover', plan: chain(1200) });
  await approve(ca, id);
  await waitFor(() => svc.calls({ workflowId: id, stepId: 'b' }).length === 1, { timeout: 10000, message: 'b started' });
  await A.kill('SIGKILL');
  const done = await waitStatus(cb, id, ['completed'], { timeout: 20000 });
  assert.equal(done.status, 'completed');
  const a = svc.calls({ workflowId: id, stepId: 'a' });
  assert.equal(a.length, 1, 'a succeeded before the crash and never ran again');
  assert.equal(svc.calls({ workflowId: id, stepId: 'c' }).length, 1);
  const b = svc.calls({ workflowId: id, stepId: 'b' });
  assert.ok(b.length >= 2, 'b was interrupted and ran again');
  assert.notEqual(b[0].idempotencyKey ?? b[0].attempt, b.at(-1).idempotencyKey ?? b.at(-1).attempt,
    'the retry carries a new attempt number');
});

test('a graceful stop hands the leases back at once, and another process finishes the work', async () => {
  const { psql } = await import('../lib/harness.mjs');
  const env = { REDIS_URL: `unix://${sock}`, LEASE_MS: '6000', RETRY_MAX_ATTEMPTS: '1' };
  const catalog = catalogFor(svc);
  const C = await startEngine({ db, env, catalog });
  const D = await startEngine({ db, env, catalog });
  try {
    const cc = api(C, key);
    const { id } = await ready(cc, { input: 'rolling restart', plan: chain(1500) });
    await approve(cc, id);
    await waitFor(() => svc.calls({ workflowId: id, stepId: 'b' }).length === 1, { timeout: 10000, message: 'b started' });
    const owner = await psql(`SELECT lease_owner FROM workflows WHERE id = '${id}'`, { db });
    assert.ok(owner, 'leased while running');
    await C.stop();
    const row = await psql(`SELECT lease_owner = '${owner}' AND lease_until > clock_timestamp() FROM workflows WHERE id = '${id}'`, { db });
    assert.equal(row, 'f', 'the stopped process no longer holds a live lease');
    const done = await waitStatus(api(D, key), id, ['completed'], { timeout: 20000 });
    assert.equal(done.status, 'completed');
    assert.equal(svc.calls({ workflowId: id, stepId: 'a' }).length, 1);
  } finally {
    for (const e of [C, D]) if (!e.exitInfo()) await e.kill('SIGKILL');
  }
});
