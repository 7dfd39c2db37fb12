/* plan/plan.c — the one gate every plan passes (see plan.h for the contract).
 *
 * x4_plan_parse() runs in three passes over at most X4_PLAN_MAX_STEPS steps:
 *   1. shape of each step and its id (unique; a duplicate is reported, and references resolve
 *      to the first step with that id);
 *   2. service, inputs (walked recursively for {"$ref"} objects, nesting capped), dependsOn,
 *      required inputs, price; every dependency lands in an n×n matrix;
 *   3. Kahn's algorithm over the matrix: a topological order, or the steps left on a cycle.
 * Errors are collected (up to MAX_ERRORS, then one "too many errors" line), each {field,
 * problem} with field a path like "steps[2].inputs.book.isbn" or "steps[1].dependsOn[0]".
 * Cost: O(n²) for the matrix and id look-ups, which at n ≤ 256 is below a millisecond and
 * keeps the code free of hash tables.
 *
 * Decisions: the plan object and each step accept only their documented keys (a typo such as
 * "depends_on" would otherwise silently drop a dependency); "inputs" and "dependsOn" may be
 * omitted (empty); an object with a "$ref" key is a reference and must have no other key, so
 * a literal object cannot carry a "$ref" field. A $ref path segment that is all digits also
 * indexes arrays when resolved ("s1.series.0.date"). Amounts in messages are formatted with
 * 6 decimals (USDC, the only asset priced today). */
#include "plan/plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/util.h"

#define MAX_ERRORS 50
#define MAX_INPUT_DEPTH 32
#define STEP_ID_MAX 64
#define REF_MAX 1024

typedef struct {
    json_t *errors;
    int capped;
} errs;

static void add_err(errs *e, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_err(errs *e, const char *field, const char *fmt, ...) {
    if (e->capped) return;
    if (json_array_size(e->errors) >= MAX_ERRORS) {
        json_array_append_new(e->errors, json_pack("{s:s, s:s}", "field", "plan", "problem",
                                                   "too many errors; only the first 50 are shown"));
        e->capped = 1;
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(e->errors, json_pack("{s:s, s:s}", "field", field, "problem", msg));
}

static int valid_step_id(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > STEP_ID_MAX) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-'))
            return 0;
    return 1;
}

typedef struct {
    const json_t *arr;
    size_t n;
    const char **ids;     /* id of each step if valid, else NULL */
    unsigned char *dep;   /* dep[i*n+j]: step i depends on step j */
    errs *e;
} pctx;

/* Index of the first step with this id, or -1. */
static ssize_t find_id(const pctx *c, const char *id, size_t idlen) {
    for (size_t i = 0; i < c->n; i++)
        if (c->ids[i] && strlen(c->ids[i]) == idlen && memcmp(c->ids[i], id, idlen) == 0) return (ssize_t)i;
    return -1;
}

/* Checks a "$ref" string for step `self`; records the dependency. */
static void check_ref(pctx *c, size_t self, const char *field, const char *ref) {
    size_t len = strlen(ref);
    if (len > REF_MAX) {
        add_err(c->e, field, "$ref longer than %d characters", REF_MAX);
        return;
    }
    const char *dot = strchr(ref, '.');
    if (!dot || dot == ref || !dot[1]) {
        add_err(c->e, field, "$ref \"%s\" must be \"<stepId>.<field>[.<field>...]\"", ref);
        return;
    }
    for (const char *p = dot; *p; p++)
        if (*p == '.' && (p[1] == '.' || p[1] == 0)) {
            add_err(c->e, field, "$ref \"%s\" has an empty field name", ref);
            return;
        }
    ssize_t j = find_id(c, ref, (size_t)(dot - ref));
    if (j < 0) {
        add_err(c->e, field, "$ref \"%s\" names no step \"%.*s\"", ref, (int)(dot - ref), ref);
        return;
    }
    if ((size_t)j == self) {
        add_err(c->e, field, "$ref \"%s\" refers to the step itself", ref);
        return;
    }
    c->dep[self * c->n + (size_t)j] = 1;
}

static void walk_inputs(pctx *c, size_t self, const json_t *v, const char *path, int depth) {
    char sub[512];
    if (depth > MAX_INPUT_DEPTH) {
        add_err(c->e, path, "inputs nested deeper than %d levels", MAX_INPUT_DEPTH);
        return;
    }
    if (json_is_object(v)) {
        const json_t *r = json_object_get(v, "$ref");
        if (r) {
            if (json_object_size(v) != 1 || !json_is_string(r))
                add_err(c->e, path, "a $ref object must have exactly one key \"$ref\" with a string value");
            else
                check_ref(c, self, path, json_string_value(r));
            return;
        }
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            snprintf(sub, sizeof sub, "%s.%s", path, k);
            walk_inputs(c, self, x, sub, depth + 1);
        }
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) {
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            walk_inputs(c, self, x, sub, depth + 1);
        }
    }
}

