// bench/lib/diamond.mjs — the benchmarks' workload: a 4-step diamond a → b, c → d with an explicit
// plan ($ref wiring), created, approved and waited for through the public API.
//
// diamondWorkflow(engine, req, wait, pollMs, {plan, check}) → async () => workflow id. One call:
// POST /workflows/create with the plan → then either (wait 'ws') open
// /workflows/:id/stream?since=0 together with POST approve and wait for workflow.completed, or
// (wait 'poll') POST approve and GET /workflows/:id every pollMs, or (wait 'mux') the API's
// cheapest path: POST /workflows/create with {plan, approve: true} (stored, approved and started
// in one transaction) and {"subscribe": id} on one GET /stream socket shared by every workflow
// of this factory (like BullMQ's shared QueueEvents), unsubscribing at completion. check(output)
// throws on a wrong result (the default checks the free diamond's d.sum = 116).
// A factory's shared socket is closed by the returned function's close().
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

// One GET /stream socket; wait(id) resolves at the workflow's completion (checked) and
// unsubscribes, rejects on a terminal failure or an error notice.
function muxStream(engine, check) {
  const waiters = new Map();
  let ws = null;
  let ready = null;
  const fail = (e) => { for (const w of waiters.values()) w.rej(e); waiters.clear(); ws = null; ready = null; };
  const open = () => {
    if (ready) return ready;
    ws = new WebSocket(`ws://127.0.0.1:${engine.port}/stream`,
      { headers: { authorization: `Bearer ${engine.key}` }, perMessageDeflate: false });
    const sock = ws;
    ready = new Promise((res, rej) => { sock.once('open', res); sock.once('error', rej); });
    ready.catch(() => {});
    sock.on('message', (data) => {
      let m;
      try { m = JSON.parse(data.toString('utf8')); } catch { return; }
      const w = waiters.get(m.workflowId);
      if (!w) return;
      let done = null;
      if (m.type === 'workflow.completed') {
        try { check(m.data?.output); done = () => w.res(); } catch (e) { done = () => w.rej(e); }
      } else if (/^workflow\.(failed|cancelled|expired)$/.test(m.type)) {
        done = () => w.rej(new Error(`${m.workflowId}: ${m.type} ${JSON.stringify(m.data)}`));
      } else if (m.type === 'error') {
        done = () => w.rej(new Error(`${m.workflowId}: stream error ${m.error}`));
      }
      if (!done) return;
      waiters.delete(m.workflowId);
      if (m.type !== 'error') sock.send(JSON.stringify({ unsubscribe: m.workflowId }));
      done();
    });
    sock.on('close', () => fail(new Error('stream closed')));
    sock.on('error', (e) => fail(e));
    return ready;
  };
  return {
    async wait(id) {
      await open();
      const p = new Promise((res, rej) => waiters.set(id, { res, rej }));
      ws.send(JSON.stringify({ subscribe: id, since: 0 }));
      return p;
    },
    close() { try { ws?.terminate(); } catch { /* ignore */ } },
  };
}

export function diamondWorkflow(engine, req, wait, pollMs = 5, { plan = PLAN, check = checkSum } = {}) {
  if (wait === 'mux') {
    const stream = muxStream(engine, check);
    const one = async () => {
      const r = await req('POST', '/workflows/create', { input: 'bench diamond', plan, approve: true });
      if (r.status !== 201 || r.json?.workflow?.status !== 'executing') throw new Error(`create: ${r.status} ${r.text.slice(0, 300)}`);
      const id = r.json.workflow.id;
      await stream.wait(id);
      return id;
    };
    one.close = () => stream.close();
    return one;
  }
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
