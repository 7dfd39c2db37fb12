// bench/throughput/service.mjs — the "fast local service" of the benchmarks, in its own process:
// POST /add {a, b} → 200 {sum}; anything else → 404. Answers at once, keep-alive. Prints
// `listening on PORT` once ready. Used by the x402r engine and by the BullMQ workers.
//
// With --trace (bench/dispatch) it also records, per /add request carrying X-Workflow-Id and
// X-Step-Id, when the request arrived (its headers parsed) and when its response was handed to
// the socket, both on this process's monotonic clock (performance.now(), ms); GET /trace returns
// {now, calls: [[workflowId, stepId, inMs, outMs], ...]} and forgets them.
import http from 'node:http';

const TRACE = process.argv.includes('--trace');
let calls = [];

const server = http.createServer((req, res) => {
  const tin = performance.now();
  if (TRACE && req.method === 'GET' && req.url === '/trace') {
    const s = JSON.stringify({ now: tin, calls });
    calls = [];
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
    res.end(s);
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let status = 200;
    let out;
    if (req.url.split('?')[0] === '/add') {
      let body = null;
      try { body = JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null'); } catch { body = null; }
      const a = Number(body?.a);
      const b = Number(body?.b);
      if (Number.isFinite(a) && Number.isFinite(b)) out = { sum: a + b };
      else { status = 400; out = { error: 'a and b must be numbers' }; }
    } else {
      status = 404;
      out = { error: 'not found' };
    }
    const s = JSON.stringify(out);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
    res.end(s);
    const wf = req.headers['x-workflow-id'];
    const step = req.headers['x-step-id'];
    if (TRACE && wf && step && calls.length < 2_000_000) calls.push([wf, step, tin, performance.now()]);
  });
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;
server.listen(0, '127.0.0.1', () => { process.stdout.write(`listening on ${server.address().port}\n`); });
process.on('SIGTERM', () => process.exit(0));
