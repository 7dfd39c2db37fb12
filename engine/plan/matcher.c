/* plan/matcher.c — the first offline planner (see matcher.h for the contract).
 *
 * How a task becomes a plan:
 *  1. Index. Every service becomes a bag of stemmed tokens, each with the weight of the best
 *     field it appears in: id/name 1.0, tags 0.8, description 0.6, input names and enum values
 *     0.5, output names 0.4, parameter descriptions 0.3. Document frequencies give an idf,
 *     log(1 + N/df), so words every service shares ("daily", "data") count for little. An
 *     inverted index (token -> postings) makes scoring a clause O(postings), not O(catalog).
 *  2. Clauses. The task is cut at sentence ends and ";" (never inside quotes), at "then",
 *     "after that", "afterwards", "subsequently", "finally", and at "and" or "," when the next
 *     word looks like a verb (a built-in list plus the first word of every multi-word service
 *     id, since services are mostly named verb_noun) and both sides keep at least two content
 *     words. Cutting at every "and" between long enough sides (no verb after it) was tried and
 *     lost on NesTools (exact sequences 154 -> 110..140 of 750): "and" joins objects as often
 *     as actions.
 *  3. Choice. Score(service, clause) = Σ idf(t)·w(t) over the clause's tokens, divided by the
 *     clause's own Σ idf (unknown words count at half the largest idf), plus 0.25 × the share
 *     of the service's name tokens the clause mentions. A candidate needs score ≥ MATCH_MIN and
 *     either a name/tag hit or two distinct tokens; ties (within 1e-6) go to the cheaper
 *     service. Clauses are planned in order, one service each, none twice: when the best match
 *     is already planned the clause counts as covered unless an unused one scores within 80%.
 *     A service whose price would push the running total over max_cost is passed over.
 *  4. Wiring, per input property (required first, then optional):
 *     a. an earlier step's output with the same name (the latest such step), type-compatible
 *        (an output that echoes that step's literal input of the same name: the literal);
 *     b. required only: an earlier output whose name+description tokens overlap (Dice ≥
 *        SIM_MIN), type-compatible;
 *     c. a literal from the task: an enum value the task mentions; a quoted string; a number
 *        ("30 days" -> 30 for an integer named days); true/false — matched to the parameter
 *        by the words around the literal, preferring the current clause;
 *     d. required only: the schema's "default";
 *     e. chaining: an unused service whose output has a property of that exact name, fitting
 *        the budget, is planned first (its own inputs wired the same way, depth ≤ 2; it must
 *        get all its required inputs, else the next candidate is tried) and referenced — for a
 *        required input always, for an optional one only if the task itself talks about that
 *        service (score ≥ OPTIONAL_MIN over the whole task and ≥ OPTIONAL_HITS distinct words)
 *        and it needs no chaining itself. That is how the demo task gets trend_analysis
 *        (report requires "trend") and token_prices (report may take "prices").
 *     f. otherwise left out, and the final x4_plan_parse() names it.
 *  5. The plan goes through x4_plan_parse() with the same max_cost; its errors become err
 *     (with a note when a provider was left out for the budget).
 *
 * Limits: tasks up to 16 KiB, 64 clauses, 128 literals (the rest of the task is still scored).
 * Unquoted names ("Ministry of Finance") are not recognised as string values: such an input
 * stays unfilled and the plan fails validation with that input named.
 * Quality, measured on the NesTools dev set (750 tasks over the 3,034-service catalog, with
 * validation bypassed to look at the choice alone): service precision and recall ≈ 0.56, the
 * exact service sequence for 20% of the tasks. Tuning MATCH_MIN/NAME_BONUS (0.3–0.5 / 0.25–0.5)
 * did not beat the values here.
 * Cost: the index is rebuilt per call — under 1 ms for the example catalog, about 50 ms for
 * NesTools (-O2, tokenising every record dominates); the full planner that replaces this one
 * should keep the index per catalog version. */
#include "plan/matcher.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/log.h"
#include "core/util.h"
#include "plan/plan.h"

#define MATCH_MIN 0.30
#define OPTIONAL_MIN 0.20 /* an optional input's provider: relevance to the whole task */
#define OPTIONAL_HITS 3   /* ... and this many distinct task words in its description */
#define SIM_MIN 0.45
#define NAME_BONUS 0.25
#define MAX_CHAIN_DEPTH 2
#define MAX_CLAUSES 64
#define MAX_LITERALS 128
#define TOK_MAX 48

#define W_NAME 1.0f
#define W_TAG 0.8f
#define W_DESC 0.6f
#define W_INPUT 0.5f
#define W_OUTPUT 0.4f
#define W_PDESC 0.3f

/* ---- tokens ----------------------------------------------------------------------------- */

/* Sorted (strcmp order) for bsearch. */
static const char *const STOPWORDS[] = {
    "a", "about", "after", "afterwards", "all", "also", "an", "and", "another", "any", "are", "as",
    "at", "based", "be", "been", "before", "being", "both", "by", "can", "could", "did", "do", "does",
    "done", "e", "each", "eg", "etc", "every", "finally", "for", "from", "g", "given", "he", "here",
    "how", "i", "ie", "if", "in", "into", "is", "it", "its", "just", "kindly", "let", "may", "me",
    "might", "must", "my", "next", "of", "on", "once", "onto", "or", "other", "our", "own", "please",
    "s", "shall", "she", "should", "so", "some", "subsequently", "such", "t", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "to", "too", "upon", "us",
    "using", "very", "via", "was", "we", "were", "what", "when", "where", "which", "while", "who",
    "whom", "whose", "why", "will", "with", "within", "would", "you", "your",
};

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int is_stopword(const char *w) {
    return bsearch(&w, STOPWORDS, sizeof STOPWORDS / sizeof *STOPWORDS, sizeof *STOPWORDS, cmp_str) != NULL;
}

static int ends(const char *w, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n >= k && memcmp(w + n - k, suf, k) == 0;
}

static int is_vowel(char c) { return strchr("aeiou", c) != NULL; }

/* Crude English stemming, in place: plural, -ing/-ed/-ly, -ation, -ysis/-yse, final -e. It only
 * has to map the forms a task and a description use for the same word onto one token. */
