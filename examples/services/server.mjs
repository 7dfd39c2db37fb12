// examples/services/server.mjs — the demo's free example services: plain HTTP JSON endpoints
// (POST a JSON object, get a JSON object back) listed in examples/catalog.json. Dependency-free
// Node 20 ESM.
//
//   node examples/services/server.mjs [--port 5401] [--host 127.0.0.1]
//   env: EXAMPLES_PORT (default 5401), EXAMPLES_DELAY_MS ("min-max" or "n", default "100-300";
//        "0" turns the artificial delay off)
//
// Inputs are validated against the very schemas in examples/catalog.json (one source of truth;
// a small JSON Schema subset: type, enum, required, properties, additionalProperties:false,
// items, minimum/maximum, minLength/maxLength, minItems/maxItems, pattern); a bad input is a
// 400 {"error": "...", "field": "..."}. Answers are deterministic: the same input gives the same
// numbers (dates end yesterday, UTC, unless the input names an endDate). Each answer waits a
// small pseudo-random delay (derived from the input, so also deterministic) so that the
// demo's parallel steps visibly overlap.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const catalog = JSON.parse(readFileSync(path.join(here, '..', 'catalog.json'), 'utf8'));
const schemas = new Map(catalog.services.map((s) => [s.id, s.input]));

function argValue(name) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const port = Number(argValue('--port') ?? process.env.EXAMPLES_PORT ?? 5401);
const host = argValue('--host') ?? '127.0.0.1';
const [delayMin, delayMax] = (() => {
  const d = process.env.EXAMPLES_DELAY_MS ?? '100-300';
  const [a, b] = d.split('-').map(Number);
  return [a || 0, Number.isFinite(b) ? b : a || 0];
})();

// ---- deterministic helpers ----------------------------------------------------------------

