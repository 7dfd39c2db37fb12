// lib/chain.mjs — a Solana "cluster" for tests: LiteSVM (a real SVM, in-process) behind a
// JSON-RPC 2.0 HTTP server that answers like a Solana RPC node for the methods x402 peers and
// the x402r engine use.
//
// Time and blockhashes. LiteSVM has no clock of its own, so the chain ticks: every `slotMs`
// milliseconds (default 400, like mainnet) the slot and the block height both advance by one and
// a new blockhash is issued. A blockhash issued at height h is valid through height
// h + `blockhashWindow` (default 150, as on mainnet), which is the `lastValidBlockHeight` that
// getLatestBlockhash reports; once the block height passes it, a transaction using it is
// rejected (BlockhashNotFound in preflight/simulation; with skipPreflight it is silently
// dropped and never lands, exactly as a real cluster behaves). The custom method
// `x402r_warpSlots [n]` advances n slots at once so tests can expire blockhashes without waiting.
//
// Landed transactions execute immediately and are at once "finalized" (there are no forks).
// Every landed transaction (also failed ones, which pay their fee, as on a real cluster) is kept
// in memory to serve getTransaction, getSignatureStatuses and getSignaturesForAddress. State lives
// in memory only: a restart is a fresh chain.
import http from 'node:http';
import { LiteSVM } from 'litesvm';
import { getTransactionDecoder, getCompiledTransactionMessageDecoder } from '@solana/kit';
import {
  toB58, fromB58, addrBytes, unpackTokenAccount, unpackMint, packTokenAccount, packMint,
  tokenAmountJson, ataOf, TOKEN_PROGRAM, TOKEN_2022_PROGRAM, MEMO_PROGRAM, MEMO_V1_PROGRAM,
  SYSTEM_PROGRAM, TOKEN_ACCOUNT_LEN, MINT_LEN, DEVNET_GENESIS_HASH,
} from './solana.mjs';

const INSTRUCTION_ERRORS = ['GenericError', 'InvalidArgument', 'InvalidInstructionData', 'InvalidAccountData',
  'AccountDataTooSmall', 'InsufficientFunds', 'IncorrectProgramId', 'MissingRequiredSignature',
  'AccountAlreadyInitialized', 'UninitializedAccount', 'UnbalancedInstruction', 'ModifiedProgramId',
  'ExternalAccountLamportSpend', 'ExternalAccountDataModified', 'ReadonlyLamportChange',
  'ReadonlyDataModified', 'DuplicateAccountIndex', 'ExecutableModified', 'RentEpochModified',
  'NotEnoughAccountKeys', 'AccountDataSizeChanged', 'AccountNotExecutable', 'AccountBorrowFailed',
  'AccountBorrowOutstanding', 'DuplicateAccountOutOfSync', 'InvalidError', 'ExecutableDataModified',
  'ExecutableLamportChange', 'ExecutableAccountNotRentExempt', 'UnsupportedProgramId', 'CallDepth',
  'MissingAccount', 'ReentrancyNotAllowed', 'MaxSeedLengthExceeded', 'InvalidSeeds', 'InvalidRealloc',
  'ComputationalBudgetExceeded', 'PrivilegeEscalation', 'ProgramEnvironmentSetupFailure',
  'ProgramFailedToComplete', 'ProgramFailedToCompile', 'Immutable', 'IncorrectAuthority',
  'AccountNotRentExempt', 'InvalidAccountOwner', 'ArithmeticOverflow', 'UnsupportedSysvar', 'IllegalOwner',
  'MaxAccountsDataAllocationsExceeded', 'MaxAccountsExceeded', 'MaxInstructionTraceLengthExceeded',
  'BuiltinProgramsMustConsumeComputeUnits', 'BorshIoError'];
