// steps_batch.test.mjs — x4_steps_update (sql/094_steps_batch.sql), the scheduler's batched step
// write, called directly: one batch takes contiguous seqs in its order; a stale lease writes
// nothing; a terminal step refuses the whole batch; a step that does not exist is left out
// without a gap. The workflow row takes one new version per batch, not one per transition.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setup, psql } from '../lib/harness.mjs';

let ctx;
let q;
let n = 0;

before(async () => {
  ctx = await setup({ users: ['alice'] });
  q = (sql) => psql(sql, { db: ctx.db });
});
after(async () => { await ctx?.teardown(); });

const PLAN = '{"steps":[{"id":"a","service":"echo","inputs":{},"dependsOn":[]},' +
  '{"id":"b","service":"echo","inputs":{},"dependsOn":["a"]},{"id":"c","service":"echo","inputs":{},"dependsOn":["a"]}]}';

async function executing() {
  const wf = `wf_batch_${Date.now()}_${n++}`;
  await q(`SELECT count(*) FROM x4_wf_create_approved('${wf}', 'alice', 'batch', NULL, NULL, 'owner-t', 60000,
           '${PLAN}'::jsonb, 0, 'MINT', 0, NULL)`);
  return wf;
}
const batch = (...t) => `'${JSON.stringify(t)}'::jsonb`;
const tr = (step, status, type, extra = {}) => ({ step, status, attempts: 1, type, data: { stepId: step }, ...extra });
const lastSeq = async (wf) => Number(await q(`SELECT last_seq FROM workflows WHERE id = '${wf}'`));

test('one batch: contiguous seqs in batch order, steps updated, outputs stored', async () => {
  const wf = await executing();
  const s0 = await lastSeq(wf);
  await q(`SELECT count(*) FROM x4_steps_update('${wf}', 'owner-t', ${batch(tr('a', 'running', 'step.started'))})`);
  const rows = (await q(`SELECT seq || ':' || type FROM x4_steps_update('${wf}', 'owner-t', ${batch(
    tr('a', 'succeeded', 'step.completed', { output: { x: 1 } }), tr('b', 'running', 'step.started'),
    tr('c', 'running', 'step.started'))})`)).split('\n');
  assert.deepEqual(rows, [`${s0 + 2}:step.completed`, `${s0 + 3}:step.started`, `${s0 + 4}:step.started`]);
  assert.equal(await lastSeq(wf), s0 + 4);
  assert.equal(await q(`SELECT string_agg(id || '=' || status, ',' ORDER BY idx) FROM steps WHERE workflow_id = '${wf}'`),
    'a=succeeded,b=running,c=running');
  assert.equal(await q(`SELECT output::text FROM steps WHERE workflow_id = '${wf}' AND id = 'a'`), '{"x": 1}');
  assert.equal(await q(`SELECT data->>'stepId' FROM events WHERE workflow_id = '${wf}' AND seq = ${s0 + 3}`), 'b');
  assert.equal(await q(`SELECT count(*) FROM steps WHERE workflow_id = '${wf}' AND started_at IS NOT NULL`), '3');
});

test('a stale lease or a workflow not executing writes nothing', async () => {
  const wf = await executing();
  const s0 = await lastSeq(wf);
  assert.equal(await q(`SELECT count(*) FROM x4_steps_update('${wf}', 'someone-else', ${batch(tr('a', 'running', 'step.started'))})`), '0');
  assert.equal(await lastSeq(wf), s0);
  assert.equal(await q(`SELECT status FROM steps WHERE workflow_id = '${wf}' AND id = 'a'`), 'pending');
});

test('a terminal step refuses the whole batch: nothing of it is stored', async () => {
  const wf = await executing();
  await q(`SELECT count(*) FROM x4_steps_update('${wf}', 'owner-t', ${batch(tr('a', 'running', 'step.started'))})`);
  await q(`SELECT count(*) FROM x4_steps_update('${wf}', 'owner-t', ${batch(tr('a', 'succeeded', 'step.completed', { output: 1 }))})`);
  const s0 = await lastSeq(wf);
  await assert.rejects(q(`SELECT count(*) FROM x4_steps_update('${wf}', 'owner-t', ${batch(
    tr('b', 'running', 'step.started'), tr('a', 'failed', 'step.failed', { error: 'late' }))})`),
  /step a of .* is already succeeded and cannot become failed/);
  assert.equal(await lastSeq(wf), s0);
  assert.equal(await q(`SELECT status FROM steps WHERE workflow_id = '${wf}' AND id = 'b'`), 'pending');
  assert.equal(await q(`SELECT count(*) FROM events WHERE workflow_id = '${wf}' AND seq > ${s0}`), '0');
});

