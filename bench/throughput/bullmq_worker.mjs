// bench/throughput/bullmq_worker.mjs — the BullMQ side of the throughput benchmark, in its own
// process (so its CPU time can be measured like the engine's). Env: REDIS_PATH (unix socket),
// QUEUE, SERVICE_URL (…/add), CONCURRENCY.
//
// The diamond a → b, c → d on BullMQ. A BullMQ flow is a tree (a child has one parent), so
// "d with children b and c, each with child a" would run a twice. The faithful mapping runs a
// once: job a calls the service, then adds the flow d ← {b, c} with a's output in b's and c's
// data (FlowProducer); d runs when both children completed and reads their outputs with
// getChildrenValues(). Every job calls the same local HTTP service the engine calls.
import http from 'node:http';
import { Worker, FlowProducer } from 'bullmq';

const connection = { path: process.env.REDIS_PATH, maxRetriesPerRequest: null };
const queueName = process.env.QUEUE;
const svc = new URL(process.env.SERVICE_URL);
const concurrency = Number(process.env.CONCURRENCY || 128);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });

function call(body) {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request({
      agent, host: svc.hostname, port: svc.port, path: svc.pathname, method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`service answered ${res.statusCode}`));
        try { resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))); } catch (e) { reject(e); }
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const flow = new FlowProducer({ connection });

const worker = new Worker(queueName, async (job) => {
  const { wf } = job.data;
  switch (job.name) {
    case 'a': {
      const out = await call({ a: 1, b: 2 });
      await flow.add({
        name: 'd', queueName, data: { wf }, opts: { jobId: `${wf}-d` },
        children: [
          { name: 'b', queueName, data: { wf, a: out.sum }, opts: { jobId: `${wf}-b` } },
          { name: 'c', queueName, data: { wf, a: out.sum }, opts: { jobId: `${wf}-c` } },
        ],
      });
      return out;
    }
    case 'b': return call({ a: job.data.a, b: 10 });
    case 'c': return call({ a: job.data.a, b: 100 });
    case 'd': {
      const vals = await job.getChildrenValues();
      let b;
      let c;
      for (const [k, v] of Object.entries(vals)) {
        if (k.endsWith(`${wf}-b`)) b = v;
        else if (k.endsWith(`${wf}-c`)) c = v;
      }
      if (!b || !c) throw new Error(`d: missing child values ${JSON.stringify(vals)}`);
      return call({ a: b.sum, b: c.sum });
    }
    default: throw new Error(`unknown job ${job.name}`);
  }
}, { connection, concurrency });

worker.on('error', (e) => process.stderr.write(`worker error: ${e.message}\n`));
await worker.waitUntilReady();
process.stdout.write('ready\n');

async function stop() {
  try { await worker.close(true); await flow.close(); } catch { /* exiting anyway */ }
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
