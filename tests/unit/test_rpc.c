/* tests/unit/test_rpc.c — the Solana JSON-RPC client (pay/rpc.c).
 *
 * Two peers: (1) a tiny in-test HTTP server (one accept thread, one thread per connection,
 * Connection: close) answering every POST with a canned body in which "%ID%" becomes the
 * request's id — malformed JSON, wrong types, mismatched ids, error objects, HTTP errors;
 * (2) the real local marketplace chain (LiteSVM behind JSON-RPC), started for this run with
 * scripts/marketplace.sh in a temp dir and stopped at exit; when it cannot start (no
 * node_modules and no network) its tests are skipped with a note. Every test drains its loop and
 * checks uv_loop_close() == 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "exec/httpc.h"
#include "pay/keypair.h"
#include "pay/rpc.h"
#include "pay/solana.h"
#include "unit.h"

/* ---- fake JSON-RPC server ----------------------------------------------------------------- */

static struct {
    int lfd, port;
    pthread_t thr;
    atomic_int stop;
    pthread_mutex_t mu;
    char body[8192]; /* template; %ID% = the request id */
    int status;
    int delay_ms;
    char last_request[4096];
} g_fake;

static void fake_set(int status, const char *body) {
    pthread_mutex_lock(&g_fake.mu);
    g_fake.status = status;
    snprintf(g_fake.body, sizeof g_fake.body, "%s", body);
    g_fake.delay_ms = 0;
    pthread_mutex_unlock(&g_fake.mu);
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *fake_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    size_t have = 0;
    buf[0] = 0;
    char *end = NULL;
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        if (have >= sizeof buf - 1) goto out;
        ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (r <= 0) goto out;
        have += (size_t)r;
        buf[have] = 0;
    }
    size_t clen = 0;
    const char *cl = strcasestr(buf, "content-length:");
    if (cl) clen = strtoul(cl + 15, NULL, 10);
    size_t hlen = (size_t)(end - buf) + 4;
    while (have < hlen + clen && have < sizeof buf - 1) {
        ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (r <= 0) goto out;
        have += (size_t)r;
    }
    buf[have] = 0;
    const char *body = buf + hlen;
    long id = -1;
    const char *idp = strstr(body, "\"id\":");
    if (idp) id = strtol(idp + 5, NULL, 10);
    pthread_mutex_lock(&g_fake.mu);
    snprintf(g_fake.last_request, sizeof g_fake.last_request, "%s", body);
    char tmpl[8192];
    snprintf(tmpl, sizeof tmpl, "%s", g_fake.body);
    int status = g_fake.status, delay = g_fake.delay_ms;
    pthread_mutex_unlock(&g_fake.mu);
    if (delay) usleep((useconds_t)delay * 1000);
    char out[9000];
    size_t o = 0;
    for (const char *p = tmpl; *p && o < sizeof out - 32;) {
        if (strncmp(p, "%ID%", 4) == 0) {
            o += (size_t)snprintf(out + o, sizeof out - o, "%ld", id);
            p += 4;
        } else {
            out[o++] = *p++;
        }
    }
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, o);
    if (send_all(fd, head, (size_t)n) == 0) send_all(fd, out, o);
out:
    close(fd);
    return NULL;
}

static void *fake_accept(void *arg) {
    (void)arg;
    for (;;) {
        int fd = accept(g_fake.lfd, NULL, NULL);
        if (fd < 0) {
            if (atomic_load(&g_fake.stop)) break;
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, fake_conn, (void *)(intptr_t)fd) == 0) pthread_detach(t);
        else close(fd);
    }
    return NULL;
}

