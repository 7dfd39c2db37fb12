// lib/solana.mjs — small Solana helpers shared by the chain, the wallets and the smoke test:
// deterministic Ed25519 keys, SPL Token account/mint layouts, associated token addresses,
// base58/base64.
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import {
  getBase58Decoder, getBase58Encoder, getAddressDecoder, getAddressEncoder,
  createKeyPairSignerFromBytes,
} from '@solana/kit';
import { findAssociatedTokenPda, TOKEN_PROGRAM_ADDRESS } from '@solana-program/token';

export const SYSTEM_PROGRAM = '11111111111111111111111111111111';
export const TOKEN_PROGRAM = TOKEN_PROGRAM_ADDRESS; // Tokenkeg...
export const TOKEN_2022_PROGRAM = 'TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb';
export const ATA_PROGRAM = 'ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL';
export const MEMO_PROGRAM = 'MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr';
export const MEMO_V1_PROGRAM = 'Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo';
export const COMPUTE_BUDGET_PROGRAM = 'ComputeBudget111111111111111111111111111111';
// Devnet USDC: @x402/svm and x402 v1 map "$" prices on devnet to this mint.
export const USDC_DEVNET_MINT = '4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU';
export const DEVNET_CAIP2 = 'solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1';
export const DEVNET_GENESIS_HASH = 'EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG';

const b58enc = getBase58Encoder(); // string -> bytes
const b58dec = getBase58Decoder(); // bytes -> string
export const fromB58 = (s) => new Uint8Array(b58enc.encode(s));
export const toB58 = (u8) => b58dec.decode(u8);
const addrEnc = getAddressEncoder();
const addrDec = getAddressDecoder();
export const addrBytes = (a) => new Uint8Array(addrEnc.encode(a));
export const bytesAddr = (u8) => addrDec.decode(u8);

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** Ed25519 public key of a 32-byte seed. */
export function publicKeyOfSeed(seed32) {
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, Buffer.from(seed32)]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(spki.length - 32));
}

/**
 * A wallet: {name, address, secret (64 bytes: seed || public key, the web3.js / solana-keygen
 * format), secretBase64}. Deterministic from (seed, name) when seed is given, random otherwise.
 */
export function makeWallet(name, seed) {
  const seed32 = seed != null
    ? createHash('sha256').update(`x402r-marketplace:${seed}:${name}`).digest()
    : (globalThis.crypto.getRandomValues(new Uint8Array(32)));
  const pub = publicKeyOfSeed(seed32);
  const secret = new Uint8Array(64);
  secret.set(seed32, 0); secret.set(pub, 32);
  return { name, address: toB58(pub), secret, secretBase64: Buffer.from(secret).toString('base64') };
}

export async function signerOf(wallet) {
  return createKeyPairSignerFromBytes(wallet.secret);
}

export async function ataOf(owner, mint, tokenProgram = TOKEN_PROGRAM) {
  const [ata] = await findAssociatedTokenPda({ owner, mint, tokenProgram });
  return ata;
}

// ---- SPL Token layouts -----------------------------------------------------------------------

export const TOKEN_ACCOUNT_LEN = 165;
export const MINT_LEN = 82;

export function packMint({ mintAuthority, supply, decimals, freezeAuthority = null }) {
  const d = Buffer.alloc(MINT_LEN);
  if (mintAuthority) { d.writeUInt32LE(1, 0); Buffer.from(addrBytes(mintAuthority)).copy(d, 4); }
  d.writeBigUInt64LE(BigInt(supply), 36);
  d[44] = decimals;
  d[45] = 1;
  if (freezeAuthority) { d.writeUInt32LE(1, 46); Buffer.from(addrBytes(freezeAuthority)).copy(d, 50); }
  return new Uint8Array(d);
}

export function unpackMint(data) {
  const d = Buffer.from(data);
  if (d.length < MINT_LEN || d[45] !== 1) return null;
  return {
    mintAuthority: d.readUInt32LE(0) ? bytesAddr(d.subarray(4, 36)) : null,
    supply: d.readBigUInt64LE(36),
    decimals: d[44],
    isInitialized: true,
    freezeAuthority: d.readUInt32LE(46) ? bytesAddr(d.subarray(50, 82)) : null,
  };
}

export function packTokenAccount({ mint, owner, amount }) {
  const d = Buffer.alloc(TOKEN_ACCOUNT_LEN);
  Buffer.from(addrBytes(mint)).copy(d, 0);
  Buffer.from(addrBytes(owner)).copy(d, 32);
  d.writeBigUInt64LE(BigInt(amount), 64);
  d[108] = 1; // Initialized
  return new Uint8Array(d);
}

export function unpackTokenAccount(data) {
  const d = Buffer.from(data);
  if (d.length < TOKEN_ACCOUNT_LEN || d[108] === 0) return null;
  if (d.length > TOKEN_ACCOUNT_LEN && d[TOKEN_ACCOUNT_LEN] !== 2) return null; // token-2022 type tag
  return {
    mint: bytesAddr(d.subarray(0, 32)),
    owner: bytesAddr(d.subarray(32, 64)),
    amount: d.readBigUInt64LE(64),
    delegate: d.readUInt32LE(72) ? bytesAddr(d.subarray(76, 108)) : null,
    state: d[108] === 2 ? 'frozen' : 'initialized',
    isNative: d.readUInt32LE(109) !== 0,
    delegatedAmount: d.readBigUInt64LE(121),
    closeAuthority: d.readUInt32LE(129) ? bytesAddr(d.subarray(133, 165)) : null,
  };
}

/** "1234500" atomic with 6 decimals -> "1.2345" (the RPC's uiAmountString form). */
export function uiAmountString(amount, decimals) {
  const s = BigInt(amount).toString().padStart(decimals + 1, '0');
  if (decimals === 0) return s;
  const int = s.slice(0, s.length - decimals);
  const frac = s.slice(s.length - decimals).replace(/0+$/, '');
  return frac ? `${int}.${frac}` : int;
}

export function tokenAmountJson(amount, decimals) {
  const ui = uiAmountString(amount, decimals);
  return { amount: BigInt(amount).toString(), decimals, uiAmount: Number(ui), uiAmountString: ui };
}