static void step_free(x4_plan_step *s) {
    free(s->id);
    free(s->service);
    json_decref(s->inputs);
    free(s->deps);
}

void x4_plan_free(x4_plan *p) {
    if (!p) return;
    for (size_t i = 0; i < p->nsteps; i++) step_free(&p->steps[i]);
    free(p->steps);
    free(p->topo);
    free(p);
}

/* Kahn's algorithm; fills topo (n entries) and returns how many were ordered (< n: a cycle). */
static size_t kahn(size_t n, const unsigned char *dep, size_t *topo) {
    size_t *indeg = calloc(n ? n : 1, sizeof *indeg);
    size_t head = 0, tail = 0;
    if (!indeg) return 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) indeg[i] += dep[i * n + j];
    for (size_t i = 0; i < n; i++)
        if (!indeg[i]) topo[tail++] = i;
    while (head < tail) {
        size_t j = topo[head++];
        for (size_t i = 0; i < n; i++)
            if (dep[i * n + j] && --indeg[i] == 0) topo[tail++] = i;
    }
    free(indeg);
    return tail;
}

int x4_plan_parse(const json_t *plan, const x4_catalog *cat, uint64_t max_cost, x4_plan **out, json_t **errors) {
    errs e = {json_array(), 0};
    pctx c = {0};
    x4_plan *p = NULL;
    uint64_t estimate = 0;
    int overflow = 0;
    char field[128];
    *out = NULL;
    if (errors) *errors = NULL;
    if (!e.errors) return -1;

    if (!json_is_object(plan)) {
        add_err(&e, "plan", "a plan is an object {\"steps\": [...]}");
        goto done;
    }
    {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)plan, k, x) if (strcmp(k, "steps") != 0)
            add_err(&e, k, "unknown field (a plan has only \"steps\")");
    }
    c.arr = json_object_get(plan, "steps");
    if (!json_is_array(c.arr)) {
        add_err(&e, "steps", "steps must be an array");
        goto done;
    }
    c.n = json_array_size(c.arr);
    if (c.n == 0) {
        add_err(&e, "steps", "a plan needs at least one step");
        goto done;
    }
    if (c.n > X4_PLAN_MAX_STEPS) {
        add_err(&e, "steps", "too many steps (%zu; at most %d)", c.n, X4_PLAN_MAX_STEPS);
        goto done;
    }
    c.e = &e;
    c.ids = calloc(c.n, sizeof *c.ids);
    c.dep = calloc(c.n * c.n, 1);
    const x4_service **svc = calloc(c.n, sizeof *svc);
    if (!c.ids || !c.dep || !svc) {
        free(svc);
        add_err(&e, "plan", "out of memory");
        goto done;
    }

    /* Pass 1: shape and ids. */
    for (size_t i = 0; i < c.n; i++) {
        const json_t *s = json_array_get(c.arr, i);
        snprintf(field, sizeof field, "steps[%zu]", i);
        if (!json_is_object(s)) {
            add_err(&e, field, "a step is an object {id, service, inputs, dependsOn}");
            continue;
        }
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)s, k, x) {
            if (strcmp(k, "id") && strcmp(k, "service") && strcmp(k, "inputs") && strcmp(k, "dependsOn")) {
                char f[192];
                snprintf(f, sizeof f, "steps[%zu].%s", i, k);
                add_err(&e, f, "unknown field (a step has id, service, inputs, dependsOn)");
            }
        }
        const json_t *id = json_object_get(s, "id");
        snprintf(field, sizeof field, "steps[%zu].id", i);
        if (!json_is_string(id)) {
            add_err(&e, field, "id must be a string");
            continue;
        }
        const char *ids = json_string_value(id);
        if (!valid_step_id(ids) || strlen(ids) != json_string_length(id)) {
            add_err(&e, field, "id must be 1..%d characters of [A-Za-z0-9_-]", STEP_ID_MAX);
            continue;
        }
        ssize_t prev = find_id(&c, ids, strlen(ids));
        if (prev >= 0) {
            add_err(&e, field, "duplicate step id \"%s\" (first at steps[%zd])", ids, prev);
            continue;
        }
        c.ids[i] = ids;
    }

    /* Pass 2: service, inputs, dependencies, required inputs, price. */
    for (size_t i = 0; i < c.n; i++) {
        const json_t *s = json_array_get(c.arr, i);
        if (!json_is_object(s)) continue;
        const json_t *sv = json_object_get(s, "service");
        snprintf(field, sizeof field, "steps[%zu].service", i);
        if (!json_is_string(sv)) add_err(&e, field, "service must be a string (a catalog id)");
        else if (!(svc[i] = x4_catalog_get(cat, json_string_value(sv))))
            add_err(&e, field, "unknown service \"%.200s\"", json_string_value(sv));

        const json_t *in = json_object_get(s, "inputs");
        snprintf(field, sizeof field, "steps[%zu].inputs", i);
        if (in && !json_is_object(in)) add_err(&e, field, "inputs must be an object");
        else if (in) walk_inputs(&c, i, in, field, 0);

        const json_t *deps = json_object_get(s, "dependsOn");
        if (deps && !json_is_array(deps)) {
            snprintf(field, sizeof field, "steps[%zu].dependsOn", i);
            add_err(&e, field, "dependsOn must be an array of step ids");
        } else if (deps) {
            size_t k;
            const json_t *d;
            json_array_foreach(deps, k, d) {
                snprintf(field, sizeof field, "steps[%zu].dependsOn[%zu]", i, k);
                if (!json_is_string(d)) {
                    add_err(&e, field, "not a step id");
                    continue;
                }
                const char *ds = json_string_value(d);
                ssize_t j = find_id(&c, ds, strlen(ds));
                if (j < 0) add_err(&e, field, "no step \"%.64s\"", ds);
                else if ((size_t)j == i) add_err(&e, field, "a step cannot depend on itself");
                else c.dep[i * c.n + (size_t)j] = 1;
            }
        }

        if (svc[i] && json_is_object(svc[i]->input) && (!in || json_is_object(in))) {
            const json_t *req = json_object_get(svc[i]->input, "required");
            size_t k;
            const json_t *r;
            json_array_foreach(req, k, r) {
                if (!json_is_string(r) || json_object_get(in, json_string_value(r))) continue;
                snprintf(field, sizeof field, "steps[%zu].inputs.%.64s", i, json_string_value(r));
                add_err(&e, field, "required input \"%.64s\" of service %s is missing", json_string_value(r),
                        svc[i]->id);
            }
        }
        if (svc[i] && svc[i]->has_price) {
            if (estimate > UINT64_MAX - svc[i]->price) overflow = 1;
            else estimate += svc[i]->price;
        }
    }

    /* Pass 3: cycles and order. */
    size_t *topo = calloc(c.n, sizeof *topo);
    if (!topo) {
        free(svc);
        add_err(&e, "plan", "out of memory");
        goto done;
    }
    size_t ordered = kahn(c.n, c.dep, topo);
    if (ordered < c.n) {
        x4_buf b = {0};
        unsigned char *in_topo = calloc(c.n, 1);
        for (size_t k = 0; in_topo && k < ordered; k++) in_topo[topo[k]] = 1;
        size_t listed = 0;
        for (size_t i = 0; in_topo && i < c.n; i++) {
            if (in_topo[i]) continue;
            if (listed++ == 10) {
                x4_buf_puts(&b, ", ...");
                break;
            }
            x4_buf_printf(&b, "%s%s", listed > 1 ? ", " : "", c.ids[i] ? c.ids[i] : "?");
        }
        add_err(&e, "steps", "dependency cycle among steps %s", b.data ? b.data : "?");
        x4_buf_free(&b);
        free(in_topo);
    }
    if (overflow) {
        add_err(&e, "maxCost", "estimated cost overflows 64 bits");
    } else if (estimate > max_cost) {
        char a[40], m[40];
        x4_money_format(estimate, 6, a);
        x4_money_format(max_cost, 6, m);
        add_err(&e, "maxCost", "estimated cost %s exceeds maxCost %s", a, m);
    }

    if (json_array_size(e.errors) == 0) {
        p = calloc(1, sizeof *p);
        if (p) p->steps = calloc(c.n, sizeof *p->steps);
        if (!p || !p->steps) goto oom;
        p->nsteps = c.n;
        p->topo = topo;
        topo = NULL;
        p->estimate = estimate;
        for (size_t i = 0; i < c.n; i++) {
            const json_t *s = json_array_get(c.arr, i);
            x4_plan_step *st = &p->steps[i];
            const json_t *in = json_object_get(s, "inputs");
            st->id = x4_strdup(c.ids[i]);
            st->service = x4_strdup(svc[i]->id);
            st->inputs = in ? json_deep_copy(in) : json_object();
            st->price = svc[i]->has_price ? svc[i]->price : 0;
            st->deps = calloc(c.n, sizeof *st->deps);
            if (!st->id || !st->service || !st->inputs || !st->deps) goto oom;
            for (size_t j = 0; j < c.n; j++)
                if (c.dep[i * c.n + j]) st->deps[st->ndeps++] = j;
        }
    }
    goto fin;
