// lib/catalog.mjs — the marketplace's paid services: what they take, what they answer, what
// they cost and which server runs them. Answers are deterministic functions of the input.

const CHAINS = ['solana', 'ethereum', 'base', 'arbitrum', 'polygon'];
const DATE = { type: 'string', pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}$', description: 'last day (YYYY-MM-DD, UTC); default 2025-01-31' };
const SERIES = {
  type: 'array', description: 'daily points, oldest first',
  items: { type: 'object', properties: { date: { type: 'string' }, volumeUsd: { type: 'number' } }, required: ['date', 'volumeUsd'] },
};
const TREND = {
  type: 'object', description: 'trend summary',
  properties: { direction: { type: 'string', enum: ['up', 'down', 'flat'] }, changePct: { type: 'number' }, average: { type: 'number' } },
};

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
function dates(days, endDate = '2025-01-31') {
  const end = Date.parse(`${endDate}T00:00:00Z`);
  const out = [];
  for (let k = days - 1; k >= 0; k--) out.push(new Date(end - k * 86400000).toISOString().slice(0, 10));
  return out;
}

class InputError extends Error {}
function need(cond, msg) { if (!cond) throw new InputError(msg); }

/** Minimal JSON-schema check of the declared input schema (type, required, enum, min/max). */
export function checkInput(schema, input) {
  need(input && typeof input === 'object' && !Array.isArray(input), 'body must be a JSON object');
  for (const r of schema.required ?? []) need(input[r] !== undefined, `missing required field "${r}"`);
  for (const [k, v] of Object.entries(input)) {
    const p = schema.properties?.[k];
    need(p || schema.additionalProperties !== false, `unknown field "${k}"`);
    if (!p) continue;
    if (p.type === 'integer') need(Number.isInteger(v), `"${k}" must be an integer`);
    if (p.type === 'number') need(typeof v === 'number', `"${k}" must be a number`);
    if (p.type === 'string') need(typeof v === 'string', `"${k}" must be a string`);
    if (p.type === 'array') need(Array.isArray(v), `"${k}" must be an array`);
    if (p.type === 'object') need(v && typeof v === 'object' && !Array.isArray(v), `"${k}" must be an object`);
    if (p.enum) need(p.enum.includes(v), `"${k}" must be one of ${p.enum.join(', ')}`);
    if (p.minimum !== undefined) need(v >= p.minimum, `"${k}" must be >= ${p.minimum}`);
    if (p.maximum !== undefined) need(v <= p.maximum, `"${k}" must be <= ${p.maximum}`);
    if (p.maxLength !== undefined) need(v.length <= p.maxLength, `"${k}" is too long`);
    if (p.pattern) need(new RegExp(p.pattern).test(v), `"${k}" does not match ${p.pattern}`);
  }
}
export { InputError };

function dexVolume({ chain, days, endDate }) {
  const r = rng(hash32(`dex:${chain}`));
  const base = { solana: 2.1e9, ethereum: 1.6e9, base: 9e8, arbitrum: 6e8, polygon: 2e8 }[chain];
  const series = dates(days, endDate).map((date) => ({ date, volumeUsd: round(base * (0.7 + 0.6 * rng(hash32(`${chain}:${date}`))() + 0 * r())) }));
  return { chain, days, series, total: round(series.reduce((s, p) => s + p.volumeUsd, 0)) };
}

function tokenPrices({ chain, days, tokens, endDate }) {
  const list = tokens?.length ? tokens : ({ solana: ['SOL', 'JUP', 'BONK'], ethereum: ['ETH', 'UNI', 'LINK'] }[chain] ?? ['ETH', 'USDC', 'ARB']);
  const ds = dates(days, endDate);
  const prices = list.map((symbol) => {
    const base = 1 + (hash32(symbol) % 20000) / 100;
    const series = ds.map((date) => ({ date, priceUsd: round(base * (0.9 + 0.2 * rng(hash32(`${symbol}:${date}`))()), 4) }));
    const changePct = round(((series.at(-1).priceUsd - series[0].priceUsd) / series[0].priceUsd) * 100);
    return { symbol, series, changePct };
  });
  return { chain, prices };
}

function trend({ series }) {
  need(Array.isArray(series) && series.length > 0, '"series" must be a non-empty array');
  const v = series.map((p) => Number(p.volumeUsd ?? p.value ?? 0));
  const changePct = v[0] ? round(((v.at(-1) - v[0]) / v[0]) * 100) : 0;
  const average = round(v.reduce((a, b) => a + b, 0) / v.length);
  return { trend: { direction: changePct > 2 ? 'up' : changePct < -2 ? 'down' : 'flat', changePct, average } };
}

