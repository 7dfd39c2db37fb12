#!/usr/bin/env node
// bench/planner/run.mjs — the planner benchmark: runs `x402r plan --offline --batch` on NesTools
// dev and on T-Eval (../shared/bench/planner) and scores the plans against the ground truth.
//
// Builds nothing: uses $X402R_BIN, else build/x402r. No npm dependencies (node >= 20).
//   node bench/planner/run.mjs                 # full run (750 + 553 tasks), writes RESULTS.md
//   node bench/planner/run.mjs --limit 50      # CI smoke: first 50 tasks of each, no RESULTS.md
//   options: --dataset nestools|teval|all, --write (RESULTS.md even with --limit), --no-write, --json,
//            --dump FILE (every scored task as JSON lines, for error analysis)
//
// Scores, micro-averaged over all tasks of a dataset (a task whose plan failed validation
// counts as an empty plan — the planner's answer was an error):
//   tool P/R/F1     over the multiset of services;
//   edge P/R/F1     over (producing service → consuming service) pairs, one per pair of steps:
//                   NesTools from "$ref":"c<k>.<field>", T-Eval from `prev`; the plan's from
//                   its dependsOn (x4_plan_to_json lists every dependency, explicit or by $ref);
//   literal F1      over (service, parameter, value) for the literal (non-$ref) arguments, values
//                   normalised: strings trimmed and case-folded, numeric strings and numbers as
//                   numbers, arrays/objects element-wise;
//   valid           share of tasks that got a plan passing x4_plan_parse;
//   plans/s         tasks / wall time of the x402r run (catalog load included).
// The "draft" rows score the planner's rejected drafts too (printed by the batch mode beside
// the error): how good the choice was, regardless of validation.
//
// T-Eval: each query's candidate APIs (meta.API_list) form its own catalog, sent inline in the
// batch line ({"id","task","catalog":{"services":[...]}}); api_descrip.json gives the records
// (STRING→string, NUMBER→number, FLOAT→number, BOOLEAN→boolean; return_data → output
// properties). The task is the user message; FinishAction steps are not services and are left
// out of the ground truth (and edges through them are dropped).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const SOURCE_DIR = process.env.X4_SOURCE_DIR || resolve(here, '..', '..');
export const DATA_DIR = process.env.X4_BENCH_DATA || resolve(SOURCE_DIR, '..', 'shared', 'bench', 'planner');
export const BIN = process.env.X402R_BIN || join(SOURCE_DIR, 'build', 'x402r');
const NOTES_MARK = '<!-- notes: kept as they are when run.mjs rewrites the table above -->';

// ---- normalisation and scoring ------------------------------------------------------------

export function normValue(v) {
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (/^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(s)) return 'n:' + Number(s);
    return 's:' + s;
  }
  if (typeof v === 'number') return 'n:' + v;
  if (typeof v === 'boolean') return 'b:' + v;
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return '[' + v.map(normValue).join(',') + ']';
  return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k.toLowerCase()) + ':' + normValue(v[k])).join(',') + '}';
}

const isRef = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && typeof v.$ref === 'string';

// A plan {steps:[{id, service, inputs, dependsOn}]} -> {services, edges, lits} (arrays of keys).
export function fromPlan(plan) {
  const out = { services: [], edges: [], lits: [] };
  const steps = plan?.steps ?? [];
  const svcOf = new Map(steps.map((s) => [s.id, s.service]));
  for (const s of steps) {
    out.services.push(s.service);
    const deps = new Set(s.dependsOn ?? []);
    for (const v of Object.values(s.inputs ?? {})) if (isRef(v)) deps.add(v.$ref.split('.')[0]);
    for (const d of deps) if (svcOf.has(d)) out.edges.push(svcOf.get(d) + '->' + s.service);
    for (const [k, v] of Object.entries(s.inputs ?? {})) if (!isRef(v)) out.lits.push(s.service + '|' + k + '|' + normValue(v));
  }
  return out;
}

// NesTools record {calls:[{service, args}]} with {"$ref":"c<k>.<field>"}.
export function fromNesTools(rec) {
  const out = { services: [], edges: [], lits: [] };
  rec.calls.forEach((c) => {
    out.services.push(c.service);
    const deps = new Set();
    for (const [k, v] of Object.entries(c.args ?? {})) {
      if (isRef(v)) {
        const m = /^c(\d+)\./.exec(v.$ref);
        if (m && rec.calls[+m[1]]) deps.add(+m[1]);
      } else out.lits.push(c.service + '|' + k + '|' + normValue(v));
    }
    for (const d of deps) out.edges.push(rec.calls[d].service + '->' + c.service);
  });
  return out;
}

