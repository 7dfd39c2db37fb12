// tests/integration/bench_planner.test.mjs — the planner benchmark (bench/planner/run.mjs): the
// scorer on hand-made cases (a perfect plan scores 1.0, an empty plan 0), and the CI smoke run
// (--limit) produces numbers. It asserts nothing about the scores' size: those go to RESULTS.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, SOURCE_DIR } from '../lib/harness.mjs';

const bench = await import(join(SOURCE_DIR, 'bench/planner/run.mjs'));

const gold = {
  calls: [
    { service: 'scan_isbn', args: { isbn: '978-3-16-148410-0' } },
    { service: 'locate_book', args: { book_info: { $ref: 'c0.book_details' }, floor: 2 } },
  ],
};
const perfect = {
  steps: [
    { id: 's1', service: 'scan_isbn', inputs: { isbn: ' 978-3-16-148410-0 ' }, dependsOn: [] },
    { id: 's2', service: 'locate_book', inputs: { book_info: { $ref: 's1.book_details' }, floor: '2' }, dependsOn: ['s1'] },
  ],
};

test('scorer: a perfect plan scores 1.0, an empty plan 0', () => {
  const g = bench.fromNesTools(gold);
  assert.deepEqual(g.edges, ['scan_isbn->locate_book']);
  const t = bench.addTask(bench.newTally(), g, bench.fromPlan(perfect), true);
  for (const k of ['tool', 'edge', 'lit']) assert.equal(bench.prf(t[k]).f1, 1, k);
  const e = bench.addTask(bench.newTally(), g, null, false);
  for (const k of ['tool', 'edge', 'lit']) assert.equal(bench.prf(e[k]).f1, 0, k);
  // a wrong literal costs literal precision and recall, not tools
  const wrong = structuredClone(perfect);
  wrong.steps[0].inputs.isbn = '123';
  const w = bench.addTask(bench.newTally(), g, bench.fromPlan(wrong), true);
  assert.equal(bench.prf(w.tool).f1, 1);
  assert.equal(bench.prf(w.lit).f1, 0.5);
});

test('scorer: T-Eval ground truth leaves FinishAction out', () => {
  const g = bench.fromTEval([
    { id: 0, prev: [], name: 'A.x', args: { q: 'Berlin' } },
    { id: 1, prev: [0], name: 'B.y', args: {} },
    { id: 2, prev: [1], name: 'FinishAction', args: {} },
  ]);
  assert.deepEqual(g.services, ['A.x', 'B.y']);
  assert.deepEqual(g.edges, ['A.x->B.y']);
  assert.deepEqual(g.lits, ['A.x|q|s:berlin']);
});

const data = join(SOURCE_DIR, '..', 'shared', 'bench', 'planner', 'nestools', 'dev.jsonl');
test('smoke run produces numbers', { skip: !existsSync(BIN) || !existsSync(data) ? 'binary or data absent' : false }, () => {
  const r = spawnSync('node', [join(SOURCE_DIR, 'bench/planner/run.mjs'), '--limit', '20', '--json'],
    { encoding: 'utf8', env: { ...process.env, X402R_BIN: BIN }, timeout: 120000 });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  for (const ds of ['NesTools dev', 'T-Eval']) {
    assert.equal(j[ds].tasks, 20);
    for (const k of ['tool', 'edge', 'literal']) assert.ok(Number.isFinite(j[ds][k].f1) && j[ds][k].f1 >= 0 && j[ds][k].f1 <= 1);
    assert.ok(j[ds].draft.tool.f1 > 0, 'the smoke run planned something');
  }
});