static void stem(char *w) {
    size_t n = strlen(w);
    if (n <= 3) return;
    if (ends(w, n, "ies") && n > 4) { strcpy(w + n - 3, "y"); n -= 2; }
    else if (ends(w, n, "sses")) { w[n - 2] = 0; n -= 2; }
    else if (n > 4 && (ends(w, n, "xes") || ends(w, n, "zes") || ends(w, n, "ches") || ends(w, n, "shes"))) {
        w[n - 2] = 0;
        n -= 2;
    } else if (w[n - 1] == 's' && !ends(w, n, "ss") && !ends(w, n, "us") && !ends(w, n, "is")) {
        w[--n] = 0;
    }
    if (n > 5 && ends(w, n, "ing")) { w[n - 3] = 0; n -= 3; }
    else if (n > 4 && ends(w, n, "ed")) { w[n - 2] = 0; n -= 2; }
    else if (n > 5 && ends(w, n, "ily")) { strcpy(w + n - 3, "y"); n -= 2; }
    else if (n > 5 && ends(w, n, "ly")) { w[n - 2] = 0; n -= 2; }
    /* running -> runn -> run, stopped -> stopp -> stop */
    if (n > 3 && w[n - 1] == w[n - 2] && !is_vowel(w[n - 1]) && w[n - 1] != 'l' && w[n - 1] != 's' &&
        w[n - 1] != 'z')
        w[--n] = 0;
    if (n > 6 && ends(w, n, "ation")) { w[n - 3] = 0; n -= 3; }
    if (n > 5 && ends(w, n, "ysis")) { strcpy(w + n - 4, "yz"); n -= 2; }
    else if (n > 4 && ends(w, n, "yse")) { strcpy(w + n - 3, "yz"); n -= 1; }
    if (n > 6 && ends(w, n, "er")) { w[n - 2] = 0; n -= 2; }
    if (n > 3 && w[n - 1] == 'e') w[--n] = 0;
}

static int word_char(unsigned char c) { return isalnum(c) || c >= 0x80; }

typedef void (*tok_fn)(void *ud, const char *tok);

/* Splits text[0..len) into tokens: runs of letters/digits, further split at camelCase humps;
 * lowercased, stopwords and pure numbers dropped, stemmed. */
static void tokenize(const char *text, size_t len, tok_fn emit, void *ud) {
    char w[TOK_MAX + 1];
    size_t i = 0;
    while (i < len) {
        while (i < len && !word_char((unsigned char)text[i])) i++;
        size_t st = i;
        while (i < len && word_char((unsigned char)text[i])) {
            /* a camelCase hump ends the token before an upper-case letter */
            if (i > st && isupper((unsigned char)text[i]) && islower((unsigned char)text[i - 1])) break;
            i++;
        }
        size_t n = i - st;
        if (n < 2 || n > TOK_MAX) continue;
        int digits = 1;
        for (size_t k = 0; k < n; k++) {
            w[k] = (char)tolower((unsigned char)text[st + k]);
            if (!isdigit((unsigned char)w[k])) digits = 0;
        }
        w[n] = 0;
        if (digits || is_stopword(w)) continue;
        stem(w);
        if (strlen(w) >= 2) emit(ud, w);
    }
}

/* A small set of token strings (parameters, literal contexts). */
typedef struct {
    char **v;
    size_t n, cap;
} strset;

static int strset_has(const strset *s, const char *t) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], t) == 0) return 1;
    return 0;
}

static void strset_add_cb(void *ud, const char *t) {
    strset *s = ud;
    if (strset_has(s, t)) return;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        char **nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return;
        s->v = nv;
        s->cap = nc;
    }
    char *d = x4_strdup(t);
    if (d) s->v[s->n++] = d;
}

static void strset_text(strset *s, const char *text) {
    if (text) tokenize(text, strlen(text), strset_add_cb, s);
}

static void strset_free(strset *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static size_t strset_overlap(const strset *a, const strset *b) {
    size_t k = 0;
    for (size_t i = 0; i < a->n; i++) k += strset_has(b, a->v[i]);
    return k;
}

/* ---- vocabulary and index --------------------------------------------------------------- */

typedef struct {
    int tok;
    float w;
} tw;

typedef struct {
    int svc;
    float w;
} posting;

typedef struct {
    char **str;
    size_t n, cap;
    int *tab; /* id+1 */
    size_t tcap;
    int *df;
    unsigned char *verb; /* first word of a verb_noun service id */
    posting **post;
    size_t *npost;
} vocab;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int vocab_find(const vocab *v, const char *s) {
    if (!v->tcap) return -1;
    size_t mask = v->tcap - 1;
    for (size_t i = hash_str(s) & mask; v->tab[i]; i = (i + 1) & mask)
        if (strcmp(v->str[v->tab[i] - 1], s) == 0) return v->tab[i] - 1;
    return -1;
}

static int vocab_add(vocab *v, const char *s) {
    int id = vocab_find(v, s);
    if (id >= 0) return id;
    if ((v->n + 1) * 2 > v->tcap) {
        size_t nc = v->tcap ? v->tcap * 2 : 1024;
        int *nt = calloc(nc, sizeof *nt);
        if (!nt) return -1;
        for (size_t k = 0; k < v->n; k++) {
            size_t i = hash_str(v->str[k]) & (nc - 1);
            while (nt[i]) i = (i + 1) & (nc - 1);
            nt[i] = (int)k + 1;
        }
        free(v->tab);
        v->tab = nt;
        v->tcap = nc;
    }
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 1024;
        char **ns = realloc(v->str, nc * sizeof *ns);
        if (!ns) return -1;
        v->str = ns;
        int *nd = realloc(v->df, nc * sizeof *nd);
        if (!nd) return -1;
        v->df = nd;
        v->cap = nc;
    }
    char *d = x4_strdup(s);
    if (!d) return -1;
    v->str[v->n] = d;
    v->df[v->n] = 0;
    size_t i = hash_str(s) & (v->tcap - 1);
    while (v->tab[i]) i = (i + 1) & (v->tcap - 1);
    v->tab[i] = (int)v->n + 1;
    return (int)v->n++;
}

typedef struct {
    tw *t;
    size_t n, cap;
    int *name; /* token ids of id + name */
    size_t nname, namecap;
} sdoc;

typedef struct {
    vocab *v;
    sdoc *d;
    float w;
    int oom;
} doc_build;

static void doc_add_cb(void *ud, const char *tok) {
    doc_build *b = ud;
    int id = vocab_add(b->v, tok);
    if (id < 0) {
        b->oom = 1;
        return;
    }
    sdoc *d = b->d;
    for (size_t i = 0; i < d->n; i++)
        if (d->t[i].tok == id) {
            if (b->w > d->t[i].w) d->t[i].w = b->w;
            goto name;
        }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 32;
        tw *nt = realloc(d->t, nc * sizeof *nt);
        if (!nt) {
            b->oom = 1;
            return;
        }
        d->t = nt;
        d->cap = nc;
    }
    d->t[d->n].tok = id;
    d->t[d->n].w = b->w;
    d->n++;
name:
    if (b->w == W_NAME) {
        for (size_t i = 0; i < d->nname; i++)
            if (d->name[i] == id) return;
        if (d->nname == d->namecap) {
            size_t nc = d->namecap ? d->namecap * 2 : 4;
            int *nn = realloc(d->name, nc * sizeof *nn);
            if (!nn) {
                b->oom = 1;
                return;
            }
            d->name = nn;
            d->namecap = nc;
        }
        d->name[d->nname++] = id;
    }
}

static void doc_text(doc_build *b, const char *text, float w) {
    if (!text) return;
    b->w = w;
    tokenize(text, strlen(text), doc_add_cb, b);
}