const TRANSACTION_ERRORS = ['AccountInUse', 'AccountLoadedTwice', 'AccountNotFound', 'ProgramAccountNotFound',
  'InsufficientFundsForFee', 'InvalidAccountForFee', 'AlreadyProcessed', 'BlockhashNotFound',
  'CallChainTooDeep', 'MissingSignatureForFee', 'InvalidAccountIndex', 'SignatureFailure',
  'InvalidProgramForExecution', 'SanitizeFailure', 'ClusterMaintenance', 'AccountBorrowOutstanding',
  'WouldExceedMaxBlockCostLimit', 'UnsupportedVersion', 'InvalidWritableAccount',
  'WouldExceedMaxAccountCostLimit', 'WouldExceedAccountDataBlockLimit', 'TooManyAccountLocks',
  'AddressLookupTableNotFound', 'InvalidAddressLookupTableOwner', 'InvalidAddressLookupTableData',
  'InvalidAddressLookupTableIndex', 'InvalidRentPayingAccount', 'WouldExceedMaxVoteCostLimit',
  'WouldExceedAccountDataTotalLimit', 'MaxLoadedAccountsDataSizeExceeded', 'ResanitizationNeeded',
  'InvalidLoadedAccountsDataSizeLimit', 'UnbalancedTransaction', 'ProgramCacheHitMaxLimit', 'CommitCancelled'];

/** LiteSVM's error objects -> the JSON a Solana RPC node returns (e.g. {"InstructionError":[2,{"Custom":1}]}). */
export function errToJson(e) {
  if (e == null) return null;
  if (typeof e === 'number') return TRANSACTION_ERRORS[e] ?? `TransactionError${e}`;
  const name = e.constructor?.name ?? '';
  if (name === 'TransactionErrorInstructionError') {
    const ie = e.err();
    let inner;
    if (typeof ie === 'number') inner = INSTRUCTION_ERRORS[ie] ?? `InstructionError${ie}`;
    else if (ie?.constructor?.name === 'InstructionErrorCustom') inner = { Custom: ie.code };
    else if (ie?.constructor?.name?.startsWith('InstructionErrorBorshIo')) inner = { BorshIoError: ie.msg };
    else inner = String(ie);
    return { InstructionError: [e.index, inner] };
  }
  if (name === 'TransactionErrorDuplicateInstruction') return { DuplicateInstruction: e.index };
  if (name === 'TransactionErrorInsufficientFundsForRent') return { InsufficientFundsForRent: { account_index: e.accountIndex } };
  if (name === 'TransactionErrorProgramExecutionTemporarilyRestricted') return { ProgramExecutionTemporarilyRestricted: { account_index: e.accountIndex } };
  return String(e);
}

class RpcError extends Error {
  constructor(code, message, data) { super(message); this.code = code; this.data = data; }
}
const invalidParams = (msg) => new RpcError(-32602, msg);

const txDecoder = getTransactionDecoder();
const msgDecoder = getCompiledTransactionMessageDecoder();

function decodeWire(bytes) {
  let tx, msg;
  try {
    tx = txDecoder.decode(bytes);
    msg = msgDecoder.decode(tx.messageBytes);
  } catch (e) {
    throw invalidParams(`invalid transaction: failed to deserialize VersionedTransaction: ${e.message}`);
  }
  const signatures = Object.values(tx.signatures).map((s) => (s ? toB58(s) : toB58(new Uint8Array(64))));
  return { tx, msg, signatures, signature: signatures[0] };
}

function encodedTxBytes(param, encoding) {
  if (typeof param !== 'string') throw invalidParams('Invalid params: transaction must be a string');
  const enc = encoding ?? 'base58';
  if (enc === 'base64') return new Uint8Array(Buffer.from(param, 'base64'));
  if (enc === 'base58') {
    try { return fromB58(param); } catch { throw invalidParams('invalid base58 encoding'); }
  }
  throw invalidParams(`unsupported encoding: ${enc}. Supported encodings: base58, base64`);
}

function isWritable(msg, i) {
  const h = msg.header;
  const n = msg.staticAccounts.length;
  if (i < h.numSignerAccounts) return i < h.numSignerAccounts - h.numReadonlySignerAccounts;
  return i < n - h.numReadonlyNonSignerAccounts;
}

