// bench/throughput/service.mjs — the "fast local service" of the throughput benchmark, in its
// own process: POST /add {a, b} → 200 {sum}; anything else → 404. Answers at once, keep-alive.
// Prints `listening on PORT` once ready. Used by both the x402r engine and the BullMQ workers.
import http from 'node:http';

const server = http.createServer((req, res) => {
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
  });
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;
server.listen(0, '127.0.0.1', () => { process.stdout.write(`listening on ${server.address().port}\n`); });
process.on('SIGTERM', () => process.exit(0));
