/* http/api_internal.h — what the route files (api.c, escrow_api.c) share: the per-request
 * context and the answer helpers. Not for use outside engine/http. */
#ifndef X4_HTTP_API_INTERNAL_H
#define X4_HTTP_API_INTERNAL_H

#include <jansson.h>

#include "core/engine.h"
#include "http/auth.h"
#include "http/server.h"

#define ID_MAX 95
#define X4_API_MAX_INPUT 10000

enum route {
    R_NONE,
    R_HEALTH,
    R_METRICS,
    R_CREATE,
    R_GET,
    R_APPROVE,
    R_CANCEL,
    R_STREAM,
    R_STREAM_MUX,
    R_LIST,
    R_SERVICES,
    R_ESCROW_ADDRESS,   /* GET  /escrow/address */
    R_ESCROW_BALANCE,   /* GET  /escrow/:userId/balance */
    R_ESCROW_CREATE,    /* POST /escrow/:userId/create */
    R_ESCROW_DEPOSIT,   /* POST /escrow/:userId/deposit */
    R_ESCROW_HISTORY,   /* GET  /escrow/:userId/history */
    R_ESCROW_WITHDRAW   /* POST /escrow/:userId/withdraw */
};

typedef struct {
    x4_engine *e;
    x4_req *req;
    enum route route;
    char id[ID_MAX + 1];   /* workflow id or user id from the path */
    x4_principal who;
    int has_plan;
    void *stream;          /* stream: the subscription registered before the owner check (stream.c) */
    json_t *run_plan;      /* create with approve ({"approve": true}): the plan as stored, to start the
                              run without a read */
    uint64_t sent_ms;      /* create with approve: when the creating (and leasing) query was sent */
    size_t nstarted;       /* create with approve: roots stored `running` on reserved slots */
    uint64_t plan_t0_ns;   /* create: the plan cache answered with a valid plan (x4_wf_cache_probe) at this uv_hrtime() */
    char created_at[40];
    char arg[100];         /* a route's own value carried to its callback (e.g. the requested wallet) */
} api_ctx;

void x4_api_error(x4_req *r, int status, const char *msg, json_t *details);
void x4_api_raw(x4_req *r, int status, const char *prefix, const char *json_text, const char *suffix);
void x4_api_db_error(api_ctx *c, const char *err);
api_ctx *x4_api_ctx_new(x4_engine *e, x4_req *req);
void x4_api_detail(json_t *details, const char *field, const char *problem);
int x4_api_valid_id(const char *s, size_t n);
json_t *x4_api_money(uint64_t v);
int x4_api_parse_amount(const json_t *v, uint64_t *out, const char **why);

/* Escrow routes (http/escrow_api.c). */
void x4_escrow_api_dispatch(api_ctx *c);

#endif