function hash32(str) { // FNV-1a
  let h = 0x811c9dc5;
  for (let i = 0; i < str.length; i++) h = Math.imul(h ^ str.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
function rng(seed) { // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const round = (x, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

function dates(days, endDate) {
  const end = endDate ? new Date(`${endDate}T00:00:00Z`) : new Date(Date.now() - 86400000);
  const endMs = Date.UTC(end.getUTCFullYear(), end.getUTCMonth(), end.getUTCDate());
  const out = [];
  for (let k = days - 1; k >= 0; k--) out.push(new Date(endMs - k * 86400000).toISOString().slice(0, 10));
  return out;
}

// Value for "k days before the end" on one named series: an exponential drift (positive = rising
// towards the end), a weekly rhythm and noise,
// keyed on k so the numbers do not change from one day to the next.
function seriesValue(name, base, drift, noise, k) {
  const r = rng(hash32(`${name}:${k}`));
  const weekly = 1 + 0.06 * Math.sin((2 * Math.PI * k) / 7);
  return base * Math.exp(-drift * k) * weekly * (1 + noise * (r() * 2 - 1));
}

// ---- validation -----------------------------------------------------------------------------

class BadInput extends Error {
  constructor(field, message) { super(message); this.field = field; }
}

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function validate(schema, v, at) {
  if (!schema) return;
  const t = typeOf(v);
  if (schema.type && !(schema.type === t || (schema.type === 'number' && t === 'integer')))
    throw new BadInput(at, `${at} must be ${schema.type === 'integer' ? 'an integer' : `a ${schema.type}`}`);
  if (schema.enum && !schema.enum.includes(v)) throw new BadInput(at, `${at} must be one of ${schema.enum.join(', ')}`);
  if (t === 'number' || t === 'integer') {
    if (schema.minimum !== undefined && v < schema.minimum) throw new BadInput(at, `${at} must be at least ${schema.minimum}`);
    if (schema.maximum !== undefined && v > schema.maximum) throw new BadInput(at, `${at} must be at most ${schema.maximum}`);
  }
  if (t === 'string') {
    if (schema.minLength !== undefined && v.length < schema.minLength) throw new BadInput(at, `${at} is too short`);
    if (schema.maxLength !== undefined && v.length > schema.maxLength) throw new BadInput(at, `${at} is too long`);
    if (schema.pattern && !new RegExp(schema.pattern).test(v)) throw new BadInput(at, `${at} is malformed`);
  }
  if (t === 'array') {
    if (schema.minItems !== undefined && v.length < schema.minItems) throw new BadInput(at, `${at} needs at least ${schema.minItems} items`);
    if (schema.maxItems !== undefined && v.length > schema.maxItems) throw new BadInput(at, `${at} has more than ${schema.maxItems} items`);
    if (schema.items) v.forEach((x, i) => validate(schema.items, x, `${at}[${i}]`));
  }
  if (t === 'object') {
    for (const r of schema.required ?? []) if (!(r in v)) throw new BadInput(`${at}.${r}`, `${at}.${r} is required`);
    for (const [k, x] of Object.entries(v)) {
      const sub = schema.properties?.[k];
      if (!sub && schema.additionalProperties === false) throw new BadInput(`${at}.${k}`, `${at}.${k} is not a known input`);
      validate(sub, x, `${at}.${k}`);
    }
  }
}

// ---- the services ---------------------------------------------------------------------------

const CHAINS = {
  solana: { volume: 2.4e9, drift: 0.009, tokens: { SOL: 185, JUP: 0.92, BONK: 0.000031 } },
  ethereum: { volume: 1.9e9, drift: -0.004, tokens: { ETH: 3350, UNI: 11.2, LINK: 19.5 } },
  base: { volume: 0.75e9, drift: -0.006, tokens: { ETH: 3350, AERO: 1.35, DEGEN: 0.011 } },
  arbitrum: { volume: 0.55e9, drift: 0.002, tokens: { ETH: 3350, ARB: 0.78, GMX: 27.4 } },
  polygon: { volume: 0.09e9, drift: 0.003, tokens: { POL: 0.46, AAVE: 310, QUICK: 0.045 } },
};

function dexVolume({ chain, days, endDate }) {
  const c = CHAINS[chain];
  const ds = dates(days, endDate);
  const series = ds.map((date, i) => ({
    date,
    volumeUsd: Math.round(seriesValue(`vol:${chain}`, c.volume, c.drift, 0.12, days - 1 - i)),
  }));
  return { chain, days, series, total: series.reduce((a, p) => a + p.volumeUsd, 0) };
}

function tokenPrices({ chain, days, tokens, endDate }) {
  const c = CHAINS[chain];
  const ds = dates(days, endDate);
  const list = tokens?.length ? tokens : Object.keys(c.tokens);
  const prices = list.map((token) => {
    const base = c.tokens[token] ?? 1 + (hash32(token) % 1000) / 10;
    const drift = ((hash32(`drift:${token}`) % 100) - 60) / 10000;
    const series = ds.map((date, i) => ({
      date,
      priceUsd: round(seriesValue(`px:${chain}:${token}`, base, drift, 0.04, days - 1 - i), base < 1 ? 8 : 4),
    }));
    const first = series[0].priceUsd, last = series[series.length - 1].priceUsd;
    return { token, first, last, changePct: round(((last - first) / first) * 100), series };
  });
  return { chain, prices };
}

function pointValue(p, i) {
  if (typeof p === 'number') return p;
  for (const k of ['value', 'volumeUsd', 'priceUsd'])
    if (typeof p?.[k] === 'number' && Number.isFinite(p[k])) return p[k];
  throw new BadInput(`input.series[${i}]`, `input.series[${i}] has no numeric value, volumeUsd or priceUsd`);
}

function trendAnalysis({ series }) {
  const ys = series.map(pointValue);
  const n = ys.length;
  const mean = ys.reduce((a, b) => a + b, 0) / n;
  const xm = (n - 1) / 2;
  let sxy = 0, sxx = 0;
  ys.forEach((y, x) => { sxy += (x - xm) * (y - mean); sxx += (x - xm) ** 2; });
  const slope = sxx ? sxy / sxx : 0;
  const w = Math.max(1, Math.min(7, Math.floor(n / 3)));
  const head = ys.slice(0, w).reduce((a, b) => a + b, 0) / w;
  const tail = ys.slice(-w).reduce((a, b) => a + b, 0) / w;
  const changePct = head ? ((tail - head) / Math.abs(head)) * 100 : 0;
  const rets = ys.slice(1).map((y, i) => (ys[i] ? (y - ys[i]) / Math.abs(ys[i]) : 0));
  const rm = rets.reduce((a, b) => a + b, 0) / (rets.length || 1);
  const vol = Math.sqrt(rets.reduce((a, r) => a + (r - rm) ** 2, 0) / (rets.length || 1)) * 100;
  let peak = 0;
  ys.forEach((y, i) => { if (y > ys[peak]) peak = i; });
  return {
    trend: {
      direction: changePct > 2 ? 'up' : changePct < -2 ? 'down' : 'flat',
      changePct: round(changePct),
      slopePerDay: round(slope),
      average: round(mean),
      min: round(Math.min(...ys)),
      max: round(Math.max(...ys)),
      peakDate: series[peak]?.date ?? String(peak),
      volatilityPct: round(vol),
      points: n,
    },
  };
}

function usd(x) {
  const a = Math.abs(x), sign = x < 0 ? '-' : '';
  if (a >= 1e9) return `${sign}$${round(a / 1e9)}B`;
  if (a >= 1e6) return `${sign}$${round(a / 1e6)}M`;
  return `${sign}$${round(a, a < 1 ? 6 : 2)}`;
}

function report({ trend, series, prices, title }) {
  const t = trend;
  for (const k of ['direction', 'changePct', 'average'])
    if (t[k] === undefined) throw new BadInput(`input.trend.${k}`, `input.trend.${k} is required`);
  const ttl = title ?? 'DEX volume trend report';
  const first = series[0]?.date, last = series[series.length - 1]?.date;
  const arrow = { up: 'rising', down: 'falling', flat: 'flat' }[t.direction] ?? t.direction;
  const lines = [
    `# ${ttl}`, '',
    `Period: ${first ?? '?'} to ${last ?? '?'} (${series.length} days)`, '',
    '## Summary', '',
    `- Trend: **${arrow}** (${t.changePct >= 0 ? '+' : ''}${t.changePct}% from the first to the last week)`,
    `- Average per day: ${usd(t.average)}; range ${usd(t.min)} to ${usd(t.max)}`,
    `- Peak day: ${t.peakDate}; daily volatility ${t.volatilityPct}%`,
    `- Slope: ${usd(t.slopePerDay)} per day`, '',
    '## Last 7 days', '', '| Date | Value |', '|---|---|',
    ...series.slice(-7).map((p, i) => `| ${p.date ?? i} | ${usd(pointValue(p, i))} |`),
  ];
  if (prices?.length) {
    lines.push('', '## Token prices', '', '| Token | First | Last | Change |', '|---|---|---|---|');
    for (const p of prices) lines.push(`| ${p.token} | ${usd(p.first)} | ${usd(p.last)} | ${p.changePct}% |`);
  }
  return { title: ttl, report: lines.join('\n') + '\n' };
}

const POS = ['good', 'great', 'excellent', 'love', 'happy', 'fantastic', 'up', 'gain', 'win', 'best', 'nice'];
const NEG = ['bad', 'terrible', 'awful', 'hate', 'sad', 'poor', 'down', 'loss', 'lose', 'worst', 'crash'];
function sentiment({ text }) {
  const words = text.toLowerCase().split(/[^a-z]+/);
  const s = words.reduce((a, w) => a + (POS.includes(w) ? 1 : NEG.includes(w) ? -1 : 0), 0);
  const score = round(Math.max(-1, Math.min(1, s / 3)));
  return { sentiment: score > 0 ? 'positive' : score < 0 ? 'negative' : 'neutral', score };
}

const CONDITIONS = ['sunny', 'partly cloudy', 'cloudy', 'light rain', 'showers', 'windy'];
function weather({ city, days = 3 }) {
  const r = rng(hash32(city.toLowerCase()));
  const base = 5 + r() * 20;
  const start = new Date();
  const forecast = [];
  for (let i = 0; i < days; i++) {
    const d = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate() + i));
    const q = rng(hash32(`${city.toLowerCase()}:${i}`));
    const minC = round(base - 4 + q() * 3, 1);
    forecast.push({ date: d.toISOString().slice(0, 10), minC, maxC: round(minC + 4 + q() * 6, 1),
                    conditions: CONDITIONS[Math.floor(q() * CONDITIONS.length)] });
  }
  return { city, forecast };
}

const BOOKS = {
  '9783161484100': { title: 'The Art of Example Data', author: 'A. Placeholder', publisher: 'Mohr Siebeck', year: 2009 },
  '9780131103627': { title: 'The C Programming Language', author: 'Brian W. Kernighan, Dennis M. Ritchie', publisher: 'Prentice Hall', year: 1988 },
  '9780262033848': { title: 'Introduction to Algorithms', author: 'Cormen, Leiserson, Rivest, Stein', publisher: 'MIT Press', year: 2009 },
};
function isbnValid(d) {
  if (d.length === 10) {
    let s = 0;
    for (let i = 0; i < 10; i++) s += (d[i] === 'X' ? 10 : Number(d[i])) * (10 - i);
    return /^[0-9]{9}[0-9X]$/.test(d) && s % 11 === 0;
  }
  if (d.length === 13 && /^[0-9]{13}$/.test(d)) {
    let s = 0;
    for (let i = 0; i < 13; i++) s += Number(d[i]) * (i % 2 ? 3 : 1);
    return s % 10 === 0;
  }
  return false;
}
function isbnLookup({ isbn }) {
  const d = isbn.replace(/[ -]/g, '').toUpperCase();
  const valid = isbnValid(d);
  if (!valid) return { isbn: d, valid };
  const book = BOOKS[d] ?? { title: `Unknown title (${d})`, author: 'unknown', publisher: 'unknown', year: 2000 + (hash32(d) % 24) };
  return { isbn: d, valid, ...book };
}

const DICT = {
  es: { hello: 'hola', good: 'buen', morning: 'día', world: 'mundo', thank: 'gracias', you: 'tú', the: 'el', report: 'informe', volume: 'volumen', market: 'mercado' },
  fr: { hello: 'bonjour', good: 'bon', morning: 'matin', world: 'monde', thank: 'merci', you: 'vous', the: 'le', report: 'rapport', volume: 'volume', market: 'marché' },
  de: { hello: 'hallo', good: 'guten', morning: 'Morgen', world: 'Welt', thank: 'danke', you: 'du', the: 'der', report: 'Bericht', volume: 'Volumen', market: 'Markt' },
  it: { hello: 'ciao', good: 'buon', morning: 'giorno', world: 'mondo', thank: 'grazie', you: 'tu', the: 'il', report: 'rapporto', volume: 'volume', market: 'mercato' },
  pt: { hello: 'olá', good: 'bom', morning: 'dia', world: 'mundo', thank: 'obrigado', you: 'você', the: 'o', report: 'relatório', volume: 'volume', market: 'mercado' },
};
function translate({ text, target }) {
  const d = DICT[target];
  const translation = text.replace(/[A-Za-z]+/g, (w) => {
    const t = d[w.toLowerCase()];
    if (!t) return w;
    return w[0] === w[0].toUpperCase() ? t[0].toUpperCase() + t.slice(1) : t;
  });
  return { translation, target };
}

const USD_PER = { USD: 1, EUR: 1.08, GBP: 1.27, JPY: 0.0067, CHF: 1.13 };
function convert({ amount, from, to }) {
  const rate = USD_PER[from] / USD_PER[to];
  return { amount: round(amount * rate, 2), rate: round(rate, 6), currency: to };
}

const handlers = {
  dex_volume: dexVolume,
  token_prices: tokenPrices,
  trend_analysis: trendAnalysis,
  report,
  sentiment_analysis: sentiment,
  weather_forecast: weather,
  isbn_lookup: isbnLookup,
  translate_text: translate,
  currency_convert: convert,
};

// ---- HTTP -----------------------------------------------------------------------------------

function send(res, status, body) {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
  res.end(s);
}

function delayFor(key) {
  if (delayMax <= 0) return 0;
  return delayMin + (hash32(key) % (Math.max(0, delayMax - delayMin) + 1));
}

const MAX_BODY = 1 << 20;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const name = url.pathname.replace(/^\/+/, '');
  if (req.method === 'GET' && name === 'health') return send(res, 200, { ok: true, services: Object.keys(handlers) });
  const fn = handlers[name];
  if (!fn) return send(res, 404, { error: `no service ${url.pathname}` });
  if (req.method !== 'POST') return send(res, 405, { error: 'use POST with a JSON body' });
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) { send(res, 413, { error: 'body too large' }); req.destroy(); } else chunks.push(c);
  });
  req.on('end', () => {
    if (res.headersSent) return;
    const raw = Buffer.concat(chunks).toString('utf8');
    let input;
    try {
      input = raw.trim() ? JSON.parse(raw) : {};
    } catch {
      return send(res, 400, { error: 'body is not JSON' });
    }
    let out;
    try {
      if (typeOf(input) !== 'object') throw new BadInput('input', 'input must be a JSON object');
      validate(schemas.get(name), input, 'input');
      out = fn(input);
    } catch (e) {
      if (e instanceof BadInput) return send(res, 400, { error: e.message, field: e.field });
      return send(res, 500, { error: String(e?.message ?? e) });
    }
    setTimeout(() => send(res, 200, out), delayFor(`${name}:${raw}`));
  });
});

server.listen(port, host, () => {
  const a = server.address();
  console.log(`examples: listening on http://${host}:${a.port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
