// dispatch.test.mjs — when a dependent's request goes out (DISPATCH, exec/sched.c): with
// `eager` beside the commit of the success that made it ready and of its own `running`, its
// answer acted on only once they have landed; with `durable` after that commit. The commit is
// held back by another session locking the workflow row while a's answer is being stored.
// Also: when that commit is refused (the lease moved on), the answers of the calls made
// beside it are dropped, and whoever resumes the workflow calls them again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, psql, sleep, waitFor, waitStatus, createWorkflow } from '../lib/harness.mjs';

const contexts = [];
after(async () => { for (const c of contexts) await c.teardown(); });

// a (slow, 600 ms) → b, c (echo) → d (echo)
const PLAN = {
  steps: [
    { id: 'a', service: 'slow', inputs: { ms: 600 }, dependsOn: [] },
    { id: 'b', service: 'echo', inputs: { message: 'b' }, dependsOn: ['a'] },
    { id: 'c', service: 'echo', inputs: { message: 'c' }, dependsOn: ['a'] },
    { id: 'd', service: 'echo', inputs: { message: { $ref: 'b.echo' } }, dependsOn: ['b', 'c'] },
  ],
};

async function start(env) {
  const ctx = await setup({ users: ['alice'], env: { RATE_LIMIT_PER_MIN: '0', ...env } });
  contexts.push(ctx);
  const q = (sql) => psql(sql, { db: ctx.db });
  return { ctx, q };
}

const statuses = (q, id) => q(`SELECT string_agg(id || '=' || status, ',' ORDER BY id) FROM steps WHERE workflow_id = '${id}'`);

// Starts the workflow and, once a's call has reached the service, locks the workflow row in
// another session for `holdMs` (running extra(id)'s SQL inside that transaction first). Returns
// the workflow id and the promise of that session's end.
async function startLocked(ctx, q, holdMs, extra = () => '') {
  const id = await createWorkflow(ctx.client, { input: 'dispatch test', plan: PLAN, approve: true });
  await waitFor(() => ctx.svc.calls({ workflowId: id, stepId: 'a' }).length === 1, { message: "a's call" });
  const lock = q(`BEGIN; SELECT 1 FROM workflows WHERE id = '${id}' FOR UPDATE; ${extra(id)}
                  SELECT pg_sleep(${holdMs / 1000}); COMMIT;`);
  let released = false;
  lock.then(() => { released = true; }, () => { released = true; });
  return { id, lock, isLocked: () => !released };
}

function assertOrdered(events) {
  const seqs = events.map((e) => e.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), 'gap-free');
  for (const s of ['a', 'b', 'c', 'd']) {
    const started = events.findIndex((e) => e.type === 'step.started' && e.data.stepId === s);
    const done = events.findIndex((e) => e.type === 'step.completed' && e.data.stepId === s);
    assert.ok(started >= 0 && done > started, `${s}: step.started before step.completed`);
  }
}

async function events(q, id) {
  const text = await q(`SELECT json_agg(json_build_object('seq', seq, 'type', type, 'data', data) ORDER BY seq) FROM events
                        WHERE workflow_id = '${id}'`);
  return JSON.parse(text);
}

test('eager: the dependents are called while the success that made them ready is being committed; their answers wait for it', async () => {
  const { ctx, q } = await start({}); // eager is the default
  const { id, lock, isLocked } = await startLocked(ctx, q, 2500);
  // a answers after 600 ms; its success (and b's and c's running) wait on the lock, b and c do not
  await waitFor(() => ctx.svc.calls({ workflowId: id, stepId: 'b' }).length === 1 &&
    ctx.svc.calls({ workflowId: id, stepId: 'c' }).length === 1, { timeout: 2000, message: 'b and c called' });
  assert.ok(isLocked(), 'b and c were called while the write was held back');
  await sleep(300); // b and c have answered by now: nothing of theirs may be stored or acted on
  assert.ok(isLocked());
  assert.equal(await statuses(q, id), 'a=running,b=pending,c=pending,d=pending');
  assert.equal(ctx.svc.calls({ workflowId: id, stepId: 'd' }).length, 0, 'd waits for b and c to be stored');
  await lock;
  await waitStatus(ctx.client, id, ['completed']);
  assert.equal(await statuses(q, id), 'a=succeeded,b=succeeded,c=succeeded,d=succeeded');
  for (const s of ['a', 'b', 'c', 'd']) assert.equal(ctx.svc.calls({ workflowId: id, stepId: s }).length, 1, `${s} called once`);
  const d = ctx.svc.calls({ workflowId: id, stepId: 'd' })[0];
  assert.deepEqual(d.body, { message: { message: 'b' } }, "d got b's output");
  assertOrdered(await events(q, id));
});