function memoOf(msg) {
  const memos = [];
  for (const ix of msg.instructions) {
    const prog = msg.staticAccounts[ix.programAddressIndex];
    if (prog === MEMO_PROGRAM || prog === MEMO_V1_PROGRAM) {
      const data = ix.data ?? new Uint8Array();
      memos.push(`[${data.length}] ${Buffer.from(data).toString('utf8')}`);
    }
  }
  return memos.length ? memos.join('; ') : null;
}

export class Chain {
  constructor({ slotMs = 400, blockhashWindow = 150, log = () => {} } = {}) {
    this.svm = new LiteSVM().withBlockhashCheck(false).withTransactionHistory(0n);
    this.inner = this.svm.inner;
    this.slotMs = slotMs;
    this.window = blockhashWindow;
    this.log = log;
    this.slot = 1000;
    this.svm.warpToSlot(BigInt(this.slot));
    this.blockhashes = new Map(); // blockhash -> lastValidBlockHeight
    this.current = this.svm.latestBlockhash();
    this.blockhashes.set(this.current, this.slot + this.window);
    this.records = [];            // landed transactions, oldest first
    this.bySig = new Map();       // signature -> record
    this.byAddress = new Map();   // address -> [record] oldest first
    this.extraSigs = new Map();   // airdrop signatures -> slot
    this.timer = slotMs > 0 ? setInterval(() => this.advance(1), slotMs) : null;
    this.timer?.unref();
  }

  stop() { if (this.timer) clearInterval(this.timer); this.timer = null; }

  get blockHeight() { return this.slot; }

  advance(n) {
    for (let k = 0; k < n; k++) {
      this.slot += 1;
      this.svm.expireBlockhash();
      this.current = this.svm.latestBlockhash();
      this.blockhashes.set(this.current, this.slot + this.window);
    }
    this.svm.warpToSlot(BigInt(this.slot));
    for (const [h, last] of this.blockhashes) { // Map iterates in insertion order: oldest first
      if (last >= this.slot) break;
      this.blockhashes.delete(h);
    }
  }

  blockhashValid(h) {
    const last = this.blockhashes.get(h);
    return last !== undefined && last >= this.slot;
  }

  // ---- accounts -----------------------------------------------------------------------------

  account(address) {
    const a = this.inner.getAccount(addrBytes(address));
    if (!a || a.lamports() === 0n) return null;
    return { lamports: a.lamports(), data: a.data(), owner: toB58(a.owner()), executable: a.executable(), rentEpoch: a.rentEpoch() };
  }

  setAccount(address, { lamports, data = new Uint8Array(), owner = SYSTEM_PROGRAM, executable = false }) {
    this.svm.setAccount({ address, lamports: BigInt(lamports), data, programAddress: owner, executable });
  }

  rentExempt(len) { return this.svm.minimumBalanceForRentExemption(BigInt(len)); }

  setLamports(address, lamports) {
    const a = this.account(address);
    if (a) this.setAccount(address, { ...a, lamports });
    else this.setAccount(address, { lamports });
  }

  createMint(mint, { decimals, mintAuthority = null, tokenProgram = TOKEN_PROGRAM }) {
    this.setAccount(mint, { lamports: this.rentExempt(MINT_LEN), data: packMint({ mintAuthority, supply: 0n, decimals }), owner: tokenProgram });
  }

  /** Create (or overwrite) owner's associated token account of mint with `amount`, keeping the supply right. */
  async setTokenBalance(owner, mint, amount) {
    const m = this.account(mint);
    const mi = m && unpackMint(m.data);
    if (!mi) throw invalidParams(`not a mint: ${mint}`);
    const ata = await ataOf(owner, mint, m.owner);
    const old = this.account(ata);
    const oldAmount = old ? (unpackTokenAccount(old.data)?.amount ?? 0n) : 0n;
    this.setAccount(ata, { lamports: this.rentExempt(TOKEN_ACCOUNT_LEN), data: packTokenAccount({ mint, owner, amount }), owner: m.owner });
    this.setAccount(mint, { ...m, data: packMint({ ...mi, supply: mi.supply - oldAmount + BigInt(amount) }) });
    return ata;
  }