static void doc_schema(doc_build *b, const json_t *schema, float wname) {
    const json_t *props = json_object_get(schema, "properties");
    const char *k;
    json_t *p;
    json_object_foreach((json_t *)props, k, p) {
        doc_text(b, k, wname);
        doc_text(b, json_string_value(json_object_get(p, "description")), W_PDESC);
        if (wname == W_INPUT) {
            size_t i;
            json_t *e;
            json_array_foreach(json_object_get(p, "enum"), i, e) doc_text(b, json_string_value(e), W_INPUT);
        }
    }
}

/* ---- the planning context ---------------------------------------------------------------- */

enum { L_STR, L_NUM, L_BOOL };

typedef struct {
    int kind;
    char *text;     /* string value, or the number as written */
    double num;
    int is_int;
    long long ival;
    int bval;
    size_t pos;
    int clause;
    strset ctx;     /* words around it */
} literal;

typedef struct {
    size_t start, end; /* byte span in the task */
    strset toks;
    int *ids;          /* token ids known to the catalog vocabulary (unique) */
    size_t nids;
    double norm;
} mclause;

typedef struct {
    const x4_service *s;
    json_t *inputs;
    size_t *deps;
    size_t ndeps;
    int chained;
} mstep;

typedef struct {
    const x4_catalog *cat;
    const char *task;
    size_t ncat;
    vocab v;
    sdoc *docs;
    double *idf;
    double max_idf;
    mclause cl[MAX_CLAUSES];
    size_t ncl;
    mclause whole;
    literal lit[MAX_LITERALS];
    size_t nlit;
    mstep *steps;
    size_t nsteps, capsteps;
    unsigned char *used; /* per catalog index */
    uint64_t sum, max_cost;
    char budget_note[256]; /* a provider left out for the budget, told with the final error */
    double *acc;
    int *hits;
    unsigned char *strong;
} mctx;

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static ssize_t cat_index(const mctx *m, const x4_service *s) {
    for (size_t i = 0; i < m->ncat; i++)
        if (x4_catalog_at(m->cat, i) == s) return (ssize_t)i;
    return -1;
}

static uint64_t price_of(const x4_service *s) { return s->has_price ? s->price : 0; }

static int build_index(mctx *m) {
    m->ncat = x4_catalog_count(m->cat);
    m->docs = calloc(m->ncat ? m->ncat : 1, sizeof *m->docs);
    m->used = calloc(m->ncat ? m->ncat : 1, 1);
    m->acc = calloc(m->ncat ? m->ncat : 1, sizeof *m->acc);
    m->hits = calloc(m->ncat ? m->ncat : 1, sizeof *m->hits);
    m->strong = calloc(m->ncat ? m->ncat : 1, 1);
    if (!m->docs || !m->used || !m->acc || !m->hits || !m->strong) return -1;
    for (size_t i = 0; i < m->ncat; i++) {
        const x4_service *s = x4_catalog_at(m->cat, i);
        doc_build b = {&m->v, &m->docs[i], 0, 0};
        doc_text(&b, s->id, W_NAME);
        doc_text(&b, s->name, W_NAME);
        size_t k;
        json_t *t;
        json_array_foreach(s->tags, k, t) doc_text(&b, json_string_value(t), W_TAG);
        doc_text(&b, s->description, W_DESC);
        doc_schema(&b, s->input, W_INPUT);
        doc_schema(&b, s->output, W_OUTPUT);
        if (b.oom) return -1;
        for (size_t j = 0; j < m->docs[i].n; j++) m->v.df[m->docs[i].t[j].tok]++;
    }
    m->idf = calloc(m->v.n ? m->v.n : 1, sizeof *m->idf);
    m->v.post = calloc(m->v.n ? m->v.n : 1, sizeof *m->v.post);
    m->v.npost = calloc(m->v.n ? m->v.n : 1, sizeof *m->v.npost);
    m->v.verb = calloc(m->v.n ? m->v.n : 1, 1);
    if (!m->idf || !m->v.post || !m->v.npost || !m->v.verb) return -1;
    /* the first word of a verb_noun id is a verb the clause splitter should know */
    for (size_t i = 0; i < m->ncat; i++) {
        const char *id = x4_catalog_at(m->cat, i)->id, *us = strchr(id, '_');
        char w[TOK_MAX + 1];
        if (!us || us == id || (size_t)(us - id) > TOK_MAX) continue;
        for (size_t k = 0; k < (size_t)(us - id); k++) w[k] = (char)tolower((unsigned char)id[k]);
        w[us - id] = 0;
        stem(w);
        int t = vocab_find(&m->v, w);
        if (t >= 0) m->v.verb[t] = 1;
    }
    for (size_t t = 0; t < m->v.n; t++) {
        m->idf[t] = log(1.0 + (double)m->ncat / (double)m->v.df[t]);
        if (m->idf[t] > m->max_idf) m->max_idf = m->idf[t];
        m->v.post[t] = malloc((size_t)m->v.df[t] * sizeof(posting));
        if (!m->v.post[t]) return -1;
    }
    if (m->max_idf == 0) m->max_idf = 1;
    for (size_t i = 0; i < m->ncat; i++)
        for (size_t j = 0; j < m->docs[i].n; j++) {
            int t = m->docs[i].t[j].tok;
            m->v.post[t][m->v.npost[t]++] = (posting){(int)i, m->docs[i].t[j].w};
        }
    return 0;
}

static void clause_prepare(mctx *m, mclause *c) {
    strset_free(&c->toks);
    free(c->ids);
    c->ids = NULL;
    c->nids = 0;
    c->norm = 0;
    tokenize(m->task + c->start, c->end - c->start, strset_add_cb, &c->toks);
    c->ids = calloc(c->toks.n ? c->toks.n : 1, sizeof *c->ids);
    for (size_t i = 0; c->ids && i < c->toks.n; i++) {
        int id = vocab_find(&m->v, c->toks.v[i]);
        if (id >= 0) {
            c->ids[c->nids++] = id;
            c->norm += m->idf[id];
        } else {
            c->norm += 0.5 * m->max_idf;
        }
    }
}

/* Scores every service against a clause into m->acc (and hits/strong). */
static void score_clause(mctx *m, const mclause *c) {
    memset(m->acc, 0, m->ncat * sizeof *m->acc);
    memset(m->hits, 0, m->ncat * sizeof *m->hits);
    memset(m->strong, 0, m->ncat);
    if (c->norm <= 0) return;
    for (size_t k = 0; k < c->nids; k++) {
        int t = c->ids[k];
        for (size_t p = 0; p < m->v.npost[t]; p++) {
            const posting *ps = &m->v.post[t][p];
            m->acc[ps->svc] += m->idf[t] * ps->w;
            m->hits[ps->svc]++;
            if (ps->w >= W_TAG) m->strong[ps->svc] = 1;
        }
    }
    for (size_t i = 0; i < m->ncat; i++) {
        if (!m->hits[i]) continue;
        const sdoc *d = &m->docs[i];
        size_t named = 0;
        for (size_t a = 0; a < d->nname; a++)
            for (size_t b = 0; b < c->nids; b++)
                if (d->name[a] == c->ids[b]) {
                    named++;
                    break;
                }
        m->acc[i] = m->acc[i] / c->norm + (d->nname ? NAME_BONUS * (double)named / (double)d->nname : 0);
    }
}

