// bench/lib/diamond.mjs — the benchmarks' workload: a 4-step diamond a → b, c → d with an explicit
// plan ($ref wiring), created, approved and waited for through the public API.
//
// diamondWorkflow(engine, req, wait, pollMs, {plan, check}) → async () => workflow id. One call:
// POST /workflows/create with the plan → then either (wait 'ws') open
// /workflows/:id/stream?since=0 together with POST approve and wait for workflow.completed, or
// (wait 'poll') POST approve and GET /workflows/:id every pollMs. check(output) throws on a wrong
// result (the default checks the free diamond's d.sum = 116).
import { benchRequire, sleep } from './common.mjs';

const WebSocket = benchRequire('ws');

export const PLAN = {
  steps: [
    { id: 'a', service: 'add', inputs: { a: 1, b: 2 }, dependsOn: [] },
    { id: 'b', service: 'add', inputs: { a: { $ref: 'a.sum' }, b: 10 }, dependsOn: ['a'] },
    { id: 'c', service: 'add', inputs: { a: { $ref: 'a.sum' }, b: 100 }, dependsOn: ['a'] },
    { id: 'd', service: 'add', inputs: { a: { $ref: 'b.sum' }, b: { $ref: 'c.sum' } }, dependsOn: ['b', 'c'] },
  ],
};

const checkSum = (out) => { if (out?.d?.sum !== 116) throw new Error(`wrong output ${JSON.stringify(out)}`); };

// The free diamond's one service (bench/throughput/service.mjs: POST /add {a, b} → {sum}).
export const ADD_SERVICE = (svcUrl) => ({
  id: 'add', name: 'Add numbers', description: 'Add two numbers a and b and return their sum.',
  url: `${svcUrl}/add`, method: 'POST',
  input: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] },
  output: { type: 'object', properties: { sum: { type: 'number' } }, required: ['sum'] },
  tags: ['bench'],
});

export function diamondWorkflow(engine, req, wait, pollMs = 5, { plan = PLAN, check = checkSum } = {}) {
  return async () => {
    const r = await req('POST', '/workflows/create', { input: 'bench diamond', plan });
    if (r.status !== 201 || r.json?.workflow?.status !== 'awaiting_approval') throw new Error(`create: ${r.status} ${r.text.slice(0, 300)}`);
    const id = r.json.workflow.id;
    if (wait === 'ws') {
      const ws = new WebSocket(`ws://127.0.0.1:${engine.port}/workflows/${id}/stream?since=0`,
        { headers: { authorization: `Bearer ${engine.key}` }, perMessageDeflate: false });
      const done = new Promise((res, rej) => {
        ws.on('message', (data) => {
          let m;
          try { m = JSON.parse(data.toString('utf8')); } catch { return; }
          if (m.type === 'workflow.completed') {
            try { check(m.data?.output); res(); } catch (e) { rej(e); }
          } else if (/^workflow\.(failed|cancelled|expired)$/.test(m.type)) rej(new Error(`${id}: ${m.type} ${JSON.stringify(m.data)}`));
        });
        ws.on('error', rej);
        ws.on('close', () => rej(new Error(`${id}: stream closed before completion`)));
      });
      done.catch(() => {});
      try {
        const a = await req('POST', `/workflows/${id}/approve`);
        if (a.status !== 200) throw new Error(`approve: ${a.status} ${a.text.slice(0, 300)}`);
        await done;
      } finally { ws.terminate(); }
      return id;
    }
    const a = await req('POST', `/workflows/${id}/approve`);
    if (a.status !== 200) throw new Error(`approve: ${a.status} ${a.text.slice(0, 300)}`);
    for (;;) {
      if (pollMs) await sleep(pollMs);
      const g = await req('GET', `/workflows/${id}`);
      const st = g.json?.workflow?.status;
      if (st === 'completed') {
        check(g.json.workflow.output);
        return id;
      }
      if (g.status !== 200 || ['failed', 'cancelled', 'expired'].includes(st)) throw new Error(`${id}: ${g.status} ${g.text.slice(0, 300)}`);
    }
  };
}
