/* pay/keypair.c — the escrow keypair in libsodium secure memory (see keypair.h for the why).
 *
 * The secure region is 128 bytes: [0, 64) the secret key (seed || pubkey), [64, 128) scratch
 * used once, at load time, to re-derive the keypair from the seed and check the public half.
 * Decoding base64 writes straight into the region, so no secret byte ever sits on the stack
 * or the heap. The region is PROT_NONE except inside x4_keypair_sign (read-only) and while it
 * is being filled (read-write). */
#include "pay/keypair.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define X4_KP_REGION 128
#define X4_KP_SCRATCH 64

static void set_err(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

static x4_keypair *kp_alloc(char *err, size_t errlen) {
    x4_keypair *kp = NULL;
    if (sodium_init() < 0) { set_err(err, errlen, "libsodium failed to initialise"); goto err; }
    kp = calloc(1, sizeof *kp);
    if (!kp) { set_err(err, errlen, "out of memory"); goto err; }
    kp->secret = sodium_malloc(X4_KP_REGION);
    if (!kp->secret) { set_err(err, errlen, "cannot allocate secure memory"); goto err; }
    sodium_memzero(kp->secret, X4_KP_REGION);
    return kp;
err:
    free(kp);
    return NULL;
}

static int kp_seal(x4_keypair *kp, char *err, size_t errlen) {
    if (sodium_mprotect_noaccess(kp->secret) != 0) {
        set_err(err, errlen, "cannot protect secure memory");
        return -1;
    }
    return 0;
}

int x4_keypair_load_base64(const char *b64, x4_keypair **out, char *err, size_t errlen) {
    x4_keypair *kp = NULL;
    size_t n = 0;
    const char *end = NULL;
    uint8_t derived_pk[32];
    *out = NULL;
    if (!b64) { set_err(err, errlen, "ESCROW_KEYPAIR is not set"); goto err; }
    if (!(kp = kp_alloc(err, errlen))) goto err;
    /* Padding is optional: try the padded variant first, then the unpadded one. Both write
     * only into the secure region. */
    if (sodium_base642bin(kp->secret, 64, b64, strlen(b64), " \t\r\n", &n, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 || *end != '\0' || n != 64) {
        n = 0;
        if (sodium_base642bin(kp->secret, 64, b64, strlen(b64), " \t\r\n", &n, &end,
                              sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
            *end != '\0' || n != 64) {
            set_err(err, errlen, "ESCROW_KEYPAIR must be base64 of a 64-byte secret key");
            goto err;
        }
    }
    /* Re-derive from the seed; the derived secret key lands in the scratch half. A key whose
     * public half does not match its seed would make libsodium sign with the wrong public key
     * in the hash (and such signatures can leak the key), so refuse it. */
    if (crypto_sign_seed_keypair(derived_pk, kp->secret + X4_KP_SCRATCH, kp->secret) != 0) {
        set_err(err, errlen, "cannot derive the keypair from its seed");
        goto err;
    }
    sodium_memzero(kp->secret + X4_KP_SCRATCH, X4_KP_SCRATCH);
    if (sodium_memcmp(derived_pk, kp->secret + 32, 32) != 0) {
        set_err(err, errlen, "ESCROW_KEYPAIR: the public key half does not match the seed");
        goto err;
    }
    memcpy(kp->pubkey, derived_pk, 32);
    if (kp_seal(kp, err, errlen) != 0) goto err;
    *out = kp;
    return 0;
err:
    x4_keypair_free(kp);
    return -1;
}

int x4_keypair_generate(x4_keypair **out, char *err, size_t errlen) {
    x4_keypair *kp = NULL;
    *out = NULL;
    if (!(kp = kp_alloc(err, errlen))) goto err;
    if (crypto_sign_keypair(kp->pubkey, kp->secret) != 0) {
        set_err(err, errlen, "cannot generate a keypair");
        goto err;
    }
    if (kp_seal(kp, err, errlen) != 0) goto err;
    *out = kp;
    return 0;
err:
    x4_keypair_free(kp);
    return -1;
}

void x4_keypair_pubkey(const x4_keypair *kp, uint8_t out[32]) { memcpy(out, kp->pubkey, 32); }

int x4_keypair_sign(const x4_keypair *kp, const uint8_t *msg, size_t len, uint8_t sig[64]) {
    int rc = -1;
    if (!kp || !kp->secret || (!msg && len)) return -1;
    if (sodium_mprotect_readonly(kp->secret) != 0) return -1;
    /* crypto_sign_detached wipes its own expanded-key temporaries. */
    if (crypto_sign_detached(sig, NULL, msg, (unsigned long long)len, kp->secret) == 0) rc = 0;
    if (sodium_mprotect_noaccess(kp->secret) != 0) rc = -1;
    if (rc != 0) sodium_memzero(sig, 64);
    return rc;
}

int x4_keypair_export_base64(const x4_keypair *kp, char *out, size_t outlen) {
    int rc = -1;
    if (!kp || !kp->secret || !out || outlen < X4_KEYPAIR_B64_LEN) return -1;
    if (sodium_mprotect_readonly(kp->secret) != 0) return -1;
    if (sodium_bin2base64(out, outlen, kp->secret, 64, sodium_base64_VARIANT_ORIGINAL)) rc = 0;
    if (sodium_mprotect_noaccess(kp->secret) != 0) {
        sodium_memzero(out, outlen);
        rc = -1;
    }
    return rc;
}

void x4_keypair_free(x4_keypair *kp) {
    if (!kp) return;
    /* sodium_free makes the region writable, wipes it and unmaps it (guard pages included). */
    if (kp->secret) sodium_free(kp->secret);
    sodium_memzero(kp, sizeof *kp);
    free(kp);
}