oom:
    x4_plan_free(p);
    p = NULL;
    add_err(&e, "plan", "out of memory");
fin:
    free(topo);
    free(svc);
done:
    free(c.ids);
    free(c.dep);
    if (json_array_size(e.errors) == 0 && p) {
        json_decref(e.errors);
        *out = p;
        return 0;
    }
    if (errors) *errors = e.errors;
    else json_decref(e.errors);
    return -1;
}

json_t *x4_plan_to_json(const x4_plan *p) {
    if (!p) return NULL;
    json_t *steps = json_array();
    for (size_t i = 0; i < p->nsteps; i++) {
        const x4_plan_step *s = &p->steps[i];
        json_t *deps = json_array();
        for (size_t k = 0; k < s->ndeps; k++) json_array_append_new(deps, json_string(p->steps[s->deps[k]].id));
        json_array_append_new(steps, json_pack("{s:s, s:s, s:O, s:o}", "id", s->id, "service", s->service,
                                               "inputs", s->inputs, "dependsOn", deps));
    }
    return json_pack("{s:o}", "steps", steps);
}

ssize_t x4_plan_find(const x4_plan *p, const char *step_id) {
    if (!p || !step_id) return -1;
    for (size_t i = 0; i < p->nsteps; i++)
        if (strcmp(p->steps[i].id, step_id) == 0) return (ssize_t)i;
    return -1;
}