// T-Eval ground truth [{id, prev, name, args}]; FinishAction left out.
export function fromTEval(gt) {
  const out = { services: [], edges: [], lits: [] };
  const byId = new Map(gt.map((s) => [s.id, s]));
  for (const s of gt) {
    if (s.name === 'FinishAction') continue;
    out.services.push(s.name);
    for (const p of new Set(s.prev ?? [])) {
      const from = byId.get(p);
      if (from && from.name !== 'FinishAction') out.edges.push(from.name + '->' + s.name);
    }
    for (const [k, v] of Object.entries(s.args ?? {})) out.lits.push(s.name + '|' + k + '|' + normValue(v));
  }
  return out;
}

function overlap(a, b) {
  const m = new Map();
  for (const x of a) m.set(x, (m.get(x) ?? 0) + 1);
  let n = 0;
  for (const x of b) {
    const c = m.get(x) ?? 0;
    if (c > 0) {
      n++;
      m.set(x, c - 1);
    }
  }
  return n;
}

export function newTally() {
  const z = () => ({ tp: 0, np: 0, ng: 0 });
  return { tasks: 0, valid: 0, tool: z(), edge: z(), lit: z() };
}

// Adds one task (gold and predicted {services, edges, lits}; pred null = no plan) to a tally.
export function addTask(t, gold, pred, valid) {
  t.tasks++;
  if (valid) t.valid++;
  const p = pred ?? { services: [], edges: [], lits: [] };
  for (const [k, f] of [['tool', 'services'], ['edge', 'edges'], ['lit', 'lits']]) {
    t[k].tp += overlap(gold[f], p[f]);
    t[k].np += p[f].length;
    t[k].ng += gold[f].length;
  }
  return t;
}

export function prf({ tp, np, ng }) {
  const p = np ? tp / np : 0, r = ng ? tp / ng : 0;
  return { p, r, f1: p + r ? (2 * p * r) / (p + r) : 0 };
}

// ---- datasets -----------------------------------------------------------------------------