static int eligible(const mctx *m, size_t i) {
    return m->hits[i] && m->acc[i] >= MATCH_MIN && (m->strong[i] || m->hits[i] >= 2);
}

/* Better candidate: higher score, then cheaper, then earlier in the catalog. */
static int better(const mctx *m, size_t a, size_t b) {
    double sa = m->acc[a], sb = m->acc[b];
    double eps = 1e-6 * (fabs(sa) > fabs(sb) ? fabs(sa) : fabs(sb));
    if (sa > sb + eps) return 1;
    if (sb > sa + eps) return 0;
    uint64_t pa = price_of(x4_catalog_at(m->cat, a)), pb = price_of(x4_catalog_at(m->cat, b));
    if (pa != pb) return pa < pb;
    return a < b;
}

/* ---- clauses ---------------------------------------------------------------------------- */

typedef struct {
    size_t start, end;
    int in_quote;
    int brk_before;   /* sentence end or ';' before this word */
    int comma_before;
    char low[TOK_MAX + 1];
} word;

static const char *const VERBS[] = {
    "analyze", "analyse", "create", "generate", "make", "build", "send", "get", "fetch", "find", "compute",
    "calculate", "check", "translate", "produce", "write", "summarize", "summarise", "convert", "search",
    "look", "lookup", "list", "show", "provide", "give", "compare", "plot", "notify", "schedule", "verify",
    "validate", "launch", "run", "start", "retrieve", "scan", "locate", "estimate", "predict", "forecast",
    "recommend", "identify", "detect", "evaluate", "assess", "monitor", "track", "draft", "prepare",
    "export", "upload", "download", "save", "store", "record", "update", "delete", "remove", "add", "post",
    "publish", "share", "email", "message", "plan", "optimize", "classify", "extract", "parse", "format",
    "render", "visualize", "rank", "sort", "filter", "merge", "combine", "report", "book", "order", "pay",
    "transfer", "buy", "sell", "set", "open", "close", "measure", "test", "review", "draw", "chart",
    "return", "determine", "obtain", "collect", "gather", "display", "print", "conduct", "perform",
    "execute", "use", "apply", "assign", "register", "submit", "request", "analyze", NULL};

static size_t scan_words(const char *t, word *w, size_t max) {
    size_t n = 0, i = 0, len = strlen(t);
    int in_quote = 0, brk = 1, comma = 0;
    while (i < len && n < max) {
        unsigned char ch = (unsigned char)t[i];
        if (!word_char(ch)) {
            if (ch == '"') in_quote = !in_quote;
            else if (!in_quote && (ch == ';' || ch == '\n' ||
                                   ((ch == '.' || ch == '!' || ch == '?') &&
                                    (i + 1 >= len || isspace((unsigned char)t[i + 1])))))
                brk = 1;
            else if (!in_quote && ch == ',')
                comma = 1;
            i++;
            continue;
        }
        size_t st = i;
        while (i < len && word_char((unsigned char)t[i])) i++;
        w[n].start = st;
        w[n].end = i;
        w[n].in_quote = in_quote;
        w[n].brk_before = brk;
        w[n].comma_before = comma;
        size_t k = 0;
        for (; k < i - st && k < TOK_MAX; k++) w[n].low[k] = (char)tolower((unsigned char)t[st + k]);
        w[n].low[k] = 0;
        brk = comma = 0;
        n++;
    }
    return n;
}

static int word_is_verb(const mctx *m, const word *w) {
    char s[TOK_MAX + 1];
    for (const char *const *v = VERBS; *v; v++)
        if (strcmp(*v, w->low) == 0) return 1;
    snprintf(s, sizeof s, "%s", w->low);
    stem(s);
    int t = vocab_find(&m->v, s);
    return t >= 0 && m->v.verb[t];
}

static size_t content_words(const word *w, size_t a, size_t b) {
    size_t k = 0;
    for (size_t i = a; i < b; i++) {
        int digits = strspn(w[i].low, "0123456789") == strlen(w[i].low);
        if (!digits && strlen(w[i].low) >= 2 && !is_stopword(w[i].low)) k++;
    }
    return k;
}

static void split_clauses(mctx *m) {
    size_t maxw = strlen(m->task) / 2 + 1; /* a word and its separator take two bytes at least */
    word *w = calloc(maxw, sizeof *w);
    if (!w) return;
    size_t n = scan_words(m->task, w, maxw);
    /* cut[i]: a clause starts at word i; skip[i]: word i is a connector, left out */
    unsigned char *cut = calloc(n + 1, 1), *skip = calloc(n + 1, 1);
    if (!cut || !skip) goto out;
    for (size_t i = 0; i < n; i++) {
        if (w[i].in_quote) continue;
        if (w[i].brk_before) cut[i] = 1;
        if (!strcmp(w[i].low, "then") || !strcmp(w[i].low, "afterwards") || !strcmp(w[i].low, "subsequently") ||
            !strcmp(w[i].low, "finally")) {
            cut[i] = 1;
            skip[i] = 1;
            if (i > 0 && !strcmp(w[i - 1].low, "and")) skip[i - 1] = 1;
        }
        if (!strcmp(w[i].low, "after") && i + 1 < n && !strcmp(w[i + 1].low, "that")) {
            cut[i] = 1;
            skip[i] = skip[i + 1] = 1;
            if (i > 0 && !strcmp(w[i - 1].low, "and")) skip[i - 1] = 1;
        }
    }
    /* "and"/"," before a verb, when both sides keep two content words */
    for (size_t i = 1; i + 1 < n; i++) {
        if (w[i].in_quote || cut[i] || cut[i + 1]) continue;
        int is_and = !strcmp(w[i].low, "and");
        int at_comma = !is_and && w[i].comma_before;
        if (!is_and && !at_comma) continue;
        size_t next = is_and ? i + 1 : i;
        if (!word_is_verb(m, &w[next])) continue;
        size_t a = i;
        while (a > 0 && !cut[a]) a--;
        size_t b = next + 1;
        while (b < n && !cut[b]) b++;
        if (content_words(w, a, i) < 2 || content_words(w, next, b) < 2) continue;
        cut[next] = 1;
        if (is_and) skip[i] = 1;
    }
    /* trailing "and" before a cut (", and then") is dropped too */
    size_t i = 0;
    while (i < n && m->ncl < MAX_CLAUSES) {
        while (i < n && skip[i]) i++;
        if (i >= n) break;
        size_t a = i, b = i + 1;
        while (b < n && !cut[b]) b++;
        size_t last = b;
        while (last > a && skip[last - 1]) last--;
        if (last > a) {
            mclause *c = &m->cl[m->ncl++];
            c->start = w[a].start;
            c->end = w[last - 1].end;
            /* keep a closing quote inside the clause */
            if (c->end < strlen(m->task) && m->task[c->end] == '"') c->end++;
            if (w[a].in_quote && c->start > 0 && m->task[c->start - 1] == '"') c->start--;
        }
        i = b;
    }
out:
    free(cut);
    free(skip);
    free(w);
}

