/* pay/keypair.h — the escrow wallet's Ed25519 keypair, held in libsodium secure memory.
 *
 * Owns: the only copy of the escrow secret inside the process. `ESCROW_KEYPAIR` is base64 of
 * the 64-byte Solana/web3.js secret key (32-byte seed || 32-byte public key), which is also
 * libsodium's crypto_sign secret-key layout, so it is used as is.
 *
 * Shape: the struct below is public on purpose so that anyone (and the unit tests) can see that
 * it holds nothing secret — only the public key and a pointer to a sodium_malloc'd page that is
 * PROT_NONE (sodium_mprotect_noaccess) except for the few microseconds of a signature, when it
 * is read-only. Guard pages and a canary surround it; sodium_free wipes it. Every temporary that
 * held secret bytes is zeroed. The secret is never returned, logged or written anywhere; the one
 * exception is x4_keypair_export_base64, which exists only for `x402r keys escrow-new` (printing
 * a freshly generated key is that command's purpose).
 *
 * Cost: one sodium_malloc (three pages + mlock) per keypair and two mprotect syscalls per
 * signature (~2 µs), which is noise next to a payment's network round trips. */
#ifndef X4_PAY_KEYPAIR_H
#define X4_PAY_KEYPAIR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct x4_keypair {
    uint8_t pubkey[32];     /* public: the Solana address as raw bytes */
    unsigned char *secret;  /* sodium_malloc'd seed||pubkey, PROT_NONE between signatures */
} x4_keypair;

/* Base64 (standard alphabet, padding optional, surrounding whitespace ignored) of 64 bytes.
 * Fails if the length is wrong or the public half is not the key the seed derives. The caller
 * still owns `b64` and should wipe it when it can. */
int x4_keypair_load_base64(const char *b64, x4_keypair **out, char *err, size_t errlen);
/* A fresh random keypair. */
int x4_keypair_generate(x4_keypair **out, char *err, size_t errlen);
void x4_keypair_pubkey(const x4_keypair *kp, uint8_t out[32]);
/* Ed25519 detached signature of msg[0..len) (crypto_sign_detached). */
int x4_keypair_sign(const x4_keypair *kp, const uint8_t *msg, size_t len, uint8_t sig[64]);
/* ONLY for the CLI command that creates a new escrow key: writes base64(seed||pubkey) with
 * padding into out (needs >= X4_KEYPAIR_B64_LEN bytes). The caller must sodium_memzero it. */
#define X4_KEYPAIR_B64_LEN 89
int x4_keypair_export_base64(const x4_keypair *kp, char *out, size_t outlen);
void x4_keypair_free(x4_keypair *kp);

#endif