function loadNesTools(limit) {
  const rows = readFileSync(join(DATA_DIR, 'nestools', 'dev.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const sel = limit ? rows.slice(0, limit) : rows;
  return {
    name: 'NesTools dev',
    catalog: join(DATA_DIR, 'nestools', 'catalog.json'),
    services: 3034,
    tasks: sel.map((r) => ({ id: r.id, line: { id: r.id, task: r.task }, gold: fromNesTools(r) })),
  };
}

const TYPES = { STRING: 'string', NUMBER: 'number', FLOAT: 'number', BOOLEAN: 'boolean', INTEGER: 'integer' };

export function tevalRecords(apiDescrip) {
  const recs = new Map();
  for (const tool of apiDescrip) {
    for (const api of tool.api_list ?? []) {
      const id = tool.name + '.' + api.name;
      const props = {}, required = [], outProps = {};
      for (const [list, req] of [[api.required_parameters ?? [], true], [api.optional_parameters ?? [], false]]) {
        for (const p of list) {
          props[p.name] = { type: TYPES[p.type] ?? 'string', description: p.description ?? '' };
          if (req) required.push(p.name);
        }
      }
      for (const r of api.return_data ?? []) outProps[r.name] = { description: r.description ?? '' };
      recs.set(id, {
        id, name: id, description: (api.description ?? '') + ' (' + (tool.tool_description ?? tool.name) + ')',
        input: { type: 'object', properties: props, required },
        output: { type: 'object', properties: outProps },
      });
    }
  }
  return recs;
}

function loadTEval(limit) {
  const d = JSON.parse(readFileSync(join(DATA_DIR, 't-eval', 'plan_json_v1.json'), 'utf8'));
  const recs = tevalRecords(JSON.parse(readFileSync(join(DATA_DIR, 't-eval', 'api_descrip.json'), 'utf8')));
  let keys = Object.keys(d);
  if (limit) keys = keys.slice(0, limit);
  return {
    name: 'T-Eval',
    catalog: null,
    services: recs.size,
    tasks: keys.map((k) => {
      const q = d[k];
      const user = q.origin_prompt.filter((m) => m.role === 'user').map((m) => m.content).join('\n');
      const services = q.meta.API_list.map((a) => recs.get(a)).filter(Boolean);
      return { id: k, line: { id: k, task: user, catalog: { services } }, gold: fromTEval(q.ground_truth) };
    }),
  };
}

// ---- running ------------------------------------------------------------------------------

function runBatch(ds, tmp) {
  const inFile = join(tmp, ds.name.replace(/\W+/g, '_') + '.jsonl');
  writeFileSync(inFile, ds.tasks.map((t) => JSON.stringify(t.line)).join('\n') + '\n');
  let catalog = ds.catalog;
  if (!catalog) {
    catalog = join(tmp, 'empty-catalog.json'); // every line carries its own catalog
    writeFileSync(catalog, '{"services":[]}');
  }
  const t0 = process.hrtime.bigint();
  // the shipped policies (policies/matching.lua) unless POLICY_DIR says otherwise
  const r = spawnSync(BIN, ['plan', '--catalog', catalog, '--offline', '--batch', inFile], {
    encoding: 'utf8', maxBuffer: 1 << 28,
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'error',
           POLICY_DIR: process.env.POLICY_DIR ?? join(SOURCE_DIR, 'policies') },
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`x402r plan exited ${r.status}: ${r.stderr}`);
  const byId = new Map();
  for (const l of r.stdout.split('\n')) {
    if (!l.trim()) continue;
    const o = JSON.parse(l);
    byId.set(o.id, o);
  }
  return { byId, secs };
}

export function scoreRun(ds, byId, dump) {
  const strict = newTally(), draft = newTally();
  for (const t of ds.tasks) {
    const o = byId.get(t.id);
    const plan = o?.plan ? fromPlan(o.plan) : null;
    const dr = o?.plan ? plan : o?.draft ? fromPlan(o.draft) : null;
    addTask(strict, t.gold, plan, !!plan);
    addTask(draft, t.gold, dr, !!plan);
    if (dump) dump.push({ id: t.id, task: t.line.task, gold: t.gold, pred: dr, error: o?.error });
  }
  return { strict, draft };
}

const pct = (x) => x.toFixed(3);

function table(rows) {
  const head = '| dataset | mode | tasks | valid | tool P | tool R | tool F1 | edge P | edge R | edge F1 | literal P | literal R | literal F1 | plans/s |';
  const sep = '|' + head.split('|').slice(1, -1).map(() => '---').join('|') + '|';
  const lines = rows.map((x) => {
    const tool = prf(x.t.tool), edge = prf(x.t.edge), lit = prf(x.t.lit);
    return `| ${x.ds} | ${x.mode} | ${x.t.tasks} | ${pct(x.t.valid / (x.t.tasks || 1))} | ${pct(tool.p)} | ${pct(tool.r)} | **${pct(tool.f1)}** | ${pct(edge.p)} | ${pct(edge.r)} | **${pct(edge.f1)}** | ${pct(lit.p)} | ${pct(lit.r)} | **${pct(lit.f1)}** | ${x.pps} |`;
  });
  return [head, sep, ...lines].join('\n');
}

function machine() {
  const model = cpus()[0]?.model ?? 'unknown';
  let nproc = cpus().length;
  const r = spawnSync('nproc', [], { encoding: 'utf8' });
  if (r.status === 0) nproc = +r.stdout.trim();
  return `${nproc} × ${model}; ${new Date().toISOString().slice(0, 10)}; node ${process.version}`;
}

async function main() {
  const args = process.argv.slice(2);
  const opt = (n) => { const i = args.indexOf(n); return i >= 0 ? args[i + 1] : undefined; };
  const limit = opt('--limit') ? +opt('--limit') : 0;
  const which = opt('--dataset') ?? 'all';
  const dumpFile = opt('--dump');
  if (!existsSync(BIN)) {
    console.error(`x402r binary not found: ${BIN} (build it, or set X402R_BIN)`);
    process.exit(2);
  }
  const sets = [];
  if (which === 'all' || which === 'nestools') sets.push(loadNesTools(limit));
  if (which === 'all' || which === 'teval') sets.push(loadTEval(limit));
  const tmp = mkdtempSync(join(tmpdir(), 'x4-bench-planner-'));
  const rows = [], dump = dumpFile ? [] : null, json = {};
  try {
    for (const ds of sets) {
      const { byId, secs } = runBatch(ds, tmp);
      const { strict, draft } = scoreRun(ds, byId, dump);
      const pps = (ds.tasks.length / secs).toFixed(0);
      rows.push({ ds: ds.name, mode: 'offline', t: strict, pps });
      rows.push({ ds: ds.name, mode: 'offline (drafts too)', t: draft, pps });
      json[ds.name] = { tasks: strict.tasks, valid: strict.valid / (strict.tasks || 1), seconds: secs,
        tool: prf(strict.tool), edge: prf(strict.edge), literal: prf(strict.lit),
        draft: { tool: prf(draft.tool), edge: prf(draft.edge), literal: prf(draft.lit) } };
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const out = table(rows);
  if (args.includes('--json')) console.log(JSON.stringify(json, null, 2));
  else console.log(out);
  if (dump) writeFileSync(dumpFile, dump.map((d) => JSON.stringify(d)).join('\n') + '\n');
  if ((!limit || args.includes('--write')) && !args.includes('--no-write')) {
    // the hand-written notes after NOTES_MARK (the cache table, what was found) are kept
    const file = join(here, 'RESULTS.md');
    const old = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const notes = old.includes(NOTES_MARK) ? old.slice(old.indexOf(NOTES_MARK)) : NOTES_MARK + '\n';
    const md = `# Planner benchmark results\n\nGenerated by \`node bench/planner/run.mjs\` (see README.md for what is measured).\n\n` +
      `Machine: ${machine()}.\n\n${out}\n\nTargets (offline, NesTools dev): tool F1 ≥ 0.80, edge F1 ≥ 0.60, literal F1 ≥ 0.50.\n\n` + notes;
    writeFileSync(file, md);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((e) => {
    console.error(e.stack || String(e));
    process.exit(1);
  });
}