static int clause_of(const mctx *m, size_t pos) {
    for (size_t i = 0; i < m->ncl; i++)
        if (pos >= m->cl[i].start && pos < m->cl[i].end) return (int)i;
    return -1;
}

/* ---- literals --------------------------------------------------------------------------- */

/* The context of a literal at [st, en): up to four words before and two after, never across a
 * sentence end, a clause separator or another quote. */
static void literal_context(mctx *m, literal *l, size_t st, size_t en) {
    const char *t = m->task;
    size_t len = strlen(t), a = st, b = en;
    int words = 0;
    while (a > 0 && words < 4) {
        char ch = t[a - 1];
        if (strchr(";!?\"\n", ch) || (ch == '.' && !(a >= 2 && isdigit((unsigned char)t[a - 2])))) break;
        if (word_char((unsigned char)ch) && (a == 1 || !word_char((unsigned char)t[a - 2]))) words++;
        a--;
    }
    tokenize(t + a, st - a, strset_add_cb, &l->ctx);
    words = 0;
    while (b < len && words < 2) {
        char ch = t[b];
        if (strchr(".;!?\",\n", ch)) break;
        if (word_char((unsigned char)ch) && (b + 1 >= len || !word_char((unsigned char)t[b + 1]))) words++;
        b++;
    }
    tokenize(t + en, b - en, strset_add_cb, &l->ctx);
}

static literal *new_literal(mctx *m, int kind, size_t pos) {
    if (m->nlit >= MAX_LITERALS) return NULL;
    literal *l = &m->lit[m->nlit++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->pos = pos;
    l->clause = clause_of(m, pos);
    return l;
}

static void extract_literals(mctx *m) {
    const char *t = m->task;
    size_t len = strlen(t);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)t[i];
        /* "quoted", “curly”, `backticks` */
        const char *close = NULL;
        size_t openlen = 0;
        if (c == '"') close = "\"", openlen = 1;
        else if (c == '`') close = "`", openlen = 1;
        else if (!strncmp(t + i, "\xe2\x80\x9c", 3)) close = "\xe2\x80\x9d", openlen = 3;
        else if (c == '\'' && (i == 0 || !word_char((unsigned char)t[i - 1]))) close = "'", openlen = 1;
        if (close) {
            const char *e = strstr(t + i + openlen, close);
            if (c == '\'')
                while (e && word_char((unsigned char)e[1])) e = strstr(e + 1, close); /* skip apostrophes */
            if (e && e > t + i + openlen) {
                literal *l = new_literal(m, L_STR, i);
                if (l) {
                    l->text = x4_strndup(t + i + openlen, (size_t)(e - (t + i + openlen)));
                    literal_context(m, l, i, (size_t)(e - t) + strlen(close));
                }
                i = (size_t)(e - t) + strlen(close);
                continue;
            }
            i += openlen;
            continue;
        }
        if (isdigit(c) && (i == 0 || !word_char((unsigned char)t[i - 1]))) {
            size_t st = i, en = i;
            while (en < len && (isdigit((unsigned char)t[en]) ||
                                (t[en] == ',' && en + 3 < len && isdigit((unsigned char)t[en + 1]) &&
                                 isdigit((unsigned char)t[en + 2]) && isdigit((unsigned char)t[en + 3]) &&
                                 (en + 4 >= len || !isdigit((unsigned char)t[en + 4])))))
                en++;
            int real = 0;
            if (en + 1 < len && t[en] == '.' && isdigit((unsigned char)t[en + 1])) {
                real = 1;
                en++;
                while (en < len && isdigit((unsigned char)t[en])) en++;
            }
            /* dates, times, ratios and ids ("2023-05-01", "12:30", "120/80", "3a7") are not numbers */
            int part = en < len && ((strchr("-/:", t[en]) && en + 1 < len && isdigit((unsigned char)t[en + 1])) ||
                                    (st > 0 && strchr("-/:", t[st - 1]) && st > 1 && isdigit((unsigned char)t[st - 2])));
            if (!part) {
                char buf[64];
                size_t k = 0;
                for (size_t p = st; p < en && k < sizeof buf - 1; p++)
                    if (t[p] != ',') buf[k++] = t[p];
                buf[k] = 0;
                literal *l = new_literal(m, L_NUM, st);
                if (l) {
                    l->text = x4_strdup(buf);
                    l->num = strtod(buf, NULL);
                    l->is_int = !real && k <= 15;
                    l->ival = l->is_int ? strtoll(buf, NULL, 10) : 0;
                    if (st > 0 && t[st - 1] == '-' && (st == 1 || !word_char((unsigned char)t[st - 2]))) {
                        l->num = -l->num;
                        l->ival = -l->ival;
                    }
                    literal_context(m, l, st, en);
                }
            }
            while (en < len && word_char((unsigned char)t[en])) en++;
            i = en;
            continue;
        }
        if (word_char(c) && (i == 0 || !word_char((unsigned char)t[i - 1]))) {
            size_t en = i;
            while (en < len && word_char((unsigned char)t[en])) en++;
            int tv = en - i == 4 && !strncasecmp(t + i, "true", 4);
            int fv = en - i == 5 && !strncasecmp(t + i, "false", 5);
            if (tv || fv) {
                literal *l = new_literal(m, L_BOOL, i);
                if (l) {
                    l->bval = tv;
                    l->text = x4_strndup(t + i, en - i);
                    literal_context(m, l, i, en);
                }
            }
            i = en;
            continue;
        }
        i++;
    }
}

/* ---- schemas ---------------------------------------------------------------------------- */

static const char *schema_type(const json_t *p) {
    const json_t *t = json_object_get(p, "type");
    if (json_is_string(t)) return json_string_value(t);
    size_t i;
    json_t *x;
    json_array_foreach(t, i, x) if (json_is_string(x) && strcmp(json_string_value(x), "null")) return json_string_value(x);
    return NULL;
}

static int type_compat(const char *in, const char *out) {
    if (!in || !out) return 1;
    if (!strcmp(in, out)) return 1;
    int in_num = !strcmp(in, "number") || !strcmp(in, "integer");
    int out_num = !strcmp(out, "number") || !strcmp(out, "integer");
    return in_num && out_num;
}

static void param_tokens(strset *s, const char *name, const json_t *prop) {
    strset_text(s, name);
    strset_text(s, json_string_value(json_object_get(prop, "description")));
}

/* ---- steps ------------------------------------------------------------------------------ */

static void step_dep(mstep *st, size_t j) {
    for (size_t k = 0; k < st->ndeps; k++)
        if (st->deps[k] == j) return;
    size_t *nd = realloc(st->deps, (st->ndeps + 1) * sizeof *nd);
    if (!nd) return;
    st->deps = nd;
    st->deps[st->ndeps++] = j;
}

