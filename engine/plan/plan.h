/* plan/plan.h — plans: validation, dependency closure, pricing.
 *
 * A plan (DESIGN.md "Plan") is data, never code, whoever wrote it (a user, the offline
 * planner, an LLM): x4_plan_parse() is the one gate. It checks the shape (1..X4_PLAN_MAX_STEPS
 * steps; ids [A-Za-z0-9_-]{1,64}, unique; service ids that exist in the catalog; inputs an
 * object; dependsOn an array of existing step ids), resolves every {"$ref":"<step>.<field>..."}
 * (the step must exist and not be the step itself; the ref adds a dependency), rejects cycles,
 * checks that every `required` input of the service's input schema is given, sums the catalog
 * prices into the estimate and refuses a plan over max_cost. Errors are collected, not just
 * the first: a JSON array of {field, problem} (field like "steps[2].inputs.isbn"). */
#ifndef X4_PLAN_PLAN_H
#define X4_PLAN_PLAN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "plan/catalog.h"

#define X4_PLAN_MAX_STEPS 256
#define X4_NO_MAX_COST UINT64_MAX

typedef struct {
    char *id;
    char *service;        /* catalog id */
    json_t *inputs;       /* object, literals and {"$ref"} */
    size_t *deps;         /* indices into plan->steps, sorted, unique (explicit + implied) */
    size_t ndeps;
    uint64_t price;       /* from the catalog at parse time; 0 if free */
} x4_plan_step;

typedef struct {
    x4_plan_step *steps;  /* in the order given */
    size_t nsteps;
    size_t *topo;         /* a topological order (indices) */
    uint64_t estimate;    /* sum of step prices, atomic units */
} x4_plan;

/* Returns 0 and *out, or -1 with *errors (a new JSON array of {field, problem}). */
int x4_plan_parse(const json_t *plan, const x4_catalog *cat, uint64_t max_cost, x4_plan **out, json_t **errors);
/* Normalised JSON: {"steps":[{id, service, inputs, dependsOn:[all deps]}]} — what is stored. */
json_t *x4_plan_to_json(const x4_plan *p);
ssize_t x4_plan_find(const x4_plan *p, const char *step_id);
void x4_plan_free(x4_plan *p);

/* Resolves a $ref path "s1.a.b" against the outputs of the plan's steps: outputs[i] is step i's
 * output (NULL if not available). Returns a borrowed reference, or NULL if the path is absent. */
json_t *x4_plan_resolve_ref(const x4_plan *p, json_t *const *outputs, const char *ref);
/* Deep-copies step inputs with every $ref replaced by its value; -1 and err if one is missing. */
json_t *x4_plan_bind_inputs(const x4_plan *p, size_t step, json_t *const *outputs, char *err, size_t errlen);

#endif