const POS = ['good', 'great', 'bullish', 'up', 'love', 'excellent', 'gain', 'strong', 'win'];
const NEG = ['bad', 'bearish', 'down', 'hate', 'terrible', 'loss', 'weak', 'crash', 'scam'];
function sentiment({ text }) {
  const words = text.toLowerCase().match(/[a-z]+/g) ?? [];
  const s = words.reduce((acc, w) => acc + (POS.includes(w) ? 1 : 0) - (NEG.includes(w) ? 1 : 0), 0);
  const score = words.length ? round(Math.max(-1, Math.min(1, s / Math.sqrt(words.length))), 3) : 0;
  return { sentiment: score > 0.1 ? 'positive' : score < -0.1 ? 'negative' : 'neutral', score };
}

function report({ title, trend: t, series, prices }) {
  const lines = [`# ${title ?? 'DEX volume report'}`];
  if (t) lines.push(`Trend: ${t.direction ?? 'n/a'} (${t.changePct ?? 0}% over the period, average ${t.average ?? 'n/a'}).`);
  if (Array.isArray(series)) lines.push(`${series.length} daily points from ${series[0]?.date ?? '?'} to ${series.at(-1)?.date ?? '?'}.`);
  if (Array.isArray(prices)) for (const p of prices) lines.push(`- ${p.symbol}: ${p.changePct}%`);
  return { title: title ?? 'DEX volume report', report: lines.join('\n') };
}

function whaleAlerts({ chain, minUsd = 1000000 }) {
  const r = rng(hash32(`whale:${chain}:${minUsd}`));
  const alerts = Array.from({ length: 3 }, (_, i) => ({ rank: i + 1, amountUsd: round(minUsd * (1 + 9 * r())), token: ['USDC', 'SOL', 'ETH'][i] }));
  return { chain, alerts };
}

/**
 * Each service: id, server ("express" v2, "hono" v2, "v1" = x402-express), path, price ("$…"),
 * name, description, category, tags, capabilities, input/output JSON Schemas, example input, and
 * the handler. `fail: true` answers 500 after the payment was verified (so it must not settle);
 * `delayMs(input)` makes the handler wait that long (after verification, before settlement).
 */