  tokenInfo(address) { // {account, mint, decimals, program} or null
    const a = this.account(address);
    if (!a || (a.owner !== TOKEN_PROGRAM && a.owner !== TOKEN_2022_PROGRAM)) return null;
    const t = unpackTokenAccount(a.data);
    if (!t) return null;
    const m = this.account(t.mint);
    const mi = m && unpackMint(m.data);
    return { ...t, decimals: mi ? mi.decimals : 0, program: a.owner };
  }

  // ---- transactions -------------------------------------------------------------------------

  snapshot(msg) {
    const balances = [];
    const tokens = [];
    msg.staticAccounts.forEach((addr, i) => {
      const a = this.account(addr);
      balances.push(a ? Number(a.lamports) : 0);
      const t = a && (a.owner === TOKEN_PROGRAM || a.owner === TOKEN_2022_PROGRAM) ? this.tokenInfo(addr) : null;
      if (t) {
        tokens.push({ accountIndex: i, mint: t.mint, owner: t.owner, programId: t.program,
          uiTokenAmount: tokenAmountJson(t.amount, t.decimals) });
      }
    });
    return { balances, tokens };
  }

  /** Run with LiteSVM; sigVerify false lets the facilitator simulate before it signs as fee payer. */
  execute(bytes, version, { simulate, sigVerify }) {
    const prev = this.inner.getSigverify();
    this.inner.setSigverify(!!sigVerify);
    try {
      if (simulate) return version === 'legacy' ? this.inner.simulateLegacyTransaction(bytes) : this.inner.simulateVersionedTransaction(bytes);
      return version === 'legacy' ? this.inner.sendLegacyTransaction(bytes) : this.inner.sendVersionedTransaction(bytes);
    } finally {
      this.inner.setSigverify(prev);
    }
  }

  simulate(bytes, { sigVerify = false, replaceRecentBlockhash = false, innerInstructions = false } = {}) {
    if (sigVerify && replaceRecentBlockhash) throw invalidParams('sigVerify may not be used with replaceRecentBlockhash');
    const d = decodeWire(bytes);
    const ctx = { slot: this.slot, apiVersion: '2.2.0' };
    const value = { err: null, logs: [], accounts: null, unitsConsumed: 0, returnData: null, innerInstructions: innerInstructions ? [] : null, loadedAccountsDataSize: 0 };
    if (replaceRecentBlockhash) value.replacementBlockhash = { blockhash: this.current, lastValidBlockHeight: this.slot + this.window };
    else if (!this.blockhashValid(d.msg.lifetimeToken)) {
      value.err = 'BlockhashNotFound';
      return { context: ctx, value };
    }
    if (this.bySig.has(d.signature) && sigVerify) { value.err = 'AlreadyProcessed'; return { context: ctx, value }; }
    let r;
    try { r = this.execute(bytes, d.msg.version, { simulate: true, sigVerify }); } catch (e) {
      value.err = sigVerify ? 'SignatureFailure' : 'SanitizeFailure';
      value.logs = [String(e.message ?? e)];
      return { context: ctx, value };
    }
    const failed = r.constructor?.name === 'FailedTransactionMetadata';
    const meta = r.meta();
    value.err = failed ? errToJson(r.err()) : null;
    value.logs = meta.logs();
    value.unitsConsumed = Number(meta.computeUnitsConsumed());
    return { context: ctx, value };
  }