test('durable: no dependent is called before the success that made it ready has committed', async () => {
  const { ctx, q } = await start({ DISPATCH: 'durable' });
  const { id, lock, isLocked } = await startLocked(ctx, q, 1800);
  await sleep(1200); // a has answered (600 ms); its write waits on the lock
  assert.ok(isLocked());
  assert.equal(ctx.svc.calls({ workflowId: id, stepId: 'b' }).length, 0, 'b not called while a is not stored');
  assert.equal(ctx.svc.calls({ workflowId: id, stepId: 'c' }).length, 0);
  await lock;
  await waitStatus(ctx.client, id, ['completed']);
  for (const s of ['a', 'b', 'c', 'd']) assert.equal(ctx.svc.calls({ workflowId: id, stepId: s }).length, 1, `${s} called once`);
  assertOrdered(await events(q, id));
});

test('eager: a refused commit drops the answers of the calls made beside it; the workflow resumes and calls them again', async () => {
  const { ctx, q } = await start({ LEASE_MS: '1000' });
  // inside the lock, the lease moves to a process that is gone, until 0.5 s after the lock ends:
  // the held-back write is then refused by its fence, and once that lease has expired this
  // engine takes the workflow over as any other
  const { id, lock } = await startLocked(ctx, q, 1500,
    (wid) => `UPDATE workflows SET lease_owner = 'gone-process', lease_until = clock_timestamp() + interval '2 seconds'
              WHERE id = '${wid}';`);
  await waitFor(() => ctx.svc.calls({ workflowId: id, stepId: 'b' }).length >= 1 &&
    ctx.svc.calls({ workflowId: id, stepId: 'c' }).length >= 1, { timeout: 2000, message: 'b and c called' });
  await lock;
  await waitStatus(ctx.client, id, ['completed'], { timeout: 20000 });
  assert.equal(await statuses(q, id), 'a=succeeded,b=succeeded,c=succeeded,d=succeeded');
  // the first answers of a, b and c were never stored: the resumed run called them again
  assert.equal(ctx.svc.calls({ workflowId: id, stepId: 'a' }).length, 2);
  assert.equal(ctx.svc.calls({ workflowId: id, stepId: 'b' }).length, 2);
  assert.equal(ctx.svc.calls({ workflowId: id, stepId: 'c' }).length, 2);
  assert.equal(ctx.svc.calls({ workflowId: id, stepId: 'd' }).length, 1);
  const evs = await events(q, id);
  assertOrdered(evs);
  for (const s of ['b', 'c']) {
    assert.equal(evs.filter((e) => e.type === 'step.completed' && e.data.stepId === s).length, 1, `${s} completed once`);
    assert.equal(evs.filter((e) => e.type === 'step.started' && e.data.stepId === s).length, 1,
      `${s} started once: the refused batch stored nothing`);
  }
});

test("one loop turn's writes of several workflows share a transaction; a refused group is written batch by batch, so one bad batch fails only its own workflow", async () => {
  const { ctx, q } = await start({});
  let grouped = false;
  for (let attempt = 0; attempt < 10 && !grouped; attempt++) {
    const key = `grp-${attempt}-${Date.now()}`;
    const plan = { steps: [
      { id: 'a', service: 'barrier', inputs: { key, n: 8 }, dependsOn: [] },
      { id: 'b', service: 'echo', inputs: { message: { $ref: 'a.released' } }, dependsOn: ['a'] },
    ] };
    const w1 = await createWorkflow(ctx.client, { input: 'group test bad', plan, approve: true });
    await waitFor(() => ctx.svc.calls({ workflowId: w1, stepId: 'a' }).length === 1, { message: "w1's a called" });
    // w1's a is ended behind the engine's back: its success can no longer be stored
    await q(`UPDATE steps SET status = 'failed', error = 'ended elsewhere' WHERE workflow_id = '${w1}' AND id = 'a'`);
    const before = ctx.engine.stderr().length;
    // seven more release the barrier: the eight answers arrive together and are flushed in one
    // turn (or a few: a slow build reads them over several), their writes grouped
    const good = [];
    for (let k = 0; k < 7; k++) good.push(await createWorkflow(ctx.client, { input: `group test ${k}`, plan, approve: true }));
    for (const w of good) {
      await waitStatus(ctx.client, w, ['completed']);
      assert.equal(await statuses(q, w), 'a=succeeded,b=succeeded', 'a good write is stored, grouped or on its own');
    }
    await waitFor(async () => ctx.engine.stderr().slice(before).includes(`${w1}: step write failed`),
      { message: "w1's write refused, its run dropped" });
    // nothing of w1's batch was stored: no success of a, no start of b (the lease cycle may
    // since have resumed w1 and skipped b, the workflow having failed)
    assert.match(await statuses(q, w1), /^a=failed,b=(pending|skipped)$/);
    assert.equal(await q(`SELECT count(*) FROM events WHERE workflow_id = '${w1}' AND (type = 'step.started' AND data->>'stepId' = 'b'
                          OR type = 'step.completed')`), '0', "nothing of w1's batch was stored");
    grouped = /a grouped step write of [2-8] workflows failed/.test(ctx.engine.stderr().slice(before));
  }
  assert.ok(grouped, "the bad write was in a group at least once in 10 tries (answers flushed in one loop turn)");
});