export const SERVICES = [
  {
    id: 'dex_volume', server: 'express', price: '$0.001', category: 'defi',
    name: 'DEX volume (paid)', description: 'Daily DEX trading volume in USD on one chain over the last N days, with the total.',
    tags: ['defi', 'dex', 'volume', 'timeseries'], capabilities: ['dex-volume', 'timeseries'],
    input: { type: 'object', properties: { chain: { type: 'string', enum: CHAINS }, days: { type: 'integer', minimum: 1, maximum: 365 }, endDate: DATE }, required: ['chain', 'days'], additionalProperties: false },
    output: { type: 'object', properties: { chain: { type: 'string' }, days: { type: 'integer' }, series: SERIES, total: { type: 'number' } } },
    example: { chain: 'solana', days: 7 }, run: dexVolume,
  },
  {
    id: 'token_prices', server: 'express', price: '$0.002', category: 'defi',
    name: 'Token prices (paid)', description: 'Daily USD closing prices of the main tokens on a chain over the last N days, with each token\'s change.',
    tags: ['defi', 'prices', 'tokens', 'timeseries'], capabilities: ['price-feed'],
    input: { type: 'object', properties: { chain: { type: 'string', enum: CHAINS }, days: { type: 'integer', minimum: 1, maximum: 365 }, tokens: { type: 'array', items: { type: 'string' }, maxItems: 10 }, endDate: DATE }, required: ['chain', 'days'], additionalProperties: false },
    output: { type: 'object', properties: { chain: { type: 'string' }, prices: { type: 'array', items: { type: 'object', properties: { symbol: { type: 'string' }, series: { type: 'array' }, changePct: { type: 'number' } } } } } },
    example: { chain: 'solana', days: 7 }, run: tokenPrices,
  },
  {
    id: 'trend_analysis', server: 'hono', price: '$0.0005', category: 'analytics',
    name: 'Trend analysis (paid)', description: 'Direction, percent change and average of a daily volume series.',
    tags: ['analytics', 'trend', 'timeseries'], capabilities: ['trend-analysis'],
    input: { type: 'object', properties: { series: SERIES }, required: ['series'], additionalProperties: false },
    output: { type: 'object', properties: { trend: TREND } },
    example: { series: [{ date: '2025-01-01', volumeUsd: 1 }, { date: '2025-01-02', volumeUsd: 2 }] }, run: trend,
  },
  {
    id: 'sentiment_analysis', server: 'hono', price: '$0.0015', category: 'ai',
    name: 'Sentiment analyzer (paid)', description: 'Positive / negative / neutral sentiment of an English text, with a score in [-1, 1].',
    tags: ['ai', 'nlp', 'sentiment'], capabilities: ['sentiment-analysis'],
    input: { type: 'object', properties: { text: { type: 'string', maxLength: 10000 } }, required: ['text'], additionalProperties: false },
    output: { type: 'object', properties: { sentiment: { type: 'string', enum: ['positive', 'negative', 'neutral'] }, score: { type: 'number' } } },
    example: { text: 'SOL volume is up, bullish' }, run: sentiment,
  },
  {
    id: 'report', server: 'hono', price: '$0.003', category: 'ai',
    name: 'Trend report writer (paid)', description: 'Writes a short markdown trend report from a trend, a series and token prices.',
    tags: ['ai', 'report', 'writing'], capabilities: ['report-writing'],
    input: { type: 'object', properties: { title: { type: 'string' }, trend: TREND, series: SERIES, prices: { type: 'array' } }, additionalProperties: false },
    output: { type: 'object', properties: { title: { type: 'string' }, report: { type: 'string' } } },
    example: { title: 'Weekly DEX report' }, run: report,
  },
  {
    id: 'slow_report', server: 'express', price: '$0.001', category: 'test',
    name: 'Slow report writer (paid)', description: 'The report writer, answering only after delayMs milliseconds (default 2000, at most 10000): a paid request stays in flight that long.',
    tags: ['test', 'report', 'slow'], capabilities: ['slow-report'],
    input: { type: 'object', properties: { title: { type: 'string' }, trend: TREND, series: SERIES, prices: { type: 'array' }, delayMs: { type: 'integer', minimum: 0, maximum: 10000, description: 'how long to wait before answering (ms); default 2000' } }, additionalProperties: false },
    output: { type: 'object', properties: { title: { type: 'string' }, report: { type: 'string' } } },
    example: { title: 'Slow report', delayMs: 2000 }, run: report, delayMs: (input) => input.delayMs ?? 2000,
  },
  {
    id: 'whale_alerts', server: 'v1', price: '$0.001', category: 'defi',
    name: 'Whale alerts (x402 v1)', description: 'The three largest transfers above a USD threshold on a chain (served by x402-express, protocol v1).',
    tags: ['defi', 'whales', 'alerts'], capabilities: ['whale-alerts'],
    input: { type: 'object', properties: { chain: { type: 'string', enum: CHAINS }, minUsd: { type: 'number', minimum: 0 } }, required: ['chain'], additionalProperties: false },
    output: { type: 'object', properties: { chain: { type: 'string' }, alerts: { type: 'array', items: { type: 'object', properties: { rank: { type: 'integer' }, amountUsd: { type: 'number' }, token: { type: 'string' } } } } } },
    example: { chain: 'solana' }, run: whaleAlerts,
  },
  {
    id: 'flaky_after_verify', server: 'express', price: '$0.001', category: 'test', fail: true,
    name: 'Always fails after verification', description: 'Verifies the payment, then answers 500: the payment must NOT be settled.',
    tags: ['test', 'failure'], capabilities: ['failure-injection'],
    input: { type: 'object', properties: { text: { type: 'string' } }, additionalProperties: false },
    output: { type: 'object', properties: { error: { type: 'string' } } },
    example: { text: 'x' }, run: () => ({}),
  },
  {
    id: 'premium_report', server: 'express', price: '$5.00', category: 'test',
    name: 'Premium report (over cap)', description: 'A report priced above sensible per-transaction caps ($5.00 a call).',
    tags: ['test', 'report', 'expensive'], capabilities: ['report-writing'],
    input: { type: 'object', properties: { title: { type: 'string' } }, additionalProperties: false },
    output: { type: 'object', properties: { title: { type: 'string' }, report: { type: 'string' } } },
    example: { title: 'Premium' }, run: report,
  },
];

/** "$0.0015" -> "1500" atomic units of a 6-decimal token. */
export function priceAtomic(price, decimals = 6) {
  const m = /^\$?(\d+)(?:\.(\d+))?$/.exec(price);
  if (!m) throw new Error(`bad price ${price}`);
  const frac = (m[2] ?? '').padEnd(decimals, '0');
  if (frac.length > decimals) throw new Error(`too many decimals in ${price}`);
  return (BigInt(m[1]) * 10n ** BigInt(decimals) + BigInt(frac || '0')).toString();
}

/** "1500" -> "0.0015" */
export function priceDecimal(price) {
  const a = priceAtomic(price).padStart(7, '0');
  const s = `${a.slice(0, -6)}.${a.slice(-6)}`.replace(/0+$/, '').replace(/\.$/, '');
  return s;
}