  /** sendTransaction: preflight unless skipPreflight; returns the first signature. */
  send(bytes, { skipPreflight = false } = {}) {
    const d = decodeWire(bytes);
    if (!skipPreflight) {
      const sim = this.simulate(bytes, { sigVerify: true });
      if (sim.value.err) {
        throw new RpcError(-32002, `Transaction simulation failed: ${typeof sim.value.err === 'string' ? sim.value.err : 'Error processing Instruction ' + (sim.value.err.InstructionError?.[0] ?? '') + ': ' + JSON.stringify(sim.value.err.InstructionError?.[1] ?? sim.value.err)}`, { ...sim.value });
      }
    }
    if (this.bySig.has(d.signature)) return d.signature; // already landed: a resend is a no-op
    if (!this.blockhashValid(d.msg.lifetimeToken)) {
      this.log(`chain: dropped ${d.signature} (blockhash expired or unknown)`);
      return d.signature; // a real cluster drops it: it never lands
    }
    if (d.msg.addressTableLookups?.length) {
      throw invalidParams('address lookup tables are not supported by this test chain');
    }
    const pre = this.snapshot(d.msg);
    let r;
    try { r = this.execute(bytes, d.msg.version, { simulate: false, sigVerify: true }); } catch (e) {
      // e.g. a missing signature: the cluster would reject it at the door (preflight or not)
      throw new RpcError(-32003, `Transaction signature verification failure: ${e.message ?? e}`);
    }
    const failed = r.constructor?.name === 'FailedTransactionMetadata';
    const err = failed ? errToJson(r.err()) : null;
    if (err === 'SignatureFailure' || err === 'SanitizeFailure' || err === 'InsufficientFundsForFee' || err === 'AccountNotFound' || err === 'BlockhashNotFound' || err === 'AlreadyProcessed') {
      // these never land on a real cluster (no fee is taken): reject
      throw new RpcError(-32002, `Transaction simulation failed: ${err}`, { err, logs: [], accounts: null, unitsConsumed: 0 });
    }
    const meta = failed ? r.meta() : r; // success: TransactionMetadata itself
    const post = this.snapshot(d.msg);
    const rec = {
      signature: d.signature, signatures: d.signatures, slot: this.slot, blockTime: Math.floor(Date.now() / 1000),
      bytes, msg: d.msg, err, memo: memoOf(d.msg),
      fee: 5000 * d.msg.header.numSignerAccounts,
      logs: meta.logs(), unitsConsumed: Number(meta.computeUnitsConsumed()),
      pre, post,
    };
    this.records.push(rec);
    this.bySig.set(rec.signature, rec);
    for (const a of new Set(d.msg.staticAccounts)) {
      if (!this.byAddress.has(a)) this.byAddress.set(a, []);
      this.byAddress.get(a).push(rec);
    }
    this.log(`chain: landed ${rec.signature} slot ${rec.slot}${err ? ' err ' + JSON.stringify(err) : ''}${rec.memo ? ' memo ' + rec.memo : ''}`);
    return d.signature;
  }

  airdrop(address, lamports) {
    const r = this.svm.airdrop(address, BigInt(lamports));
    if (!r || r.constructor?.name === 'FailedTransactionMetadata') throw new RpcError(-32603, 'airdrop failed');
    const sig = toB58(r.signature());
    this.extraSigs.set(sig, this.slot);
    return sig;
  }

  txJson(rec, encoding, maxVersion) {
    const version = rec.msg.version === 'legacy' ? 'legacy' : rec.msg.version;
    if (version !== 'legacy' && (maxVersion == null || maxVersion < version)) {
      throw new RpcError(-32015, `Transaction version (${version}) is not supported by the requesting client. Please try the request again with the following configuration parameter: "maxSupportedTransactionVersion": ${version}`);
    }
    const m = rec.msg;
    const meta = {
      err: rec.err, status: rec.err ? { Err: rec.err } : { Ok: null }, fee: rec.fee,
      preBalances: rec.pre.balances, postBalances: rec.post.balances,
      preTokenBalances: rec.pre.tokens, postTokenBalances: rec.post.tokens,
      innerInstructions: [], logMessages: rec.logs, rewards: [],
      loadedAddresses: { writable: [], readonly: [] }, computeUnitsConsumed: rec.unitsConsumed,
    };
    let transaction;
    if (encoding === 'base64') transaction = [Buffer.from(rec.bytes).toString('base64'), 'base64'];
    else if (encoding === 'base58') transaction = [toB58(rec.bytes), 'base58'];
    else {
      const header = { numRequiredSignatures: m.header.numSignerAccounts, numReadonlySignedAccounts: m.header.numReadonlySignerAccounts, numReadonlyUnsignedAccounts: m.header.numReadonlyNonSignerAccounts };
      const parsed = encoding === 'jsonParsed';
      const accountKeys = parsed
        ? m.staticAccounts.map((pubkey, i) => ({ pubkey, signer: i < m.header.numSignerAccounts, writable: isWritable(m, i), source: 'transaction' }))
        : m.staticAccounts;
      const instructions = m.instructions.map((ix) => (parsed
        ? { programId: m.staticAccounts[ix.programAddressIndex], accounts: (ix.accountIndices ?? []).map((i) => m.staticAccounts[i]), data: toB58(ix.data ?? new Uint8Array()), stackHeight: null }
        : { programIdIndex: ix.programAddressIndex, accounts: ix.accountIndices ?? [], data: toB58(ix.data ?? new Uint8Array()), stackHeight: null }));
      const message = { accountKeys, header, recentBlockhash: m.lifetimeToken, instructions };
      if (version !== 'legacy') message.addressTableLookups = [];
      transaction = { signatures: rec.signatures, message };
    }
    return { slot: rec.slot, blockTime: rec.blockTime, transaction, meta, version };
  }

