// openapi.test.mjs — docs/openapi.yaml is a valid OpenAPI 3.1 document, and a live engine's
// answers match it: every JSON body is validated (ajv, JSON Schema 2020-12) against the schema
// the document gives for that route + status code, every WebSocket event against EventEnvelope
// and its per-type data schema. A mismatch fails with ajv's errors and the offending body.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { validate as validateOpenApi, compileErrors } from '@readme/openapi-parser';
import {
  SOURCE_DIR, setup, api, ready, runPlan, waitStatus, waitFor, openStream, assertGapFree, step, ref,
  createKey, startEngine, rawHttp, httpRequest, sleep,
} from '../lib/harness.mjs';

const DOC_PATH = join(SOURCE_DIR, 'docs', 'openapi.yaml');
const DOC_ID = 'https://x402r.local/openapi.yaml';

// ---------------------------------------------------------------------------------------------
// The document

function loadDoc() {
  const parsed = YAML.parseDocument(readFileSync(DOC_PATH, 'utf8'), { uniqueKeys: true, prettyErrors: true });
  if (parsed.errors.length) throw new Error(`docs/openapi.yaml does not parse:\n${parsed.errors.join('\n')}`);
  if (parsed.warnings.length) throw new Error(`docs/openapi.yaml parses with warnings:\n${parsed.warnings.join('\n')}`);
  return parsed.toJS({ maxAliasCount: -1 });
}

const doc = loadDoc();

// ajv over the whole document: schemas are addressed by JSON pointer into it, so the `$ref`s
// between components resolve exactly as an OpenAPI tool resolves them.
const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false, strictRequired: false });
addFormats(ajv);
// The OpenAPI 3.1 base dialect's own keywords (annotations for validation purposes).
ajv.addVocabulary(['example', 'discriminator', 'xml', 'externalDocs']);
// The document's top-level fields are not schema keywords; declared so strict mode accepts the
// root (only subschemas reached by pointer are ever compiled).
ajv.addVocabulary(['openapi', 'info', 'servers', 'paths', 'components', 'security', 'tags', 'webhooks']);
const root = { ...doc, $id: DOC_ID };
delete root.jsonSchemaDialect; // the OpenAPI base dialect: JSON Schema 2020-12 + the keywords above
ajv.addSchema(root);