test('a step that does not exist is left out, and the seqs stay gap-free', async () => {
  const wf = await executing();
  const s0 = await lastSeq(wf);
  const rows = (await q(`SELECT seq || ':' || (data->>'stepId') FROM x4_steps_update('${wf}', 'owner-t', ${batch(
    tr('zz', 'running', 'step.started'), tr('a', 'running', 'step.started'))})`)).split('\n');
  assert.deepEqual(rows, [`${s0 + 1}:a`]);
  assert.equal(await lastSeq(wf), s0 + 1);
  assert.equal(await q(`SELECT count(*) FROM x4_steps_update('${wf}', 'owner-t', ${batch(tr('zz', 'running', 'step.started'))})`), '0');
  assert.equal(await lastSeq(wf), s0 + 1);
  const seqs = (await q(`SELECT string_agg(seq::text, ',' ORDER BY seq) FROM events WHERE workflow_id = '${wf}'`)).split(',').map(Number);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), 'gap-free from 1');
});

test('x4_step_finish: the last success and the completion, seqs in order, lease handed back', async () => {
  const wf = await executing();
  await q(`SELECT count(*) FROM x4_steps_update('${wf}', 'owner-t', ${batch(tr('a', 'running', 'step.started'))})`);
  await q(`SELECT count(*) FROM x4_steps_update('${wf}', 'owner-t', ${batch(
    tr('a', 'succeeded', 'step.completed', { output: 1 }), tr('b', 'running', 'step.started'), tr('c', 'running', 'step.started'))})`);
  await q(`SELECT count(*) FROM x4_steps_update('${wf}', 'owner-t', ${batch(tr('b', 'succeeded', 'step.completed', { output: 2 }))})`);
  const s0 = await lastSeq(wf);
  assert.equal(await q(`SELECT count(*) FROM x4_step_finish('${wf}', 'stale', 'c', 1, '3', '{}', '{"c":3}', '{}')`), '0');
  const rows = (await q(`SELECT seq || ':' || type || ':' || COALESCE(data->'totalCost'->>'atomic', '') FROM x4_step_finish('${wf}', 'owner-t', 'c', 1,
    '3', '{"stepId":"c"}', '{"c":3}', '{"output":{"c":3}}')`)).split('\n');
  assert.deepEqual(rows, [`${s0 + 1}:step.completed:`, `${s0 + 2}:workflow.completed:0`]);
  assert.equal(await q(`SELECT status || ',' || COALESCE(lease_owner, '-') || ',' || output::text FROM workflows WHERE id = '${wf}'`),
    'completed,-,{"c": 3}');
  assert.equal(await q(`SELECT status || ',' || output::text FROM steps WHERE workflow_id = '${wf}' AND id = 'c'`), 'succeeded,3');
  assert.equal(await q(`SELECT data->'released'->>'atomic' FROM events WHERE workflow_id = '${wf}' AND seq = ${s0 + 2}`), '0');
  assert.equal(await q(`SELECT count(*) FROM x4_step_finish('${wf}', 'owner-t', 'c', 1, '3', '{}', '{}', '{}')`), '0',
    'a finished workflow does not finish again');
});

test('create with approve may store only root steps as started, each once, with its event', async () => {
  const wf = `wf_batch_roots_${Date.now()}`;
  await assert.rejects(q(`SELECT count(*) FROM x4_wf_create_approved('${wf}', 'alice', 'x', NULL, NULL, 'owner-t', 60000,
           '${PLAN}'::jsonb, 0, 'MINT', 0, NULL, '{b}')`), /only steps without dependencies can start at creation/);
  assert.equal(await q(`SELECT count(*) FROM workflows WHERE id = '${wf}'`), '0', 'nothing stored');
  const rows = (await q(`SELECT seq || ':' || type || ':' || COALESCE(data->>'stepId', '') FROM x4_wf_create_approved('${wf}',
           'alice', 'x', NULL, NULL, 'owner-t', 60000, '${PLAN}'::jsonb, 0, 'MINT', 0, NULL, '{a}')`)).split('\n');
  assert.deepEqual(rows, ['1:workflow.planning:', '2:workflow.plan_ready:', '3:workflow.approved:',
    '4:workflow.executing:', '5:step.started:a']);
  assert.equal(await q(`SELECT string_agg(id || '=' || status || '/' || attempts, ',' ORDER BY idx) FROM steps WHERE workflow_id = '${wf}'`),
    'a=running/1,b=pending/0,c=pending/0');
  assert.equal(await lastSeq(wf), 5);
});