  statusOf(sig) {
    const rec = this.bySig.get(sig);
    if (rec) return { slot: rec.slot, confirmations: null, err: rec.err, status: rec.err ? { Err: rec.err } : { Ok: null }, confirmationStatus: 'finalized' };
    if (this.extraSigs.has(sig)) return { slot: this.extraSigs.get(sig), confirmations: null, err: null, status: { Ok: null }, confirmationStatus: 'finalized' };
    return null;
  }
}

// ---- JSON-RPC ---------------------------------------------------------------------------------

function accountJson(chain, address, a, encoding) {
  if (!a) return null;
  const base = { executable: a.executable, lamports: Number(a.lamports), owner: a.owner, rentEpoch: '__U64MAX__', space: a.data.length };
  if (encoding === 'jsonParsed' && (a.owner === TOKEN_PROGRAM || a.owner === TOKEN_2022_PROGRAM)) {
    const program = a.owner === TOKEN_PROGRAM ? 'spl-token' : 'spl-token-2022';
    const t = a.data.length >= TOKEN_ACCOUNT_LEN ? chain.tokenInfo(address) : null;
    if (t) {
      return { ...base, data: { program, space: a.data.length, parsed: { type: 'account', info: {
        isNative: t.isNative, mint: t.mint, owner: t.owner, state: t.state, tokenAmount: tokenAmountJson(t.amount, t.decimals) } } } };
    }
    const mi = unpackMint(a.data);
    if (mi) {
      return { ...base, data: { program, space: a.data.length, parsed: { type: 'mint', info: {
        decimals: mi.decimals, freezeAuthority: mi.freezeAuthority, isInitialized: true, mintAuthority: mi.mintAuthority, supply: mi.supply.toString() } } } };
    }
  }
  if (encoding === 'base64' || encoding === 'jsonParsed') return { ...base, data: [Buffer.from(a.data).toString('base64'), 'base64'] };
  if (encoding === 'base58') return { ...base, data: [toB58(a.data), 'base58'] };
  if (encoding === 'base64+zstd') throw invalidParams('base64+zstd encoding is not supported by this test chain');
  return { ...base, data: toB58(a.data) }; // legacy "binary"
}

function checkAddress(a) {
  if (typeof a !== 'string') throw invalidParams('Invalid param: expected a base58 public key string');
  let b;
  try { b = fromB58(a); } catch { b = null; }
  if (!b || b.length !== 32) throw invalidParams('Invalid param: Invalid');
  return a;
}

