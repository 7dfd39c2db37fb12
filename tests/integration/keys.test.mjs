// tests/integration/keys.test.mjs — API key rotation (`keys list`, `keys revoke`) and the
// per-user rate limit (RATE_LIMIT_PER_MIN, shared through Redis, 429 with Retry-After).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { setup, api, BIN, sleep, testenv } from '../lib/harness.mjs';

let ctx;
before(async () => {
  ctx = await setup({ users: ['carol', 'dave', 'frank'], env: { AUTH_CACHE_MS: '300', RATE_LIMIT_PER_MIN: '30' } });
});
after(async () => { await ctx?.teardown(); });

function keys(args) {
  return new Promise((resolve) => {
    execFile(BIN, ['keys', ...args], { env: { ...process.env, DATABASE_URL: ctx.dbUrl, LOG_LEVEL: 'warn' } },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

test('keys list shows public ids and states, never a secret', async () => {
  const r = await keys(['list', '--user', 'carol']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  const [id, created, state] = lines[0].split('\t');
  assert.match(id, /^[a-z0-9]{16}$/);
  assert.ok(ctx.keys.carol.includes(id), 'the id is the public part of the key');
  assert.ok(!r.stdout.includes(ctx.keys.carol), 'the whole key is never shown');
  assert.match(created, /^\d{4}-\d\d-\d\dT/);
  assert.equal(state, 'active');
});

test('rotation: a new key works, the revoked one is refused within AUTH_CACHE_MS', async () => {
  const created = await keys(['create', '--user', 'carol']);
  assert.equal(created.code, 0);
  const fresh = created.stdout.trim();
  const oldClient = ctx.clients.carol;
  assert.equal((await oldClient.get('/users/carol/workflows')).status, 200);
  const rev = await keys(['revoke', ctx.keys.carol]);
  assert.equal(rev.code, 0, rev.stderr);
  await sleep(400);
  assert.equal((await oldClient.get('/users/carol/workflows')).status, 401);
  assert.equal((await api(ctx.engine, fresh).get('/users/carol/workflows')).status, 200);
  const again = await keys(['revoke', ctx.keys.carol]);
  assert.notEqual(again.code, 0, 'revoking twice is an error');
  const list = await keys(['list', '--user', 'carol']);
  assert.match(list.stdout, /\trevoked \d{4}-/);
  assert.match(list.stdout, /\tactive/);
});

test('the per-user rate limit answers 429 with Retry-After, and other users are unaffected', async () => {
  const c = ctx.clients.dave;
  let limited = null;
  for (let i = 0; i < 40 && !limited; i++) {
    const r = await c.get('/users/dave/workflows');
    if (r.status === 429) limited = r;
    else assert.equal(r.status, 200);
  }
  assert.ok(limited, 'a 429 within 40 requests at 30 per minute');
  assert.match(limited.json.error, /rate limit exceeded: 30 requests per minute/);
  const ra = Number(limited.headers['retry-after'] ?? limited.headers.get?.('retry-after'));
  assert.ok(ra >= 1 && ra <= 60, `Retry-After ${ra}`);
  const other = await keys(['create', '--user', 'erin']);
  assert.equal((await api(ctx.engine, other.stdout.trim()).get('/users/erin/workflows')).status, 200);
  assert.equal((await c.get('/health')).status, 200, 'health is never rate limited');
});

test('the limit is a sliding window: the previous minute still counts, so no burst passes at a boundary', async () => {
  // frank made 1000 requests last minute and none in this one: a fixed window would let him
  // through, the sliding window still counts most of them. (Not too close to a minute's end, so
  // "last minute" stays the previous one while the request is made.)
  if (Date.now() % 60000 > 55000) await sleep(60000 - (Date.now() % 60000) + 50);
  const m = Math.floor(Date.now() / 60000);
  const r0 = await new Promise((res) => execFile('redis-cli', ['-s', `${testenv()}/redis.sock`, 'SET',
    `x402r:rl:frank:${m - 1}`, '1000', 'EX', '120'], (err, stdout) => res({ err, stdout })));
  assert.equal(r0.err, null);
  assert.equal(r0.stdout.trim(), 'OK');
  const r = await ctx.clients.frank.get('/users/frank/workflows');
  assert.equal(r.status, 429, r.text);
  const ra = Number(r.headers['retry-after'] ?? r.headers.get?.('retry-after'));
  assert.ok(ra >= 1 && ra <= 60, `Retry-After ${ra}`);
  assert.equal((await ctx.clients.dave.get('/health')).status, 200);
});
