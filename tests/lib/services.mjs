// tests/lib/services.mjs — HTTP services with controllable behaviour for the integration tests.
//
// startServices() listens on 127.0.0.1:<ephemeral> and records every call in memory:
// {id, method, path, query, headers, idempotencyKey, workflowId, stepId, attempt, body, at,
//  finishedAt, status, aborted}. Routes (any method; JSON body optional):
//   /echo                      → 200 {echo: <body>}
//   /add        {a, b}         → 200 {sum: a+b}
//   /slow?ms=500 or {ms}       → 200 {waited: ms} after ms
//   /flaky?fail=N&key=K&code=C → the first N calls with key K answer C (503, or 429 with
//                                Retry-After: 1), then 200 {ok: true, calls}. N and K may also come
//                                from the body ({fail, key}); K defaults to "<X-Workflow-Id>:<X-Step-Id>".
//   /fail                      → 500 {error}
//   /bad-request               → 400 {error}
//   /hang                      → never answers; the call is marked aborted when the client goes away
//   /count                     → 200 {n} (calls so far, all callers)
//   /blob       {kb}           → 200 {data: "x" × kb KiB}
//   /premium                   → 200 {report: <body>} (the priced service; the catalog de-duplicates by url)
//   /reserve                   → 200 {reservation: "r<n>"} (a step with a side effect to undo)
//   /undo?fail=N&ms=M&code=C   → the compensation endpoint: applies the undo once per
//                                Idempotency-Key (undone(key) counts applications), answers 503 to
//                                the first N calls of a key, waits M ms, or always answers C
// catalogFor(svc) builds a DESIGN.md catalog naming these services.

import http from 'node:http';

export async function startServices() {
  const log = [];
  const flakyCounts = new Map();
  const barriers = new Map();    // barrier key → the senders waiting for it
  let countN = 0;
  let reserveN = 0;
  const undoCalls = new Map();   // idempotency key → calls
  const undoApplied = new Map(); // idempotency key → times the undo took effect (must stay ≤ 1)
  let nextId = 1;
  const sockets = new Set();

  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body = null;
      try { body = text ? JSON.parse(text) : null; } catch { body = { unparsable: text }; }
      const idem = req.headers['idempotency-key'] || null;
      let attempt = null;
      if (idem) {
        const m = /:(\d+)$/.exec(idem);
        if (m) attempt = Number(m[1]);
      }
      const call = {
        id: nextId++,
        method: req.method,
        path: u.pathname,
        query: Object.fromEntries(u.searchParams),
        headers: req.headers,
        idempotencyKey: idem,
        workflowId: req.headers['x-workflow-id'] || null,
        stepId: req.headers['x-step-id'] || null,
        attempt,
        body,
        at: Date.now(),
        finishedAt: null,
        status: null,
        aborted: false,
      };
      log.push(call);
      const send = (status, obj, headers = {}) => {
        if (call.aborted || res.destroyed) return;
        call.status = status;
        call.finishedAt = Date.now();
        const out = JSON.stringify(obj);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out), ...headers });
        res.end(out);
      };
      const param = (name, dflt) => {
        if (u.searchParams.has(name)) return u.searchParams.get(name);
        if (body && typeof body === 'object' && body[name] !== undefined) return body[name];
        return dflt;
      };
      // a client that goes away before we answered: mark the call aborted
      res.on('close', () => {
        if (!res.writableFinished) { call.aborted = true; call.finishedAt = Date.now(); }
      });

      switch (u.pathname) {
        case '/echo':
          return send(200, { echo: body });
        case '/add': {
          const a = Number(body?.a);
          const b = Number(body?.b);
          if (!Number.isFinite(a) || !Number.isFinite(b)) return send(400, { error: 'a and b must be numbers' });
          return send(200, { sum: a + b });
        }
        case '/slow': {
          const ms = Number(param('ms', 500));
          const t = setTimeout(() => send(200, { waited: ms }), ms);
          res.on('close', () => clearTimeout(t));
          return undefined;
        }
        case '/barrier': {
          // holds each request until n requests with the same key have arrived, then answers
          // them all in the same tick (a join's dependencies finishing together)
          const key = String(param('key', ''));
          const n = Number(param('n', 2));
          const waiting = barriers.get(key) || [];
          waiting.push(() => send(200, { released: n }));
          barriers.set(key, waiting);
          if (waiting.length >= n) {
            barriers.delete(key);
            for (const f of waiting) f();
          }
          return undefined;
        }
        case '/flaky': {
          const fail = Number(param('fail', 2));
          const code = Number(param('code', 503));
          const key = String(param('key', `${call.workflowId}:${call.stepId}`));
          const n = (flakyCounts.get(key) || 0) + 1;
          flakyCounts.set(key, n);
          if (n <= fail) {
            return send(code, { error: `failure ${n} of ${fail}` }, code === 429 ? { 'retry-after': '1' } : {});
          }
          return send(200, { ok: true, calls: n });
        }
        case '/fail':
          return send(500, { error: 'this service always fails' });
        case '/bad-request':
          return send(400, { error: 'bad request' });
        case '/hang':
          return undefined; // never answers
        case '/premium':
          return send(200, { report: body });
        case '/reserve':
          reserveN += 1;
          return send(200, { reservation: `r${reserveN}` });
        case '/undo': {
          const key = idem || 'none';
          const n = (undoCalls.get(key) || 0) + 1;
          undoCalls.set(key, n);
          const code = Number(u.searchParams.get('code') || 0);
          if (code) return send(code, { error: `undo refused with ${code}` });
          if (n <= Number(u.searchParams.get('fail') || 0)) return send(503, { error: `undo failure ${n}` });
          const first = !undoApplied.has(key);
          if (first) undoApplied.set(key, 1);
          const ms = Number(u.searchParams.get('ms') || 0);
          if (!ms) return send(200, { undone: true, duplicate: !first });
          const t = setTimeout(() => send(200, { undone: true, duplicate: !first }), ms);
          res.on('close', () => clearTimeout(t));
          return undefined;
        }
        case '/count':
          countN += 1;
          return send(200, { n: countN });
        case '/blob': {
          const kb = Math.max(0, Math.min(4096, Number(param('kb', 256))));
          return send(200, { data: 'x'.repeat(kb * 1024) });
        }
        default:
          return send(404, { error: 'no such test service' });
      }
    });
  });
  server.keepAliveTimeout = 5000;
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;

  // calls(filter) — recorded calls; filter is a function or an object of exact field matches
  // (path, workflowId, stepId, method, attempt, aborted).
  function calls(filter) {
    if (!filter) return log.slice();
    if (typeof filter === 'function') return log.filter(filter);
    return log.filter((c) => Object.entries(filter).every(([k, v]) => c[k] === v));
  }

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    calls,
    undone: (key) => undoApplied.get(key) || 0,
    reset() { log.length = 0; flakyCounts.clear(); countN = 0; undoCalls.clear(); undoApplied.clear(); },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
}