export function makeRpcHandler(chain, admin = {}) {
  const ctx = () => ({ slot: chain.slot, apiVersion: '2.2.0' });
  const methods = {
    getHealth: () => 'ok',
    getVersion: () => ({ 'solana-core': '2.2.0', 'feature-set': 3294202862 }),
    getGenesisHash: () => DEVNET_GENESIS_HASH,
    getIdentity: () => ({ identity: toB58(new Uint8Array(32).fill(7)) }),
    getSlot: () => chain.slot,
    getBlockHeight: () => chain.blockHeight,
    getEpochInfo: () => ({ absoluteSlot: chain.slot, blockHeight: chain.blockHeight, epoch: Math.floor(chain.slot / 432000), slotIndex: chain.slot % 432000, slotsInEpoch: 432000, transactionCount: chain.records.length }),
    getLatestBlockhash: () => ({ context: ctx(), value: { blockhash: chain.current, lastValidBlockHeight: chain.slot + chain.window } }),
    isBlockhashValid: ([h]) => ({ context: ctx(), value: chain.blockhashValid(h) }),
    getFeeForMessage: () => ({ context: ctx(), value: 5000 }),
    getMinimumBalanceForRentExemption: ([len]) => {
      if (!Number.isInteger(len) || len < 0) throw invalidParams('Invalid params: expected a data length');
      return Number(chain.rentExempt(len));
    },
    getBalance: ([a]) => ({ context: ctx(), value: Number(chain.account(checkAddress(a))?.lamports ?? 0n) }),
    getAccountInfo: ([a, cfg = {}]) => ({ context: ctx(), value: accountJson(chain, a, chain.account(checkAddress(a)), cfg.encoding) }),
    getMultipleAccounts: ([list, cfg = {}]) => {
      if (!Array.isArray(list)) throw invalidParams('Invalid params: expected an array of public keys');
      return { context: ctx(), value: list.map((a) => accountJson(chain, a, chain.account(checkAddress(a)), cfg.encoding)) };
    },
    getTokenAccountBalance: ([a]) => {
      const t = chain.tokenInfo(checkAddress(a));
      if (!t) throw invalidParams('Invalid param: could not find account');
      return { context: ctx(), value: tokenAmountJson(t.amount, t.decimals) };
    },
    getTokenSupply: ([a]) => {
      const m = chain.account(checkAddress(a));
      const mi = m && unpackMint(m.data);
      if (!mi) throw invalidParams('Invalid param: not a Token mint');
      return { context: ctx(), value: tokenAmountJson(mi.supply, mi.decimals) };
    },
    getTokenAccountsByOwner: async ([owner, filter = {}, cfg = {}]) => {
      checkAddress(owner);
      const out = [];
      for (const program of [TOKEN_PROGRAM, TOKEN_2022_PROGRAM]) {
        if (filter.programId && filter.programId !== program) continue;
        for (const acc of chain.svm.getProgramAccounts(program)) {
          const t = chain.tokenInfo(acc.address);
          if (!t || t.owner !== owner || (filter.mint && t.mint !== filter.mint)) continue;
          out.push({ pubkey: acc.address, account: accountJson(chain, acc.address, chain.account(acc.address), cfg.encoding ?? 'base64') });
        }
      }
      if (!filter.mint && !filter.programId) throw invalidParams('Invalid params: expected mint or programId filter');
      return { context: ctx(), value: out };
    },
    simulateTransaction: ([tx, cfg = {}]) => chain.simulate(encodedTxBytes(tx, cfg.encoding), cfg),
    sendTransaction: ([tx, cfg = {}]) => chain.send(encodedTxBytes(tx, cfg.encoding), cfg),
    getSignatureStatuses: ([sigs]) => {
      if (!Array.isArray(sigs)) throw invalidParams('Invalid params: expected an array of signatures');
      if (sigs.length > 256) throw invalidParams('Too many inputs provided; max 256');
      return { context: ctx(), value: sigs.map((s) => chain.statusOf(s)) };
    },
    getTransaction: ([sig, cfg = {}]) => {
      if (typeof sig !== 'string') throw invalidParams('Invalid param: expected a signature string');
      if (typeof cfg === 'string') cfg = { encoding: cfg };
      const rec = chain.bySig.get(sig);
      return rec ? chain.txJson(rec, cfg.encoding ?? 'json', cfg.maxSupportedTransactionVersion) : null;
    },
    getSignaturesForAddress: ([a, cfg = {}]) => {
      checkAddress(a);
      const limit = cfg.limit ?? 1000;
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw invalidParams('Invalid limit; max 1000');
      const list = chain.byAddress.get(a) ?? [];
      let i = list.length - 1;
      if (cfg.before) {
        const k = list.findIndex((r) => r.signature === cfg.before);
        i = k < 0 ? -1 : k - 1;
      }
      const out = [];
      for (; i >= 0 && out.length < limit; i--) {
        const r = list[i];
        if (cfg.until && r.signature === cfg.until) break;
        out.push({ signature: r.signature, slot: r.slot, err: r.err, memo: r.memo, blockTime: r.blockTime, confirmationStatus: 'finalized' });
      }
      return out;
    },
    requestAirdrop: ([a, lamports]) => chain.airdrop(checkAddress(a), lamports),
    // ---- test-only admin methods (not part of Solana's RPC) ----
    x402r_warpSlots: ([n = 1]) => { chain.advance(Math.max(1, Math.min(100000, Number(n) | 0))); return chain.slot; },
    x402r_setLamports: ([a, lamports]) => { chain.setLamports(checkAddress(a), BigInt(lamports)); return true; },
    x402r_setTokenBalance: async ([owner, mint, amount]) => chain.setTokenBalance(checkAddress(owner), checkAddress(mint), BigInt(amount)),
    x402r_facilitator: async ([what]) => {
      if (!chain.adminFacilitator) throw new RpcError(-32601, 'Method not found');
      try { return await chain.adminFacilitator(what); } catch (e) { throw invalidParams(e.message); }
    },
    ...admin,
  };

  async function one(req) {
    const id = req && Object.prototype.hasOwnProperty.call(req, 'id') ? req.id : null;
    if (!req || req.jsonrpc !== '2.0' || typeof req.method !== 'string') {
      return { jsonrpc: '2.0', error: { code: -32600, message: 'Invalid request' }, id };
    }
    const fn = methods[req.method];
    if (!fn) return { jsonrpc: '2.0', error: { code: -32601, message: 'Method not found' }, id };
    const params = req.params === undefined ? [] : req.params;
    if (!Array.isArray(params)) return { jsonrpc: '2.0', error: { code: -32602, message: 'Invalid params: expected an array' }, id };
    try {
      const result = await fn(params);
      return { jsonrpc: '2.0', result, id };
    } catch (e) {
      if (e instanceof RpcError) {
        const error = { code: e.code, message: e.message };
        if (e.data !== undefined) error.data = e.data;
        return { jsonrpc: '2.0', error, id };
      }
      return { jsonrpc: '2.0', error: { code: -32603, message: `Internal error: ${e.message ?? e}` }, id };
    }
  }
  return async (body) => {
    let req;
    try { req = JSON.parse(body); } catch { return { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error' }, id: null }; }
    if (Array.isArray(req)) {
      if (!req.length) return { jsonrpc: '2.0', error: { code: -32600, message: 'Invalid request' }, id: null };
      const out = [];
      for (const r of req) out.push(await one(r)); // sequential: the chain is one thread
      return out;
    }
    return one(req);
  };
}

export function startRpcServer(chain, { host = '127.0.0.1', port = 0 } = {}) {
  const handle = makeRpcHandler(chain);
  // bench aid (bench/paid): JSON-RPC requests served and the milliseconds spent handling them
  const stats = { requests: 0, ms: 0 };
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/health' || req.url === '/')) {
      res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok'); return;
    }
    if (req.method !== 'POST') { res.writeHead(405); res.end(); return; }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const t0 = performance.now();
      const out = await handle(Buffer.concat(chunks).toString('utf8'));
      stats.requests++;
      stats.ms += performance.now() - t0;
      const body = JSON.stringify(out, (_, v) => (typeof v === 'bigint' ? Number(v) : v)).replaceAll('"__U64MAX__"', '18446744073709551615');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.rpcStats = stats; resolve(server); });
  });
}
