/* plan/llm.h — the LLM planner client: task + retrieved candidates -> a validated x4_plan.
 *
 * Owns the conversation with one model provider for one planning request, asynchronously on the
 * libuv loop through x4_httpc (never blocks). Two providers:
 *   - Anthropic Messages API (POST {base}/v1/messages, x-api-key, anthropic-version 2023-06-01),
 *     tool use with tool_choice forcing the "submit_plan" tool;
 *   - an OpenAI-compatible chat-completions endpoint (POST {base}/chat/completions, optional
 *     Bearer key) with a forced "submit_plan" function call; a plain JSON answer in the message
 *     content is accepted as a fallback for local servers without tool calling.
 * The tool's input schema is the plan JSON Schema (DESIGN.md "Plan") generated per request: the
 * `service` field is an enum of exactly the candidate ids. The prompt carries only those
 * candidates (id, name, description, compacted input/output schemas, price), never the catalog.
 * The user's task is untrusted data: it is fenced in <task>...</task>, with '<', '>' and '&'
 * escaped so it cannot close the fence, and invalid UTF-8 replaced.
 *
 * Every answer is data: it goes through x4_plan_parse() (catalog + max_cost) plus a check that
 * each step uses an offered candidate. On failure the error list goes back to the model ONCE
 * (Anthropic: tool_result with is_error; OpenAI: a "tool" message); the repaired answer is
 * validated again. Anything else — still invalid, HTTP 4xx, malformed JSON, timeouts, retries
 * exhausted — ends in a failure whose `fallback` flag tells the caller to run the offline
 * planner (the caller emits the event). Retries: 429 honours retry-after (at most twice),
 * 529 once with backoff, 5xx and network errors once; never past the overall deadline.
 *
 * Cost: one HTTP request per turn (1, or 2 with the repair; plus at most 4 retries per turn); token usage
 * of every answer is summed into the result. The API key is never logged (debug logs of request
 * headers show it redacted) and is scrubbed from any failure reason. */
#ifndef X4_PLAN_LLM_H
#define X4_PLAN_LLM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "exec/httpc.h"
#include "plan/catalog.h"
#include "plan/plan.h"

typedef enum { X4_LLM_ANTHROPIC = 0, X4_LLM_OPENAI = 1 } x4_llm_provider;

#define X4_LLM_ANTHROPIC_URL "https://api.anthropic.com"
#define X4_LLM_ANTHROPIC_MODEL "claude-sonnet-4-5"
#define X4_LLM_ANTHROPIC_VERSION "2023-06-01"

/* Filled by the caller (from the configuration). Strings are copied; 0/NULL means default. */
typedef struct {
    x4_llm_provider provider;
    const char *base_url;       /* ANTHROPIC_BASE_URL (default X4_LLM_ANTHROPIC_URL) or OPENAI_BASE_URL
                                   (required, e.g. http://127.0.0.1:8080/v1) */
    const char *api_key;        /* ANTHROPIC_API_KEY (required) or OPENAI_API_KEY (optional) */
    const char *model;          /* LLM_MODEL; default X4_LLM_ANTHROPIC_MODEL, required for OpenAI */
    long timeout_ms;            /* LLM_TIMEOUT_MS: total per HTTP request, default 60000 */
    long deadline_ms;           /* LLM_DEADLINE_MS: whole planning incl. retries, default 2*timeout */
    long connect_timeout_ms;    /* default 5000 */
    size_t max_candidates;      /* LLM_MAX_CANDIDATES: candidates put in the prompt, default 20 */
    unsigned max_tokens;        /* LLM_MAX_TOKENS: per answer, default 4096 */
    size_t max_response;        /* response body cap, default 4 MiB */
    size_t max_task_bytes;      /* longer tasks are refused (fallback), default 16384 */
    long retry_base_ms;         /* backoff for 529/5xx/429 without retry-after, default 1000 */
} x4_llm_opts;