const esc = (s) => s.replace(/~/g, '~0').replace(/\//g, '~1');
const ptr = (...parts) => '/' + parts.map((p) => esc(String(p))).join('/');

function at(pointer) {
  let x = doc;
  for (const p of pointer.split('/').slice(1)) {
    const k = p.replace(/~1/g, '/').replace(/~0/g, '~');
    if (x === undefined || x === null) return undefined;
    x = x[k];
  }
  return x;
}

// The pointer of an object, following one `$ref` to a component if it is one.
function deref(pointer) {
  const o = at(pointer);
  if (o && typeof o.$ref === 'string') {
    assert.ok(o.$ref.startsWith('#/'), `only local $refs are used: ${o.$ref}`);
    return deref(o.$ref.slice(1));
  }
  return pointer;
}

const compiled = new Map();
function validatorAt(pointer) {
  if (!compiled.has(pointer)) {
    const v = ajv.getSchema(`${DOC_ID}#${pointer}`);
    assert.ok(v, `no schema at ${pointer}`);
    compiled.set(pointer, v);
  }
  return compiled.get(pointer);
}

const schemaPtr = (name) => ptr('components', 'schemas', name);

function check(pointer, value, what) {
  const v = validatorAt(pointer);
  if (!v(value)) {
    assert.fail(`${what} does not match ${pointer}:\n` +
      `${ajv.errorsText(v.errors, { separator: '\n' })}\n` +
      `ajv errors: ${JSON.stringify(v.errors, null, 1).slice(0, 4000)}\n` +
      `value: ${JSON.stringify(value).slice(0, 4000)}`);
  }
}

// Where the document puts the schema of `method path` answering `status` as `mediaType`.
function responseSchemaPtr(method, path, status, mediaType = 'application/json') {
  const op = ptr('paths', path, method.toLowerCase());
  assert.ok(at(op), `the document has no ${method} ${path}`);
  const resp = ptr('paths', path, method.toLowerCase(), 'responses', String(status));
  assert.ok(at(resp), `the document has no ${status} response for ${method} ${path}; ` +
    `it lists ${Object.keys(at(op).responses).join(', ')}`);
  const r = deref(resp);
  const content = at(r).content || {};
  assert.ok(content[mediaType], `${method} ${path} ${status}: the document gives no ${mediaType} content ` +
    `(it gives ${Object.keys(content).join(', ') || 'none'})`);
  return `${r}${ptr('content', mediaType, 'schema')}`;
}

const header = (res, name) => (typeof res.headers?.get === 'function' ? res.headers.get(name) : res.headers?.[name.toLowerCase()]) ?? null;

// expectResponse(method, docPath, res, status) — the answer has the expected status, the status
// is documented for the route, and the body matches the documented schema for it.
function expectResponse(method, docPath, res, status) {
  assert.equal(res.status, status, `${method} ${docPath}: expected ${status}, got ${res.status} ${res.text?.slice(0, 500)}`);
  const ct = header(res, 'content-type') || '';
  const r = at(deref(ptr('paths', docPath, method.toLowerCase(), 'responses', String(status))));
  assert.ok(r, `${status} is not documented for ${method} ${docPath}`);
  const media = Object.keys(r.content || {});
  const mt = media.find((m) => ct.toLowerCase().startsWith(m));
  assert.ok(mt, `${method} ${docPath} ${status}: content-type "${ct}" is not one the document gives (${media.join(', ')})`);
  if (mt === 'application/json') {
    assert.ok(res.json !== null, `${method} ${docPath} ${status}: body is not JSON: ${res.text?.slice(0, 300)}`);
    check(responseSchemaPtr(method, docPath, status, mt), res.json, `${method} ${docPath} ${status} body`);
  } else {
    check(responseSchemaPtr(method, docPath, status, mt), res.text, `${method} ${docPath} ${status} body`);
  }
  for (const [h, def] of Object.entries(r.headers || {})) {
    const v = header(res, h);
    assert.ok(v !== null, `${method} ${docPath} ${status}: documented header ${h} missing`);
    const s = def.schema || {};
    const value = s.type === 'integer' ? Number(v) : v;
    const hv = ajv.compile({ ...s });
    assert.ok(hv(value), `${method} ${docPath} ${status}: header ${h}: ${v}: ${ajv.errorsText(hv.errors)}`);
  }
  return res.json;
}

const requestPtr = (path) => ptr('paths', path, 'post', 'requestBody', 'content', 'application/json', 'schema');

// The data schema EventEnvelope assigns to each event type (its allOf of if/then).
function eventDataSchemas() {
  const out = new Map();
  for (const rule of at(schemaPtr('EventEnvelope')).allOf) {
    out.set(rule.if.properties.type.const, rule.then.properties.data.$ref.slice(1));
  }
  return out;
}

function checkEvents(events, what) {
  const data = eventDataSchemas();
  for (const ev of events) {
    check(schemaPtr('EventEnvelope'), ev, `${what}: event ${ev.seq} ${ev.type}`);
    assert.ok(data.has(ev.type), `${what}: event type ${ev.type} has no data schema in EventEnvelope`);
    check(data.get(ev.type), ev.data, `${what}: data of event ${ev.seq} ${ev.type}`);
  }
}

// ---------------------------------------------------------------------------------------------
// 1. The document itself

describe('the document', () => {
  test('is a valid OpenAPI 3.1 document', async () => {
    assert.equal(doc.openapi, '3.1.0');
    const opts = {
      resolve: { external: false },
      // Example values are data: a `{"$ref": "a.sum"}` step input in an example is not a reference.
      dereference: { excludedPathMatcher: (p) => /\/examples?(\/|$)/.test(p) },
      validate: { errors: { colorize: false } },
    };
    const r = await validateOpenApi(structuredClone(doc), opts);
    assert.ok(r.valid, `docs/openapi.yaml is not a valid OpenAPI document:\n${r.valid ? '' : compileErrors(r)}`);
    assert.deepEqual(r.warnings || [], []);
    // The validator really validates: a broken copy is refused.
    const broken = structuredClone(doc);
    delete broken.paths['/health'].get.responses;
    broken.paths['/workflows/{id}'].get.parameters = [];
    delete broken.paths['/workflows/{id}'].parameters;
    const rb = await validateOpenApi(broken, opts);
    assert.equal(rb.valid, false, 'a document without responses and path parameters should be invalid');
  });

  test('every local $ref resolves', () => {
    const walk = (x, path) => {
      if (!x || typeof x !== 'object') return;
      if (typeof x.$ref === 'string') assert.ok(at(x.$ref.slice(1)) !== undefined, `${path}: $ref ${x.$ref} does not resolve`);
      for (const [k, v] of Object.entries(x)) {
        // example values are data: a step input {"$ref": "a.sum"} there is not a reference
        if (k === 'example' || (k === 'examples' && Array.isArray(v)) || (k === 'value' && /\/examples\/[^/]+$/.test(path))) continue;
        walk(v, `${path}/${esc(k)}`);
      }
    };
    walk(doc, '');
  });

  test('documents every route with bearer security, and the stream with access_token too', () => {
    const want = {
      '/workflows/create': ['post'], '/workflows/{id}': ['get'], '/workflows/{id}/approve': ['post'],
      '/workflows/{id}/cancel': ['post'], '/workflows/{id}/stream': ['get'], '/stream': ['get'],
      '/users/{userId}/workflows': ['get'],
      '/services': ['get'], '/health': ['get'], '/metrics': ['get'],
    };
    assert.deepEqual(Object.keys(doc.paths).sort(), Object.keys(want).sort());
    assert.deepEqual(doc.security, [{ bearerAuth: [] }]);
    assert.equal(doc.components.securitySchemes.bearerAuth.scheme, 'bearer');
    assert.deepEqual(doc.components.securitySchemes.accessToken, {
      ...doc.components.securitySchemes.accessToken, type: 'apiKey', in: 'query', name: 'access_token' });
    for (const [p, methods] of Object.entries(want)) {
      for (const m of methods) {
        const op = doc.paths[p][m];
        assert.ok(op, `${m} ${p}`);
        const open = Array.isArray(op.security) && op.security.length === 0;
        assert.equal(open, p === '/health' || p === '/metrics', `${m} ${p}: security`);
        if (!open) {
          for (const s of ['401', '404', '405', '429', '503']) assert.ok(op.responses[s], `${m} ${p} documents ${s}`);
        }
        if (m === 'post') assert.ok(op.responses['413'], `${m} ${p} documents 413`);
      }
    }
    assert.deepEqual(doc.paths['/workflows/{id}/stream'].get.security, [{ bearerAuth: [] }, { accessToken: [] }]);
    assert.deepEqual(doc.paths['/stream'].get.security, [{ bearerAuth: [] }, { accessToken: [] }]);
    assert.ok(doc.paths['/workflows/{id}/stream'].get.responses['101'], 'the stream documents its 101 upgrade');
  });

  test('request schemas refuse unknown fields', () => {
    const req = at(schemaPtr('CreateWorkflowRequest'));
    assert.equal(req.additionalProperties, false);
    for (const n of ['PlanRequest', 'PlanStepRequest', 'StepRef']) assert.equal(at(schemaPtr(n)).additionalProperties, false, n);
  });

  test('every schema compiles, and every example matches its schema', () => {
    for (const name of Object.keys(doc.components.schemas)) {
      const p = schemaPtr(name);
      validatorAt(p);
      for (const [i, ex] of (at(p).examples || []).entries()) check(p, ex, `components.schemas.${name}.examples[${i}]`);
    }
    // media types (request bodies and responses) with example / examples
    const media = [];
    const collect = (x, path) => {
      if (!x || typeof x !== 'object') return;
      if (/\/examples?(\/|$)/.test(path)) return;
      if (x.schema && (x.example !== undefined || x.examples) && /\/content\/[^/]+$/.test(path)) media.push(path);
      for (const [k, v] of Object.entries(x)) collect(v, `${path}/${esc(k)}`);
    };
    collect(doc, '');
    assert.ok(media.length >= 15, `examples found: ${media.length}`);
    for (const mp of media) {
      const m = at(mp);
      const sp = `${mp}/schema`;
      validatorAt(sp);
      const json = mp.endsWith('application~1json');
      const examples = m.example !== undefined ? [['example', m.example]] : [];
      for (const [k, e] of Object.entries(m.examples || {})) examples.push([k, at(deref(`${mp}/examples/${esc(k)}`)).value]);
      for (const [k, v] of examples) check(sp, json ? v : String(v), `${mp} example ${k}`);
    }
  });

  test('the request schema agrees with the validation rules (valid and invalid bodies)', () => {
    const v = validatorAt(requestPtr('/workflows/create'));
    const ok = [
      { input: 'x' },
      { input: 'x', maxCost: '2.5', maxTime: 1000, userId: 'alice' },
      { input: 'x', maxCost: 3, maxTime: null, plan: null },
      { input: 'x', maxCost: '1.0000000' },
      { input: 'x', plan: { steps: [step('a', 'add', { a: 1, b: 2 }), step('b', 'echo', { m: { deep: [ref('a.sum')] } })] } },
    ];
    const bad = [
      {}, { input: '' }, { input: '   ' }, { input: 'x', colour: 1 }, { input: 'x', maxCost: -1 },
      { input: 'x', maxCost: '1.1234567' }, { input: 'x', maxCost: 'abc' }, { input: 'x', maxTime: 999 },
      { input: 'x', maxTime: 1.5 }, { input: 'x', plan: { steps: [] } }, { input: 'x', plan: { steps: [], x: 1 } },
      { input: 'x', plan: { steps: [{ id: 'a b', service: 'add' }] } },
      { input: 'x', plan: { steps: [{ id: 'a', service: 'add', inputs: { a: { $ref: 'nodot' } } }] } },
      { input: 'x', plan: { steps: [{ id: 'a', service: 'add', inputs: { a: { $ref: 'b.x', other: 1 } } }] } },
      { input: 'x'.repeat(10001) },
    ];
    for (const b of ok) assert.ok(v(b), `should be valid: ${JSON.stringify(b)}: ${ajv.errorsText(v.errors)}`);
    for (const b of bad) assert.ok(!v(b), `should be invalid: ${JSON.stringify(b).slice(0, 200)}`);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. A live engine against the document

describe('a live engine answers as documented', () => {
  let ctx;
  let c; // alice
  let bob;

  before(async () => {
    ctx = await setup({ users: ['alice', 'bob'] });
    c = ctx.client;
    bob = ctx.clients.bob;
  });
  after(async () => { await ctx?.teardown(); });

  const simplePlan = () => ({ steps: [
    step('a', 'add', { a: 2, b: 3 }),
    step('b', 'echo', { message: ref('a.sum') }, ['a']),
  ] });

  async function create(body, status = 201) {
    const r = await c.post('/workflows/create', body);
    return expectResponse('POST', '/workflows/create', r, status);
  }

  test('POST /workflows/create: 201 with an explicit plan and without one', async () => {
    const body = { input: 'add 2 and 3 then echo', plan: simplePlan(), maxCost: '5', maxTime: 60000 };
    check(requestPtr('/workflows/create'), body, 'request');
    const j = await create(body);
    assert.equal(j.workflow.status, 'awaiting_approval');
    const planned = { input: 'Add 2 and 3 then echo the sum', maxCost: 1.5 };
    check(requestPtr('/workflows/create'), planned, 'request');
    const k = await create(planned);
    assert.equal(k.workflow.status, 'planning');
    const wf = await waitStatus(c, k.workflow.id, ['awaiting_approval']);
    check(schemaPtr('Workflow'), wf, 'a planner-planned workflow');
  });

  test('POST /workflows/create: 400 for invalid bodies, each also refused by the request schema', async () => {
    const cases = [
      [{ input: 'x', colour: 'red', maxTime: 5 }, ['colour', 'maxTime']],
      [{ input: 'x', plan: { steps: [step('a', 'add', { a: 1, b: 2 }), step('b', 'nope')] } }, ['plan.steps[1].service']],
      [{ input: 'x', maxCost: '0.5', plan: { steps: [step('p', 'premium_report', { topic: 't' })] } }, ['maxCost']],
    ];
    for (const [body, fields] of cases) {
      const j = await create(body, 400);
      assert.equal(j.error, 'invalid request body');
      for (const f of fields) assert.ok(j.details.some((d) => d.field === f), `detail ${f}: ${JSON.stringify(j)}`);
    }
    // the first two are refused by the schema as well (the third is valid JSON Schema-wise: only
    // the priced plan exceeds the budget)
    assert.ok(!validatorAt(requestPtr('/workflows/create'))(cases[0][0]));
    const malformed = await create('{"input": "x"', 400);
    assert.match(malformed.error, /^malformed JSON at line \d+, column \d+: /);
    const empty = await create('', 400);
    assert.equal(empty.error, 'request body required');
  });

  test('GET /workflows/{id}: 200, 404 for an unknown id and for someone else\'s', async () => {
    const { id } = await ready(c, { input: 'get me', plan: simplePlan(), maxCost: '5', maxTime: 60000 });
    const j = expectResponse('GET', '/workflows/{id}', await c.get(`/workflows/${id}`), 200);
    assert.equal(j.workflow.status, 'awaiting_approval');
    assert.equal(j.workflow.maxCost.atomic, '5000000');
    const nf = expectResponse('GET', '/workflows/{id}', await c.get('/workflows/wf_1_aaaaaaaaaaaa'), 404);
    assert.equal(nf.error, 'workflow not found');
    const other = expectResponse('GET', '/workflows/{id}', await bob.get(`/workflows/${id}`), 404);
    assert.equal(other.error, 'workflow not found');
  });

  test('approve 200 then 409; cancel 200 then 409; approve after cancel 409', async () => {
    const a = await ready(c, { input: 'approve me', plan: simplePlan() });
    const ok = expectResponse('POST', '/workflows/{id}/approve', await c.post(`/workflows/${a.id}/approve`), 200);
    assert.equal(ok.message, 'Workflow approved and execution started');
    const again = expectResponse('POST', '/workflows/{id}/approve', await c.post(`/workflows/${a.id}/approve`), 409);
    assert.match(again.error, /^workflow is /);
    await waitStatus(c, a.id, ['completed']);
    const done = expectResponse('POST', '/workflows/{id}/cancel', await c.post(`/workflows/${a.id}/cancel`), 409);
    assert.equal(done.status, 'completed');

    const b = await ready(c, { input: 'cancel me', plan: simplePlan() });
    const cj = expectResponse('POST', '/workflows/{id}/cancel', await c.post(`/workflows/${b.id}/cancel`), 200);
    assert.deepEqual(cj.workflow, { id: b.id, status: 'cancelled' });
    const cc = expectResponse('POST', '/workflows/{id}/cancel', await c.post(`/workflows/${b.id}/cancel`), 409);
    assert.equal(cc.status, 'cancelled');
    expectResponse('POST', '/workflows/{id}/approve', await c.post(`/workflows/${b.id}/approve`), 409);
    expectResponse('POST', '/workflows/{id}/approve', await bob.post(`/workflows/${b.id}/approve`), 404);
    const g = expectResponse('GET', '/workflows/{id}', await c.get(`/workflows/${b.id}`), 200);
    assert.equal(g.workflow.status, 'cancelled');
  });

  test('a completed workflow: GET with steps and output, and its events over the WebSocket', async () => {
    const id = await runPlan(c, simplePlan(), { input: 'complete me' });
    await waitStatus(c, id, ['completed']);
    const j = expectResponse('GET', '/workflows/{id}', await c.get(`/workflows/${id}`), 200);
    const wf = j.workflow;
    assert.equal(wf.status, 'completed');
    assert.deepEqual(wf.output, { b: { echo: { message: 5 } } });
    assert.deepEqual(wf.steps.map((s) => [s.id, s.status]), [['a', 'succeeded'], ['b', 'succeeded']]);
    assert.deepEqual(wf.steps[0].output, { sum: 5 });
    assert.deepEqual(wf.plan.steps[1].inputs, { message: { $ref: 'a.sum' } });

    const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
    try {
      await s.opened;
      await s.waitType('workflow.completed');
      await sleep(100);
      assertGapFree(s.messages, 1);
      assert.equal(s.messages.length, wf.lastSeq);
      checkEvents(s.messages, 'completed workflow');
      const types = new Set(s.messages.map((e) => e.type));
      for (const t of ['workflow.planning', 'workflow.plan_ready', 'workflow.awaiting_approval', 'workflow.approved',
        'workflow.executing', 'step.started', 'step.completed', 'workflow.completed']) assert.ok(types.has(t), t);
    } finally { s.close(); }

    // the same through ?access_token= and since=N
    const q = openStream(ctx.engine, id, { since: 3, key: ctx.keys.alice, viaQuery: true });
    try {
      await q.opened;
      await q.waitType('workflow.completed');
      assertGapFree(q.messages, 4);
      checkEvents(q.messages, 'access_token stream');
    } finally { q.close(); }
  });

  test('failed, retried and cancelled workflows: every event matches its data schema', async () => {
    // a step that fails at once (400) and a dependant that is skipped
    const failed = await runPlan(c, { steps: [step('x', 'bad_request'), step('y', 'echo', { m: ref('x.z') })] },
      { input: 'fail me' });
    await waitStatus(c, failed, ['failed']);
    // a step retried once (503 then 200)
    const retried = await runPlan(c, { steps: [step('r', 'flaky', { fail: 1, key: randomBytes(6).toString('hex') })] },
      { input: 'retry me' });
    await waitStatus(c, retried, ['completed']);
    // cancelled while a step runs: the running step fails "cancelled", the pending one is skipped
    const cancelled = await runPlan(c, { steps: [step('s', 'slow', { ms: 3000 }), step('t', 'echo', { m: ref('s.waited') })] },
      { input: 'cancel me while running' });
    await waitFor(async () => (await c.get(`/workflows/${cancelled}`)).json.workflow.steps[0].status === 'running',
      { message: 'step s running' });
    expectResponse('POST', '/workflows/{id}/cancel', await c.post(`/workflows/${cancelled}/cancel`), 200);
    // planning that fails (nothing matches)
    const unplanned = (await create({ input: 'zqxj vorpal frumious bandersnatch' })).workflow.id;
    await waitStatus(c, unplanned, ['failed']);

    const seen = new Set();
    for (const [id, last] of [[failed, 'workflow.failed'], [retried, 'workflow.completed'],
      [cancelled, 'workflow.cancelled'], [unplanned, 'workflow.failed']]) {
      const wf = expectResponse('GET', '/workflows/{id}', await c.get(`/workflows/${id}`), 200).workflow;
      const s = openStream(ctx.engine, id, { since: 0, key: ctx.keys.alice });
      try {
        await s.opened;
        await s.waitCount(wf.lastSeq);
        assert.equal(s.messages.at(-1).type, last);
        checkEvents(s.messages, `${wf.status} workflow ${id}`);
        for (const e of s.messages) seen.add(e.type);
      } finally { s.close(); }
    }
    for (const t of ['step.failed', 'step.skipped', 'step.retrying', 'workflow.failed', 'workflow.cancelled']) {
      assert.ok(seen.has(t), `saw ${t}`);
    }
  });

  test('GET /workflows/{id}/stream: 400 without an upgrade or with a bad since, 401, 404 as plain HTTP', async () => {
    const { id } = await ready(c, { input: 'stream errors', plan: simplePlan() });
    const plain = expectResponse('GET', '/workflows/{id}/stream', await c.get(`/workflows/${id}/stream`), 400);
    assert.match(plain.error, /WebSocket/);
    const since = expectResponse('GET', '/workflows/{id}/stream', await c.get(`/workflows/${id}/stream?since=-1`), 400);
    assert.equal(since.details[0].field, 'since');
    const hs = (key, path = `/workflows/${id}/stream`) => httpRequest('GET', path, { key, headers: {
      Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': randomBytes(16).toString('base64') } });
    const [nf] = await rawHttp(ctx.engine.port, hs(ctx.keys.bob));
    expectResponse('GET', '/workflows/{id}/stream', nf, 404);
    const [na] = await rawHttp(ctx.engine.port, hs(null));
    expectResponse('GET', '/workflows/{id}/stream', na, 401);
  });

  test('GET /users/{userId}/workflows: cursor pages, 400 for a bad limit or cursor, 404 for another user', async () => {
    const L = '/users/{userId}/workflows';
    const first = expectResponse('GET', L, await c.get('/users/alice/workflows?limit=2'), 200);
    assert.equal(first.workflows.length, 2);
    assert.equal(typeof first.nextCursor, 'string');
    const second = expectResponse('GET', L, await c.get(`/users/alice/workflows?limit=2&cursor=${first.nextCursor}`), 200);
    assert.ok(second.workflows.length >= 1);
    assert.ok(!second.workflows.some((w) => first.workflows.some((x) => x.id === w.id)), 'pages do not overlap');
    const all = expectResponse('GET', L, await c.get('/users/alice/workflows?limit=200'), 200);
    assert.equal(all.nextCursor, null);
    for (const q of ['limit=0', 'limit=201', 'limit=abc', 'cursor=%20bad']) {
      const j = expectResponse('GET', L, await c.get(`/users/alice/workflows?${q}`), 400);
      assert.equal(j.error, 'invalid query');
    }
    const other = expectResponse('GET', L, await c.get('/users/bob/workflows'), 404);
    assert.equal(other.error, 'user not found');
  });

  test('GET /services: 200 (with q, limit and offset) and 400', async () => {
    const all = expectResponse('GET', '/services', await c.get('/services'), 200);
    assert.equal(all.services.length, ctx.catalog.services.length);
    assert.ok(all.services.some((s) => s.price), 'a priced service is in the catalog');
    const q = expectResponse('GET', '/services', await c.get('/services?q=ECHO&limit=1&offset=0'), 200);
    assert.deepEqual(q.services.map((s) => s.id), ['echo']);
    expectResponse('GET', '/services', await c.get('/services?limit=0'), 400);
    expectResponse('GET', '/services', await c.get('/services?offset=-1'), 400);
  });

  test('GET /health and GET /metrics need no key', async () => {
    const j = expectResponse('GET', '/health', await api(ctx.engine, null).get('/health'), 200);
    assert.equal(j.status, 'ok');
    const m = await api(ctx.engine, null).get('/metrics');
    expectResponse('GET', '/metrics', m, 200);
    assert.match(m.text, /^x402r_up 1$/m);
  });

  test('401 without or with a wrong key, on every keyed route', async () => {
    const anon = api(ctx.engine, null);
    const wrong = api(ctx.engine, 'x4k_not_a_real_key');
    const routes = [
      ['POST', '/workflows/create', '/workflows/create', { input: 'x' }],
      ['GET', '/workflows/{id}', '/workflows/wf_1_aaaaaaaaaaaa'],
      ['POST', '/workflows/{id}/approve', '/workflows/wf_1_aaaaaaaaaaaa/approve'],
      ['POST', '/workflows/{id}/cancel', '/workflows/wf_1_aaaaaaaaaaaa/cancel'],
      ['GET', '/users/{userId}/workflows', '/users/alice/workflows'],
      ['GET', '/services', '/services'],
    ];
    for (const [method, docPath, path, body] of routes) {
      for (const cl of [anon, wrong]) {
        const j = expectResponse(method, docPath, await cl.raw(method, path, { body }), 401);
        assert.equal(j.error, 'missing or invalid API key');
      }
    }
  });

  test('405 for a wrong method (with Allow), 404 for an unknown route', async () => {
    const cases = [
      ['GET', '/workflows/create', '/workflows/create', 'POST'],
      ['DELETE', '/workflows/{id}', '/workflows/wf_1_aaaaaaaaaaaa', 'GET'],
      ['GET', '/workflows/{id}/approve', '/workflows/wf_1_aaaaaaaaaaaa/approve', 'POST'],
      ['POST', '/health', '/health', 'GET'],
      ['POST', '/services', '/services', 'GET'],
    ];
    for (const [method, docPath, path, allow] of cases) {
      const r = await c.raw(method, path);
      // the 405 is documented on the path's one operation
      const opMethod = ['get', 'post'].find((m) => doc.paths[docPath][m]).toUpperCase();
      expectResponse(opMethod, docPath, r, 405);
      assert.equal(header(r, 'allow'), allow);
    }
    const notFound = ptr('components', 'responses', 'RouteNotFound', 'content', 'application/json', 'schema');
    for (const path of ['/nope', '/workflows/a/b/c', '/workflows/bad%20id', '/users/alice/workflows/x']) {
      const r = await c.get(path);
      assert.equal(r.status, 404, `${path}: ${r.status} ${r.text}`);
      check(notFound, r.json, `GET ${path} 404 body`);
      assert.equal(r.json.error, 'not found');
    }
  });

  test('413 for a body over 1 MiB is text/plain', async () => {
    // Only the head is sent: h2o refuses by Content-Length before reading the body, and with no
    // body still in flight its answer cannot be lost to a reset connection.
    const head = httpRequest('POST', '/workflows/create', { key: ctx.keys.alice, body: '',
      headers: { 'Content-Length': String((1 << 20) + 1) } });
    const [r] = await rawHttp(ctx.engine.port, head);
    assert.ok(r, 'an answer before the connection closed');
    expectResponse('POST', '/workflows/create', r, 413);
    assert.match(r.text, /too large/i);
  });

  describe('with APPROVAL_TTL_MS=1000 and RATE_LIMIT_PER_MIN=4', () => {
    let eng;
    const tag = randomBytes(4).toString('hex');
    before(async () => {
      eng = await startEngine({ db: ctx.db, catalog: ctx.catalog, env: { APPROVAL_TTL_MS: '1000', RATE_LIMIT_PER_MIN: '4' } });
    });
    after(async () => { await eng?.stop(); });

    test('an expired workflow: workflow.expired event, GET and approve 409 match the document', async () => {
      const user = `oa_exp_${tag}`;
      const key = await createKey(ctx.dbUrl, user);
      const cl = api(eng, key);
      const j = expectResponse('POST', '/workflows/create', await cl.post('/workflows/create',
        { input: 'let me expire', plan: simplePlan() }), 201);
      const s = openStream(eng, j.workflow.id, { since: 0, key });
      try {
        await s.opened;
        await s.waitType('workflow.expired', { timeout: 10000 });
        checkEvents(s.messages, 'expired workflow');
      } finally { s.close(); }
      const r = expectResponse('POST', '/workflows/{id}/approve', await cl.post(`/workflows/${j.workflow.id}/approve`), 409);
      assert.equal(r.status, 'expired');
      const g = expectResponse('GET', '/workflows/{id}', await cl.get(`/workflows/${j.workflow.id}`), 200);
      assert.equal(g.workflow.error, 'approval expired');
    });

    test('429 with Retry-After past the per-user limit', async () => {
      const key = await createKey(ctx.dbUrl, `oa_rl_${tag}`);
      const cl = api(eng, key);
      // 10 requests against a limit of 4: even split across two minute windows, one side has 5.
      const rs = [];
      for (let i = 0; i < 10; i++) rs.push(await cl.get('/services?limit=1'));
      const limited = rs.filter((r) => r.status === 429);
      assert.ok(limited.length >= 1, JSON.stringify(rs.map((r) => r.status)));
      for (const r of limited) expectResponse('GET', '/services', r, 429);
      for (const r of rs.filter((x) => x.status !== 429)) expectResponse('GET', '/services', r, 200);
    });
  });
});