static int fake_port(void) {
    if (g_fake.port) return g_fake.port;
    pthread_mutex_init(&g_fake.mu, NULL);
    g_fake.lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(g_fake.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(g_fake.lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(g_fake.lfd, 64) != 0 ||
        getsockname(g_fake.lfd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    if (pthread_create(&g_fake.thr, NULL, fake_accept, NULL) != 0) return -1;
    g_fake.port = ntohs(a.sin_port);
    return g_fake.port;
}

__attribute__((destructor)) static void fake_cleanup(void) {
    if (!g_fake.port) return;
    atomic_store(&g_fake.stop, 1);
    shutdown(g_fake.lfd, SHUT_RDWR);
    pthread_join(g_fake.thr, NULL);
    close(g_fake.lfd);
}

/* ---- loop helpers ------------------------------------------------------------------------- */

static int g_calls;
static void on_tick(uv_timer_t *t) { (void)t; }

/* Runs the loop until g_calls reaches target (or timeout). */
static int wait_calls(uv_loop_t *loop, int target, unsigned timeout_ms) {
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    uint64_t end = uv_hrtime() / 1000000 + timeout_ms;
    while (g_calls < target && uv_hrtime() / 1000000 < end) uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return g_calls >= target;
}

static void loop_finish(uv_loop_t *loop) {
    for (int i = 0; i < 100 && uv_loop_alive(loop); i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (uv_loop_alive(loop)) usleep(1000);
    }
    CHECK_EQ_INT(uv_loop_close(loop), 0);
}

typedef struct {
    uv_loop_t loop;
    x4_httpc *h;
    x4_rpc *rpc;
} env;

static int env_open(env *e, const char *url, const char *commitment) {
    memset(e, 0, sizeof *e);
    uv_loop_init(&e->loop);
    if (x4_httpc_open(&e->h, &e->loop) != 0) return -1;
    e->rpc = x4_rpc_new(e->h, url, commitment, 5000);
    return e->rpc ? 0 : -1;
}

static void env_close(env *e) {
    x4_rpc_free(e->rpc);
    x4_httpc_close(e->h);
    loop_finish(&e->loop);
}

static int wait1(env *e) {
    g_calls = 0;
    return wait_calls(&e->loop, 1, 8000);
}

/* ---- result capture (results are valid only inside the callback: copy) ------------------- */

typedef struct {
    x4_rpc_status status;
    long long code;
    long http;
    char message[512];
    char data_json[2048];
    int retryable;
} base_copy;

static void copy_base(base_copy *b, const x4_rpc_result *r) {
    g_calls++;
    b->status = r->status;
    b->code = r->code;
    b->http = r->http_status;
    snprintf(b->message, sizeof b->message, "%s", r->message);
    snprintf(b->data_json, sizeof b->data_json, "%s", r->data_json ? r->data_json : "");
    b->retryable = x4_rpc_error_is_retryable(r);
}

static struct {
    base_copy b;
    x4_rpc_blockhash bh;
} g_bh;
static void cb_bh(const x4_rpc_blockhash *r, void *ud) {
    (void)ud;
    copy_base(&g_bh.b, &r->r);
    g_bh.bh = *r;
    g_bh.bh.r.data_json = NULL;
}

static struct {
    base_copy b;
    uint64_t height;
} g_height;
static void cb_height(const x4_rpc_block_height *r, void *ud) {
    (void)ud;
    copy_base(&g_height.b, &r->r);
    g_height.height = r->height;
}

static struct {
    base_copy b;
    int exists, executable;
    uint64_t lamports, space;
    size_t data_len;
    uint8_t data0;
    char owner[X4_SOL_B58_KEY_MAX];
} g_acc;
static void cb_acc(const x4_rpc_account *r, void *ud) {
    (void)ud;
    copy_base(&g_acc.b, &r->r);
    g_acc.exists = r->exists;
    g_acc.executable = r->executable;
    g_acc.lamports = r->lamports;
    g_acc.space = r->space;
    g_acc.data_len = r->data_len;
    g_acc.data0 = r->data_len ? r->data[0] : 0;
    snprintf(g_acc.owner, sizeof g_acc.owner, "%s", r->owner);
}

static struct {
    base_copy b;
    uint64_t lamports;
} g_bal;
static void cb_bal(const x4_rpc_balance *r, void *ud) {
    (void)ud;
    copy_base(&g_bal.b, &r->r);
    g_bal.lamports = r->lamports;
}

static struct {
    base_copy b;
    uint64_t amount;
    int decimals;
} g_tb;
static void cb_tb(const x4_rpc_token_balance *r, void *ud) {
    (void)ud;
    copy_base(&g_tb.b, &r->r);
    g_tb.amount = r->amount;
    g_tb.decimals = r->decimals;
}

static struct {
    base_copy b;
    char sig[X4_SOL_B58_SIG_MAX];
    char perr[1024];
    size_t nlogs;
} g_send;
static void cb_send(const x4_rpc_send *r, void *ud) {
    (void)ud;
    copy_base(&g_send.b, &r->r);
    snprintf(g_send.sig, sizeof g_send.sig, "%s", r->signature);
    snprintf(g_send.perr, sizeof g_send.perr, "%s", r->preflight_err ? r->preflight_err : "");
    g_send.nlogs = r->npreflight_logs;
}

static struct {
    base_copy b;
    size_t n;
    x4_rpc_sig_status st[4];
    char err0[256];
} g_st;
static void cb_st(const x4_rpc_sig_statuses *r, void *ud) {
    (void)ud;
    copy_base(&g_st.b, &r->r);
    g_st.n = r->n;
    for (size_t i = 0; i < r->n && i < 4; i++) g_st.st[i] = r->statuses[i];
    snprintf(g_st.err0, sizeof g_st.err0, "%s", r->n && r->statuses[0].err ? r->statuses[0].err : "");
    for (size_t i = 0; i < 4; i++) g_st.st[i].err = NULL;
}

static struct {
    base_copy b;
    int found, has_err, version;
    uint64_t fee, slot;
    char err[256];
    size_t nkeys, nstatic, nsigs, nlogs, nmemos, npre, npost;
    char keys[16][X4_SOL_B58_KEY_MAX];
    char sig0[X4_SOL_B58_SIG_MAX];
    char memo0[300];
    int memo0_inner;
    x4_rpc_tx_token_balance pre[8], post[8];
    long long raw_slot;
} g_tx;
static void cb_tx(const x4_rpc_tx *r, void *ud) {
    (void)ud;
    copy_base(&g_tx.b, &r->r);
    g_tx.found = r->found;
    g_tx.has_err = r->err != NULL;
    snprintf(g_tx.err, sizeof g_tx.err, "%s", r->err ? r->err : "");
    g_tx.version = r->version;
    g_tx.fee = r->fee;
    g_tx.slot = r->slot;
    g_tx.nkeys = r->naccount_keys;
    g_tx.nstatic = r->nstatic_keys;
    for (size_t i = 0; i < r->naccount_keys && i < 16; i++) snprintf(g_tx.keys[i], sizeof g_tx.keys[i], "%s", r->account_keys[i]);
    g_tx.nsigs = r->nsignatures;
    snprintf(g_tx.sig0, sizeof g_tx.sig0, "%s", r->nsignatures ? r->signatures[0] : "");
    g_tx.nlogs = r->nlogs;
    g_tx.nmemos = r->nmemos;
    snprintf(g_tx.memo0, sizeof g_tx.memo0, "%s", r->nmemos && r->memos[0].text ? r->memos[0].text : "");
    g_tx.memo0_inner = r->nmemos ? r->memos[0].inner : -1;
    g_tx.npre = r->npre_token;
    g_tx.npost = r->npost_token;
    for (size_t i = 0; i < r->npre_token && i < 8; i++) g_tx.pre[i] = r->pre_token[i];
    for (size_t i = 0; i < r->npost_token && i < 8; i++) g_tx.post[i] = r->post_token[i];
    g_tx.raw_slot = r->raw ? (long long)json_integer_value(json_object_get(r->raw, "slot")) : -1;
}

static struct {
    base_copy b;
    size_t n;
    struct {
        char sig[X4_SOL_B58_SIG_MAX];
        char memo[300], text0[300], text1[300];
        size_t ntexts;
        int has_err;
        char status[16];
    } it[8];
} g_sigs;
static void cb_sigs(const x4_rpc_sigs *r, void *ud) {
    (void)ud;
    copy_base(&g_sigs.b, &r->r);
    g_sigs.n = r->n;
    for (size_t i = 0; i < r->n && i < 8; i++) {
        snprintf(g_sigs.it[i].sig, sizeof g_sigs.it[i].sig, "%s", r->items[i].signature);
        snprintf(g_sigs.it[i].memo, sizeof g_sigs.it[i].memo, "%s", r->items[i].memo ? r->items[i].memo : "");
        g_sigs.it[i].ntexts = r->items[i].nmemo_texts;
        snprintf(g_sigs.it[i].text0, 300, "%s", r->items[i].nmemo_texts > 0 ? r->items[i].memo_texts[0] : "");
        snprintf(g_sigs.it[i].text1, 300, "%s", r->items[i].nmemo_texts > 1 ? r->items[i].memo_texts[1] : "");
        g_sigs.it[i].has_err = r->items[i].err != NULL;
        snprintf(g_sigs.it[i].status, 16, "%s", r->items[i].confirmation_status);
    }
}

static struct {
    base_copy b;
    json_t *result;
} g_raw;
static void cb_raw(const x4_rpc_raw *r, void *ud) {
    (void)ud;
    copy_base(&g_raw.b, &r->r);
    json_decref(g_raw.result);
    g_raw.result = r->result ? json_incref(r->result) : NULL;
}

static int g_cancelled;
static void cb_count_cancel(const x4_rpc_balance *r, void *ud) {
    (void)ud;
    g_calls++;
    if (r->r.status == X4_RPC_E_CANCELLED) g_cancelled++;
}

/* ---- tests against the fake server -------------------------------------------------------- */

#define KEY_A "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
#define TOKEN_PROG "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
#define SIG_A "2Ana1pUpv2ZbMVkwF5FXapYeBEjdxDatLn7nvJkhgTSXbs59SyZSx866bXirPgj8QQVB57uxHJBG1YFvkRbFj4T"

static env *fake_env(env *e, const char *commitment) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", fake_port());
    CHECK_EQ_INT(env_open(e, url, commitment), 0);
    return e;
}

X4_TEST(rpc_new_validates_arguments) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    x4_httpc *h = NULL;
    CHECK_EQ_INT(x4_httpc_open(&h, &loop), 0);
    CHECK(x4_rpc_new(h, "http://x", "fast", 1000) == NULL);
    CHECK(x4_rpc_new(h, "", NULL, 1000) == NULL);
    CHECK(x4_rpc_new(NULL, "http://x", NULL, 1000) == NULL);
    x4_rpc *r = x4_rpc_new(h, "http://x", NULL, 0);
    CHECK(r != NULL);
    CHECK_EQ_STR(x4_rpc_commitment(r), "confirmed");
    /* refused calls: NULL, a reason, the callback never runs, nothing in flight */
    g_calls = 0;
    CHECK(x4_rpc_get_balance(r, "not-a-key", cb_bal, NULL) == NULL);
    CHECK(strstr(x4_rpc_last_error(r), "public key") != NULL);
    CHECK(x4_rpc_get_transaction(r, KEY_A, cb_tx, NULL) == NULL); /* a key is not a signature */
    const char *sigs[1] = {"abc"};
    CHECK(x4_rpc_get_signature_statuses(r, sigs, 1, true, cb_st, NULL) == NULL);
    CHECK(x4_rpc_get_signature_statuses(r, sigs, 0, true, cb_st, NULL) == NULL);
    x4_rpc_sigs_opts o = {.limit = 1001};
    CHECK(x4_rpc_get_signatures_for_address(r, KEY_A, &o, cb_sigs, NULL) == NULL);
    CHECK(x4_rpc_send_transaction(r, "", false, NULL, cb_send, NULL) == NULL);
    CHECK(x4_rpc_send_transaction(r, "AAAA", false, "fast", cb_send, NULL) == NULL);
    CHECK(x4_rpc_get_balance(r, KEY_A, NULL, NULL) == NULL);
    CHECK_EQ_INT(x4_rpc_inflight(r), 0);
    CHECK_EQ_INT(g_calls, 0);
    CHECK(x4_rpc_blockhash_expired(100, 101));
    CHECK(!x4_rpc_blockhash_expired(100, 100));
    x4_rpc_free(r);
    x4_httpc_close(h);
    loop_finish(&loop);
}

X4_TEST(rpc_fake_good_answers_and_exact_integers) {
    env e;
    fake_env(&e, "finalized");
    /* balance above int64: exact */
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":7},\"value\":18446744073709551615}}");
    CHECK(x4_rpc_get_balance(e.rpc, KEY_A, cb_bal, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_bal.b.status, X4_RPC_OK);
    CHECK(g_bal.lamports == UINT64_MAX);
    pthread_mutex_lock(&g_fake.mu);
    CHECK(strstr(g_fake.last_request, "\"commitment\":\"finalized\"") != NULL);
    CHECK(strstr(g_fake.last_request, "\"method\":\"getBalance\"") != NULL);
    pthread_mutex_unlock(&g_fake.mu);
    /* account with rentEpoch u64::MAX (what real nodes send) and base64 data */
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":7},\"value\":{\"executable\":false,"
                  "\"lamports\":5,\"owner\":\"" TOKEN_PROG "\",\"rentEpoch\":18446744073709551615,\"space\":3,"
                  "\"data\":[\"AQID\",\"base64\"]}}}");
    CHECK(x4_rpc_get_account_info(e.rpc, KEY_A, cb_acc, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_acc.b.status, X4_RPC_OK);
    CHECK(g_acc.exists);
    CHECK_EQ_INT(g_acc.data_len, 3);
    CHECK_EQ_INT(g_acc.data0, 1);
    CHECK_EQ_STR(g_acc.owner, TOKEN_PROG);
    /* missing account */
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":7},\"value\":null}}");
    CHECK(x4_rpc_get_account_info(e.rpc, KEY_A, cb_acc, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_acc.b.status, X4_RPC_OK);
    CHECK(!g_acc.exists);
    /* token amount: u64::MAX exactly */
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":7},\"value\":{\"amount\":"
                  "\"18446744073709551615\",\"decimals\":6,\"uiAmount\":1.8e13}}}");
    CHECK(x4_rpc_get_token_account_balance(e.rpc, KEY_A, cb_tb, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_tb.b.status, X4_RPC_OK);
    CHECK(g_tb.amount == UINT64_MAX);
    CHECK_EQ_INT(g_tb.decimals, 6);
    /* signatures for address: memo forms */
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":[{\"signature\":\"" SIG_A "\",\"slot\":9,\"err\":null,"
                  "\"memo\":\"[5] hello; [3] a;b\",\"blockTime\":null,\"confirmationStatus\":\"finalized\"},"
                  "{\"signature\":\"" SIG_A "\",\"slot\":8,\"err\":{\"InstructionError\":[0,{\"Custom\":1}]},"
                  "\"memo\":\"[4] abc\",\"blockTime\":1,\"confirmationStatus\":null}]}");
    CHECK(x4_rpc_get_signatures_for_address(e.rpc, KEY_A, NULL, cb_sigs, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_sigs.b.status, X4_RPC_OK);
    CHECK_EQ_INT(g_sigs.n, 2);
    CHECK_EQ_INT(g_sigs.it[0].ntexts, 2);
    CHECK_EQ_STR(g_sigs.it[0].text0, "hello");
    CHECK_EQ_STR(g_sigs.it[0].text1, "a;b");
    CHECK_EQ_INT(g_sigs.it[1].ntexts, 1); /* lengths do not line up: the rest is one text */
    CHECK_EQ_STR(g_sigs.it[1].text0, "abc");
    CHECK(g_sigs.it[1].has_err);
    CHECK_EQ_STR(g_sigs.it[1].status, "");
    env_close(&e);
}

typedef struct {
    const char *what;
    int status;
    const char *body;
    x4_rpc_status want;
    const char *msg_has;
} bad_case;

X4_TEST(rpc_fake_hostile_answers_are_clear_errors) {
    static const bad_case cases[] = {
        {"not json", 200, "<html>oops", X4_RPC_E_PROTOCOL, "not JSON"},
        {"array", 200, "[1,2]", X4_RPC_E_PROTOCOL, "JSON-RPC"},
        {"wrong id", 200, "{\"jsonrpc\":\"2.0\",\"id\":999999,\"result\":5}", X4_RPC_E_PROTOCOL, "id"},
        {"string id", 200, "{\"jsonrpc\":\"2.0\",\"id\":\"%ID%\",\"result\":5}", X4_RPC_E_PROTOCOL, "id"},
        {"no id", 200, "{\"jsonrpc\":\"2.0\",\"result\":5}", X4_RPC_E_PROTOCOL, "id"},
        {"no jsonrpc", 200, "{\"id\":%ID%,\"result\":5}", X4_RPC_E_PROTOCOL, "jsonrpc"},
        {"no result", 200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%}", X4_RPC_E_PROTOCOL, "neither"},
        {"value string", 200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":\"12\"}}",
         X4_RPC_E_PROTOCOL, "result.value"},
        {"negative", 200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":-3}}",
         X4_RPC_E_PROTOCOL, "negative"},
        {"float", 200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":1.5}}",
         X4_RPC_E_PROTOCOL, "result.value"},
        {"too big", 200,
         "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":99999999999999999999999}}",
         X4_RPC_E_PROTOCOL, "range"},
        {"no context", 200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"value\":1}}", X4_RPC_E_PROTOCOL,
         "context"},
        {"result null", 200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":null}", X4_RPC_E_PROTOCOL, "result"},
        {"rpc error", 200,
         "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"error\":{\"code\":-32005,\"message\":\"Node is behind\",\"data\":{\"n\":3}}}",
         X4_RPC_E_RPC, "behind"},
        {"parse error id null", 200, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"Parse error\"}}",
         X4_RPC_E_RPC, "Parse"},
        {"error other id", 200, "{\"jsonrpc\":\"2.0\",\"id\":424242,\"error\":{\"code\":-32005,\"message\":\"x\"}}",
         X4_RPC_E_PROTOCOL, "id"},
        {"error bad shape", 200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"error\":{\"code\":\"x\",\"message\":1}}",
         X4_RPC_E_PROTOCOL, "malformed"},
        {"http 503", 503, "Service Unavailable", X4_RPC_E_HTTP, "503"},
        {"http 429 rpc body", 429, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"error\":{\"code\":429,\"message\":\"Too many requests\"}}",
         X4_RPC_E_RPC, "Too many"},
        {"http 404 html", 404, "<html>", X4_RPC_E_HTTP, "404"},
    };
    env e;
    fake_env(&e, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_set(cases[i].status, cases[i].body);
        CHECK(x4_rpc_get_balance(e.rpc, KEY_A, cb_bal, NULL) != NULL);
        CHECK(wait1(&e));
        if (g_bal.b.status != cases[i].want || !strstr(g_bal.b.message, cases[i].msg_has)) {
            fprintf(stderr, "  case \"%s\": status %s message \"%s\"\n", cases[i].what,
                    x4_rpc_status_name(g_bal.b.status), g_bal.b.message);
            x4_test_failed_checks++;
        }
        CHECK(g_bal.lamports == 0); /* a failed parse leaves no half result */
        if (strcmp(cases[i].what, "rpc error") == 0) {
            CHECK_EQ_INT(g_bal.b.code, -32005);
            CHECK(g_bal.b.retryable);
            CHECK_EQ_STR(g_bal.b.data_json, "{\"n\":3}");
        }
        if (strcmp(cases[i].what, "http 503") == 0 || strcmp(cases[i].what, "http 429 rpc body") == 0)
            CHECK(g_bal.b.retryable);
        if (strcmp(cases[i].what, "http 404 html") == 0 || strcmp(cases[i].what, "not json") == 0)
            CHECK(!g_bal.b.retryable);
    }

    /* method-specific shapes */
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":{\"blockhash\":"
                  "\"0OIl\",\"lastValidBlockHeight\":5}}}");
    CHECK(x4_rpc_get_latest_blockhash(e.rpc, cb_bh, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_bh.b.status, X4_RPC_E_PROTOCOL);
    CHECK(strstr(g_bh.b.message, "blockhash") != NULL);
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":{\"blockhash\":"
                  "\"" KEY_A "\",\"lastValidBlockHeight\":\"5\"}}}");
    CHECK(x4_rpc_get_latest_blockhash(e.rpc, cb_bh, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_bh.b.status, X4_RPC_E_PROTOCOL);
    CHECK(strstr(g_bh.b.message, "lastValidBlockHeight") != NULL);
    CHECK_EQ_STR(g_bh.bh.blockhash, ""); /* cleared */
    /* token amount one above u64, and a non-decimal */
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":{\"amount\":"
                  "\"18446744073709551616\",\"decimals\":6}}}");
    CHECK(x4_rpc_get_token_account_balance(e.rpc, KEY_A, cb_tb, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_tb.b.status, X4_RPC_E_PROTOCOL);
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":{\"amount\":"
                  "\"1.5\",\"decimals\":6}}}");
    CHECK(x4_rpc_get_token_account_balance(e.rpc, KEY_A, cb_tb, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_tb.b.status, X4_RPC_E_PROTOCOL);
    CHECK(strstr(g_tb.b.message, "amount") != NULL);
    /* account: bad base64, wrong encoding tag, space mismatch */
    const char *accs[] = {
        "\"data\":[\"!!\",\"base64\"],\"space\":1",
        "\"data\":[\"AQID\",\"base58\"],\"space\":3",
        "\"data\":[\"AQID\",\"base64\"],\"space\":4",
        "\"data\":\"AQID\",\"space\":3",
    };
    for (size_t i = 0; i < 4; i++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"jsonrpc\":\"2.0\",\"id\":%%ID%%,\"result\":{\"context\":{\"slot\":1},\"value\":{\"executable\":false,"
                 "\"lamports\":5,\"owner\":\"%s\",%s}}}",
                 TOKEN_PROG, accs[i]);
        fake_set(200, body);
        CHECK(x4_rpc_get_account_info(e.rpc, KEY_A, cb_acc, NULL) != NULL);
        CHECK(wait1(&e));
        CHECK_EQ_INT(g_acc.b.status, X4_RPC_E_PROTOCOL);
        CHECK(!g_acc.exists);
    }
    /* statuses: wrong count, bad confirmationStatus */
    const char *two[2] = {SIG_A, SIG_A};
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":[null]}}");
    CHECK(x4_rpc_get_signature_statuses(e.rpc, two, 2, true, cb_st, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_st.b.status, X4_RPC_E_PROTOCOL);
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":[null,{\"slot\":3,"
                  "\"confirmations\":null,\"err\":null,\"confirmationStatus\":\"sure\"}]}}");
    CHECK(x4_rpc_get_signature_statuses(e.rpc, two, 2, true, cb_st, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_st.b.status, X4_RPC_E_PROTOCOL);
    CHECK(strstr(g_st.b.message, "confirmationStatus") != NULL);
    /* send: a signature that is not 64 bytes */
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":\"" KEY_A "\"}");
    CHECK(x4_rpc_send_transaction(e.rpc, "AAAA", true, NULL, cb_send, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_send.b.status, X4_RPC_E_PROTOCOL);
    /* getTransaction: wrong types in several places */
    const char *txs[] = {
        "{\"slot\":\"x\"}",
        "{\"slot\":1,\"meta\":null,\"transaction\":{}}",
        "{\"slot\":1,\"version\":1,\"meta\":{\"err\":null,\"fee\":5000},\"transaction\":{}}",
        "{\"slot\":1,\"meta\":{\"err\":null,\"fee\":5000},\"transaction\":[\"AAAA\",\"base64\"]}",
        "{\"slot\":1,\"meta\":{\"err\":null,\"fee\":5000},\"transaction\":{\"signatures\":[\"" SIG_A "\"],"
        "\"message\":{\"accountKeys\":[\"" KEY_A "\"],\"instructions\":[{\"programIdIndex\":7,\"accounts\":[],"
        "\"data\":\"\"}]}}}",
        "{\"slot\":1,\"meta\":{\"err\":null,\"fee\":5000,\"preTokenBalances\":[{\"accountIndex\":3,\"mint\":\"" KEY_A
        "\",\"uiTokenAmount\":{\"amount\":\"1\",\"decimals\":6}}]},\"transaction\":{\"signatures\":[\"" SIG_A "\"],"
        "\"message\":{\"accountKeys\":[\"" KEY_A "\"],\"instructions\":[]}}}",
        "{\"slot\":1,\"meta\":{\"err\":null,\"fee\":5000,\"logMessages\":[1]},\"transaction\":{\"signatures\":[\"" SIG_A
        "\"],\"message\":{\"accountKeys\":[\"" KEY_A "\"],\"instructions\":[]}}}",
    };
    for (size_t i = 0; i < sizeof txs / sizeof txs[0]; i++) {
        char body[2048];
        snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":%%ID%%,\"result\":%s}", txs[i]);
        fake_set(200, body);
        CHECK(x4_rpc_get_transaction(e.rpc, SIG_A, cb_tx, NULL) != NULL);
        CHECK(wait1(&e));
        if (g_tx.b.status != X4_RPC_E_PROTOCOL) {
            fprintf(stderr, "  tx case %zu: %s\n", i, x4_rpc_status_name(g_tx.b.status));
            x4_test_failed_checks++;
        }
        CHECK(!g_tx.found);
    }
    /* a well-formed v0 transaction with a loaded address, a memo (base58 of "hi") and an inner memo */
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"slot\":12,\"blockTime\":100,\"version\":0,"
                  "\"meta\":{\"err\":null,\"fee\":5000,\"logMessages\":[\"a\",\"b\"],\"loadedAddresses\":"
                  "{\"writable\":[\"" TOKEN_PROG "\"],\"readonly\":[]},\"innerInstructions\":[{\"index\":0,"
                  "\"instructions\":[{\"programIdIndex\":1,\"accounts\":[],\"data\":\"8wr\"}]}],"
                  "\"preTokenBalances\":[{\"accountIndex\":2,\"mint\":\"" KEY_A "\",\"owner\":\"" KEY_A "\","
                  "\"uiTokenAmount\":{\"amount\":\"100\",\"decimals\":6}}],\"postTokenBalances\":[]},"
                  "\"transaction\":{\"signatures\":[\"" SIG_A "\"],\"message\":{\"accountKeys\":[\"" KEY_A "\","
                  "\"MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr\"],\"instructions\":[{\"programIdIndex\":1,"
                  "\"accounts\":[],\"data\":\"8wr\"}]}}}}");
    CHECK(x4_rpc_get_transaction(e.rpc, SIG_A, cb_tx, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_tx.b.status, X4_RPC_OK);
    CHECK(g_tx.found);
    CHECK_EQ_INT(g_tx.version, 0);
    CHECK_EQ_INT(g_tx.nkeys, 3);
    CHECK_EQ_INT(g_tx.nstatic, 2);
    CHECK_EQ_STR(g_tx.keys[2], TOKEN_PROG);
    CHECK_EQ_INT(g_tx.nmemos, 2);
    CHECK_EQ_STR(g_tx.memo0, "hi");
    CHECK_EQ_INT(g_tx.memo0_inner, 0);
    CHECK_EQ_INT(g_tx.npre, 1);
    CHECK(x4_rpc_tx_token_amount(g_tx.pre, g_tx.npre, 2) == 100);
    CHECK(x4_rpc_tx_token_amount(g_tx.post, g_tx.npost, 2) == 0);
    CHECK_EQ_INT(g_tx.raw_slot, 12);
    /* the response cap */
    x4_rpc_set_max_response(e.rpc, 64);
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":1},\"pad\":"
                  "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}");
    CHECK(x4_rpc_get_balance(e.rpc, KEY_A, cb_bal, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_bal.b.status, X4_RPC_E_TOO_LARGE);
    env_close(&e);
}