json_t *x4_plan_resolve_ref(const x4_plan *p, json_t *const *outputs, const char *ref) {
    if (!p || !outputs || !ref) return NULL;
    const char *dot = strchr(ref, '.');
    if (!dot || dot == ref || !dot[1] || (size_t)(dot - ref) > STEP_ID_MAX) return NULL;
    char seg[REF_MAX + 1];
    memcpy(seg, ref, (size_t)(dot - ref));
    seg[dot - ref] = 0;
    ssize_t i = x4_plan_find(p, seg);
    if (i < 0) return NULL;
    json_t *cur = outputs[i];
    const char *s = dot + 1;
    while (cur && *s) {
        const char *end = strchr(s, '.');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (len == 0 || len > REF_MAX) return NULL;
        memcpy(seg, s, len);
        seg[len] = 0;
        if (json_is_object(cur)) {
            cur = json_object_get(cur, seg);
        } else if (json_is_array(cur) && strspn(seg, "0123456789") == len && len < 10) {
            cur = json_array_get(cur, (size_t)strtoul(seg, NULL, 10));
        } else {
            return NULL;
        }
        s = end ? end + 1 : s + len;
        if (end && !*s) return NULL; /* trailing dot */
    }
    return cur;
}

static json_t *bind(const x4_plan *p, json_t *const *outputs, const json_t *v, char *err, size_t errlen) {
    if (json_is_object(v)) {
        const json_t *r = json_object_get(v, "$ref");
        if (r && json_object_size(v) == 1 && json_is_string(r)) {
            json_t *val = x4_plan_resolve_ref(p, outputs, json_string_value(r));
            if (!val) {
                snprintf(err, errlen, "$ref \"%.200s\": no such value in the step's output", json_string_value(r));
                return NULL;
            }
            return json_deep_copy(val);
        }
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            json_t *b = bind(p, outputs, x, err, errlen);
            if (!b) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, k, b);
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            json_t *b = bind(p, outputs, x, err, errlen);
            if (!b) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, b);
        }
        return a;
    }
    return json_deep_copy(v);
}

json_t *x4_plan_bind_inputs(const x4_plan *p, size_t step, json_t *const *outputs, char *err, size_t errlen) {
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = 0;
    if (!p || step >= p->nsteps) {
        snprintf(err, errlen, "no step %zu", step);
        return NULL;
    }
    json_t *r = bind(p, outputs, p->steps[step].inputs, err, errlen);
    if (!r && !*err) snprintf(err, errlen, "out of memory");
    return r;
}
