// lib/idempotency.mjs — Idempotency-Key for paid x402 services (express v2, hono v2, x402-express v1).
//
// x402r sends `Idempotency-Key: <workflow>:<step>:<attempt>` with every call and, after a crash,
// may send the very same paid request again: same body, same payment header (PAYMENT-SIGNATURE
// in v2, X-PAYMENT in v1), same key. This middleware sits BEFORE the x402 payment middleware:
//
// - no Idempotency-Key: the normal path, nothing remembered.
// - the first request with a key AND a payment header that ends 2xx with a settlement header
//   (PAYMENT-RESPONSE / X-PAYMENT-RESPONSE) is remembered: status, body and response headers
//   (including the settlement header), per (method, path, key), in memory, for TTL_MS (10 min),
//   at most MAX_ENTRIES (oldest evicted first).
// - a later request with the same key and the same payment header (byte-equal) gets that stored
//   answer again, with `Idempotent-Replayed: true`, WITHOUT reaching the payment middleware:
//   nothing is verified or settled again, so nothing is charged twice.
// - the same key with a different or missing payment header: 409
//   {error:"idempotency key reused with a different payment"}.
// - a request whose key is in flight (an earlier paid request with that key has not answered yet)
//   WAITS for it to finish (up to WAIT_MS, 30 s; then 409 {error:"idempotency key in use by a
//   request still in progress"}) and is then judged like any later request: a replay if the first
//   was stored, a 409 if the payments differ, and the normal path if the first was not stored
//   (it failed, was refused or was not paid — nothing was charged, so nothing is pinned). A
//   request that is never ended releases its key ORPHAN_MS (60 s) after its connection closed.
// - answers that are not 2xx, or 2xx without a settlement header, are never stored.
//
// The stored answer is captured when the response is ended by the payment middleware, i.e.
// after settlement — even if the client has already disconnected (an engine killed in the
// middle of a paid call): the service was paid, and the replay after restart gets its answer.
import { createHash } from 'node:crypto';

export const TTL_MS = 10 * 60 * 1000;
export const MAX_ENTRIES = 10000;
export const WAIT_MS = 30000;
export const ORPHAN_MS = 60000;
export const ERR_REUSED = 'idempotency key reused with a different payment';
export const ERR_IN_PROGRESS = 'idempotency key in use by a request still in progress';

const PAYMENT_HEADERS = ['payment-signature', 'x-payment'];
const SETTLEMENT_HEADERS = ['payment-response', 'x-payment-response'];
// not replayed: recomputed for the new response or meaningless on another connection
const NOT_REPLAYED = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date']);

/** Fingerprint of the payment a request carries (null when it carries none). */
export function paymentFingerprint(getHeader) {
  for (const h of PAYMENT_HEADERS) {
    const v = getHeader(h);
    if (v) return createHash('sha256').update(`${h}\n${v}`).digest('hex');
  }
  return null;
}

const isPaid2xx = (status, headers) => status >= 200 && status < 300 && SETTLEMENT_HEADERS.some((h) => headers[h] !== undefined);

function replayHeaders(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) if (!NOT_REPLAYED.has(k)) out[k] = v;
  out['idempotent-replayed'] = 'true';
  return out;
}

export class IdempotencyStore {
  constructor({ ttlMs = TTL_MS, maxEntries = MAX_ENTRIES, waitMs = WAIT_MS, now = Date.now } = {}) {
    this.ttlMs = ttlMs; this.maxEntries = maxEntries; this.waitMs = waitMs; this.now = now;
    this.done = new Map(); // scope -> {fp, status, headers, body, expires}; insertion order = age
    this.inflight = new Map(); // scope -> {promise}
    this.stats = { stored: 0, replayed: 0, conflicts: 0, waited: 0, busy: 0 };
  }

  get(scope) {
    const e = this.done.get(scope);
    if (e && e.expires <= this.now()) { this.done.delete(scope); return null; }
    return e ?? null;
  }

  put(scope, rec) {
    this.done.delete(scope);
    this.done.set(scope, { ...rec, expires: this.now() + this.ttlMs });
    this.stats.stored++;
    const t = this.now();
    for (const [k, v] of this.done) { // oldest first: drop the expired, then any over the bound
      if (v.expires > t && this.done.size <= this.maxEntries) break;
      this.done.delete(k);
    }
  }