static void set_ref(mstep *st, const char *param, size_t j, const char *field) {
    char ref[256];
    snprintf(ref, sizeof ref, "s%zu.%s", j + 1, field);
    json_object_set_new(st->inputs, param, json_pack("{s:s}", "$ref", ref));
    step_dep(st, j);
}

static int is_ref(const json_t *v) { return json_is_object(v) && json_object_get(v, "$ref") != NULL; }

/* Earlier output with exactly this name (latest step first). When that output merely echoes
 * the step's own input of the same name and that input is a literal, the literal is copied
 * instead: the value is known now, and a reference would only serialise two steps that could
 * run in parallel (token_prices need not wait for dex_volume to learn the chain). */
static int wire_exact(mctx *m, mstep *st, const char *param, const json_t *prop) {
    for (size_t j = m->nsteps; j-- > 0;) {
        const json_t *op = json_object_get(json_object_get(m->steps[j].s->output, "properties"), param);
        if (!op || !type_compat(schema_type(prop), schema_type(op))) continue;
        json_t *given = json_object_get(m->steps[j].inputs, param);
        if (given && !is_ref(given)) json_object_set_new(st->inputs, param, json_deep_copy(given));
        else set_ref(st, param, j, param);
        return 1;
    }
    return 0;
}

static int wire_similar(mctx *m, mstep *st, const char *param, const json_t *prop) {
    strset a = {0};
    param_tokens(&a, param, prop);
    double best = 0;
    size_t bj = 0;
    const char *bf = NULL;
    for (size_t j = m->nsteps; j-- > 0;) {
        const char *k;
        json_t *op;
        json_object_foreach(json_object_get(m->steps[j].s->output, "properties"), k, op) {
            const char *ti = schema_type(prop), *to = schema_type(op);
            if (!ti || !to || !type_compat(ti, to)) continue;
            strset b = {0};
            param_tokens(&b, k, op);
            double sim = a.n + b.n ? 2.0 * (double)strset_overlap(&a, &b) / (double)(a.n + b.n) : 0;
            strset_free(&b);
            if (sim > best + 1e-9) {
                best = sim;
                bj = j;
                bf = k;
            }
        }
    }
    strset_free(&a);
    if (!bf || best < SIM_MIN) return 0;
    set_ref(st, param, bj, bf);
    return 1;
}

/* An enum value the clause (else the task) mentions as a word: the earliest mention not yet
 * taken by another parameter of the same step ("convert 100 EUR to USD": from EUR, to USD).
 * Values that are also stopwords ("it" for Italian) are not recognised in running text. */
static int fill_enum(mctx *m, mstep *st, const char *param, const json_t *prop, int clause, size_t *taken,
                     size_t *ntaken) {
    const json_t *en = json_object_get(prop, "enum");
    if (!json_is_array(en)) return 0;
    size_t tlen = strlen(m->task);
    for (int pass = 0; pass < 2; pass++) {
        size_t a = 0, b = tlen;
        if (pass == 0) {
            if (clause < 0) continue;
            a = m->cl[clause].start;
            b = m->cl[clause].end;
        }
        size_t best_pos = SIZE_MAX;
        json_t *best = NULL;
        size_t i;
        json_t *v;
        json_array_foreach(en, i, v) {
            if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > TOK_MAX) continue;
            const char *val = json_string_value(v);
            size_t vl = strlen(val);
            char low[TOK_MAX + 1];
            for (size_t k = 0; k <= vl; k++) low[k] = (char)tolower((unsigned char)val[k]);
            if (is_stopword(low)) continue;
            for (size_t p = a; p + vl <= b && p < best_pos; p++) {
                if (strncasecmp(m->task + p, val, vl)) continue;
                if ((p > 0 && word_char((unsigned char)m->task[p - 1])) ||
                    (p + vl < tlen && word_char((unsigned char)m->task[p + vl])))
                    continue;
                int used = 0;
                for (size_t k = 0; k < *ntaken; k++) used |= taken[k] == p;
                if (used) continue;
                best_pos = p;
                best = v;
                break;
            }
        }
        if (best) {
            json_object_set(st->inputs, param, best);
            taken[(*ntaken)++] = best_pos;
            return 1;
        }
    }
    return 0;
}

static int literal_fits(const literal *l, const char *type) {
    if (!type) return l->kind == L_STR;
    if (!strcmp(type, "string")) return l->kind == L_STR;
    if (!strcmp(type, "integer")) return l->kind == L_NUM && l->is_int;
    if (!strcmp(type, "number")) return l->kind == L_NUM;
    if (!strcmp(type, "boolean")) return l->kind == L_BOOL;
    return 0;
}

static json_t *literal_value(const literal *l, const char *type) {
    if (l->kind == L_STR) return json_string(l->text);
    if (l->kind == L_BOOL) return json_boolean(l->bval);
    if (type && !strcmp(type, "integer")) return json_integer(l->ival);
    if (l->is_int) return json_integer(l->ival);
    return json_real(l->num);
}

typedef struct {
    const char *name;
    const json_t *prop;
    int required;
    int done;
} mparam;

/* Greedy matching of literals to the still-open parameters of a step. */
static void fill_literals(mctx *m, mstep *st, mparam *ps, size_t np, int clause) {
    unsigned char *taken = calloc(m->nlit ? m->nlit : 1, 1);
    strset *pt = calloc(np ? np : 1, sizeof *pt);
    if (!taken || !pt) goto out;
    for (size_t i = 0; i < np; i++) param_tokens(&pt[i], ps[i].name, ps[i].prop);
    for (;;) {
        double best = -1;
        size_t bp = 0, bl = 0;
        for (size_t i = 0; i < np; i++) {
            if (ps[i].done || json_object_get(ps[i].prop, "enum")) continue;
            const char *type = schema_type(ps[i].prop);
            for (size_t k = 0; k < m->nlit; k++) {
                const literal *l = &m->lit[k];
                if (taken[k] || !literal_fits(l, type)) continue;
                size_t ov = strset_overlap(&pt[i], &l->ctx);
                int here = clause >= 0 && l->clause == clause;
                /* optional inputs only from a literal its words point at; required ones also from
                 * any literal of the clause being planned */
                if (!ov && !(ps[i].required && here)) continue;
                double sc = 2.0 * (double)ov + (here ? 1.0 : 0) + (ps[i].required ? 0.25 : 0) -
                            0.001 * (double)k; /* earlier literal first on a tie */
                if (sc > best) {
                    best = sc;
                    bp = i;
                    bl = k;
                }
            }
        }
        if (best < 0) break;
        json_object_set_new(st->inputs, ps[bp].name, literal_value(&m->lit[bl], schema_type(ps[bp].prop)));
        ps[bp].done = 1;
        taken[bl] = 1;
    }
out:
    for (size_t i = 0; pt && i < np; i++) strset_free(&pt[i]);
    free(pt);
    free(taken);
}

static int plan_service(mctx *m, size_t ci, int clause, int depth, int chained, int allow_chain);

