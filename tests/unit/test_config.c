/* tests/unit/test_config.c — configuration from the environment: defaults and the errors that
 * name the variable. */
#include <stdlib.h>

#include "core/config.h"
#include "unit.h"

static const char *const VARS[] = {"PORT", "DATABASE_URL", "REDIS_URL", "NETWORK", "ESCROW_KEYPAIR", "SOLANA_COMMITMENT",
                                   "LEASE_MS", "RETRY_FACTOR", "LOG_LEVEL", "REGISTRY_URL", NULL};

static void clean(void) {
    for (const char *const *v = VARS; *v; v++) unsetenv(*v);
}

static int load_err(char *err, size_t n) {
    x4_config c;
    int rc = x4_config_load(&c, err, n);
    if (rc == 0) x4_config_free(&c);
    return rc;
}

X4_TEST(defaults) {
    clean();
    x4_config c;
    char err[256];
    CHECK(x4_config_load(&c, err, sizeof err) == 0);
    CHECK_EQ_INT(c.port, 5000);
    CHECK(c.database_url == NULL);
    CHECK(c.redis_url == NULL);
    CHECK_EQ_STR(c.network, "devnet");
    CHECK_EQ_INT(c.approval_ttl_ms, 900000);
    CHECK_EQ_STR(c.home, "./.x402r");
    x4_config_free(&c);
}

X4_TEST(bad_values_name_the_variable) {
    char err[256];
    clean();
    setenv("PORT", "abc", 1);
    CHECK(load_err(err, sizeof err) == -1);
    CHECK(strncmp(err, "PORT:", 5) == 0);
    clean();
    setenv("PORT", "70000", 1);
    CHECK(load_err(err, sizeof err) == -1);
    clean();
    setenv("DATABASE_URL", "mysql://x", 1);
    CHECK(load_err(err, sizeof err) == -1);
    CHECK(strncmp(err, "DATABASE_URL:", 13) == 0);
    clean();
    setenv("NETWORK", "ethereum", 1);
    CHECK(load_err(err, sizeof err) == -1);
    CHECK(strncmp(err, "NETWORK:", 8) == 0);
    clean();
    setenv("RETRY_FACTOR", "0.5", 1);
    CHECK(load_err(err, sizeof err) == -1);
    clean();
    setenv("LOG_LEVEL", "loud", 1);
    CHECK(load_err(err, sizeof err) == -1);
    clean();
    setenv("SOLANA_COMMITMENT", "eventually", 1);
    CHECK(load_err(err, sizeof err) == -1);
    CHECK(strncmp(err, "SOLANA_COMMITMENT:", 18) == 0);
    clean();
}

X4_TEST(secrets_are_never_echoed) {
    char err[256];
    clean();
    setenv("ESCROW_KEYPAIR", "c2VjcmV0LXNob3VsZC1uZXZlci1hcHBlYXI=", 1);
    CHECK(load_err(err, sizeof err) == -1);
    CHECK(strstr(err, "ESCROW_KEYPAIR") != NULL);
    CHECK(strstr(err, "c2VjcmV0") == NULL);
    clean();
    setenv("REDIS_URL", "ftp://:hunter2@host", 1);
    CHECK(load_err(err, sizeof err) == -1);
    CHECK(strstr(err, "hunter2") == NULL);
    clean();
}

X4_TEST(caip2_network_accepted) {
    char err[256];
    clean();
    setenv("NETWORK", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1", 1);
    CHECK(load_err(err, sizeof err) == 0);
    clean();
}