X4_TEST(rpc_ids_increase_and_cancel_runs_callbacks_once) {
    env e;
    fake_env(&e, NULL);
    fake_set(200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"context\":{\"slot\":1},\"value\":1}}");
    CHECK(x4_rpc_get_balance(e.rpc, KEY_A, cb_bal, NULL) != NULL);
    CHECK(wait1(&e));
    pthread_mutex_lock(&g_fake.mu);
    long id1 = strtol(strstr(g_fake.last_request, "\"id\":") + 5, NULL, 10);
    pthread_mutex_unlock(&g_fake.mu);
    CHECK(x4_rpc_get_balance(e.rpc, KEY_A, cb_bal, NULL) != NULL);
    CHECK(wait1(&e));
    pthread_mutex_lock(&g_fake.mu);
    long id2 = strtol(strstr(g_fake.last_request, "\"id\":") + 5, NULL, 10);
    g_fake.delay_ms = 3000;
    pthread_mutex_unlock(&g_fake.mu);
    CHECK(id2 == id1 + 1);
    /* three calls in flight; cancel one, free the client with two left: three callbacks */
    g_calls = 0;
    g_cancelled = 0;
    x4_rpc_call *c1 = x4_rpc_get_balance(e.rpc, KEY_A, cb_count_cancel, NULL);
    CHECK(x4_rpc_get_balance(e.rpc, KEY_A, cb_count_cancel, NULL) != NULL);
    CHECK(x4_rpc_get_balance(e.rpc, KEY_A, cb_count_cancel, NULL) != NULL);
    CHECK_EQ_INT(x4_rpc_inflight(e.rpc), 3);
    uv_run(&e.loop, UV_RUN_NOWAIT);
    x4_rpc_cancel(c1);
    CHECK_EQ_INT(g_cancelled, 1);
    CHECK_EQ_INT(x4_rpc_inflight(e.rpc), 2);
    x4_rpc_free(e.rpc);
    e.rpc = NULL;
    CHECK_EQ_INT(g_cancelled, 3);
    CHECK_EQ_INT(g_calls, 3);
    x4_httpc_close(e.h);
    loop_finish(&e.loop);
    pthread_mutex_lock(&g_fake.mu);
    g_fake.delay_ms = 0;
    pthread_mutex_unlock(&g_fake.mu);
}