const obj = (properties, required = []) => ({ type: 'object', properties, required });

export const PREMIUM_PRICE = {
  amount: '1000000', // atomic units: 1.000000 USDC
  asset: 'EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v',
  network: 'solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1',
};

// catalogFor(svc) — {services:[...]} in the DESIGN.md record shape, urls on the real port.
// Every service is free except premium_report (1.000000 USDC per call). Names and descriptions
// are worded so the offline matcher can plan "Add 2 and 3 then echo the sum" and nothing else
// competes for "add" / "echo".
export function catalogFor(svc) {
  const u = (p) => `${svc.url}${p}`;
  const rec = (id, name, description, path, input, output, extra = {}) =>
    ({ id, name, description, url: u(path), method: 'POST', input, output, tags: ['test'], ...extra });
  return {
    services: [
      rec('add', 'Add numbers', 'Add two numbers a and b and return their sum.', '/add',
        obj({ a: { type: 'number', description: 'first number' },
              b: { type: 'number', description: 'second number' } }, ['a', 'b']),
        obj({ sum: { type: 'number', description: 'the sum a + b' } }, ['sum'])),
      rec('echo', 'Echo', 'Echo: returns the request body it receives as the response.', '/echo',
        obj({ message: { description: 'anything to echo back' } }),
        obj({ echo: { type: 'object', description: 'the request body' } }, ['echo'])),
      rec('slow', 'Delay', 'Wait ms milliseconds before responding.', '/slow',
        obj({ ms: { type: 'integer', description: 'milliseconds to wait' } }),
        obj({ waited: { type: 'integer' } })),
      rec('barrier', 'Barrier', 'Answers once n requests with the same key have arrived, all at once.', '/barrier',
        obj({ key: { type: 'string', description: 'barrier key' }, n: { type: 'integer', description: 'requests to wait for' } }),
        obj({ released: { type: 'integer' } })),
      rec('flaky', 'Flaky', 'Responds HTTP 503 for the first `fail` calls, afterwards succeeds.', '/flaky',
        obj({ fail: { type: 'integer', description: 'number of failures before success' },
              key: { type: 'string', description: 'counter key' } }),
        obj({ ok: { type: 'boolean' }, calls: { type: 'integer' } })),
      rec('rate_limited', 'Rate limited', 'Responds HTTP 429 with Retry-After for the first `fail` calls.',
        '/flaky?code=429',
        obj({ fail: { type: 'integer', description: 'number of 429 responses before success' },
              key: { type: 'string', description: 'counter key' } }),
        obj({ ok: { type: 'boolean' }, calls: { type: 'integer' } })),
      rec('broken', 'Broken', 'Always responds HTTP 500.', '/fail', obj({}), obj({})),
      rec('bad_request', 'Rejecting', 'Always responds HTTP 400.', '/bad-request', obj({}), obj({})),
      rec('hang', 'Hanging', 'Never responds.', '/hang', obj({}), obj({})),
      rec('count', 'Counter', 'Returns how many times it has been called.', '/count', obj({}),
        obj({ n: { type: 'integer' } })),
      rec('blob', 'Blob', 'Returns a large payload of kb kibibytes.', '/blob',
        obj({ kb: { type: 'integer', description: 'payload size in KiB' } }),
        obj({ data: { type: 'string' } })),
      ...[['reserve', ''], ['reserve_flaky_undo', '?fail=2'], ['reserve_slow_undo', '?ms=2500'],
          ['reserve_bad_undo', '?code=400']].map(([id, q]) =>
        rec(id, `Reservation ${id}`, 'Books a reservation slot; undone by its compensation endpoint.', `/reserve?kind=${id}`,
          obj({ slot: { type: 'string', description: 'slot to book' } }),
          obj({ reservation: { type: 'string' } }), { compensate: { url: u(`/undo${q}`), method: 'POST' } })),
      rec('premium_report', 'Premium report', 'Expensive market analysis report, priced per call.', '/premium',
        obj({ topic: { type: 'string', description: 'report topic' } }),
        obj({ report: { type: 'object' } }), { price: { ...PREMIUM_PRICE } }),
    ],
  };
}