test("x4_sched_write_group: several workflows in one transaction, each one's rows contiguous; a stale lease contributes none; a bad write rolls back the group", async () => {
  const [w1, w2, w3, w4] = [await executing(), await executing(), await executing(), await executing()];
  const s1 = await lastSeq(w1), s2 = await lastSeq(w2);
  await q(`UPDATE workflows SET lease_owner = 'someone-else' WHERE id = '${w3}'`);
  // w4: a and b succeeded, c running — its item is the finish (c's success and the completion)
  await q(`SELECT count(*) FROM x4_steps_update('${w4}', 'owner-t', ${batch(tr('a', 'running', 'step.started'))})`);
  await q(`SELECT count(*) FROM x4_steps_update('${w4}', 'owner-t', ${batch(tr('a', 'succeeded', 'step.completed', { output: 1 }),
    tr('b', 'running', 'step.started'), tr('c', 'running', 'step.started'))})`);
  await q(`SELECT count(*) FROM x4_steps_update('${w4}', 'owner-t', ${batch(tr('b', 'succeeded', 'step.completed', { output: 2 }))})`);
  const s4 = await lastSeq(w4);
  const arr = (...ids) => `'{${ids.map((i) => `"${i}"`).join(',')}}'::text[]`;
  const group = (...items) => `'${JSON.stringify(items)}'::jsonb`;
  const fin = { step: 'c', attempts: 1, output: 3, data: { stepId: 'c' }, wfOutput: { c: 3 }, wfData: { output: { c: 3 } } };
  const rows = (await q(`SELECT workflow_id || ':' || seq || ':' || type || ':' || COALESCE(data->>'stepId', '')
    FROM x4_sched_write_group('owner-t', ${arr(w2, w3, w4, w1)}, ${group(
    [tr('a', 'running', 'step.started'), tr('b', 'running', 'step.started')],
    [tr('a', 'running', 'step.started')], fin, [tr('c', 'running', 'step.started')])})`)).split('\n');
  // batches in the order given, then the finishes (ordered by user: the balance row locks)
  assert.deepEqual(rows, [`${w2}:${s2 + 1}:step.started:a`, `${w2}:${s2 + 2}:step.started:b`,
    `${w1}:${s1 + 1}:step.started:c`, `${w4}:${s4 + 1}:step.completed:c`, `${w4}:${s4 + 2}:workflow.completed:`]);
  assert.equal(await q(`SELECT status FROM steps WHERE workflow_id = '${w3}' AND id = 'a'`), 'pending', 'fenced: nothing stored');
  assert.equal(await q(`SELECT status || ',' || output::text FROM workflows WHERE id = '${w4}'`), 'completed,{"c": 3}');
  // a terminal step in one write: the whole group rolls back, the good write included
  await q(`SELECT count(*) FROM x4_steps_update('${w1}', 'owner-t', ${batch(tr('c', 'succeeded', 'step.completed', { output: 1 }))})`);
  const t1 = await lastSeq(w1), t2 = await lastSeq(w2);
  await assert.rejects(q(`SELECT count(*) FROM x4_sched_write_group('owner-t', ${arr(w2, w1)}, ${group(
    [tr('c', 'running', 'step.started')], [tr('c', 'failed', 'step.failed', { error: 'late' })])})`),
  /step c of .* is already succeeded and cannot become failed/);
  assert.equal(await lastSeq(w2), t2);
  assert.equal(await lastSeq(w1), t1);
  assert.equal(await q(`SELECT status FROM steps WHERE workflow_id = '${w2}' AND id = 'c'`), 'pending');
  await assert.rejects(q(`SELECT count(*) FROM x4_sched_write_group('owner-t', ${arr(w1)}, '[]'::jsonb)`), /1 workflows, 0 items/);
  await assert.rejects(q(`SELECT count(*) FROM x4_sched_write_group('owner-t', ${arr(w1)}, '[1]'::jsonb)`), /neither a batch nor a finish/);
});
