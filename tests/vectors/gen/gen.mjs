// tests/vectors/gen/gen.mjs — writes tests/vectors/solana/*.json, the reference results that
// tests/unit/test_solana.c compares engine/pay/solana.c against. The reference is
// @solana/web3.js 1.98.0 + @solana/spl-token 0.4.13 (exact versions in package.json / lock).
// Deterministic: every "random" byte comes from SHA-256 of a fixed label, so re-running the
// script reproduces the committed files byte for byte. Run: npm ci && node gen.mjs
import { createHash } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import bs58 from 'bs58';
import { ed25519, ED25519_TORSION_SUBGROUP } from '@noble/curves/ed25519';
import {
  ComputeBudgetProgram, Keypair, PublicKey, SystemProgram, TransactionInstruction,
  TransactionMessage, VersionedTransaction,
} from '@solana/web3.js';
import {
  ASSOCIATED_TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID,
  createTransferCheckedInstruction, getAssociatedTokenAddressSync,
} from '@solana/spl-token';

const OUT = join(dirname(fileURLToPath(import.meta.url)), '..', 'solana');
const MEMO_PROGRAM_ID = new PublicKey('MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr');

const sha = (label) => createHash('sha256').update(label).digest();
const rnd = (label, n) => {
  const out = Buffer.alloc(n);
  for (let off = 0, i = 0; off < n; i++, off += 32) sha(`${label}/${i}`).copy(out, off, 0, Math.min(32, n - off));
  return out;
};
const hex = (b) => Buffer.from(b).toString('hex');
const key = (name) => Keypair.fromSeed(sha(`x402r-vector-key-${name}`));
const pub = (label) => key(label).publicKey;
// an instruction operand: a key name, or '=<base58>' for a literal address
const pk = (x) => (x.startsWith('=') ? new PublicKey(x.slice(1)) : pub(x));
const write = (name, obj) => {
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, name), JSON.stringify(obj, null, 1) + '\n');
  console.log('wrote', name);
};

const versions = {
  '@solana/web3.js': '1.98.0', '@solana/spl-token': '0.4.13', note: 'see package-lock.json',
};

// ---- base58 -------------------------------------------------------------------------------
{
  const inputs = [
    Buffer.alloc(0), Buffer.from([0]), Buffer.from([0, 0]), Buffer.from([0, 0, 0, 1, 2, 3]),
    Buffer.from('hello world'), Buffer.alloc(32), Buffer.alloc(32, 0xff), Buffer.alloc(64, 0xff),
    Buffer.from([0x61]), Buffer.from([0xff]), Buffer.from([0, 0xff]), Buffer.from([57]), Buffer.from([58]),
  ];
  for (let i = 0; i < 12; i++) {
    const b = rnd(`b58/${i}`, [1, 5, 31, 32, 33, 64][i % 6]);
    if (i % 4 === 0) b[0] = 0; // leading zeros
    if (i % 8 === 0 && b.length > 1) b[1] = 0;
    inputs.push(b);
  }
  write('base58.json', { versions, cases: inputs.map((b) => ({ hex: hex(b), b58: bs58.encode(b) })) });
}

// ---- keypairs -----------------------------------------------------------------------------
{
  const cases = [];
  for (const name of ['payer', 'feePayer', 'payTo', 'alice', 'bob']) {
    const kp = key(name);
    cases.push({
      name, secretBase64: Buffer.from(kp.secretKey).toString('base64'), address: kp.publicKey.toBase58(),
    });
  }
  write('keypairs.json', { versions, cases });
}

// ---- on-curve -----------------------------------------------------------------------------
// Solana's runtime decides with curve25519-dalek's decompress(): any y (bit 255 ignored, y >= p
// allowed and reduced) for which x exists, whatever the sign bit. That is @noble/curves with
// zip215=true. web3.js 1.98 calls fromHex without zip215 and so rejects the few non-canonical
// encodings; both answers are recorded.
{
  const dalek = (b) => { try { ed25519.ExtendedPoint.fromHex(b, true); return true; } catch { return false; } };
  const cases = [];
  const add = (b, kind) => cases.push({ hex: hex(b), kind, onCurve: dalek(b), web3: PublicKey.isOnCurve(b) });
  for (let i = 0; i < 200; i++) add(rnd(`curve/${i}`, 32), 'random');
  for (let i = 0; i < 8; i++) add(key(`curvekey${i}`).publicKey.toBytes(), 'pubkey');
  for (const t of ED25519_TORSION_SUBGROUP) add(Buffer.from(t, 'hex'), 'small-order');
  // points with a torsion component: on the curve, outside the prime-order subgroup
  for (let i = 0; i < 8; i++) {
    const P = ed25519.ExtendedPoint.fromHex(key(`torsion${i}`).publicKey.toBytes());
    const T = ed25519.ExtendedPoint.fromHex(ED25519_TORSION_SUBGROUP[i === 0 ? 1 : i]);
    add(P.add(T).toRawBytes(), 'torsion');
  }
  const le = (n) => { const b = Buffer.alloc(32); let v = n; for (let i = 0; i < 32; i++) { b[i] = Number(v & 0xffn); v >>= 8n; } return b; };
  const P = (1n << 255n) - 19n;
  for (const y of [0n, 1n, 2n, P - 1n, P - 2n]) add(le(y), 'edge');
  for (const y of [1n, P - 1n, 0n]) { const b = le(y); b[31] |= 0x80; add(b, 'edge-sign'); }
  for (let y = P; y < (1n << 255n); y++) { add(le(y), 'non-canonical'); const b = le(y); b[31] |= 0x80; add(b, 'non-canonical-sign'); }
  write('curve.json', { versions, cases });
}