/* Plans an unused service that outputs `param` exactly, then references it: the best such
 * service by relevance to the whole task (cheaper on a tie) that fits the budget and whose own
 * required inputs can all be filled. */
static int wire_chain(mctx *m, mstep *st, size_t self_ci, const char *param, const json_t *prop, int depth,
                      int required) {
    if (depth >= MAX_CHAIN_DEPTH) return 0;
    const char *ti = schema_type(prop);
    score_clause(m, &m->whole);
    double *rank = malloc(m->ncat * sizeof *rank);
    if (!rank) return 0;
    for (size_t i = 0; i < m->ncat; i++) {
        rank[i] = -1;
        if (m->used[i] || i == self_ci) continue;
        const x4_service *s = x4_catalog_at(m->cat, i);
        const json_t *op = json_object_get(json_object_get(s->output, "properties"), param);
        if (!op || !type_compat(ti, schema_type(op))) continue;
        if (!required && x4_log_enabled(X4_LOG_DEBUG))
            x4_debug("matcher", "optional %s: provider %s scores %.3f against the task (hits %d)", param,
                     s->id, m->acc[i], m->hits[i]);
        /* optional: only a service the task itself talks about */
        if (!required && (m->acc[i] < OPTIONAL_MIN || m->hits[i] < OPTIONAL_HITS)) continue;
        if (m->sum + price_of(s) < m->sum || m->sum + price_of(s) > m->max_cost) {
            if (required && !m->budget_note[0]) {
                char pr[40], mc[40];
                x4_money_format(price_of(s), 6, pr);
                x4_money_format(m->max_cost, 6, mc);
                snprintf(m->budget_note, sizeof m->budget_note,
                         "%s could provide \"%.64s\" but its price %s does not fit maxCost %s", s->id, param, pr, mc);
            }
            continue;
        }
        rank[i] = m->acc[i];
    }
    int ok = 0;
    for (;;) {
        ssize_t b = -1;
        for (size_t i = 0; i < m->ncat; i++) {
            if (rank[i] < 0) continue;
            if (b < 0 || rank[i] > rank[b] + 1e-9 ||
                (rank[i] >= rank[b] - 1e-9 &&
                 price_of(x4_catalog_at(m->cat, i)) < price_of(x4_catalog_at(m->cat, (size_t)b))))
                b = (ssize_t)i;
        }
        if (b < 0) break;
        rank[b] = -1;
        if (plan_service(m, (size_t)b, -1, depth + 1, 1, required) == 0) {
            /* the provider is the last step planned (its own providers come before it) */
            set_ref(st, param, m->nsteps - 1, param);
            ok = 1;
            break;
        }
    }
    free(rank);
    return ok;
}

static int push_step(mctx *m, mstep *st) {
    if (m->nsteps == m->capsteps) {
        size_t nc = m->capsteps ? m->capsteps * 2 : 8;
        mstep *ns = realloc(m->steps, nc * sizeof *ns);
        if (!ns) return -1;
        m->steps = ns;
        m->capsteps = nc;
    }
    m->steps[m->nsteps++] = *st;
    return 0;
}

/* Plans catalog service ci: its providers (if any) first, then the step itself. A chained
 * service (planned to feed another) must get every required input, or nothing is planned and
 * the caller tries another; a clause's own service may leave one out, and the final
 * validation names it. allow_chain: whether this service may pull in providers itself. */
static int plan_service(mctx *m, size_t ci, int clause, int depth, int chained, int allow_chain) {
    const x4_service *s = x4_catalog_at(m->cat, ci);
    size_t mark = m->nsteps;
    uint64_t sum0 = m->sum;
    mstep st = {s, json_object(), NULL, 0, chained};
    if (!st.inputs) return -1;
    m->used[ci] = 1;
    m->sum += price_of(s);

    const json_t *props = json_object_get(s->input, "properties");
    const json_t *req = json_object_get(s->input, "required");
    size_t np = json_object_size(props), k = 0;
    mparam *ps = calloc(np ? np : 1, sizeof *ps);
    if (!ps) goto fail;
    /* required first, in the schema's "required" order, then the optional ones */
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r) {
        const json_t *p = json_object_get(props, json_string_value(r));
        if (!p) continue;
        ps[k++] = (mparam){json_string_value(r), p, 1, 0};
    }
    const char *name;
    json_t *p;
    json_object_foreach((json_t *)props, name, p) {
        int isreq = 0;
        json_array_foreach(req, i, r) if (json_is_string(r) && !strcmp(json_string_value(r), name)) isreq = 1;
        if (!isreq) ps[k++] = (mparam){name, p, 0, 0};
    }
    np = k;

    /* a-b: earlier outputs; enum mentions */
    size_t *enum_taken = calloc(np ? np : 1, sizeof *enum_taken), nenum = 0;
    if (!enum_taken) goto fail;
    for (size_t q = 0; q < np; q++) {
        ps[q].done = wire_exact(m, &st, ps[q].name, ps[q].prop) ||
                     (ps[q].required && wire_similar(m, &st, ps[q].name, ps[q].prop)) ||
                     fill_enum(m, &st, ps[q].name, ps[q].prop, clause, enum_taken, &nenum);
    }
    free(enum_taken);
    /* c: literals */
    fill_literals(m, &st, ps, np, clause);
    /* d-e: defaults, chaining */
    for (size_t q = 0; q < np; q++) {
        if (ps[q].done) continue;
        const json_t *def = json_object_get(ps[q].prop, "default");
        if (ps[q].required && def) {
            json_object_set(st.inputs, ps[q].name, (json_t *)def);
            ps[q].done = 1;
            continue;
        }
        if (allow_chain) ps[q].done = wire_chain(m, &st, ci, ps[q].name, ps[q].prop, depth, ps[q].required);
        if (!ps[q].done && ps[q].required && chained) goto fail;
    }
    free(ps);
    ps = NULL;
    if (push_step(m, &st)) goto fail;
    return 0;
fail:
    free(ps);
    json_decref(st.inputs);
    free(st.deps);
    /* undo what this attempt planned */
    while (m->nsteps > mark) {
        mstep *x = &m->steps[--m->nsteps];
        ssize_t xi = cat_index(m, x->s);
        if (xi >= 0) m->used[xi] = 0;
        json_decref(x->inputs);
        free(x->deps);
    }
    m->used[ci] = 0;
    m->sum = sum0;
    return -1;
}

/* ---- driver ----------------------------------------------------------------------------- */