X4_TEST(rpc_dead_url_is_a_retryable_transport_error) {
    env e;
    int fd = socket(AF_INET, SOCK_STREAM, 0); /* a port nobody listens on */
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    close(fd);
    CHECK_EQ_INT(env_open(&e, url, NULL), 0);
    CHECK(x4_rpc_get_block_height(e.rpc, cb_height, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_height.b.status, X4_RPC_E_TRANSPORT);
    CHECK(g_height.b.retryable);
    CHECK(g_height.b.message[0] != 0);
    env_close(&e);
}

/* ---- the real local chain ----------------------------------------------------------------- */

static struct {
    int tried, ok;
    char dir[256];
    json_t *cfg;
} g_mk;

static void mk_stop(void) {
    char cmd[600];
    if (!g_mk.ok) return;
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/marketplace.sh' stop '%s' >/dev/null 2>&1", X4_SOURCE_DIR, g_mk.dir);
    if (system(cmd) != 0) fprintf(stderr, "  note: marketplace stop failed\n");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_mk.dir);
    if (system(cmd) != 0) fprintf(stderr, "  note: cannot remove %s\n", g_mk.dir);
    json_decref(g_mk.cfg);
    g_mk.ok = 0;
}

static const char *mk(const char *path) { /* "a.b.c" in marketplace.json */
    json_t *v = g_mk.cfg;
    char buf[128], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    for (char *t = strtok_r(buf, ".", &save); t && v; t = strtok_r(NULL, ".", &save)) v = json_object_get(v, t);
    return json_string_value(v);
}