// ---- PDA and ATA --------------------------------------------------------------------------
{
  const pdas = [];
  let below = 0;
  for (let i = 0; pdas.length < 30 && i < 2000; i++) {
    const nseeds = 1 + (i % 4);
    const seeds = [];
    for (let s = 0; s < nseeds; s++) seeds.push(rnd(`pda/${i}/${s}`, (i * 7 + s * 13) % 33));
    const program = pub(`program${i % 5}`);
    const [addr, bump] = PublicKey.findProgramAddressSync(seeds, program);
    // keep every case whose first candidate is on the curve, and some where it is not
    if (bump === 255 && pdas.length - below >= 10) continue;
    if (bump < 255) below++;
    let first = null;
    try { first = PublicKey.createProgramAddressSync([...seeds, Buffer.from([255])], program).toBase58(); } catch { /* on curve */ }
    pdas.push({ seeds: seeds.map(hex), program: program.toBase58(), address: addr.toBase58(), bump, first255: first });
  }
  const atas = [];
  for (let i = 0; i < 20; i++) {
    const owner = pub(`owner${i}`);
    const mint = pub(`mint${i}`);
    for (const [tpName, tp] of [['token', TOKEN_PROGRAM_ID], ['token2022', TOKEN_2022_PROGRAM_ID]]) {
      const ata = getAssociatedTokenAddressSync(mint, owner, false, tp, ASSOCIATED_TOKEN_PROGRAM_ID);
      const [again, bump] = PublicKey.findProgramAddressSync([owner.toBuffer(), tp.toBuffer(), mint.toBuffer()], ASSOCIATED_TOKEN_PROGRAM_ID);
      if (!again.equals(ata)) throw new Error('ATA mismatch');
      atas.push({ owner: owner.toBase58(), mint: mint.toBase58(), tokenProgram: tp.toBase58(), program: tpName, ata: ata.toBase58(), bump });
    }
  }
  // an off-curve owner (a PDA), which getAssociatedTokenAddressSync allows with allowOwnerOffCurve
  {
    const owner = pdas[0].address;
    const mint = pub('mint-pda-owner');
    const ata = getAssociatedTokenAddressSync(mint, new PublicKey(owner), true, TOKEN_PROGRAM_ID);
    const [, bump] = PublicKey.findProgramAddressSync([new PublicKey(owner).toBuffer(), TOKEN_PROGRAM_ID.toBuffer(), mint.toBuffer()], ASSOCIATED_TOKEN_PROGRAM_ID);
    atas.push({ owner, mint: mint.toBase58(), tokenProgram: TOKEN_PROGRAM_ID.toBase58(), program: 'token', ata: ata.toBase58(), bump });
  }
  write('pda.json', { versions, pdas, atas, programs: {
    system: SystemProgram.programId.toBase58(), token: TOKEN_PROGRAM_ID.toBase58(),
    token2022: TOKEN_2022_PROGRAM_ID.toBase58(), ata: ASSOCIATED_TOKEN_PROGRAM_ID.toBase58(),
    computeBudget: ComputeBudgetProgram.programId.toBase58(), memo: MEMO_PROGRAM_ID.toBase58(),
  } });
}