static void mctx_free(mctx *m) {
    for (size_t i = 0; i < m->v.n; i++) {
        free(m->v.str[i]);
        if (m->v.post) free(m->v.post[i]);
    }
    free(m->v.str);
    free(m->v.tab);
    free(m->v.df);
    free(m->v.post);
    free(m->v.npost);
    for (size_t i = 0; m->docs && i < m->ncat; i++) {
        free(m->docs[i].t);
        free(m->docs[i].name);
    }
    free(m->docs);
    free(m->idf);
    for (size_t i = 0; i < m->ncl; i++) {
        strset_free(&m->cl[i].toks);
        free(m->cl[i].ids);
    }
    strset_free(&m->whole.toks);
    free(m->whole.ids);
    for (size_t i = 0; i < m->nlit; i++) {
        free(m->lit[i].text);
        strset_free(&m->lit[i].ctx);
    }
    for (size_t i = 0; i < m->nsteps; i++) {
        json_decref(m->steps[i].inputs);
        free(m->steps[i].deps);
    }
    free(m->steps);
    free(m->used);
    free(m->acc);
    free(m->hits);
    free(m->strong);
    free(m->v.verb);
}

static json_t *steps_json(const mctx *m) {
    json_t *arr = json_array();
    for (size_t i = 0; i < m->nsteps; i++) {
        char id[32];
        snprintf(id, sizeof id, "s%zu", i + 1);
        json_t *deps = json_array();
        /* dependsOn in step order */
        for (size_t j = 0; j < i; j++)
            for (size_t k = 0; k < m->steps[i].ndeps; k++)
                if (m->steps[i].deps[k] == j) {
                    char d[32];
                    snprintf(d, sizeof d, "s%zu", j + 1);
                    json_array_append_new(deps, json_string(d));
                    break;
                }
        json_array_append_new(arr, json_pack("{s:s, s:s, s:O, s:o}", "id", id, "service", m->steps[i].s->id, "inputs",
                                             m->steps[i].inputs, "dependsOn", deps));
    }
    return json_pack("{s:o}", "steps", arr);
}

int x4_matcher_plan(const x4_catalog *cat, const char *task, uint64_t max_cost, json_t **plan, char *err,
                    size_t errlen) {
    mctx m;
    int rc = -1;
    memset(&m, 0, sizeof m);
    if (plan) *plan = NULL;
    if (!cat || !plan) {
        seterr(err, errlen, "no catalog");
        return -1;
    }
    if (!task || !*task) {
        seterr(err, errlen, "the task is empty");
        return -1;
    }
    if (strlen(task) > 16384) {
        seterr(err, errlen, "the task is longer than 16384 bytes");
        return -1;
    }
    if (x4_catalog_count(cat) == 0) {
        seterr(err, errlen, "the catalog is empty");
        return -1;
    }
    m.cat = cat;
    m.task = task;
    m.max_cost = max_cost;
    if (build_index(&m)) {
        seterr(err, errlen, "out of memory");
        goto done;
    }
    split_clauses(&m);
    m.whole.start = 0;
    m.whole.end = strlen(task);
    clause_prepare(&m, &m.whole);
    for (size_t c = 0; c < m.ncl; c++) clause_prepare(&m, &m.cl[c]);
    extract_literals(&m);

    int matched_any = 0;
    for (size_t c = 0; c < m.ncl; c++) {
        score_clause(&m, &m.cl[c]);
        ssize_t top = -1;
        for (size_t i = 0; i < m.ncat; i++)
            if (eligible(&m, i) && (top < 0 || better(&m, i, (size_t)top))) top = (ssize_t)i;
        if (x4_log_enabled(X4_LOG_DEBUG)) {
            x4_debug("matcher", "clause %zu \"%.*s\": best %s %.3f", c, (int)(m.cl[c].end - m.cl[c].start),
                     task + m.cl[c].start, top < 0 ? "-" : x4_catalog_at(cat, (size_t)top)->id,
                     top < 0 ? 0.0 : m.acc[top]);
        }
        if (top < 0) continue; /* nothing in the catalog for this clause */
        matched_any = 1;
        double top_score = m.acc[top];
        /* candidates in order; the first unused one that fits the budget and can be planned */
        unsigned char *tried = calloc(m.ncat, 1);
        if (!tried) {
            seterr(err, errlen, "out of memory");
            goto done;
        }
        int planned = 0, over_budget = 0;
        ssize_t cheapest_over = -1;
        for (;;) {
            ssize_t b = -1;
            for (size_t i = 0; i < m.ncat; i++)
                if (!tried[i] && eligible(&m, i) && (b < 0 || better(&m, i, (size_t)b))) b = (ssize_t)i;
            if (b < 0) break;
            tried[b] = 1;
            if (m.used[b]) continue;
            if (m.used[top] && m.acc[b] < 0.8 * top_score) break; /* clause covered by a planned step */
            const x4_service *s = x4_catalog_at(cat, (size_t)b);
            if (m.sum + price_of(s) < m.sum || m.sum + price_of(s) > max_cost) {
                over_budget = 1;
                if (cheapest_over < 0 || price_of(s) < price_of(x4_catalog_at(cat, (size_t)cheapest_over)))
                    cheapest_over = b;
                continue;
            }
            if (plan_service(&m, (size_t)b, (int)c, 0, 0, 1) == 0) {
                planned = 1;
                break;
            }
            score_clause(&m, &m.cl[c]); /* chaining rescored m->acc */
        }
        free(tried);
        if (!planned && over_budget && !m.used[top]) {
            char mc[40], pr[40], sum[40];
            x4_money_format(max_cost, 6, mc);
            x4_money_format(price_of(x4_catalog_at(cat, (size_t)cheapest_over)), 6, pr);
            x4_money_format(m.sum, 6, sum);
            seterr(err, errlen,
                   "no service for \"%.*s\" fits maxCost %s: the cheapest match, %s, costs %s and %s is already "
                   "planned",
                   (int)(m.cl[c].end - m.cl[c].start > 80 ? 80 : m.cl[c].end - m.cl[c].start), task + m.cl[c].start,
                   max_cost == X4_NO_MAX_COST ? "(none)" : mc, x4_catalog_at(cat, (size_t)cheapest_over)->id, pr, sum);
            goto done;
        }
    }
    if (!matched_any || m.nsteps == 0) {
        seterr(err, errlen, "no service in the catalog matches the task");
        goto done;
    }

    json_t *pj = steps_json(&m);
    x4_plan *parsed = NULL;
    json_t *errors = NULL;
    if (!pj) {
        seterr(err, errlen, "out of memory");
        goto done;
    }
    if (x4_plan_parse(pj, cat, max_cost, &parsed, &errors) != 0) {
        x4_buf b = {0};
        x4_buf_puts(&b, "the planned steps do not form a valid plan: ");
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e) {
            if (i == 5) {
                x4_buf_puts(&b, "; ...");
                break;
            }
            x4_buf_printf(&b, "%s%s: %s", i ? "; " : "", json_string_value(json_object_get(e, "field")),
                          json_string_value(json_object_get(e, "problem")));
        }
        if (m.budget_note[0]) x4_buf_printf(&b, " (%s)", m.budget_note);
        seterr(err, errlen, "%s", b.data ? b.data : "invalid plan");
        x4_buf_free(&b);
        json_decref(errors);
        json_decref(pj);
        goto done;
    }
    x4_plan_free(parsed);
    *plan = pj;
    rc = 0;
done:
    mctx_free(&m);
    return rc;
}