static int market(void) {
    if (g_mk.tried) return g_mk.ok;
    g_mk.tried = 1;
    snprintf(g_mk.dir, sizeof g_mk.dir, "/tmp/x4-test-rpc-XXXXXX");
    if (!mkdtemp(g_mk.dir)) return 0;
    char cmd[700], path[300];
    snprintf(cmd, sizeof cmd, "cd '%s' && bash scripts/marketplace.sh start '%s' --port-base 0 >'%s/start.out' 2>&1",
             X4_SOURCE_DIR, g_mk.dir, g_mk.dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "  SKIP: the local marketplace chain could not start (see %s/start.out): "
                        "chain tests skipped\n", g_mk.dir);
        return 0;
    }
    g_mk.ok = 1;
    atexit(mk_stop);
    snprintf(path, sizeof path, "%s/marketplace.json", g_mk.dir);
    json_error_t je;
    g_mk.cfg = json_load_file(path, 0, &je);
    if (!g_mk.cfg || !mk("rpcUrl") || !mk("escrow.secretBase64")) {
        fprintf(stderr, "  marketplace.json unreadable: %s\n", je.text);
        mk_stop();
        return -1;
    }
    return 1;
}

/* sends, waits, returns the status; signature in g_send.sig */
static x4_rpc_status send_tx(env *e, x4_sol_tx *tx, bool skip) {
    x4_buf b = {0};
    CHECK_EQ_INT(x4_sol_tx_to_base64(tx, &b), 0);
    CHECK(x4_rpc_send_transaction(e->rpc, b.data, skip, NULL, cb_send, NULL) != NULL);
    x4_buf_free(&b);
    CHECK(wait1(e));
    return g_send.b.status;
}