  /**
   * Decide what to do with a request: {type:'replay', entry} | {type:'conflict'} | {type:'busy'}
   * | {type:'proceed', finish(rec|null)}. `finish` must be called exactly when the request ends
   * (extra calls are ignored); rec = {status, headers, body} to remember it.
   */
  async begin(scope, fp) {
    const deadline = this.now() + this.waitMs;
    let waited = false;
    for (;;) {
      const e = this.get(scope);
      if (e) {
        if (e.fp === fp) { this.stats.replayed++; return { type: 'replay', entry: e }; }
        this.stats.conflicts++;
        return { type: 'conflict' };
      }
      const f = this.inflight.get(scope);
      if (f) {
        const left = deadline - this.now();
        if (left <= 0) { this.stats.busy++; return { type: 'busy' }; }
        if (!waited) { waited = true; this.stats.waited++; }
        let timer;
        await Promise.race([f.promise, new Promise((r) => { timer = setTimeout(r, left); })]);
        clearTimeout(timer);
        continue;
      }
      if (!fp) return { type: 'proceed', finish: () => {} }; // unpaid and nothing stored: nothing to pin
      let resolve;
      const slot = { promise: new Promise((r) => { resolve = r; }) };
      this.inflight.set(scope, slot);
      let finished = false;
      return {
        type: 'proceed',
        finish: (rec) => {
          if (finished) return;
          finished = true;
          if (this.inflight.get(scope) === slot) this.inflight.delete(scope);
          if (rec && isPaid2xx(rec.status, rec.headers)) this.put(scope, { ...rec, fp });
          resolve();
        },
      };
    }
  }
}

const scopeOf = (method, path, key) => `${method} ${path} ${key}`;

/** Express (v2 @x402/express and v1 x402-express): mount before the payment middleware. */
export function expressIdempotency(store = new IdempotencyStore()) {
  const mw = async (req, res, next) => {
    const key = req.get('idempotency-key');
    if (!key) return next();
    let d;
    try { d = await store.begin(scopeOf(req.method, req.path, key), paymentFingerprint((h) => req.get(h))); } catch (e) { return next(e); }
    if (d.type === 'replay') {
      const e = d.entry;
      res.status(e.status);
      for (const [k, v] of Object.entries(replayHeaders(e.headers))) res.setHeader(k, v);
      return res.end(e.body);
    }
    if (d.type !== 'proceed') return res.status(409).json({ error: d.type === 'busy' ? ERR_IN_PROGRESS : ERR_REUSED });

    // Capture what is finally written. The payment middleware binds these wrappers as its
    // "original" methods, so they see the response after settlement, headers included.
    const chunks = [];
    const extra = {};
    const collect = (chunk, enc) => {
      if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, typeof enc === 'string' ? enc : 'utf8'));
    };
    const { writeHead, write, end } = res;
    res.writeHead = function (...args) {
      const h = args.find((a, i) => i > 0 && a && typeof a === 'object');
      if (h && !Array.isArray(h)) for (const [k, v] of Object.entries(h)) extra[k.toLowerCase()] = v;
      return writeHead.apply(this, args);
    };
    res.write = function (chunk, enc, ...rest) { collect(chunk, enc); return write.call(this, chunk, enc, ...rest); };
    res.end = function (chunk, enc, ...rest) {
      collect(chunk, enc);
      const headers = {};
      for (const [k, v] of Object.entries({ ...res.getHeaders(), ...extra })) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : String(v);
      d.finish({ status: res.statusCode, headers, body: Buffer.concat(chunks) });
      return end.call(this, chunk, enc, ...rest);
    };
    // The caller hanging up (close) does not end the request: the handler and the payment
    // middleware go on, and settle. Only a request that is never ended releases its key, after
    // ORPHAN_MS, without storing anything.
    res.on('close', () => { if (!res.writableEnded) setTimeout(() => d.finish(null), ORPHAN_MS).unref(); });
    return next();
  };
  mw.store = store;
  return mw;
}

/** Hono (v2 @x402/hono): mount before the payment middleware. */
export function honoIdempotency(store = new IdempotencyStore()) {
  const mw = async (c, next) => {
    const key = c.req.header('idempotency-key');
    if (!key) return next();
    const fp = paymentFingerprint((h) => c.req.header(h));
    const d = await store.begin(scopeOf(c.req.method, c.req.path, key), fp);
    if (d.type === 'replay') {
      const e = d.entry;
      return new Response(e.body, { status: e.status, headers: replayHeaders(e.headers) });
    }
    if (d.type !== 'proceed') return c.json({ error: d.type === 'busy' ? ERR_IN_PROGRESS : ERR_REUSED }, 409);
    let rec = null;
    try {
      await next();
      const r = c.res;
      const headers = {};
      r.headers.forEach((v, k) => { headers[k] = v; });
      if (fp && isPaid2xx(r.status, headers)) rec = { status: r.status, headers, body: Buffer.from(await r.clone().arrayBuffer()) };
    } finally {
      d.finish(rec);
    }
  };
  mw.store = store;
  return mw;
}