// ---- messages and transactions -------------------------------------------------------------
// Each case lists its instructions in a small neutral form that the C test rebuilds with its
// own constructors, then compares message bytes, signed wire bytes and the decoded view.
{
  const blockhash = bs58.encode(sha('x402r-vector-blockhash'));
  const ixOf = (d) => {
    switch (d.kind) {
      case 'system_transfer':
        return SystemProgram.transfer({ fromPubkey: pk(d.from), toPubkey: pk(d.to), lamports: BigInt(d.lamports) });
      case 'cu_limit': return ComputeBudgetProgram.setComputeUnitLimit({ units: d.units });
      case 'cu_price': return ComputeBudgetProgram.setComputeUnitPrice({ microLamports: BigInt(d.microLamports) });
      case 'transfer_checked': {
        const tp = d.program === 'token2022' ? TOKEN_2022_PROGRAM_ID : TOKEN_PROGRAM_ID;
        return createTransferCheckedInstruction(pk(d.source), pk(d.mint), pk(d.destination), pk(d.authority), BigInt(d.amount), d.decimals, [], tp);
      }
      case 'memo':
        return new TransactionInstruction({ programId: MEMO_PROGRAM_ID, data: Buffer.from(d.memo, 'utf8'),
          keys: (d.signers || []).map((s) => ({ pubkey: pk(s), isSigner: true, isWritable: false })) });
      default: throw new Error(d.kind);
    }
  };
  const cases = [];
  const addCase = (name, feePayer, ixs, signers) => {
    for (const version of ['legacy', 0]) {
      const tm = new TransactionMessage({ payerKey: pub(feePayer), recentBlockhash: blockhash, instructions: ixs.map(ixOf) });
      const msg = version === 'legacy' ? tm.compileToLegacyMessage() : tm.compileToV0Message();
      const tx = new VersionedTransaction(msg);
      tx.sign(signers.map(key));
      const keys = msg.staticAccountKeys.map((k) => k.toBase58());
      cases.push({
        name, version, feePayer, signers, blockhash, ixs,
        keyNames: Object.fromEntries(keys.map((k) => [k, null])),
        header: msg.header, accountKeys: keys,
        compiled: msg.compiledInstructions.map((c) => ({ programIndex: c.programIdIndex, accounts: c.accountKeyIndexes, data: hex(c.data) })),
        messageHex: hex(msg.serialize()), txBase64: Buffer.from(tx.serialize()).toString('base64'),
        signatures: tx.signatures.map((s) => bs58.encode(s)),
      });
    }
  };
  addCase('system_transfer', 'alice', [{ kind: 'system_transfer', from: 'alice', to: 'bob', lamports: '123456789' }], ['alice']);
  addCase('system_transfer_other_payer', 'feePayer',
    [{ kind: 'system_transfer', from: 'alice', to: 'bob', lamports: '1' }], ['feePayer', 'alice']);
  for (const program of ['token', 'token2022']) {
    const tp = program === 'token2022' ? TOKEN_2022_PROGRAM_ID : TOKEN_PROGRAM_ID;
    const mint = pub('usdc-mint');
    const src = getAssociatedTokenAddressSync(mint, pub('payer'), false, tp).toBase58();
    const dst = getAssociatedTokenAddressSync(mint, pub('payTo'), false, tp).toBase58();
    // the exact-scheme layout: limit, price, TransferChecked, Memo; only the payer signs
    const ixs = [
      { kind: 'cu_limit', units: 20000 }, { kind: 'cu_price', microLamports: '1' },
      { kind: 'transfer_checked', program, source: `=${src}`, mint: 'usdc-mint', destination: `=${dst}`, authority: 'payer', amount: '1000', decimals: 6 },
      { kind: 'memo', memo: '0123456789abcdef0123456789abcdef' },
    ];
    addCase(`exact_${program}`, 'feePayer', ixs, ['payer']);
  }
  addCase('mixed_flags', 'feePayer', [
    { kind: 'system_transfer', from: 'alice', to: 'bob', lamports: '5' },
    { kind: 'memo', memo: 'héllo ✓', signers: ['bob', 'carol'] },
    { kind: 'system_transfer', from: 'carol', to: 'feePayer', lamports: '7' },
    { kind: 'transfer_checked', program: 'token', source: 'dave', mint: 'usdc-mint', destination: 'alice', authority: 'erin', amount: '18446744073709551615', decimals: 9 },
    { kind: 'cu_price', microLamports: '300000' },
  ], ['feePayer', 'alice', 'bob', 'carol', 'erin']);
  // a 200-byte memo: its data length needs a two-byte compact-u16
  addCase('long_memo', 'alice', [{ kind: 'memo', memo: 'x402r '.repeat(33) + 'ok', signers: ['alice'] }], ['alice']);
  // the exact-scheme inputs as the C builder takes them (memo given, so the output is fixed)
  const exact = [];
  for (const program of ['token', 'token2022']) {
    const c = cases.find((x) => x.name === `exact_${program}` && x.version === 0);
    const tp = program === 'token2022' ? TOKEN_2022_PROGRAM_ID : TOKEN_PROGRAM_ID;
    const mint = pub('usdc-mint');
    exact.push({
      program, payerSecretBase64: Buffer.from(key('payer').secretKey).toString('base64'),
      feePayer: pub('feePayer').toBase58(), mint: mint.toBase58(), tokenProgram: tp.toBase58(), decimals: 6,
      payTo: pub('payTo').toBase58(), amount: '1000', memo: '0123456789abcdef0123456789abcdef',
      cuLimit: 20000, cuPrice: '1', blockhash,
      sourceAta: getAssociatedTokenAddressSync(mint, pub('payer'), false, tp).toBase58(),
      destinationAta: getAssociatedTokenAddressSync(mint, pub('payTo'), false, tp).toBase58(),
      txBase64: c.txBase64, payerSignature: c.signatures[1],
    });
  }
  const names = ['payer', 'feePayer', 'payTo', 'alice', 'bob', 'carol', 'dave', 'erin', 'usdc-mint'];
  const keys = Object.fromEntries(names.map((n) => [n, { address: pub(n).toBase58(), secretBase64: Buffer.from(key(n).secretKey).toString('base64') }]));
  for (const c of cases) delete c.keyNames;
  write('messages.json', { versions, blockhash, keys, cases, exact });
}