static x4_sol_tx *build(env *e, int version, const x4_keypair *payer, const x4_sol_ix *ixs, size_t n) {
    char err[256];
    x4_sol_pubkey fp;
    x4_sol_tx *tx = NULL;
    memcpy(fp.b, payer->pubkey, 32);
    CHECK(x4_rpc_get_latest_blockhash(e->rpc, cb_bh, NULL) != NULL);
    CHECK(wait1(e));
    CHECK_EQ_INT(g_bh.b.status, X4_RPC_OK);
    if (x4_sol_tx_compile(version, &fp, ixs, n, g_bh.bh.blockhash_bytes, &tx, err, sizeof err) != 0) {
        fprintf(stderr, "  compile: %s\n", err);
        x4_test_failed_checks++;
        return NULL;
    }
    CHECK_EQ_INT(x4_sol_tx_sign_partial(tx, payer, err, sizeof err), 0);
    return tx;
}

X4_TEST(rpc_against_the_local_chain) {
    int m = market();
    if (m == 0) return;
    CHECK(m == 1);
    if (m != 1) return;
    env e;
    char err[256];
    CHECK_EQ_INT(env_open(&e, mk("rpcUrl"), "confirmed"), 0);
    x4_keypair *escrow = NULL, *fresh = NULL;
    CHECK_EQ_INT(x4_keypair_load_base64(mk("escrow.secretBase64"), &escrow, err, sizeof err), 0);
    CHECK_EQ_INT(x4_keypair_generate(&fresh, err, sizeof err), 0);
    if (!escrow || !fresh) goto out;
    x4_sol_pubkey esc_pk, fresh_pk, mint, esc_ata, user_ata;
    char fresh_b58[X4_SOL_B58_KEY_MAX];
    memcpy(esc_pk.b, escrow->pubkey, 32);
    memcpy(fresh_pk.b, fresh->pubkey, 32);
    x4_sol_pubkey_to_b58(&fresh_pk, fresh_b58);
    CHECK_EQ_INT(x4_sol_pubkey_from_b58(mk("mint"), &mint), 0);
    CHECK_EQ_INT(x4_sol_pubkey_from_b58(mk("escrow.tokenAccount"), &esc_ata), 0);
    CHECK_EQ_INT(x4_sol_pubkey_from_b58(mk("wallets.user1.tokenAccount"), &user_ata), 0);

    /* blockhash and height */
    CHECK(x4_rpc_get_latest_blockhash(e.rpc, cb_bh, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_bh.b.status, X4_RPC_OK);
    uint8_t raw[32];
    CHECK_EQ_INT(x4_b58_decode_exact(g_bh.bh.blockhash, raw, 32), 0);
    CHECK(g_bh.bh.slot > 0);
    CHECK(x4_rpc_get_block_height(e.rpc, cb_height, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_height.b.status, X4_RPC_OK);
    CHECK(g_bh.bh.last_valid_block_height > g_height.height);
    CHECK(!x4_rpc_blockhash_expired(g_bh.bh.last_valid_block_height, g_height.height));

    /* accounts */
    CHECK(x4_rpc_get_account_info(e.rpc, mk("mint"), cb_acc, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_acc.b.status, X4_RPC_OK);
    CHECK(g_acc.exists);
    CHECK_EQ_STR(g_acc.owner, TOKEN_PROG);
    CHECK_EQ_INT(g_acc.data_len, 82); /* an SPL mint */
    CHECK_EQ_INT(g_acc.space, 82);
    CHECK(g_acc.lamports > 0);
    CHECK(x4_rpc_get_account_info(e.rpc, fresh_b58, cb_acc, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_acc.b.status, X4_RPC_OK);
    CHECK(!g_acc.exists);

    /* balances as funded */
    CHECK(x4_rpc_get_balance(e.rpc, mk("escrow.address"), cb_bal, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_bal.b.status, X4_RPC_OK);
    CHECK(g_bal.lamports == 10000000000ull);
    CHECK(x4_rpc_get_token_account_balance(e.rpc, mk("escrow.tokenAccount"), cb_tb, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_tb.b.status, X4_RPC_OK);
    CHECK(g_tb.amount == 100000000ull);
    CHECK_EQ_INT(g_tb.decimals, 6);
    CHECK(x4_rpc_get_token_account_balance(e.rpc, mk("escrow.address"), cb_tb, NULL) != NULL); /* not a token acct */
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_tb.b.status, X4_RPC_E_RPC);
    CHECK_EQ_INT(g_tb.b.code, -32602);

    /* 1: a System transfer with a memo (legacy) */
    char memo1[64], sig1[X4_SOL_B58_SIG_MAX], sig2[X4_SOL_B58_SIG_MAX];
    snprintf(memo1, sizeof memo1, "x4-rpc-test-%lu", (unsigned long)uv_hrtime());
    x4_sol_ix ixs[2];
    x4_sol_ix_system_transfer(&ixs[0], &esc_pk, &fresh_pk, 1000000);
    CHECK_EQ_INT(x4_sol_ix_memo(&ixs[1], (const uint8_t *)memo1, strlen(memo1), NULL, 0), 0);
    x4_sol_tx *tx = build(&e, X4_SOL_LEGACY, escrow, ixs, 2);
    if (!tx) goto out;
    char want_sig[X4_SOL_B58_SIG_MAX];
    x4_sol_signature_to_b58(tx->sigs, want_sig);
    CHECK_EQ_INT(send_tx(&e, tx, false), X4_RPC_OK);
    x4_sol_tx_free(tx);
    CHECK_EQ_STR(g_send.sig, want_sig);
    snprintf(sig1, sizeof sig1, "%s", g_send.sig);

    const char *q[2] = {sig1, SIG_A};
    CHECK(x4_rpc_get_signature_statuses(e.rpc, q, 2, true, cb_st, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_st.b.status, X4_RPC_OK);
    CHECK_EQ_INT(g_st.n, 2);
    CHECK(g_st.st[0].found);
    CHECK(g_st.st[0].slot > 0);
    CHECK_EQ_STR(g_st.err0, "");
    CHECK_EQ_STR(g_st.st[0].confirmation_status, "finalized");
    CHECK(!g_st.st[1].found);

    CHECK(x4_rpc_get_transaction(e.rpc, sig1, cb_tx, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_tx.b.status, X4_RPC_OK);
    CHECK(g_tx.found);
    CHECK_EQ_INT(g_tx.fee, 5000);
    CHECK(!g_tx.has_err);
    CHECK_EQ_INT(g_tx.version, X4_SOL_LEGACY);
    CHECK_EQ_STR(g_tx.sig0, sig1);
    CHECK_EQ_INT(g_tx.nmemos, 1);
    CHECK_EQ_STR(g_tx.memo0, memo1);
    CHECK(g_tx.nlogs > 0);
    int has_fresh = 0;
    for (size_t i = 0; i < g_tx.nkeys && i < 16; i++) has_fresh |= strcmp(g_tx.keys[i], fresh_b58) == 0;
    CHECK(has_fresh);
    CHECK(x4_rpc_get_balance(e.rpc, fresh_b58, cb_bal, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK(g_bal.lamports == 1000000);

    /* 2: a TransferChecked of 12345 to user1 (v0), with a memo */
    char memo2[] = "x4-rpc-token-transfer";
    x4_sol_ix tix[2];
    CHECK_EQ_INT(x4_sol_ix_transfer_checked(&tix[0], &x4_sol_token_program, &esc_ata, &mint, &user_ata, &esc_pk,
                                            12345, 6),
                 0);
    CHECK_EQ_INT(x4_sol_ix_memo(&tix[1], (const uint8_t *)memo2, strlen(memo2), NULL, 0), 0);
    tx = build(&e, 0, escrow, tix, 2);
    if (!tx) goto out;
    CHECK_EQ_INT(send_tx(&e, tx, false), X4_RPC_OK);
    x4_sol_tx_free(tx);
    snprintf(sig2, sizeof sig2, "%s", g_send.sig);
    CHECK(x4_rpc_get_transaction(e.rpc, sig2, cb_tx, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_tx.b.status, X4_RPC_OK);
    CHECK_EQ_INT(g_tx.version, 0);
    CHECK_EQ_STR(g_tx.memo0, memo2);
    int ei = -1, ui = -1;
    for (size_t i = 0; i < g_tx.nkeys && i < 16; i++) {
        if (strcmp(g_tx.keys[i], mk("escrow.tokenAccount")) == 0) ei = (int)i;
        if (strcmp(g_tx.keys[i], mk("wallets.user1.tokenAccount")) == 0) ui = (int)i;
    }
    CHECK(ei >= 0 && ui >= 0);
    CHECK(g_tx.npre >= 2 && g_tx.npost >= 2);
    if (ei >= 0 && ui >= 0) {
        CHECK(x4_rpc_tx_token_amount(g_tx.pre, g_tx.npre, (uint32_t)ei) == 100000000ull);
        CHECK(x4_rpc_tx_token_amount(g_tx.post, g_tx.npost, (uint32_t)ei) == 100000000ull - 12345);
        CHECK(x4_rpc_tx_token_amount(g_tx.post, g_tx.npost, (uint32_t)ui) -
                  x4_rpc_tx_token_amount(g_tx.pre, g_tx.npre, (uint32_t)ui) ==
              12345);
        for (size_t i = 0; i < g_tx.npost && i < 8; i++)
            if ((int)g_tx.post[i].account_index == ei) {
                CHECK_EQ_STR(g_tx.post[i].mint, mk("mint"));
                CHECK_EQ_STR(g_tx.post[i].owner, mk("escrow.address"));
                CHECK_EQ_INT(g_tx.post[i].decimals, 6);
            }
    }
    CHECK(x4_rpc_get_token_account_balance(e.rpc, mk("escrow.tokenAccount"), cb_tb, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK(g_tb.amount == 100000000ull - 12345);

    /* history of the sender: newest first, memos */
    x4_rpc_sigs_opts so = {.limit = 10};
    CHECK(x4_rpc_get_signatures_for_address(e.rpc, mk("escrow.address"), &so, cb_sigs, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_sigs.b.status, X4_RPC_OK);
    CHECK(g_sigs.n >= 2);
    CHECK_EQ_STR(g_sigs.it[0].sig, sig2);
    CHECK_EQ_STR(g_sigs.it[1].sig, sig1);
    CHECK_EQ_STR(g_sigs.it[1].text0, memo1);
    CHECK_EQ_INT(g_sigs.it[1].ntexts, 1);
    CHECK(strncmp(g_sigs.it[1].memo, "[", 1) == 0);
    CHECK(!g_sigs.it[1].has_err);
    so = (x4_rpc_sigs_opts){.limit = 1, .before = sig2};
    CHECK(x4_rpc_get_signatures_for_address(e.rpc, mk("escrow.address"), &so, cb_sigs, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_sigs.n, 1);
    CHECK_EQ_STR(g_sigs.it[0].sig, sig1);

    /* errors with their codes */
    CHECK(x4_rpc_send_transaction(e.rpc, "!!garbage!!", false, NULL, cb_send, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_send.b.status, X4_RPC_E_RPC);
    CHECK_EQ_INT(g_send.b.code, -32602);
    CHECK(!g_send.b.retryable);
    x4_sol_ix_system_transfer(&ixs[0], &esc_pk, &fresh_pk, 1000000000000000ull); /* more than it has */
    tx = build(&e, X4_SOL_LEGACY, escrow, ixs, 1);
    if (!tx) goto out;
    CHECK_EQ_INT(send_tx(&e, tx, false), X4_RPC_E_RPC);
    x4_sol_tx_free(tx);
    CHECK_EQ_INT(g_send.b.code, X4_RPC_CODE_PREFLIGHT_FAILED);
    CHECK(strstr(g_send.perr, "InstructionError") != NULL);
    CHECK(g_send.nlogs > 0);
    CHECK(x4_rpc_request(e.rpc, "noSuchMethod", NULL, cb_raw, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_raw.b.status, X4_RPC_E_RPC);
    CHECK_EQ_INT(g_raw.b.code, -32601);
    CHECK(x4_rpc_get_transaction(e.rpc, SIG_A, cb_tx, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_tx.b.status, X4_RPC_OK);
    CHECK(!g_tx.found);

    /* an expired blockhash: the height passes lastValidBlockHeight, the send fails preflight */
    x4_sol_ix_system_transfer(&ixs[0], &esc_pk, &fresh_pk, 1000);
    tx = build(&e, X4_SOL_LEGACY, escrow, ixs, 1);
    if (!tx) goto out;
    uint64_t lvbh = g_bh.bh.last_valid_block_height;
    json_t *p = json_pack("[i]", 200);
    CHECK(x4_rpc_request(e.rpc, "x402r_warpSlots", p, cb_raw, NULL) != NULL);
    json_decref(p);
    CHECK(wait1(&e));
    CHECK_EQ_INT(g_raw.b.status, X4_RPC_OK);
    CHECK(x4_rpc_get_block_height(e.rpc, cb_height, NULL) != NULL);
    CHECK(wait1(&e));
    CHECK(x4_rpc_blockhash_expired(lvbh, g_height.height));
    CHECK_EQ_INT(send_tx(&e, tx, false), X4_RPC_E_RPC);
    x4_sol_tx_free(tx);
    CHECK_EQ_INT(g_send.b.code, X4_RPC_CODE_PREFLIGHT_FAILED);
    CHECK(strstr(g_send.perr, "BlockhashNotFound") != NULL);

out:
    json_decref(g_raw.result);
    g_raw.result = NULL;
    x4_keypair_free(escrow);
    x4_keypair_free(fresh);
    env_close(&e);
}