typedef enum {
    X4_LLM_OK = 0,
    X4_LLM_E_CONFIG,        /* missing key/model/URL, no usable candidate, task too long */
    X4_LLM_E_HTTP,          /* 4xx other than 429 (no retry) */
    X4_LLM_E_RATE_LIMITED,  /* 429 after the retries, or retry-after beyond the deadline */
    X4_LLM_E_OVERLOADED,    /* 529 after the retry */
    X4_LLM_E_SERVER,        /* 5xx after the retry */
    X4_LLM_E_NETWORK,       /* transport error after the retry */
    X4_LLM_E_TIMEOUT,       /* request timeout or overall deadline */
    X4_LLM_E_MALFORMED,     /* body or tool arguments are not the JSON expected */
    X4_LLM_E_INVALID_PLAN,  /* still invalid after the repair turn */
    X4_LLM_E_CANCELLED,     /* x4_llm_cancel() / x4_llm_free() (fallback = 0) */
    X4_LLM_E_INTERNAL       /* out of memory and the like */
} x4_llm_status;

typedef struct {
    x4_llm_status status;
    int fallback;            /* 1: no LLM plan; the caller should run the offline planner */
    x4_plan *plan;           /* on success; freed after the callback unless taken (set to NULL) */
    const json_t *errors;    /* last validation errors [{field, problem}] or NULL (valid in the callback) */
    char reason[512];        /* human-readable failure reason ("" on success); never the key */
    const char *provider;    /* "anthropic" | "openai" */
    const char *model;       /* valid in the callback */
    uint64_t input_tokens;   /* summed over every answer (usage.input_tokens / prompt_tokens) */
    uint64_t output_tokens;  /* (usage.output_tokens / completion_tokens) */
    int requests;            /* HTTP requests sent, retries included */
    int repaired;            /* 1 if a repair turn was sent */
    size_t ncandidates;      /* candidates actually put in the prompt */
    double elapsed_ms;
} x4_llm_result;

typedef void (*x4_llm_done)(x4_llm_result *res, void *ud);

typedef struct x4_llm x4_llm;
typedef struct x4_llm_req x4_llm_req;

/* One per process (or per engine): borrows the loop and the HTTP client, which must outlive it. */
int x4_llm_new(x4_llm **out, uv_loop_t *loop, x4_httpc *http);
/* Cancels every request in flight (their callbacks run with X4_LLM_E_CANCELLED), then frees. */
void x4_llm_free(x4_llm *l);

/* Starts planning `task` over `candidates` (borrowed; each must be in `cat`; NULLs, duplicates
 * and ids not in the catalog are skipped; at most opts->max_candidates are used). The catalog
 * is referenced until the callback has run. The callback runs exactly once, always later from
 * the loop (never inside this call), except through x4_llm_cancel()/x4_llm_free(). Returns the
 * request handle, valid until its callback has run, or NULL only when out of memory (then the
 * callback is not called). */
x4_llm_req *x4_llm_plan(x4_llm *l, const x4_llm_opts *opts, const char *task, const x4_catalog *cat,
                        const x4_service *const *candidates, size_t ncand, uint64_t max_cost, x4_llm_done cb,
                        void *ud);
/* Aborts a request in flight; its callback runs synchronously with X4_LLM_E_CANCELLED. */
void x4_llm_cancel(x4_llm_req *r);
size_t x4_llm_inflight(const x4_llm *l);
const char *x4_llm_status_name(x4_llm_status s); /* "ok", "http_error", "timeout", ... */

/* Exposed for tests and tools: the plan JSON Schema for these service ids (new reference),
 * and the task escaped for the <task> fence (malloc'd; '<' '>' '&' as entities, control
 * characters other than \n \t dropped, invalid UTF-8 as U+FFFD). */
json_t *x4_llm_plan_schema(const char *const *ids, size_t n);
char *x4_llm_fence_escape(const char *task);

#endif
