/* plan/matcher.c — the offline planner (see matcher.h for the contract). Owns retrieval,
 * decomposition, wiring and literal extraction; the ranking seam is x4_planner_rank().
 *
 *  1. Index (index_get): every service becomes a bag of stemmed tokens with a field-weighted
 *     term frequency (id/name 1.0, tags 0.8, description 0.6, input names and enum values 0.5,
 *     output names 0.4, parameter descriptions 0.3) and its best field; BM25 idf; an inverted
 *     index. Built once per catalog version (x4_catalog_version + count) and kept in a small
 *     reference-counted cache (4 entries, mutex): ~50 ms for NesTools' 3,034 services, then free.
 *  2. Clauses: cut at sentence ends and ";" (never inside quotes; not after an abbreviation,
 *     an initial or a title: "sq. ft.", "F. Scott", "Dr. Smith" — but "Site A. Please ..."
 *     ends one), "then", "after that", "afterwards", "subsequently", "finally", ", followed by
 *     <verb>-ing", and "and"/"," before a verb in its base form, perhaps after a filler ("and
 *     also send ..."; built-in list plus the first word of a verb_noun service id whose
 *     description opens with it; "that accepts ... and produces ..." and ", taking ..." do not
 *     cut) when the left keeps two content words and the right three. Left out: a phrase
 *     before that comma or a clause opening with a subordinator ("After analysing the results,
 *     ...", "Upon completion of these tasks, finally ...") — it refers back — and a sentence
 *     that only describes ("The deadline is on May 1.": determiner, then a copula not followed
 *     by a participle). A clause of request verbs and fillers alone that holds no value ("Can
 *     you help me?") opens the next one.
 *  3. Choice: per clause, BM25 (k1, b) / the clause's Σ idf (the synonyms of its request verbs
 *     — "propose" → suggest, recommend, advise — join the query at SYN_W, further general groups
 *     — "sift" → parse, filter, extract — at SYN_MORE_W, and derived forms of its words the
 *     catalog uses — "adjustments" → adjust, "predict" → prediction — at DERIV_W), combined by
 *     x4_planner_rank() with the share of the service's name mentioned, its BM25 against the
 *     whole task (context), the share of its required inputs earlier steps output (chaining)
 *     and price; needs ≥ match_min and a name/tag hit or two tokens. Then the joint choice
 *     (preselect): the top 6 services of every clause, and a beam search (24 wide) over the
 *     clauses maximising Σ rank + wire_bonus × the share of a service's inputs the services
 *     chosen for earlier clauses feed + fill_bonus × the share fed or evidenced by the task (a
 *     literal whose words name the input, the input's name, an enum value) + link_bonus when it
 *     shares a parameter name few services use (≤ LINK_DF_MAX) with an earlier choice (such
 *     services belong to one workflow) − step_cost × the share of the clause's words the
 *     catalog knows, or no step for the clause (worth 0: an
 *     aside, a detail of another step; if no choice plans a step, the best one-step choice);
 *     no service twice, within max_cost. policies/matching.lua may set the weights (weights)
 *     and replace the rank of the top 6 per clause (score).
 *  4. Wiring, per input: same-named earlier output (type-compatible); required: Dice of name +
 *     description tokens ≥ sim_typed when both sides are typed, sim_min for an untyped output;
 *     enum values the task names, then example values the description lists ("such as 'cat',
 *     'dog'", "options: ...", "either ... or ..."); literals (quoted strings, numbers and number
 *     words, booleans, dates as ISO 8601, times of day, ids / e-mails / file names / ratios /
 *     digit groups ("123-456-7890", "192.168.1.10"), proper-noun spans ("E. coli", "Room 101",
 *     "Leonardo da Vinci", "Artify Inc."), street addresses ("123 Main Street, Cityville");
 *     lists "A, B and C" for arrays, also of common nouns ("itchiness and redness": arrays only);
 *     compound words ("middle-aged") rank low) matched by the words around them (the two right
 *     before a value, or the word after a number, count once more: "passport number X", "4
 *     guests"), by their unit ("90 minutes" is a duration, "$250" a price) and by the
 *     preposition before them ("from" an origin, "to" a destination, "in" / "at" / "near" a
 *     place, "for" a person; another clause's literal only by two words), same clause, priority
 *     and date/time-ness (a date-like input prefers a date, a year input a year); a value named
 *     by the input ("pink gill color", "not toxic"; by its head word for "<head>_type" /
 *     "_name" / ...: "fiberglass insulation"); a still-open required input: an earlier output
 *     at sim_min, a literal of its type from its clause (a number from anywhere), a weakly
 *     similar output, its default, another clause's text literal, the most similar earlier
 *     output of its type; then chaining a provider service (depth ≤ 2); then what the task says
 *     of it (a string the clause's words, a flag true, a field-less object {}), unless the
 *     clause names the input without a value ("for my city": validation then names it).
 *  5. The plan goes through x4_plan_parse(); a rejected plan is given back as a draft on request.
 *
 * Quality (bench/planner/RESULTS.md, NesTools dev, strict): tool F1 0.736, edge F1 0.586,
 * literal F1 0.502, 97% valid (0.725 / 0.563 / 0.470, 96% before the third round). Tried and
 * dropped (no gain on dev): derivational prefixes as extra tokens, more suffix stripping, a
 * stricter match_min for clauses split inside a sentence, dropping a clause another chosen
 * service covers, the name share against the whole task, per-clause input evidence, names
 * before context literals; later: a bonus for the clause's verb in the service's name or for
 * words the chosen services share (replayed on dev's candidate lists), merging a clause into
 * an earlier step it also matches, a step cost relative to the task's best clause, none (or
 * less) for sentence-initial, "finally"-marked or literal-holding clauses, synonyms in the
 * whole-task context, noun synonyms, other field weights, a beam of 10 per clause or 64 wide,
 * the last-resort literal after a weak output; third round: a bonus per shared parameter name
 * (beyond one) or for names many services use, candidates from further down linked to another
 * clause's, adjacent name-word pairs in the clause, "titled"/"named" as a title's role.
 * Limits: tasks up to 16 KiB, 64 clauses, 128 literals. Cost per task: O(clause tokens ×
 * postings) per clause plus the beam, ~2.5 ms on NesTools. */
#include "plan/matcher.h"

#include <ctype.h>
#include <stddef.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/log.h"
#include "core/util.h"
#include "lua/lua.h"
#include "plan/plan.h"

#define OPTIONAL_MIN 0.20 /* an optional input's provider: relevance to the whole task */
#define OPTIONAL_HITS 3   /* ... and this many distinct task words in its description */
#define ADJ_W 1.0         /* a literal: × parameter words among the two right before it */
#define LINK_DF_MAX 15    /* a parameter name links two services when at most this many use it */
#define MAX_CHAIN_DEPTH 2
#define DATE_MISS 1.0 /* a text literal for a date/time-like input: this much less likely */
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

/* Dice coefficient of two token sets: 2|a ∩ b| / (|a| + |b|), 0 when both are empty. */
static double strset_dice(const strset *a, const strset *b) {
    return a->n + b->n ? 2.0 * (double)strset_overlap(a, b) / (double)(a->n + b->n) : 0;
}

/* ---- vocabulary and index --------------------------------------------------------------- */

typedef struct {
    int tok;
    float w;  /* weight of the best field the token appears in */
    float tf; /* field-weighted term frequency (BM25F-style) */
} tw;

typedef struct {
    int svc;
    float w, tf;
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
            d->t[i].tf += b->w;
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
    d->t[d->n].tf = b->w;
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

/* The index of one catalog: immutable once built, shared by every plan over that catalog
 * version (see index_get). */
typedef struct pindex {
    char key[48];   /* catalog version + record count */
    size_t ncat;
    vocab v;
    sdoc *docs;
    double *idf;
    double max_idf;
    double *dl;     /* document length (Σ tf) */
    double avgdl;
    char **pname;   /* every parameter name (inputs and outputs) of the catalog, sorted ... */
    int *pdf;       /* ... and how many services use it */
    size_t npname;
    int refs;       /* under index_mu */
    unsigned long tick;
} pindex;

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
    int prio;       /* 2 quoted, 1 date / id / proper noun / measure, 0 plain */
    int date;       /* 1 a date, 2 a time of day (a string) */
    int item;       /* an item of a list of common nouns ("cast, medication and rest"): arrays only */
    size_t end;     /* byte after it in the task */
    strset ctx;     /* words around it */
    strset near;    /* the (up to two) content words right before it ("passport number X") */
} literal;

typedef struct {
    size_t start, end; /* byte span in the task */
    strset toks;
    int *ids;          /* token ids known to the catalog vocabulary (unique), then nexp more: */
    size_t nids;
    size_t nexp;       /* ... synonyms of its request verbs it does not use (weight SYN_W) */
    double *xw;        /* the weight of each of those nexp */
    double norm;
    double known;      /* the share of norm that words the catalog knows make up (0..1) */
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
    pindex *ix;
    x4_planner_params prm;
    mclause cl[MAX_CLAUSES];
    size_t ncl;
    mclause whole;
    literal lit[MAX_LITERALS];
    size_t nlit;
    unsigned char lused_buf[MAX_LITERALS];
    unsigned char *lused; /* literals some step took */
    mstep *steps;
    size_t nsteps, capsteps;
    unsigned char *used; /* per catalog index */
    uint64_t sum, max_cost;
    char budget_note[256]; /* a provider left out for the budget, told with the final error */
    double *acc;
    double *bm25; /* the last clause's BM25 feature per service (for matching.score) */
    double *ctx; /* relevance of each service to the whole task */
    int *hits;
    unsigned char *strong;
    x4_lua_rt *lua;  /* matching.score, when it defines one (NULL: the built-in rank) */
} mctx;

static ssize_t cat_index(const mctx *m, const x4_service *s) {
    for (size_t i = 0; i < m->ncat; i++)
        if (x4_catalog_at(m->cat, i) == s) return (ssize_t)i;
    return -1;
}

static uint64_t price_of(const x4_service *s) { return s->has_price ? s->price : 0; }

static void index_free(pindex *ix) {
    if (!ix) return;
    for (size_t i = 0; i < ix->v.n; i++) {
        free(ix->v.str[i]);
        if (ix->v.post) free(ix->v.post[i]);
    }
    free(ix->v.str);
    free(ix->v.tab);
    free(ix->v.df);
    free(ix->v.post);
    free(ix->v.npost);
    free(ix->v.verb);
    for (size_t i = 0; ix->docs && i < ix->ncat; i++) {
        free(ix->docs[i].t);
        free(ix->docs[i].name);
    }
    free(ix->docs);
    free(ix->idf);
    free(ix->dl);
    for (size_t i = 0; i < ix->npname; i++) free(ix->pname[i]);
    free(ix->pname);
    free(ix->pdf);
    free(ix);
}

/* The parameter names of the catalog with the number of services using each (as an input or
 * an output): a name few services share ties them together, "id" or "location" does not. */
static int pname_build(pindex *ix, const x4_catalog *cat) {
    size_t cap = 0, n = 0;
    char **all = NULL;
    for (size_t i = 0; i < ix->ncat; i++) {
        const x4_service *s = x4_catalog_at(cat, i);
        const json_t *side[2] = {json_object_get(s->input, "properties"), json_object_get(s->output, "properties")};
        for (int x = 0; x < 2; x++) {
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)side[x], k, v) {
                (void)v;
                if (x == 1 && json_object_get(side[0], k)) continue; /* once per service */
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 1024;
                    char **na = realloc(all, nc * sizeof *na);
                    if (!na) goto err;
                    all = na;
                    cap = nc;
                }
                all[n++] = (char *)k;
            }
        }
    }
    if (n) qsort(all, n, sizeof *all, cmp_str);
    ix->pname = calloc(n ? n : 1, sizeof *ix->pname);
    ix->pdf = calloc(n ? n : 1, sizeof *ix->pdf);
    if (!ix->pname || !ix->pdf) goto err;
    for (size_t i = 0; i < n; i++) {
        if (ix->npname && !strcmp(ix->pname[ix->npname - 1], all[i])) {
            ix->pdf[ix->npname - 1]++;
            continue;
        }
        ix->pname[ix->npname] = x4_strdup(all[i]);
        if (!ix->pname[ix->npname]) goto err;
        ix->pdf[ix->npname++] = 1;
    }
    free(all);
    return 0;
err:
    free(all);
    return -1;
}

static int pname_df(const pindex *ix, const char *name) {
    char **f = ix->npname ? bsearch(&name, ix->pname, ix->npname, sizeof *ix->pname, cmp_str) : NULL;
    return f ? ix->pdf[f - ix->pname] : 0;
}

/* Tokenises every record once: O(total text of the catalog). */
static pindex *index_build(const x4_catalog *cat) {
    pindex *ix = calloc(1, sizeof *ix);
    if (!ix) return NULL;
    ix->ncat = x4_catalog_count(cat);
    size_t nc = ix->ncat ? ix->ncat : 1;
    ix->docs = calloc(nc, sizeof *ix->docs);
    ix->dl = calloc(nc, sizeof *ix->dl);
    if (!ix->docs || !ix->dl) goto err;
    for (size_t i = 0; i < ix->ncat; i++) {
        const x4_service *s = x4_catalog_at(cat, i);
        doc_build b = {&ix->v, &ix->docs[i], 0, 0};
        doc_text(&b, s->id, W_NAME);
        if (!s->name || strcmp(s->name, s->id)) doc_text(&b, s->name, W_NAME);
        size_t k;
        json_t *t;
        json_array_foreach(s->tags, k, t) doc_text(&b, json_string_value(t), W_TAG);
        doc_text(&b, s->description, W_DESC);
        doc_schema(&b, s->input, W_INPUT);
        doc_schema(&b, s->output, W_OUTPUT);
        if (b.oom) goto err;
        for (size_t j = 0; j < ix->docs[i].n; j++) {
            ix->v.df[ix->docs[i].t[j].tok]++;
            ix->dl[i] += ix->docs[i].t[j].tf;
        }
        ix->avgdl += ix->dl[i];
    }
    ix->avgdl = ix->ncat ? ix->avgdl / (double)ix->ncat : 1;
    if (ix->avgdl <= 0) ix->avgdl = 1;
    size_t nv = ix->v.n ? ix->v.n : 1;
    ix->idf = calloc(nv, sizeof *ix->idf);
    ix->v.post = calloc(nv, sizeof *ix->v.post);
    ix->v.npost = calloc(nv, sizeof *ix->v.npost);
    ix->v.verb = calloc(nv, 1);
    if (!ix->idf || !ix->v.post || !ix->v.npost || !ix->v.verb) goto err;
    /* the first word of a verb_noun id is a verb the clause splitter should know */
    for (size_t i = 0; i < ix->ncat; i++) {
        const char *id = x4_catalog_at(cat, i)->id, *us = strchr(id, '_');
        char w[TOK_MAX + 1];
        if (!us || us == id || (size_t)(us - id) > TOK_MAX) continue;
        for (size_t k = 0; k < (size_t)(us - id); k++) w[k] = (char)tolower((unsigned char)id[k]);
        w[us - id] = 0;
        stem(w);
        /* ... when the description opens with it too ("scan_isbn": "Scan the ISBN ..."); a
         * noun-first id ("pollutant_level": "Get the level ...") names no verb */
        const char *d = x4_catalog_at(cat, i)->description;
        char dw[TOK_MAX + 1];
        size_t dn = 0;
        while (d && *d && !word_char((unsigned char)*d)) d++;
        while (d && word_char((unsigned char)d[dn]) && dn < TOK_MAX) {
            dw[dn] = (char)tolower((unsigned char)d[dn]);
            dn++;
        }
        dw[dn] = 0;
        stem(dw);
        if (strcmp(w, dw)) continue;
        int t = vocab_find(&ix->v, w);
        if (t >= 0) ix->v.verb[t] = 1;
    }
    for (size_t t = 0; t < ix->v.n; t++) {
        /* BM25's idf, kept positive: log(1 + (N - df + 0.5) / (df + 0.5)) */
        double df = ix->v.df[t];
        ix->idf[t] = log(1.0 + ((double)ix->ncat - df + 0.5) / (df + 0.5));
        if (ix->idf[t] > ix->max_idf) ix->max_idf = ix->idf[t];
        ix->v.post[t] = malloc((size_t)(ix->v.df[t] ? ix->v.df[t] : 1) * sizeof(posting));
        if (!ix->v.post[t]) goto err;
    }
    if (ix->max_idf == 0) ix->max_idf = 1;
    for (size_t i = 0; i < ix->ncat; i++)
        for (size_t j = 0; j < ix->docs[i].n; j++) {
            const tw *x = &ix->docs[i].t[j];
            ix->v.post[x->tok][ix->v.npost[x->tok]++] = (posting){(int)i, x->w, x->tf};
        }
    if (pname_build(ix, cat)) goto err;
    return ix;
err:
    index_free(ix);
    return NULL;
}

/* The index cache: the last INDEX_CACHE indexes, keyed by catalog version and size, shared
 * (reference counted) so a batch run or the engine tokenises a catalog once, not per task. */
#define INDEX_CACHE 4
static pthread_mutex_t index_mu = PTHREAD_MUTEX_INITIALIZER;
static pindex *index_cache[INDEX_CACHE];
static unsigned long index_tick;

static void index_key(const x4_catalog *cat, char *key, size_t n) {
    const char *v = x4_catalog_version(cat);
    snprintf(key, n, "%s/%zu", v ? v : "-", x4_catalog_count(cat));
}

static pindex *index_get(const x4_catalog *cat) {
    char key[48];
    index_key(cat, key, sizeof key);
    pthread_mutex_lock(&index_mu);
    for (size_t i = 0; i < INDEX_CACHE; i++)
        if (index_cache[i] && !strcmp(index_cache[i]->key, key)) {
            pindex *ix = index_cache[i];
            ix->refs++;
            ix->tick = ++index_tick;
            pthread_mutex_unlock(&index_mu);
            return ix;
        }
    pthread_mutex_unlock(&index_mu);
    /* built outside the lock: two threads may build the same index; one is kept */
    pindex *ix = index_build(cat);
    if (!ix) return NULL;
    snprintf(ix->key, sizeof ix->key, "%s", key);
    ix->refs = 2; /* the caller's and the cache's */
    pthread_mutex_lock(&index_mu);
    size_t slot = 0;
    for (size_t i = 0; i < INDEX_CACHE; i++) {
        if (index_cache[i] && !strcmp(index_cache[i]->key, key)) { /* lost the race: use theirs */
            pindex *old = index_cache[i];
            old->refs++;
            pthread_mutex_unlock(&index_mu);
            index_free(ix);
            return old;
        }
        if (!index_cache[i] || (index_cache[slot] && index_cache[i]->tick < index_cache[slot]->tick)) slot = i;
    }
    pindex *evict = index_cache[slot];
    index_cache[slot] = ix;
    ix->tick = ++index_tick;
    if (evict && --evict->refs > 0) evict = NULL;
    pthread_mutex_unlock(&index_mu);
    index_free(evict);
    return ix;
}

static void index_put(pindex *ix) {
    if (!ix) return;
    pthread_mutex_lock(&index_mu);
    int last = --ix->refs == 0;
    pthread_mutex_unlock(&index_mu);
    if (last) index_free(ix);
}

static int mctx_alloc(mctx *m) {
    m->ix = index_get(m->cat);
    if (!m->ix) return -1;
    m->ncat = m->ix->ncat;
    size_t n = m->ncat ? m->ncat : 1;
    m->used = calloc(n, 1);
    m->acc = calloc(n, sizeof *m->acc);
    m->hits = calloc(n, sizeof *m->hits);
    m->strong = calloc(n, 1);
    m->bm25 = calloc(n, sizeof *m->bm25);
    return m->used && m->acc && m->hits && m->strong && m->bm25 ? 0 : -1;
}

/* Request verbs of about the same meaning, by group (general English; a task says "propose"
 * or "curate" where a service is named "suggest_..." or "create_..."). A clause's words are
 * looked up here and the other members of their group join its query at SYN_W. Stemmed once. */
#define SYN_W 0.6
#define SYN_MORE 33      /* the groups from this one on join at SYN_MORE_W (0.2 / 0.6: worse) */
#define SYN_MORE_W 0.4
#define DERIV_W 0.5      /* derived forms of a clause's words (DERIV; 0.3 / 0.7 about the same) */
static const char *const SYNONYMS[] = {
    "analyze analyse examine evaluate assess scrutinize inspect review study investigate appraise judge",
    "create make build generate produce fabricate construct compose craft develop devise curate",
    "get obtain retrieve fetch acquire procure gather collect pull",
    "find search seek locate look discover",
    "buy purchase order",
    "show display exhibit present demonstrate visualize",
    "suggest recommend propose advise",
    "plan organize organise arrange schedule orchestrate coordinate prepare",
    "notify inform alert tell remind",
    "send email message deliver dispatch",
    "calculate compute determine estimate measure quantify ascertain",
    "predict forecast project extrapolate anticipate",
    "check verify validate confirm test",
    "monitor track observe watch oversee supervise",
    "book reserve",
    "identify recognize recognise detect discern classify",
    "update modify change edit adjust revise amend",
    "improve optimize optimise enhance refine",
    "delete remove cancel erase",
    "translate convert transform transcode",
    "summarize summarise condense",
    "sort rank",
    "install configure deploy",
    "register enroll enrol subscribe",
    "hire employ recruit",
    "pay settle",
    "share publish post distribute circulate broadcast",
    "start begin initiate launch commence trigger",
    "run execute perform conduct",
    "finish complete finalize finalise conclude",
    "store save record log archive",
    "compare contrast",
    "submit apply file",
    /* from here (SYN_MORE): more groups, by the verbs that open service names generally */
    "provide give supply furnish offer extend",
    "record document log register note capture",
    "update refresh",
    "identify pinpoint spot",
    "collect gather compile assemble aggregate accumulate",
    "describe outline explain detail",
    "promote advertise market advance publicize",
    "design sketch draft layout",
    "decorate furnish outfit style",
    "parse sift filter extract",
    "report raise flag lodge",
    "assign allocate delegate appoint designate",
    "choose select pick opt decide",
    "fix repair resolve troubleshoot solve mend",
    "complete finish conclude wrap",
    "assess evaluate rate grade score critique appraise",
    "review critique comment",
    "hire recruit employ engage enlist",
    "rent lease hire",
    "reserve book secure",
    "cancel revoke withdraw terminate",
    "teach train educate coach tutor instruct",
    "cook bake",
    "grow plant cultivate",
    "clean wash sanitize disinfect",
    "transport ship move transfer carry",
    "connect link join pair attach",
    "protect secure safeguard guard",
    "reduce decrease lower minimize mitigate",
    "increase raise boost maximize",
    "combine merge integrate unite blend mix",
    "divide split separate partition segment cluster",
    "list enumerate itemize catalog",
    "display showcase feature",
    "visualize plot chart graph draw map",
    "write compose draft author pen",
    "edit proofread revise correct polish tweak retouch",
    "publish post release upload",
    "notify contact message",
    "treat cure heal remedy",
    "prescribe dispense administer",
    "manage handle administer control oversee supervise",
    "organize host hold",
    "locate find",
    "explore discover browse research investigate delve probe",
    "pay charge bill invoice",
    "invest fund finance",
    "attend join participate",
    "sell trade",
    "simulate model emulate",
    NULL};
#define SYN_MAX 512
static char syn_word[SYN_MAX][TOK_MAX + 1];
static int syn_group[SYN_MAX];
static size_t syn_n;
static pthread_once_t syn_once = PTHREAD_ONCE_INIT;

static void syn_init(void) {
    for (int g = 0; SYNONYMS[g]; g++) {
        const char *p = SYNONYMS[g];
        while (*p && syn_n < SYN_MAX) {
            while (*p == ' ') p++;
            size_t n = strcspn(p, " ");
            if (n && n <= TOK_MAX) {
                memcpy(syn_word[syn_n], p, n);
                syn_word[syn_n][n] = 0;
                stem(syn_word[syn_n]);
                syn_group[syn_n++] = g;
            }
            p += n;
        }
    }
}

/* Derived forms of a stemmed word the catalog may use instead ("adjustment" for adjust,
 * "prediction" for predict): the word without / with a derivational suffix, stemmed again. */
static const char *const DERIV[] = {"ment", "ness", "ion", "ation", "ative", "ive", "al", "ity", "ance", "ence",
                                    "or", "ist", "ic", "ical", "ful", "at", "ant", "ent", NULL};

/* Adds the catalog word w to the clause's query at weight wt unless it is there already. */
static void clause_expand(mctx *m, mclause *c, size_t cap, const char *w, double wt) {
    int id = vocab_find(&m->ix->v, w);
    if (id < 0) return;
    for (size_t k = 0; k < c->nids + c->nexp; k++)
        if (c->ids[k] == id) return;
    if (c->nids + c->nexp >= cap) return;
    c->xw[c->nexp] = wt;
    c->ids[c->nids + c->nexp++] = id;
}

static void clause_derive(mctx *m, mclause *c, size_t cap, const char *t, double wt) {
    size_t n = strlen(t);
    char v[TOK_MAX + 8];
    for (const char *const *d = DERIV; *d; d++) {
        size_t k = strlen(*d);
        if (n > k + 3 && ends(t, n, *d)) { /* adjustment -> adjust */
            memcpy(v, t, n - k);
            v[n - k] = 0;
            stem(v);
            clause_expand(m, c, cap, v, wt);
        }
        if (n + k <= TOK_MAX && n >= 4) { /* predict -> prediction */
            snprintf(v, sizeof v, "%s%s", t, *d);
            stem(v);
            clause_expand(m, c, cap, v, wt);
        }
    }
}

static void clause_prepare(mctx *m, mclause *c) {
    strset_free(&c->toks);
    free(c->ids);
    c->ids = NULL;
    c->nids = c->nexp = 0;
    c->norm = c->known = 0;
    tokenize(m->task + c->start, c->end - c->start, strset_add_cb, &c->toks);
    pthread_once(&syn_once, syn_init);
    size_t cap = c->toks.n * 40 + SYN_MAX;
    c->ids = calloc(cap, sizeof *c->ids);
    free(c->xw);
    c->xw = calloc(cap, sizeof *c->xw);
    if (!c->xw) {
        free(c->ids);
        c->ids = NULL;
    }
    for (size_t i = 0; c->ids && i < c->toks.n; i++) {
        int id = vocab_find(&m->ix->v, c->toks.v[i]);
        if (id >= 0) {
            c->ids[c->nids++] = id;
            c->norm += m->ix->idf[id];
            c->known += m->ix->idf[id];
        } else {
            c->norm += 0.5 * m->ix->max_idf;
        }
    }
    /* synonyms of its words (not for the whole task: its context stays its own words) */
    if (c->norm > 0) c->known /= c->norm;
    if (!c->ids || c == &m->whole) return;
    for (size_t i = 0; i < c->toks.n; i++)
        for (size_t a = 0; a < syn_n; a++) {
            if (strcmp(syn_word[a], c->toks.v[i])) continue;
            for (size_t b = 0; b < syn_n; b++) {
                if (syn_group[b] != syn_group[a] || strset_has(&c->toks, syn_word[b])) continue;
                int id = vocab_find(&m->ix->v, syn_word[b]);
                int dup = id < 0;
                for (size_t k = 0; !dup && k < c->nids + c->nexp; k++) dup = c->ids[k] == id;
                double sw = syn_group[b] >= SYN_MORE || syn_group[a] >= SYN_MORE ? SYN_MORE_W : SYN_W;
                if (!dup && sw > 0 && c->nids + c->nexp < cap) {
                    c->xw[c->nexp] = sw;
                    c->ids[c->nids + c->nexp++] = id;
                }
            }
        }
    for (size_t i = 0; i < c->toks.n; i++) clause_derive(m, c, cap, c->toks.v[i], DERIV_W);
}

void x4_planner_params_default(x4_planner_params *p) {
    p->bm25_k1 = 1.2;
    p->bm25_b = 0.5;
    p->match_min = 0.30;
    p->name_bonus = 0.0;
    p->context_weight = 1.0;
    p->chain_bonus = 0.3;
    p->cost_weight = 0.0;
    p->sim_min = 0.30;
    p->sim_typed = 0.60;
    p->wire_bonus = 0.3;
    p->fill_bonus = 0.25;
    p->step_cost = 0.8;
    p->link_bonus = 0.1;
}

double x4_planner_rank(const x4_planner_params *p, const x4_planner_features *f) {
    return f->bm25 + p->name_bonus * f->name_share + p->context_weight * f->context + p->chain_bonus * f->fed -
           p->cost_weight * f->price_rel;
}

/* BM25 of a clause against every service into m->acc (normalised by the clause's Σ idf), with
 * hits (distinct clause tokens found) and strong (a name or tag token found). */
static void bm25_clause(mctx *m, const mclause *c) {
    const pindex *ix = m->ix;
    double k1 = m->prm.bm25_k1, bb = m->prm.bm25_b;
    memset(m->acc, 0, m->ncat * sizeof *m->acc);
    memset(m->hits, 0, m->ncat * sizeof *m->hits);
    memset(m->strong, 0, m->ncat);
    if (c->norm <= 0) return;
    for (size_t k = 0; k < c->nids + c->nexp; k++) {
        int t = c->ids[k];
        double wt = k < c->nids ? 1.0 : c->xw[k - c->nids];
        for (size_t p = 0; p < ix->v.npost[t]; p++) {
            const posting *ps = &ix->v.post[t][p];
            double tf = ps->tf, norm = k1 * (1 - bb + bb * ix->dl[ps->svc] / ix->avgdl);
            m->acc[ps->svc] += wt * ix->idf[t] * tf * (k1 + 1) / (tf + norm);
            m->hits[ps->svc]++;
            if (ps->w >= W_TAG && k < c->nids) m->strong[ps->svc] = 1;
        }
    }
    for (size_t i = 0; i < m->ncat; i++)
        if (m->hits[i]) m->acc[i] /= c->norm;
}

static double name_share(const mctx *m, size_t i, const mclause *c) {
    const sdoc *d = &m->ix->docs[i];
    size_t named = 0;
    for (size_t a = 0; a < d->nname; a++)
        for (size_t b = 0; b < c->nids; b++)
            if (d->name[a] == c->ids[b]) {
                named++;
                break;
            }
    return d->nname ? (double)named / (double)d->nname : 0;
}

static double fed_share(const mctx *m, size_t i);

/* Scores every service against a clause into m->acc (and hits/strong): with rank, the final
 * x4_planner_rank() value; without, BM25 plus the name bonus (relevance alone). */
static void score_clause_r(mctx *m, const mclause *c, int rank) {
    bm25_clause(m, c);
    uint64_t maxp = 0;
    if (rank)
        for (size_t i = 0; i < m->ncat; i++)
            if (m->hits[i] && price_of(x4_catalog_at(m->cat, i)) > maxp) maxp = price_of(x4_catalog_at(m->cat, i));
    for (size_t i = 0; i < m->ncat; i++) {
        if (!m->hits[i]) continue;
        x4_planner_features f = {m->acc[i], name_share(m, i, c), 0, 0, 0};
        m->bm25[i] = m->acc[i];
        if (rank) {
            f.context = m->ctx ? m->ctx[i] : 0;
            /* the chaining share only where it can matter: a service that could be eligible (it
             * costs a lookup per required input and planned step) */
            double bound = x4_planner_rank(&m->prm, &f) + fabs(m->prm.chain_bonus) + fabs(m->prm.cost_weight);
            int may = (m->strong[i] || m->hits[i] >= 2) && bound >= m->prm.match_min;
            f.fed = m->prm.chain_bonus != 0 && may ? fed_share(m, i) : 0;
            f.price_rel = maxp ? (double)price_of(x4_catalog_at(m->cat, i)) / (double)maxp : 0;
            m->acc[i] = x4_planner_rank(&m->prm, &f);
        } else {
            m->acc[i] = f.bm25 + m->prm.name_bonus * f.name_share;
        }
    }
}

static void lua_rescore(mctx *m, const mclause *c);

static void score_clause(mctx *m, const mclause *c) {
    score_clause_r(m, c, c != &m->whole);
    if (m->lua && c != &m->whole) lua_rescore(m, c);
}

static int eligible(const mctx *m, size_t i) {
    return m->hits[i] && m->acc[i] >= m->prm.match_min && (m->strong[i] || m->hits[i] >= 2);
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

/* ---- the Lua seam (policies/matching.lua) ------------------------------------------------ */

/* The tunable weights by name, for matching.weights: {name, offset in x4_planner_params, min, max}. */
static const struct {
    const char *name;
    size_t off;
    double lo, hi;
} WEIGHTS[] = {
    {"bm25_k1", offsetof(x4_planner_params, bm25_k1), 0, 10},
    {"bm25_b", offsetof(x4_planner_params, bm25_b), 0, 1},
    {"match_min", offsetof(x4_planner_params, match_min), -100, 100},
    {"name_bonus", offsetof(x4_planner_params, name_bonus), -100, 100},
    {"context_weight", offsetof(x4_planner_params, context_weight), -100, 100},
    {"chain_bonus", offsetof(x4_planner_params, chain_bonus), -100, 100},
    {"cost_weight", offsetof(x4_planner_params, cost_weight), -100, 100},
    {"sim_min", offsetof(x4_planner_params, sim_min), 0, 1},
    {"sim_typed", offsetof(x4_planner_params, sim_typed), 0, 1},
    {"wire_bonus", offsetof(x4_planner_params, wire_bonus), -100, 100},
    {"fill_bonus", offsetof(x4_planner_params, fill_bonus), -100, 100},
    {"step_cost", offsetof(x4_planner_params, step_cost), -100, 100},
    {"link_bonus", offsetof(x4_planner_params, link_bonus), -100, 100},
};

json_t *x4_planner_params_json(const x4_planner_params *p) {
    json_t *o = json_object();
    for (size_t i = 0; o && i < sizeof WEIGHTS / sizeof *WEIGHTS; i++)
        json_object_set_new(o, WEIGHTS[i].name, json_real(*(const double *)((const char *)p + WEIGHTS[i].off)));
    return o;
}

int x4_planner_params_set(x4_planner_params *p, const json_t *w, char *err, size_t errlen) {
    if (json_is_array(w) && json_array_size(w) == 0) return 0; /* an empty Lua table: no change */
    if (!json_is_object(w)) {
        x4_seterr(err, errlen, "matching.weights: expected a table of weights");
        return -1;
    }
    x4_planner_params q = *p;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)w, k, v) {
        size_t i = 0;
        while (i < sizeof WEIGHTS / sizeof *WEIGHTS && strcmp(WEIGHTS[i].name, k)) i++;
        if (i == sizeof WEIGHTS / sizeof *WEIGHTS) {
            x4_seterr(err, errlen, "matching.weights: unknown weight '%.64s'", k);
            return -1;
        }
        double d = json_number_value(v);
        if (!json_is_number(v) || !isfinite(d) || d < WEIGHTS[i].lo || d > WEIGHTS[i].hi) {
            x4_seterr(err, errlen, "matching.weights: %s must be a number in [%g, %g]", k, WEIGHTS[i].lo,
                      WEIGHTS[i].hi);
            return -1;
        }
        *(double *)((char *)&q + WEIGHTS[i].off) = d;
    }
    *p = q;
    return 0;
}

int x4_planner_params_lua(x4_lua_rt *rt, x4_planner_params *p, char *err, size_t errlen) {
    if (!rt || !x4_lua_has_hook(rt, "matching.weights")) return 1;
    json_t *args = json_pack("[o]", x4_planner_params_json(p)), *res = NULL;
    int rc = args ? x4_lua_call(rt, "matching.weights", args, &res, err, errlen) : -1;
    json_decref(args);
    if (rc == 0) rc = x4_planner_params_set(p, res, err, errlen);
    else if (rc < 0 && !args) x4_seterr(err, errlen, "out of memory");
    json_decref(res);
    return rc;
}

/* matching.score over the clause's LUA_TOP candidates by the built-in rank: each gets the
 * value score(features) returns instead; the others keep the built-in rank. All or nothing: a
 * failing call (logged by the runtime) or a value that is not a finite number leaves the
 * built-in ranks and turns the hook off for the rest of this plan. */
#define LUA_TOP 6
static void lua_rescore(mctx *m, const mclause *c) {
    size_t top[LUA_TOP], n = 0;
    double val[LUA_TOP];
    for (; n < LUA_TOP; n++) {
        ssize_t b = -1;
        for (size_t i = 0; i < m->ncat; i++) {
            if (!m->hits[i]) continue;
            int dup = 0;
            for (size_t k = 0; k < n; k++) dup |= top[k] == i;
            if (!dup && (b < 0 || better(m, i, (size_t)b))) b = (ssize_t)i;
        }
        if (b < 0) break;
        top[n] = (size_t)b;
    }
    uint64_t maxp = 0;
    for (size_t i = 0; i < m->ncat; i++)
        if (m->hits[i] && price_of(x4_catalog_at(m->cat, i)) > maxp) maxp = price_of(x4_catalog_at(m->cat, i));
    for (size_t k = 0; k < n; k++) {
        size_t i = top[k];
        const x4_service *s = x4_catalog_at(m->cat, i);
        char price[24];
        snprintf(price, sizeof price, "%llu", (unsigned long long)price_of(s));
        /* the features again, as x4_planner_rank saw them (m->acc holds the rank now) */
        double bm = m->bm25[i];
        json_t *f = json_pack("{s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:s}", "service", s->id, "clause",
                              "", "bm25", bm, "name_share", name_share(m, i, c), "context", m->ctx ? m->ctx[i] : 0.0,
                              "fed", fed_share(m, i), "price_rel", maxp ? (double)price_of(s) / (double)maxp : 0.0,
                              "rank", m->acc[i], "price", price);
        if (f) json_object_set_new(f, "clause", json_stringn(m->task + c->start, c->end - c->start));
        json_t *args = f ? json_pack("[o]", f) : NULL, *res = NULL;
        char err[256];
        int rc = args ? x4_lua_call(m->lua, "matching.score", args, &res, err, sizeof err) : -1;
        json_decref(args);
        double v = json_number_value(res);
        int ok = rc == 0 && json_is_number(res) && isfinite(v);
        if (rc == 0 && !ok) x4_warn("matcher", "matching.score: expected a finite number for %s; built-in ranks used", s->id);
        json_decref(res);
        if (!ok) {
            m->lua = NULL;
            return;
        }
        val[k] = v;
    }
    for (size_t k = 0; k < n; k++) m->acc[top[k]] = val[k];
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
    "execute", "use", "apply", "assign", "register", "submit", "request", "accompany", "acquire", "adjust",
    "align", "allocate", "appraise", "approve", "arrange", "ascertain", "attach", "attend", "audit", "authorize",
    "back", "begin", "borrow", "calibrate", "cancel", "capture", "categorize", "change", "choose", "clean",
    "compile", "complete", "compose", "configure", "confirm", "connect", "construct", "consult", "coordinate",
    "copy", "correct", "craft", "customize", "deduce", "define", "deliver", "demonstrate", "deploy", "describe",
    "design", "develop", "diagnose", "distribute", "edit", "employ", "enable", "enroll", "ensure", "examine",
    "explain", "explore", "file", "fill", "finalize", "fix", "grab", "handle", "help", "hire", "implement",
    "import", "improve", "include", "incorporate", "initiate", "inspect", "install", "integrate", "invite",
    "issue", "join", "label", "load", "log", "maintain", "manage", "map", "modify", "move", "negotiate",
    "operate", "organize", "organise", "personalize", "pick", "place", "play", "predict", "process", "promote",
    "propose", "purchase", "query", "rate", "read", "receive", "reserve", "reset", "resolve", "respond",
    "restore", "revise", "rent", "replace", "reply", "research", "select", "sell", "ship", "sign", "simulate",
    "sift", "study", "suggest", "supply", "support", "take", "teach", "tell", "train", "transform", "tune",
    "turn", "upgrade", "view", "vote", "watch", NULL};

/* A '.' at i that ends an abbreviation rather than a sentence: the next word starts in lower
 * case ("500 sq. ft. room", "e.g. the"). */
static int abbrev_dot(const char *t, size_t i, size_t len) {
    if (t[i] != '.') return 0;
    /* an initial ("F. Scott") or a title ("Dr. Smith", "Mr.", "St.") */
    size_t a = i;
    while (a > 0 && isalpha((unsigned char)t[a - 1])) a--;
    if (a == 0 || !word_char((unsigned char)t[a - 1])) {
        size_t n = i - a;
        if (n == 1 && isupper((unsigned char)t[a])) {
            /* "F. Scott" is an initial; "in Farmland A. Then ..." ends a sentence: a function
             * word, a request marker or a request verb follows */
            size_t j = i + 1, k = 0;
            char nx[TOK_MAX + 1];
            while (j < len && isspace((unsigned char)t[j])) j++;
            while (j < len && k < TOK_MAX && isalpha((unsigned char)t[j]))
                nx[k++] = (char)tolower((unsigned char)t[j++]);
            nx[k] = 0;
            static const char *const NEXT[] = {"please", "lastly", "additionally", "following", "thereafter",
                                               "afterward", "moreover", "furthermore", "ultimately", NULL};
            int ends_sentence = k && is_stopword(nx);
            for (const char *const *q = NEXT; k && !ends_sentence && *q; q++) ends_sentence = !strcmp(*q, nx);
            for (const char *const *q = VERBS; k && !ends_sentence && *q; q++) ends_sentence = !strcmp(*q, nx);
            return !ends_sentence;
        }
        /* titles come before a name; "Inc." or "Jr." may well end a sentence */
        static const char *const TITLES[] = {"Dr", "Mr", "Mrs", "Ms", "Prof", "St", "vs", "approx", NULL};
        for (const char *const *q = TITLES; *q; q++)
            if (strlen(*q) == n && !strncmp(t + a, *q, n)) return 1;
    }
    size_t j = i + 1;
    while (j < len && isspace((unsigned char)t[j])) j++;
    return j < len && islower((unsigned char)t[j]);
}

static size_t scan_words(const char *t, word *w, size_t max) {
    size_t n = 0, i = 0, len = strlen(t);
    int in_quote = 0, brk = 1, comma = 0;
    while (i < len && n < max) {
        unsigned char ch = (unsigned char)t[i];
        if (!word_char(ch)) {
            if (ch == '"') in_quote = !in_quote;
            else if (!in_quote && (ch == ';' || ch == '\n' ||
                                   ((ch == '.' || ch == '!' || ch == '?') &&
                                    (i + 1 >= len || isspace((unsigned char)t[i + 1])) && !abbrev_dot(t, i, len))))
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
    int t = vocab_find(&m->ix->v, s);
    return t >= 0 && m->ix->v.verb[t];
}

/* "crafting", "creating", "planning": a verb's -ing form (built-in verbs or ids' verbs). */
static int gerund_is_verb(const mctx *m, const word *w) {
    size_t n = strlen(w->low);
    if (n < 6 || !ends(w->low, n, "ing")) return 0;
    if (word_is_verb(m, w)) return 1;
    word b = *w;
    b.low[n - 3] = 0; /* craft(ing) */
    if (word_is_verb(m, &b)) return 1;
    b.low[n - 3] = 'e'; /* creat(e) */
    b.low[n - 2] = 0;
    if (word_is_verb(m, &b)) return 1;
    if (n >= 7 && w->low[n - 4] == w->low[n - 5]) { /* plan(n)ing */
        b.low[n - 4] = 0;
        if (word_is_verb(m, &b)) return 1;
    }
    return 0;
}

/* Words that open a phrase about an earlier step ("after ...", "once ...", "upon ..."). */
static int is_subordinator(const char *w) {
    static const char *const SUB[] = {"after", "once", "upon", "following", "having", "when", "whenever", "since",
                                      "with", "given", "based", "considering", "regarding", "as", "if", "now",
                                      "while", "according", NULL};
    for (const char *const *s = SUB; *s; s++)
        if (!strcmp(*s, w)) return 1;
    return 0;
}

static int is_determiner(const char *w) {
    static const char *const D[] = {"the", "this", "that", "these", "those", "its", "their", "his", "her", "our",
                                    "my", "it", "they", "he", "she", NULL};
    for (const char *const *s = D; *s; s++)
        if (!strcmp(*s, w)) return 1;
    return 0;
}

static int is_copula(const char *w) {
    return !strcmp(w, "is") || !strcmp(w, "are") || !strcmp(w, "was") || !strcmp(w, "were") || !strcmp(w, "has") ||
           !strcmp(w, "have");
}

/* Words that may stand between "and"/"," and the verb of a new request. */
static int is_filler(const char *w) {
    static const char *const F[] = {"also", "additionally", "please", "kindly", "help", "me", "us", "further", NULL};
    for (const char *const *s = F; *s; s++)
        if (!strcmp(*s, w)) return 1;
    return 0;
}

/* A verb form that is no request: "-ing" ("taking into account"), "-ed" or a third person
 * "-s" ("that accepts ... and produces ..."). */
static int inflected(const char *w) {
    size_t n = strlen(w);
    if (n <= 4) return 0;
    if (ends(w, n, "ing") || ends(w, n, "ed")) return 1;
    return w[n - 1] == 's' && !ends(w, n, "ss") && !ends(w, n, "us") && !ends(w, n, "is");
}

static size_t content_words(const word *w, size_t a, size_t b) {
    size_t k = 0;
    for (size_t i = a; i < b; i++) {
        int digits = strspn(w[i].low, "0123456789") == strlen(w[i].low);
        if (!digits && !w[i].in_quote && strlen(w[i].low) >= 2 && !is_stopword(w[i].low)) k++;
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
        /* "..., followed by crafting a summary": a next request as a gerund */
        if (!strcmp(w[i].low, "followed") && i + 2 < n && !strcmp(w[i + 1].low, "by") && !w[i + 2].in_quote &&
            gerund_is_verb(m, &w[i + 2]) &&
            content_words(w, i + 2, n) >= 2) {
            cut[i] = 1;
            skip[i] = skip[i + 1] = 1;
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
        /* "and also provide", "and help schedule", ", please check": a filler before the verb */
        size_t vj = next;
        while (vj + 1 < n && vj < next + 3 && !w[vj].in_quote && is_filler(w[vj].low)) vj++;
        if (!word_is_verb(m, &w[vj]) || inflected(w[vj].low)) continue;
        size_t a = i;
        while (a > 0 && !cut[a]) a--;
        size_t b = next + 1;
        while (b < n && !cut[b]) b++;
        if (content_words(w, a, i) < 2 || content_words(w, next, b) < 3) continue;
        cut[next] = 1;
        if (is_and) skip[i] = 1;
        /* "After analysing the results, provide ...": the part before the comma refers back
         * to earlier work; it is no sub-goal of its own and is left out */
        size_t a0 = a;
        while (a0 < i && skip[a0]) a0++;
        if (at_comma && a0 < i && is_subordinator(w[a0].low))
            for (size_t k = a0; k < i; k++) skip[k] = 1;
    }
    /* a clause opening with a subordinator ("Upon completion of these tasks, finally ...") and
     * followed by another clause of the same sentence refers back: left out. A sentence that
     * only describes ("The deadline is on May 1.") states facts, not a sub-goal: its literals
     * still count, its words pick no service. */
    for (size_t a = 0; a < n; a++) {
        if (!cut[a] || skip[a]) continue;
        size_t b = a + 1;
        while (b < n && !cut[b]) b++;
        if (is_subordinator(w[a].low) && b < n && !w[b].brk_before)
            for (size_t k = a; k < b; k++) skip[k] = 1;
        if (w[a].brk_before && is_determiner(w[a].low)) {
            for (size_t k = a + 1; k < b && k < a + 8; k++) {
                if (word_is_verb(m, &w[k]) && strcmp(w[k].low, "review") && !is_copula(w[k].low)) break;
                if (is_copula(w[k].low)) {
                    int passive = 0; /* "The issue should be evaluated" asks for something */
                    for (size_t q = k + 1; q < b && q < k + 3; q++) passive |= ends(w[q].low, strlen(w[q].low), "ed");
                    if (!passive)
                        for (size_t q = a; q < b; q++) skip[q] = 1;
                    break;
                }
            }
        }
    }
    /* trailing "and" before a cut (", and then") is dropped too */
    size_t i = 0, pend = (size_t)-1;
    while (i < n && m->ncl < MAX_CLAUSES) {
        while (i < n && skip[i]) i++;
        if (i >= n) break;
        size_t a = i, b = i + 1;
        while (b < n && !cut[b]) b++;
        size_t last = b;
        while (last > a && skip[last - 1]) last--;
        /* a clause that names nothing but request verbs and fillers, and holds no value ("Can
         * you help me?", "Can you help analyze?") is no request of its own: it opens the next */
        int bare = last > a && b < n;
        for (size_t k = a; bare && k < last; k++)
            bare = !w[k].in_quote && !isdigit((unsigned char)w[k].low[0]) &&
                   (k == a || !isupper((unsigned char)m->task[w[k].start])) &&
                   (!content_words(w, k, k + 1) || word_is_verb(m, &w[k]) || is_filler(w[k].low));
        if (bare) {
            if (pend == (size_t)-1) pend = w[a].start;
            i = b;
            continue;
        }
        if (last > a) {
            mclause *c = &m->cl[m->ncl++];
            c->start = pend != (size_t)-1 ? pend : w[a].start;
            pend = (size_t)-1;
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
/* Units and what a value in them measures ("30 minutes" is a duration, "$200" a price): the
 * measure's words join a literal's context. First word: the unit(s); the rest: the measure. */
static const char *const UNITS[][2] = {
    {"minute minutes min mins hour hours hr hrs second seconds sec secs day days week weeks month months",
     "duration time period length"},
    {"dollar dollars usd eur euro euros gbp $", "price cost budget amount fee"},
    {"kg kilogram kilograms gram grams g lb lbs pound pounds ton tons tonnes", "weight mass"},
    {"km kilometer kilometers kilometre kilometres mile miles meter meters metre metres feet ft",
     "distance length height width size"},
    {"degree degrees celsius fahrenheit", "temperature"},
    {"percent percentage %", "rate percentage ratio"},
};

static void add_stemmed(strset *s, const char *words) {
    char w[TOK_MAX + 1];
    while (*words) {
        while (*words == ' ') words++;
        size_t n = strcspn(words, " ");
        if (n && n <= TOK_MAX) {
            memcpy(w, words, n);
            w[n] = 0;
            stem(w);
            strset_add_cb(s, w);
        }
        words += n;
    }
}

static void unit_context(const char *t, literal *l, size_t st, size_t en) {
    size_t len = strlen(t);
    for (size_t u = 0; u < sizeof UNITS / sizeof *UNITS; u++) {
        int hit = 0;
        const char *p = UNITS[u][0];
        while (*p && !hit) {
            while (*p == ' ') p++;
            size_t n = strcspn(p, " ");
            if (n == 1 && !isalnum((unsigned char)*p)) { /* a symbol right before or after: "$200", "5%" */
                hit = (st > 0 && t[st - 1] == *p) || (en < len && t[en] == *p);
            } else if (n) {
                /* the word right after the value ("30 minutes", "12.5 kg") */
                size_t b = en;
                while (b < len && (t[b] == ' ' || t[b] == '-')) b++;
                hit = b + n <= len && !strncasecmp(t + b, p, n) &&
                      (b + n == len || !word_char((unsigned char)t[b + n]));
            }
            p += n;
        }
        if (hit) add_stemmed(&l->ctx, UNITS[u][1]);
    }
}

/* The content words right before a value, within its phrase: up to two, across "is", "of",
 * ":", "=", "$" and the like ("passport number ABC1", "a budget of $200", "rate: 5"); for a number
 * followed by a word, that word ("4 guests"). */
static void literal_near(const char *t, literal *l, size_t st, size_t en) {
    size_t p = st, got = 0;
    if (l->kind == L_NUM) { /* "2 guests", "90 minutes": the word after a number names it */
        size_t a = en;
        while (t[a] == ' ' || t[a] == '-') a++;
        size_t b = a;
        while (word_char((unsigned char)t[b])) b++;
        char w[TOK_MAX + 1];
        size_t n = b - a < TOK_MAX ? b - a : TOK_MAX;
        for (size_t k = 0; k < n; k++) w[k] = (char)tolower((unsigned char)t[a + k]);
        w[n] = 0;
        if (n >= 2 && !is_stopword(w) && isalpha((unsigned char)w[0])) {
            stem(w);
            strset_add_cb(&l->near, w);
            return;
        }
    }
    while (p > 0 && got < 2) {
        while (p > 0 && strchr(" \"':=$", t[p - 1])) p--;
        size_t q = p;
        while (q > 0 && word_char((unsigned char)t[q - 1])) q--;
        if (q == p) break;
        char w[TOK_MAX + 1];
        size_t n = p - q < TOK_MAX ? p - q : TOK_MAX;
        for (size_t k = 0; k < n; k++) w[k] = (char)tolower((unsigned char)t[q + k]);
        w[n] = 0;
        p = q;
        if (!strcmp(w, "is") || !strcmp(w, "of") || !strcmp(w, "as") || !strcmp(w, "the") || !strcmp(w, "a") ||
            !strcmp(w, "an") || !strcmp(w, "are") || !strcmp(w, "be") || !strcmp(w, "set") || !strcmp(w, "to"))
            continue;
        if (is_stopword(w) || strspn(w, "0123456789") == n) break;
        stem(w);
        strset_add_cb(&l->near, w);
        got++;
    }
}

static void literal_context(mctx *m, literal *l, size_t st, size_t en) {
    const char *t = m->task;
    size_t len = strlen(t), a = st, b = en;
    int words = 0;
    literal_near(t, l, st, en);
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
    if (l->kind == L_NUM) unit_context(t, l, st, en);
    /* "from Paris to Rome": the preposition right before a value says its role */
    static const char *const ROLE[][2] = {{"from", "origin source departure start"},
                                          {"to", "destination target arrival"},
                                          {"into", "destination target"}};

    size_t p = st;
    while (p > 0 && (t[p - 1] == ' ' || t[p - 1] == '"' || t[p - 1] == '\'')) p--;
    size_t q = p;
    while (q > 0 && isalpha((unsigned char)t[q - 1])) q--;
    for (size_t r = 0; r < sizeof ROLE / sizeof *ROLE; r++)
        if (p - q == strlen(ROLE[r][0]) && !strncasecmp(t + q, ROLE[r][0], p - q) &&
            (q == 0 || !word_char((unsigned char)t[q - 1])))
            add_stemmed(&l->ctx, ROLE[r][1]);
    int place = (p - q == 2 && (!strncasecmp(t + q, "in", 2) || !strncasecmp(t + q, "at", 2))) ||
                (p - q == 4 && !strncasecmp(t + q, "near", 4));
    /* "for Ann Lee": whom it is for */
    int forwhom = p - q == 3 && !strncasecmp(t + q, "for", 3) && isupper((unsigned char)t[st]) &&
                  l->kind == L_STR && !l->date && (q == 0 || !word_char((unsigned char)t[q - 1]));
    if (forwhom) add_stemmed(&l->ctx, "name user customer client recipient patient guest owner person");
    if (l->kind == L_STR && !l->date && place && (q == 0 || !word_char((unsigned char)t[q - 1])))
        add_stemmed(&l->ctx, "location place venue site area region");
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

static void extract_spans(mctx *m, const unsigned char *qmask);
static void extract_lists(mctx *m);

/* A number written as a word ("five years", "twelve"), 2..90; "one" only before a unit
 * ("one hour"). -1 when t[a..b) is none. */
static long number_word(const char *t, size_t a, size_t b) {
    static const char *const W[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                                    "seventeen", "eighteen", "nineteen", "twenty", NULL};
    static const char *const TENS[] = {"thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", NULL};
    long v = -1;
    for (int k = 2; W[k]; k++)
        if (strlen(W[k]) == b - a && !strncasecmp(t + a, W[k], b - a)) v = k;
    for (int k = 0; TENS[k]; k++)
        if (strlen(TENS[k]) == b - a && !strncasecmp(t + a, TENS[k], b - a)) v = 30 + 10 * k;
    if (b - a == 3 && !strncasecmp(t + a, "one", 3)) {
        /* "one hour", "one week": a count; "one of", "this one": not */
        size_t q = b;
        while (t[q] == ' ') q++;
        static const char *const U[] = {"minute", "hour", "day", "week", "month", "year", "night", "person", NULL};
        for (int k = 0; U[k]; k++)
            if (!strncasecmp(t + q, U[k], strlen(U[k])) && !isalpha((unsigned char)t[q + strlen(U[k])])) v = 1;
    }
    /* a word inside a name ("Ocean's Eleven") or a hyphenated compound is left alone */
    if (v >= 0 && ((a > 0 && t[a - 1] == '-') || t[b] == '-' || isupper((unsigned char)t[a]))) return -1;
    return v;
}

static void extract_literals(mctx *m) {
    const char *t = m->task;
    size_t len = strlen(t);
    unsigned char *qmask = calloc(len + 1, 1);
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
                    l->prio = 2;
                    l->end = (size_t)(e - t) + strlen(close);
                    literal_context(m, l, i, (size_t)(e - t) + strlen(close));
                }
                if (qmask) memset(qmask + i, 1, (size_t)(e - t) + strlen(close) - i);
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
            /* a group of a dotted id ("192.168.1.10", "1.2.3") is no number either */
            part = part || (en + 1 < len && t[en] == '.' && isdigit((unsigned char)t[en + 1])) ||
                   (st > 1 && t[st - 1] == '.' && isdigit((unsigned char)t[st - 2]));
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
                    l->end = en;
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
            long nv = number_word(t, i, en);
            if (nv >= 0) {
                literal *l = new_literal(m, L_NUM, i);
                if (l) {
                    char buf[24];
                    snprintf(buf, sizeof buf, "%ld", nv);
                    l->text = x4_strdup(buf);
                    l->num = (double)nv;
                    l->is_int = 1;
                    l->ival = nv;
                    l->end = en;
                    literal_context(m, l, i, en);
                }
            }
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
    if (qmask) extract_spans(m, qmask);
    extract_lists(m);
    free(qmask);
}

static const char *const MONTHS[] = {"january", "february", "march", "april", "may", "june", "july", "august",
                                     "september", "october", "november", "december", "jan", "feb", "mar", "apr",
                                     "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", NULL};

static int month_at(const char *t, size_t i, size_t *en) {
    if (i > 0 && word_char((unsigned char)t[i - 1])) return 0;
    for (const char *const *mo = MONTHS; *mo; mo++) {
        size_t n = strlen(*mo);
        if (!strncasecmp(t + i, *mo, n) && !word_char((unsigned char)t[i + n])) {
            *en = i + n;
            if (t[*en] == '.') (*en)++;
            return 1;
        }
    }
    return 0;
}

static size_t digits_at(const char *t, size_t i) {
    size_t k = 0;
    while (isdigit((unsigned char)t[i + k])) k++;
    return k;
}

/* A date at i: 2024-08-01, 12/05/2022, "September 10, 2023", "10 September 2023",
 * "September 2023". Returns its end, or 0. */
static size_t date_at(const char *t, size_t i) {
    size_t d = digits_at(t, i), e;
    if (i > 0 && word_char((unsigned char)t[i - 1])) return 0;
    if (d == 4 && t[i + 4] == '-' && digits_at(t, i + 5) == 2 && t[i + 7] == '-' && digits_at(t, i + 8) == 2)
        return i + 10;
    if (d >= 1 && d <= 2 && (t[i + d] == '/' || t[i + d] == '.') ) {
        size_t d2 = digits_at(t, i + d + 1);
        if (d2 >= 1 && d2 <= 2 && t[i + d + 1 + d2] == t[i + d]) {
            size_t d3 = digits_at(t, i + d + 2 + d2);
            if (d3 == 2 || d3 == 4) return i + d + 2 + d2 + d3;
        }
    }
    if (month_at(t, i, &e)) {
        size_t p = e;
        while (t[p] == ' ') p++;
        size_t dd = digits_at(t, p);
        if (dd >= 1 && dd <= 2) {
            size_t q = p + dd;
            if (!strncmp(t + q, "st", 2) || !strncmp(t + q, "nd", 2) || !strncmp(t + q, "rd", 2) || !strncmp(t + q, "th", 2)) q += 2;
            size_t r = q;
            if (t[r] == ',') r++;
            while (t[r] == ' ') r++;
            if (digits_at(t, r) == 4) return r + 4;
            return q;
        }
        if (dd == 4) return p + 4;
        return 0;
    }
    if (d >= 1 && d <= 2) {
        size_t p = i + d;
        if (!strncmp(t + p, "st", 2) || !strncmp(t + p, "nd", 2) || !strncmp(t + p, "rd", 2) || !strncmp(t + p, "th", 2)) p += 2;
        if (t[p] != ' ') return 0;
        p++;
        if (month_at(t, p, &e)) {
            size_t r = e;
            if (t[r] == ',') r++;
            while (t[r] == ' ') r++;
            return digits_at(t, r) == 4 ? r + 4 : e;
        }
    }
    return 0;
}

/* A time of day at i: "18:00", "6:30 PM", "09:00:15", "7 pm". Returns its end, or 0. */
static size_t time_at(const char *t, size_t i) {
    size_t d = digits_at(t, i), p = i + d;
    if (d < 1 || d > 2 || (i > 0 && word_char((unsigned char)t[i - 1]))) return 0;
    int clock = 0;
    if (t[p] == ':' && digits_at(t, p + 1) == 2) {
        p += 3;
        clock = 1;
        if (t[p] == ':' && digits_at(t, p + 1) == 2) p += 3;
    }
    if (word_char((unsigned char)t[p])) return 0;
    size_t q = p;
    while (t[q] == ' ') q++;
    if ((t[q] == 'a' || t[q] == 'A' || t[q] == 'p' || t[q] == 'P')) {
        size_t r = q + 1;
        if (t[r] == '.') r++;
        if ((t[r] == 'm' || t[r] == 'M') && !word_char((unsigned char)t[r + 1])) {
            r++;
            if (t[r] == '.') r++;
            return r;
        }
    }
    return clock ? p : 0;
}

static int is_upper_word(const char *t, size_t a, size_t b) {
    (void)b;
    return isupper((unsigned char)t[a]);
}

static int sentence_start(const char *t, size_t i) {
    while (i > 0 && (t[i - 1] == ' ' || t[i - 1] == '(' || t[i - 1] == '\n')) i--;
    return i == 0 || strchr(".!?:;\n", t[i - 1]);
}

/* A date written with a month name and a year ("December 15, 2023", "15th December 2023") as
 * ISO 8601 ("2023-12-15") into out; 0 when the text has no day, month name and year. */
static int date_iso(const char *t, size_t a, size_t b, char *out, size_t outlen) {
    int day = 0, month = 0, year = 0;
    for (size_t i = a; i < b;) {
        if (!word_char((unsigned char)t[i])) {
            i++;
            continue;
        }
        size_t e = i;
        while (e < b && word_char((unsigned char)t[e])) e++;
        size_t d = digits_at(t, i);
        if (d == 4 && !year) year = atoi(t + i);
        else if (d >= 1 && d <= 2 && !day) day = atoi(t + i);
        else if (!d && !month)
            for (int k = 0; MONTHS[k]; k++)
                if (strlen(MONTHS[k]) == e - i && !strncasecmp(t + i, MONTHS[k], e - i)) {
                    month = k < 12 ? k + 1 : (int[]){1, 2, 3, 4, 6, 7, 8, 9, 9, 10, 11, 12}[k - 12];
                    break;
                }
        i = e;
    }
    if (!day || !month || !year || day > 31) return 0;
    snprintf(out, outlen, "%04d-%02d-%02d", year, month, day);
    return 1;
}

static void add_span(mctx *m, size_t a, size_t b, int prio, int date) {
    for (size_t k = 0; k < m->nlit; k++) /* the same text at the same place once */
        if (m->lit[k].kind == L_STR && m->lit[k].pos == a && m->lit[k].end == b) return;
    literal *l = new_literal(m, L_STR, a);
    if (!l) return;
    char iso[40];
    if (date == 1 && date_iso(m->task, a, b, iso, sizeof iso)) l->text = x4_strdup(iso);
    else l->text = x4_strndup(m->task + a, b - a);
    l->prio = prio;
    l->date = date;
    l->end = b;
    literal_context(m, l, a, b);
}

/* A lower-case word that joins the capitalised words of one name ("Ministry of Finance",
 * "Leonardo da Vinci", "Ludwig van Beethoven"). */
static int name_joiner(const char *w, size_t n) {
    static const char *const J[] = {"of", "de", "the", "da", "van", "von", "del", "della", "di", "du", "la", "le",
                                    "bin", "al", "y", NULL};
    for (const char *const *j = J; *j; j++)
        if (strlen(*j) == n && !strncmp(w, *j, n)) return 1;
    return 0;
}

/* A street address at i: a house number, capitalised words ending in a street word ("123 Main
 * Street", "789 Pine St"), then up to two ", Town" / ", 90210" parts. Returns its end, or 0. */
static size_t address_at(const char *t, size_t i, const unsigned char *qmask) {
    static const char *const STREET[] = {"street", "st", "avenue", "ave", "road", "rd", "boulevard", "blvd",
                                         "lane", "ln", "drive", "dr", "way", "place", "court", "square", NULL};
    size_t d = digits_at(t, i);
    if (d < 1 || d > 6 || t[i + d] != ' ' || !isupper((unsigned char)t[i + d + 1])) return 0;
    size_t p = i + d + 1, end = 0;
    for (int words = 0; words < 4 && isupper((unsigned char)t[p]) && !qmask[p]; words++) {
        size_t e = p;
        while (isalpha((unsigned char)t[e])) e++;
        for (const char *const *w = STREET; words && *w; w++)
            if (strlen(*w) == e - p && !strncasecmp(t + p, *w, e - p)) end = e;
        if (end || t[e] != ' ') break;
        p = e + 1;
    }
    if (!end) return 0;
    for (int parts = 0; parts < 2 && t[end] == ',' && t[end + 1] == ' '; parts++) {
        size_t q = end + 2, e = q;
        if (isupper((unsigned char)t[q])) {
            while (isalpha((unsigned char)t[e]) || (t[e] == ' ' && isupper((unsigned char)t[e + 1]))) e++;
        } else {
            e = q + digits_at(t, q);
            if (e - q != 5) break; /* a postal code */
        }
        if (e == q || qmask[q]) break;
        end = e;
    }
    return end;
}

/* Unquoted values: dates, ids / e-mails / file names / measures ("PRD12345", "a.txt",
 * "120/80"), and proper-noun spans ("Ministry of Finance", "Conference Room A"). */
static void extract_spans(mctx *m, const unsigned char *qmask) {
    const char *t = m->task;
    size_t len = strlen(t);
    for (size_t i = 0; i < len;) {
        if (qmask[i] || !word_char((unsigned char)t[i]) || (i > 0 && word_char((unsigned char)t[i - 1]))) {
            i++;
            continue;
        }
        size_t de = date_at(t, i);
        if (de) {
            add_span(m, i, de, 1, 1);
            i = de;
            continue;
        }
        size_t te = time_at(t, i);
        if (te) {
            add_span(m, i, te, 1, 2);
            i = te;
            continue;
        }
        size_t ae = address_at(t, i, qmask);
        if (ae) {
            add_span(m, i, ae, 1, 0);
            i = ae;
            continue;
        }
        /* a run of non-space characters: an id when it mixes letters and digits or has @ . / - inside */
        size_t e = i;
        int alpha = 0, digit = 0, inner = 0, at = 0;
        while (e < len && !isspace((unsigned char)t[e]) && !qmask[e] && !strchr(",;()\"", t[e])) {
            if (isalpha((unsigned char)t[e])) alpha = 1;
            else if (isdigit((unsigned char)t[e])) digit = 1;
            else if (t[e] == '@') at = 1;
            else if (strchr("./-_:#", t[e])) inner = 1;
            e++;
        }
        while (e > i && strchr(".:!?'", t[e - 1])) e--; /* sentence punctuation */
        alpha = digit = inner = at = 0;
        for (size_t k = i; k < e; k++) {
            if (isalpha((unsigned char)t[k])) alpha = 1;
            else if (isdigit((unsigned char)t[k])) digit = 1;
            else if (t[k] == '@') at = 1;
            else if (strchr("./-_:#", t[k])) inner = 1;
        }
        int lead_digit = isdigit((unsigned char)t[i]);
        size_t w = i;
        while (w < e && word_char((unsigned char)t[w])) w++;
        int unit_only = lead_digit && digits_at(t, i) + (size_t)0 < e - i && w == e; /* 500mg */
        size_t seps = 0; /* "123-456-7890", "192.168.1.10": digit groups, two separators or more */
        for (size_t k = i; k < e; k++) seps += t[k] == '-' || t[k] == '.';
        int grouped = digit && !alpha && seps >= 2;
        /* "middle-aged", "Sci-Fi", "all-mountain": a compound word, no id */
        int compound = alpha && !digit && !at;
        for (size_t k = i; compound && k < e; k++) compound = isalpha((unsigned char)t[k]) || t[k] == '-';
        if (e > i && (at || grouped || (alpha && digit && !unit_only) ||
                      (inner && (alpha || (digit && strchr(t + i, '/') && memchr(t + i, '/', e - i)))))) {
            /* "25-year-old", "5-minute": a measure used as an adjective; its number is the value */
            size_t dg = digits_at(t, i), q = i + dg;
            int measure_adj = dg && t[q] == '-' && isalpha((unsigned char)t[q + 1]);
            for (size_t k = q; measure_adj && k < e; k++)
                if (!isalpha((unsigned char)t[k]) && t[k] != '-') measure_adj = 0;
            int decimal = digit && !alpha && !at && memchr(t + i, '.', e - i) && !memchr(t + i, '/', e - i);
            if (!measure_adj && (grouped || !decimal)) /* 1,000.5 is a number */
                add_span(m, i, e, compound ? 0 : 1, 0);
            i = e;
            continue;
        }
        /* proper nouns: capitalised words, joined by "of", "and", "de", "the" and closed by a
         * single capital or number ("River A", "Room 101") */
        if (is_upper_word(t, i, 0)) {
            size_t a = i, b = i, p = i, nwords = 0;
            for (;;) {
                size_t we = p;
                while (we < len && (word_char((unsigned char)t[we]) || t[we] == '\'' || (t[we] == '-' && word_char((unsigned char)t[we + 1])))) we++;
                if (qmask[p]) break;
                int up = isupper((unsigned char)t[p]) ||
                         (nwords && isdigit((unsigned char)t[p]) && !memchr(t + p, '-', we - p)); /* not "16-foot" */
                if (!up) break;
                b = we;
                nwords++;
                /* next word; a title or an initial keeps its dot ("Dr. Johnson", "F. Scott") */
                size_t q = we;
                if (t[q] == '.' && t[q + 1] == ' ' && isupper((unsigned char)t[q + 2]) && abbrev_dot(t, q, len)) {
                    b = ++q;
                } else if (t[q] == '.' && t[q + 1] == ' ' && islower((unsigned char)t[q + 2]) && we == p + 1 &&
                           abbrev_dot(t, q, len)) {
                    /* a genus initial and its species ("E. coli") */
                    size_t r = q + 2;
                    while (r < len && isalpha((unsigned char)t[r])) r++;
                    if (r - (q + 2) >= 3) b = r;
                    break;
                }
                if (t[q] != ' ') break;
                q++;
                size_t qe = q;
                while (qe < len && word_char((unsigned char)t[qe])) qe++;
                if (name_joiner(t + q, qe - q)) {
                    size_t r = qe + 1;
                    if (t[qe] == ' ' && isupper((unsigned char)t[r])) {
                        p = r;
                        continue;
                    }
                    break;
                }
                p = q;
            }
            /* drop a leading sentence-initial word that is not itself a name ("Please", "Check") */
            if (sentence_start(t, a) && nwords >= 1) {
                size_t we = a;
                while (we < b && word_char((unsigned char)t[we])) we++;
                char low[TOK_MAX + 1];
                size_t n = we - a < TOK_MAX ? we - a : TOK_MAX;
                for (size_t k = 0; k < n; k++) low[k] = (char)tolower((unsigned char)t[a + k]);
                low[n] = 0;
                int acronym = n >= 2 && isupper((unsigned char)t[a + 1]);
                int common = is_stopword(low) || !strcmp(low, "please");
                if (!common) {
                    stem(low);
                    common = m->ix && vocab_find(&m->ix->v, low) >= 0;
                }
                if (!acronym && (common || nwords == 1)) { /* one capital word opening a sentence: not a name */
                    a = we;
                    while (a < b && !isupper((unsigned char)t[a])) a++;
                }
            }
            /* a company or generation suffix keeps its dot ("Artify Inc.", "Lucasfilm Ltd.") */
            if (t[b] == '.' && b >= a + 2) {
                static const char *const SUF[] = {"Inc", "Ltd", "Corp", "Co", "Jr", "Sr", "Bros", "LLC", NULL};
                for (const char *const *q = SUF; *q; q++) {
                    size_t n = strlen(*q);
                    if (b - a > n && !strncmp(t + b - n, *q, n) && t[b - n - 1] == ' ') {
                        b++;
                        break;
                    }
                }
            }
            /* the pronoun "I" ("I'd", "I'm") is no name */
            if (b > a && t[a] == 'I' && (b == a + 1 || t[a + 1] == '\'')) a = b;
            if (b > a) add_span(m, a, b, 1, 0);
            i = b > i ? b : i + 1;
            continue;
        }
        while (i < len && word_char((unsigned char)t[i])) i++;
    }
}
/* A word that may be part of a list item: lower-case letters (and hyphens), no stopword, no
 * built-in request verb. */
static int item_word(const word *w) {
    if (w->in_quote || !w->low[0] || is_stopword(w->low) || !strcmp(w->low, "or")) return 0;
    for (const char *p = w->low; *p; p++)
        if (!islower((unsigned char)*p) && *p != '-') return 0;
    for (const char *const *v = VERBS; *v; v++)
        if (!strcmp(*v, w->low)) return 0;
    /* "containing water", "including cast", "supplies like blankets", "has fever": no item */
    static const char *const NOT[] = {"like", "has", "have", "having", "needs", "contains", "includes", "requires",
                                      "involves", "features", "few", "several", "many", "various", "old", NULL};
    for (const char *const *v = NOT; *v; v++)
        if (!strcmp(*v, w->low)) return 0;
    size_t n = strlen(w->low);
    return n < 6 || !ends(w->low, n, "ing");
}

/* Lists of common nouns ("signs of itchiness and redness", "a bus, metro, or tram"): two or
 * more items of one to three lower-case words, separated by commas and a final "and" / "or".
 * Each item becomes a literal that only an array input takes (literal_list joins them). */
static void extract_lists(mctx *m) {
    const char *t = m->task;
    size_t maxw = strlen(t) / 2 + 1;
    word *w = calloc(maxw, sizeof *w);
    if (!w) return;
    size_t n = scan_words(t, w, maxw);
    for (size_t i = 1; i + 1 < n; i++) {
        if (w[i].in_quote || (strcmp(w[i].low, "and") && strcmp(w[i].low, "or"))) continue;
        if (!(t[w[i].start] >= 'a' && t[w[i].start] <= 'z')) continue;
        /* the item after it */
        size_t r = i + 1;
        while (r < n && r < i + 4 && item_word(&w[r]) && isalpha((unsigned char)t[w[r].start]) &&
               (r == i + 1 || (!w[r].comma_before && !w[r].brk_before)))
            r++;
        if (r == i + 1 || w[i + 1].brk_before) continue;
        if (r < n && r == i + 4 && item_word(&w[r]) && !w[r].comma_before && !w[r].brk_before) continue;
        /* items before it, back to a word that is none */
        size_t st[16], en[16], k = 0;
        size_t e = i; /* exclusive end of the item being read */
        while (k < 15) {
            size_t a = e;
            while (a > 0 && e - a < 3 && item_word(&w[a - 1]) && !w[a - 1].brk_before &&
                   !(a < e && w[a].comma_before) && t[w[a - 1].end] != ':')
                a--;
            if (a > 0 && e - a < 3 && item_word(&w[a - 1]) && w[a - 1].brk_before && !(a < e && w[a].comma_before)) a--;
            if (a == e) break;
            st[k] = a;
            en[k] = e;
            k++;
            if (!w[a].comma_before || a == 0 || w[a].brk_before) break;
            e = a;
        }
        if (!k) continue;
        /* in text order: the items before, then the one after */
        for (size_t q = k; q-- > 0;) {
            literal *l = new_literal(m, L_STR, w[st[q]].start);
            if (!l) break;
            l->text = x4_strndup(t + w[st[q]].start, w[en[q] - 1].end - w[st[q]].start);
            l->item = 1;
            l->end = w[en[q] - 1].end;
            literal_context(m, l, l->pos, l->end);
        }
        literal *l = new_literal(m, L_STR, w[i + 1].start);
        if (!l) break;
        l->text = x4_strndup(t + w[i + 1].start, w[r - 1].end - w[i + 1].start);
        l->item = 1;
        l->end = w[r - 1].end;
        literal_context(m, l, l->pos, l->end);
        i = r - 1;
    }
    free(w);
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

/* Share of service i's required inputs that an output of an already planned step of the same
 * name could provide (services are fed by the plan so far: they chain). */
static double fed_share(const mctx *m, size_t i) {
    const x4_service *s = x4_catalog_at(m->cat, i);
    const json_t *req = json_object_get(s->input, "required");
    size_t n = json_array_size(req), fed = 0, k;
    json_t *r;
    if (!n || !m->nsteps) return 0;
    json_array_foreach(req, k, r) {
        const char *name = json_string_value(r);
        if (!name) continue;
        for (size_t j = 0; j < m->nsteps; j++)
            if (json_object_get(json_object_get(m->steps[j].s->output, "properties"), name)) {
                fed++;
                break;
            }
    }
    return (double)fed / (double)n;
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

/* The least name+description similarity for wiring an output of type `to` into an input of
 * type `ti`. Both typed (and compatible): a typed catalog has many fields of each type, so the
 * names must agree closely (sim_typed); an untyped output (a name and a description, as
 * return values often are) is matched more loosely (sim_min). */
static double wire_threshold(const x4_planner_params *p, const char *ti, const char *to) {
    return ti && to ? p->sim_typed : p->sim_min;
}

/* strict: before literals, at wire_threshold(); else (a required input no literal filled) at
 * sim_min whatever the types. */
static int wire_similar(mctx *m, mstep *st, const char *param, const json_t *prop, int strict) {
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
            if (ti && to && !type_compat(ti, to)) continue; /* an untyped output may fit */
            strset b = {0};
            param_tokens(&b, k, op);
            double sim = strset_dice(&a, &b);
            strset_free(&b);
            if (sim > best + 1e-9 && sim >= (strict ? wire_threshold(&m->prm, ti, to) : m->prm.sim_min)) {
                best = sim;
                bj = j;
                bf = k;
            }
        }
    }
    strset_free(&a);
    if (!bf) return 0;
    set_ref(st, param, bj, bf);
    return 1;
}

/* The earliest-planned-last output whose type is known and equal (number/integer alike) to
 * the input's, with a name+description Dice of at least min_sim (0: any): best similarity,
 * then the latest step. A required input of a clause's service is data the plan must carry
 * from an earlier step when the task does not state it. */
static int wire_weak(mctx *m, mstep *st, const char *param, const json_t *prop, double min_sim) {
    const char *ti = schema_type(prop);
    if (!ti) return 0;
    strset a = {0};
    param_tokens(&a, param, prop);
    double best = -1;
    size_t bj = 0;
    const char *bf = NULL;
    for (size_t j = m->nsteps; j-- > 0;) {
        const char *k;
        json_t *op;
        json_object_foreach(json_object_get(m->steps[j].s->output, "properties"), k, op) {
            const char *to = schema_type(op);
            if (!to || !type_compat(ti, to)) continue;
            strset b = {0};
            param_tokens(&b, k, op);
            double sim = strset_dice(&a, &b);
            strset_free(&b);
            if (sim > best + 1e-9) {
                best = sim;
                bj = j;
                bf = k;
            }
        }
    }
    strset_free(&a);
    if (!bf || best < min_sim) return 0;
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

/* The example values a string parameter's description lists ("the type of pet such as 'cat',
 * 'dog'", "e.g., image, video"): items after "such as" / "e.g." / "for example" / "like",
 * split at commas, "or", "and", quotes stripped, up to three words each. A new JSON array. */
json_t *x4_planner_examples(const char *desc) {
    json_t *arr = json_array();
    if (!desc || !arr) return arr;
    static const char *const CUES[] = {"such as", "e.g.", "for example", "for instance", "like", "options:",
                                       "options include", "options are", "either", "i.e.", "possible values",
                                       "choose from", NULL};
    const char *p = NULL;
    for (const char *const *c = CUES; *c && !p; c++) {
        size_t n = strlen(*c);
        for (const char *q = desc; *q; q++)
            if (!strncasecmp(q, *c, n) && (q == desc || !word_char((unsigned char)q[-1])) &&
                !word_char((unsigned char)q[n])) {
                p = q + n;
                break;
            }
    }
    if (!p) return arr;
    while (*p) {
        while (*p && (isspace((unsigned char)*p) || strchr(",:'\"`", *p))) p++;
        if (!strncasecmp(p, "or ", 3) || !strncasecmp(p, "and ", 4)) {
            p += *p == 'o' || *p == 'O' ? 3 : 4;
            continue;
        }
        if (!*p || strchr(")].;", *p) || !strncasecmp(p, "etc", 3)) break;
        const char *e = p;
        int words = 1;
        while (*e && !strchr(",;)]'\"`", *e) && !(e[0] == '.' && (!e[1] || isspace((unsigned char)e[1])))) {
            if (*e == ' ') {
                if (!strncasecmp(e + 1, "or ", 3) || !strncasecmp(e + 1, "and ", 4)) break;
                words++;
            }
            e++;
        }
        size_t n = (size_t)(e - p);
        while (n && isspace((unsigned char)p[n - 1])) n--;
        if (n && words <= 3) json_array_append_new(arr, json_stringn(p, n));
        if (words > 3) break; /* prose, not a list */
        p = e;
        if (*p == '.' ) break;
    }
    return arr;
}

static int fill_examples(mctx *m, mstep *st, const char *param, const json_t *prop, int clause, size_t *taken,
                         size_t *ntaken) {
    const char *type = schema_type(prop);
    if ((type && strcmp(type, "string")) || json_object_get(prop, "enum")) return 0;
    json_t *ex = x4_planner_examples(json_string_value(json_object_get(prop, "description")));
    if (!json_array_size(ex)) {
        json_decref(ex);
        return 0;
    }
    json_t *p = json_pack("{s:o}", "enum", ex);
    int ok = p && fill_enum(m, st, param, p, clause, taken, ntaken);
    json_decref(p);
    return ok;
}

static const char *schema_type(const json_t *p);

static int literal_fits_prop(const literal *l, const json_t *prop);

static int literal_fits(const literal *l, const char *type) {
    if (!type) return l->kind == L_STR;
    if (!strcmp(type, "string")) return l->kind == L_STR;
    if (!strcmp(type, "integer")) return l->kind == L_NUM && l->is_int;
    if (!strcmp(type, "number")) return l->kind == L_NUM;
    if (!strcmp(type, "boolean")) return l->kind == L_BOOL;
    return 0;
}

/* The schema's own constraints on a value: a literal that breaks them would only be refused
 * by the service. Strings: pattern (as a POSIX extended regex; one that does not compile is not
 * enforced), format date / date-time / email, minLength / maxLength. Numbers: minimum/maximum. */
static int literal_meets(const literal *l, const json_t *prop) {
    if (!json_is_object(prop)) return 1;
    if (l->kind == L_STR && l->text) {
        size_t n = strlen(l->text);
        const json_t *mn = json_object_get(prop, "minLength"), *mx = json_object_get(prop, "maxLength");
        if (json_is_integer(mn) && (json_int_t)n < json_integer_value(mn)) return 0;
        if (json_is_integer(mx) && (json_int_t)n > json_integer_value(mx)) return 0;
        const char *fmt = json_string_value(json_object_get(prop, "format"));
        const char *pat = json_string_value(json_object_get(prop, "pattern"));
        if (fmt && !strcmp(fmt, "date")) pat = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";
        else if (fmt && !strcmp(fmt, "date-time")) pat = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}";
        else if (fmt && !strcmp(fmt, "email")) pat = "^[^@ ]+@[^@ ]+$";
        if (pat) {
            regex_t re;
            if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) == 0) {
                int ok = regexec(&re, l->text, 0, NULL, 0) == 0;
                regfree(&re);
                if (!ok) return 0;
            }
        }
    } else if (l->kind == L_NUM) {
        const json_t *mn = json_object_get(prop, "minimum"), *mx = json_object_get(prop, "maximum");
        if (json_is_number(mn) && l->num < json_number_value(mn)) return 0;
        if (json_is_number(mx) && l->num > json_number_value(mx)) return 0;
    }
    return 1;
}

/* Arrays take one literal of their item type, wrapped. */
static int literal_fits_prop(const literal *l, const json_t *prop) {
    const char *type = schema_type(prop);
    if (type && !strcmp(type, "array")) {
        const json_t *items = json_object_get(prop, "items");
        const char *it = schema_type(items);
        return literal_fits(l, it ? it : "string") && literal_meets(l, items);
    }
    return literal_fits(l, type) && literal_meets(l, prop);
}

/* Whether literal l may fill input prop: literal_fits_prop, and a list item only an array. */
static int literal_fits_input(const literal *l, const json_t *prop) {
    const char *type = schema_type(prop);
    if (l->item && (!type || strcmp(type, "array"))) return 0;
    return literal_fits_prop(l, prop);
}

static json_t *literal_value(const literal *l, const char *type);

/* Only list separators between a and b: spaces, commas, "and", "or", "&". */
static int list_gap(const char *t, size_t a, size_t b) {
    if (b < a || b - a > 8) return 0;
    for (size_t i = a; i < b;) {
        if (isspace((unsigned char)t[i]) || t[i] == ',' || t[i] == '&') i++;
        else if (b - i >= 3 && !strncmp(t + i, "and", 3) && (i + 3 == b || !word_char((unsigned char)t[i + 3]))) i += 3;
        else if (b - i >= 2 && !strncmp(t + i, "or", 2) && (i + 2 == b || !word_char((unsigned char)t[i + 2]))) i += 2;
        else return 0;
    }
    return 1;
}

/* An array input takes the whole list a literal belongs to ("tx1", "tx2", and "tx3";
 * Math, Science and English; 3, 5 and 8): neighbours of the same kind joined by list
 * separators; marks them taken. */
static json_t *literal_list(const mctx *m, size_t k, const json_t *items, unsigned char *taken) {
    const char *it = schema_type(items);
    json_t *arr = json_array();
    size_t a = k, b = k;
    while (a > 0 && m->lit[a - 1].kind == m->lit[k].kind && m->lit[a - 1].end &&
           list_gap(m->task, m->lit[a - 1].end, m->lit[a].pos) && literal_fits(&m->lit[a - 1], it ? it : "string") &&
           literal_meets(&m->lit[a - 1], items))
        a--;
    while (b + 1 < m->nlit && m->lit[b + 1].kind == m->lit[k].kind && m->lit[b].end &&
           list_gap(m->task, m->lit[b].end, m->lit[b + 1].pos) && literal_fits(&m->lit[b + 1], it ? it : "string") &&
           literal_meets(&m->lit[b + 1], items))
        b++;
    for (size_t i = a; i <= b; i++) {
        json_array_append_new(arr, literal_value(&m->lit[i], it ? it : "string"));
        if (taken) taken[i] = 1;
    }
    return arr;
}

static json_t *literal_value_prop(const literal *l, const json_t *prop) {
    const char *type = schema_type(prop);
    if (type && !strcmp(type, "array")) {
        const char *it = schema_type(json_object_get(prop, "items"));
        return json_pack("[o]", literal_value(l, it ? it : "string"));
    }
    return literal_value(l, type);
}

/* The literal says nothing but the parameter's own name ("ISBN" for isbn). */
static int literal_is_name(const literal *l, const strset *ptoks) {
    if (l->kind != L_STR) return 0;
    strset lt = {0};
    strset_text(&lt, l->text);
    int same = lt.n > 0 && strset_overlap(&lt, ptoks) == lt.n;
    strset_free(&lt);
    return same;
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

static int dist_to_clause(const mctx *m, const literal *l, int clause) {
    if (clause < 0) return 0;
    if (l->pos >= m->cl[clause].end) return (int)(l->pos - m->cl[clause].end);
    if (l->pos < m->cl[clause].start) return (int)(m->cl[clause].start - l->pos);
    return 0;
}

/* Greedy matching of literals to the still-open parameters of a step: the pair whose words
 * agree best first (context overlap, same clause, quoted/date/id first, a date for a date-like
 * parameter). Then each still-open required input takes the nearest unused literal of its type
 * (from the clause first, then the task): a plan that runs beats one that does not. */
static void fill_literals(mctx *m, mstep *st, mparam *ps, size_t np, int clause, int first, int last,
                          unsigned char *taken) {
    strset *pt = calloc(np ? np : 1, sizeof *pt);
    int *datey = calloc(np ? np : 1, sizeof *datey), *timey = calloc(np ? np : 1, sizeof *timey);
    int *yeary = calloc(np ? np : 1, sizeof *yeary);
    if (!pt || !datey || !timey || !yeary) goto out;
    for (size_t i = 0; i < np; i++) {
        param_tokens(&pt[i], ps[i].name, ps[i].prop);
        datey[i] = strset_has(&pt[i], "dat") || strset_has(&pt[i], "day") || strset_has(&pt[i], "deadlin") ||
                   strset_has(&pt[i], "birthday") || strset_has(&pt[i], "when");
        yeary[i] = strset_has(&pt[i], "year");
        timey[i] = strset_has(&pt[i], "tim") || strset_has(&pt[i], "hour") || strset_has(&pt[i], "clock") ||
                   strset_has(&pt[i], "when");
    }
    /* literals another step already used are second choice */
    for (int round = first; round <= last; round++) {
        for (;;) {
            double best = -1e9;
            size_t bp = 0, bl = 0;
            for (size_t i = 0; i < np; i++) {
                if (ps[i].done || json_object_get(ps[i].prop, "enum")) continue;
                for (size_t k = 0; k < m->nlit; k++) {
                    const literal *l = &m->lit[k];
                    /* a literal this step used: only as the last resort for a required input */
                    if ((taken[k] && round == 0) || !literal_fits_input(l, ps[i].prop) || literal_is_name(l, &pt[i]))
                        continue;
                    size_t ov = strset_overlap(&pt[i], &l->ctx);
                    int here = clause >= 0 && l->clause == clause;
                    int dfit = (l->date == 1 && datey[i]) || (l->date == 2 && timey[i]) ||
                               (yeary[i] && l->kind == L_NUM && l->is_int && l->num >= 1900 && l->num <= 2100);
                    if (round == 0) {
                        /* optional inputs only from a literal its words point at; required ones
                         * also from any literal of the clause being planned */
                        if (!ov && !dfit && !(ps[i].required && here)) continue;
                        if (!here && !dfit && ov < 2) continue;
                    } else if (!ps[i].required) {
                        continue;
                    } else if (round == 1 && clause >= 0 && l->kind == L_STR && !here) {
                        continue; /* another clause's text: only after the clause's own words */
                    }
                    double sc = 2.0 * (double)ov + ADJ_W * (double)strset_overlap(&pt[i], &l->near) +
                                (here ? 1.0 : 0) + (ps[i].required ? 0.25 : 0) +
                                0.3 * l->prio + (dfit ? 1.5 : 0) - (l->date && !dfit ? 1.0 : 0) -
                                (!l->date && (datey[i] || timey[i]) && l->kind == L_STR ? DATE_MISS : 0) -
                                (m->lused && m->lused[k] ? 0.8 : 0) - (taken[k] ? 1.0 : 0) -
                                0.001 * (double)dist_to_clause(m, l, clause) -
                                0.0001 * (double)k;
                    if (sc > best) {
                        best = sc;
                        bp = i;
                        bl = k;
                    }
                }
            }
            if (best <= -1e9) break;
            if (x4_log_enabled(X4_LOG_DEBUG))
                x4_debug("matcher", "lit %s %s round %d ov %zu here %d score %.3f", st->s->id, ps[bp].name, round,
                         strset_overlap(&pt[bp], &m->lit[bl].ctx), m->lit[bl].clause == clause, best);
            const char *bt = schema_type(ps[bp].prop);
            if (bt && !strcmp(bt, "array"))
                json_object_set_new(st->inputs, ps[bp].name, literal_list(m, bl, json_object_get(ps[bp].prop, "items"), taken));
            else
                json_object_set_new(st->inputs, ps[bp].name, literal_value_prop(&m->lit[bl], ps[bp].prop));
            ps[bp].done = 1;
            taken[bl] = 1;
            if (m->lused) m->lused[bl] = 1;
        }
    }
out:
    for (size_t i = 0; pt && i < np; i++) strset_free(&pt[i]);
    free(pt);
    free(datey);
    free(timey);
    free(yeary);
}


/* The stem of one word (lower-cased); "" for a stopword. */
static void word_stem(const word *w, char *out) {
    snprintf(out, TOK_MAX + 1, "%s", w->low);
    if (is_stopword(out)) {
        out[0] = 0;
        return;
    }
    stem(out);
}

static int negator(const char *w) {
    return !strcmp(w, "no") || !strcmp(w, "not") || !strcmp(w, "without") || !strcmp(w, "never") ||
           !strcmp(w, "don") || !strcmp(w, "exclude") || !strcmp(w, "excluding");
}

/* A value the task gives for a parameter by naming it, when no literal matched: the words of the
 * parameter's name appear in a row ("gill color", "sedation"), the clause's mention first.
 * A string takes the one or two content words right before the mention ("pink gill color",
 * "Public Health department") or, when there are none, the words after "<name> of/is/:"
 * ("a difficulty level of beginner"); a boolean is true when mentioned, false after "no",
 * "not", "without". Returns 1 when it set the input. */
static int fill_named(mctx *m, mstep *st, const char *param, const json_t *prop, int clause) {
    const char *type = schema_type(prop);
    int arr = type && !strcmp(type, "array");
    const char *itype = arr ? schema_type(json_object_get(prop, "items")) : type;
    int is_bool = itype && !strcmp(itype, "boolean") && !arr;
    if (!is_bool && itype && strcmp(itype, "string")) return 0;
    strset nt = {0};
    strset_text(&nt, param);
    /* "insulation_type", "crop_name", "material_used": the head word names the value's kind,
     * the rest only says it is one ("fiberglass insulation", "a digital impression") */
    if (nt.n >= 2) {
        strset keep = {0}, gen = {0};
        add_stemmed(&gen, "type kind name category used mode style level sort");
        for (size_t k = 0; k < nt.n; k++)
            if (!strset_has(&gen, nt.v[k])) strset_add_cb(&keep, nt.v[k]);
        strset_free(&gen);
        if (keep.n && keep.n < nt.n) {
            strset_free(&nt);
            nt = keep;
        } else {
            strset_free(&keep);
        }
    }
    if (!nt.n) return 0;
    size_t maxw = strlen(m->task) / 2 + 1, nw;
    word *w = calloc(maxw, sizeof *w);
    char (*stm)[TOK_MAX + 1] = calloc(maxw, sizeof *stm);
    int ok = 0;
    if (!w || !stm) goto out;
    nw = scan_words(m->task, w, maxw);
    for (size_t i = 0; i < nw; i++) word_stem(&w[i], stm[i]);
    size_t need = nt.n < 2 ? nt.n : 2;
    for (int pass = 0; pass < 2 && !ok; pass++) {
        for (size_t i = 0; i < nw && !ok; i++) {
            if (w[i].in_quote || !stm[i][0] || !strset_has(&nt, stm[i])) continue;
            int here = clause >= 0 && w[i].start >= m->cl[clause].start && w[i].start < m->cl[clause].end;
            if (pass == 0 && !here) continue;
            size_t j = i;
            while (j + 1 < nw && stm[j + 1][0] && strset_has(&nt, stm[j + 1]) && !w[j + 1].brk_before &&
                   !w[j + 1].comma_before)
                j++;
            if (j - i + 1 < need) continue;
            if (is_bool) {
                int neg = 0;
                for (size_t k = i >= 3 ? i - 3 : 0; k < i; k++) neg |= negator(w[k].low);
                json_object_set_new(st->inputs, param, json_boolean(!neg));
                ok = 1;
                break;
            }
            /* before: up to two content words, same clause, no punctuation between */
            size_t a = i;
            while (a > 0 && i - a < 2 && !w[a].brk_before && !w[a].comma_before && stm[a - 1][0] &&
                   !strset_has(&nt, stm[a - 1]) && !w[a - 1].in_quote && !word_is_verb(m, &w[a - 1]) &&
                   !is_determiner(w[a - 1].low) &&
                   strspn(w[a - 1].low, "0123456789") != strlen(w[a - 1].low))
                a--;
            size_t vs = 0, ve = 0;
            if (a < i) {
                vs = w[a].start;
                ve = w[i - 1].end;
            } else if (j + 2 < nw && !w[j + 1].brk_before &&
                       (!strcmp(w[j + 1].low, "of") || !strcmp(w[j + 1].low, "is") || !strcmp(w[j + 1].low, "as") ||
                        (m->task[w[j].end] == ':'))) {
                size_t b = m->task[w[j].end] == ':' ? j + 1 : j + 2;
                size_t e = b;
                while (e < nw && e - b < 3 && stm[e][0] && !w[e].brk_before && (e == b || !w[e].comma_before) &&
                       !w[e].in_quote)
                    e++;
                if (e > b) {
                    vs = w[b].start;
                    ve = w[e - 1].end;
                }
            }
            if (ve > vs) {
                json_t *v = json_stringn(m->task + vs, ve - vs);
                json_object_set_new(st->inputs, param, arr ? json_pack("[o]", v) : v);
                ok = 1;
            }
        }
    }
out:
    free(w);
    free(stm);
    strset_free(&nt);
    return ok;
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
/* The last resort for a required input of a step the task asks for: a boolean true (asked
 * for); unless the clause names the input yet gives no value for it ("the weather for my
 * city": the caller is asked — validation names the input — rather than given a guess), a
 * string takes the clause's text (what the task asks of this step, without a closing period),
 * a list of strings that text alone, an object that declares no fields {}. Numbers stay open. */
static int fill_from_clause(mctx *m, mstep *st, const char *param, const json_t *prop, int clause) {
    const char *t = schema_type(prop);
    if (!t || clause < 0 || (size_t)clause >= m->ncl) return 0;
    if (!strcmp(t, "boolean")) {
        json_object_set_new(st->inputs, param, json_true());
        return 1;
    }
    strset nt = {0};
    strset_text(&nt, param);
    int named = nt.n && strset_overlap(&nt, &m->cl[clause].toks) == nt.n;
    strset_free(&nt);
    if (named) return 0;
    if (!strcmp(t, "object") && !json_object_size(json_object_get(prop, "properties")) &&
        !json_array_size(json_object_get(prop, "required"))) {
        json_object_set_new(st->inputs, param, json_object());
        return 1;
    }
    const json_t *items = json_object_get(prop, "items");
    const char *it = items ? schema_type(items) : NULL;
    int list = !strcmp(t, "array") && (!it || !strcmp(it, "string")) && !json_object_get(items, "enum");
    if ((strcmp(t, "string") && !list) || json_object_get(prop, "enum")) return 0;
    size_t a = m->cl[clause].start, b = m->cl[clause].end;
    while (b > a && (isspace((unsigned char)m->task[b - 1]) || strchr(".,;", m->task[b - 1]))) b--;
    if (b <= a) return 0;
    json_t *v = json_stringn(m->task + a, b - a);
    json_object_set_new(st->inputs, param, list ? json_pack("[o]", v) : v);
    return 1;
}

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
    unsigned char *ltaken = NULL;
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
                     (ps[q].required && wire_similar(m, &st, ps[q].name, ps[q].prop, 1)) ||
                     fill_enum(m, &st, ps[q].name, ps[q].prop, clause, enum_taken, &nenum) ||
                     fill_examples(m, &st, ps[q].name, ps[q].prop, clause, enum_taken, &nenum);
    }
    free(enum_taken);
    /* c: literals its words point at, then values named in the task ("pink gill color") */
    ltaken = calloc(m->nlit ? m->nlit : 1, 1); /* the literals this step took */
    if (!ltaken) goto fail;
    fill_literals(m, &st, ps, np, clause, 0, 0, ltaken);
    for (size_t q = 0; q < np; q++)
        if (!ps[q].done) ps[q].done = fill_named(m, &st, ps[q].name, ps[q].prop, clause);
    /* d: a required input still open: any literal of its type, its default, else the most
     * similar earlier output of its type (the plan carries data rather than failing) */
    for (size_t q = 0; q < np; q++)
        if (!ps[q].done && ps[q].required) ps[q].done = wire_similar(m, &st, ps[q].name, ps[q].prop, 0);
    fill_literals(m, &st, ps, np, clause, 1, 1, ltaken);
    for (size_t q = 0; q < np; q++)
        if (!ps[q].done && ps[q].required) ps[q].done = wire_weak(m, &st, ps[q].name, ps[q].prop, 1e-9);
    for (size_t q = 0; q < np; q++) {
        const json_t *def = json_object_get(ps[q].prop, "default");
        if (!ps[q].done && ps[q].required && def) {
            json_object_set(st.inputs, ps[q].name, (json_t *)def);
            ps[q].done = 1;
        }
    }
    /* another clause's text literal, only now: after the clause's own literals, similar outputs
     * and defaults */
    fill_literals(m, &st, ps, np, clause, 2, 2, ltaken);
    for (size_t q = 0; q < np; q++)
        if (!ps[q].done && ps[q].required) ps[q].done = wire_weak(m, &st, ps[q].name, ps[q].prop, 0);
    /* e: chaining a provider; f: a required input of a step the task asks for still open takes
     * what the task says of it: a text input the words of its clause, a flag true (asked for) */
    for (size_t q = 0; q < np; q++) {
        if (ps[q].done) continue;
        if (allow_chain) ps[q].done = wire_chain(m, &st, ci, ps[q].name, ps[q].prop, depth, ps[q].required);
        if (!ps[q].done && ps[q].required && chained) goto fail;
        if (!ps[q].done && ps[q].required) ps[q].done = fill_from_clause(m, &st, ps[q].name, ps[q].prop, clause);
    }
    free(ltaken);
    ltaken = NULL;
    free(ps);
    ps = NULL;
    if (push_step(m, &st)) goto fail;
    return 0;
fail:
    free(ps);
    free(ltaken);
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

/* ---- joint choice ------------------------------------------------------------------------ */


/* The parameter names (inputs and outputs) services a and b have in common. */
static size_t shared_names(const pindex *ix, const x4_service *a, const x4_service *b) {
    size_t n = 0;
    const json_t *sa[2] = {json_object_get(a->input, "properties"), json_object_get(a->output, "properties")};
    const json_t *sb[2] = {json_object_get(b->input, "properties"), json_object_get(b->output, "properties")};
    for (int x = 0; x < 2; x++) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)sa[x], k, v) {
            (void)v;
            if ((json_object_get(sb[0], k) || json_object_get(sb[1], k)) && pname_df(ix, k) <= LINK_DF_MAX) n++;
        }
    }
    return n;
}

#define BEAM_K 6      /* candidates per clause */
#define BEAM_WIDTH 24 /* partial plans kept */
#define MAX_CAND (MAX_CLAUSES * BEAM_K)

/* One candidate (clause, service) with its parameters tokenised once. */
typedef struct {
    size_t svc;
    int clause;
    double base;     /* the clause's rank of the service */
    size_t nin;      /* inputs considered: the required ones, else all (≤ 64) */
    const char *in_name[64];
    const char *in_type[64];
    strset in_tok[64];
    uint64_t evid;   /* considered inputs the task itself gives evidence for */
    size_t nout;
    const char **out_name;
    const char **out_type;
    strset *out_tok;
} jcand;

static void jcand_free(jcand *c) {
    for (size_t i = 0; i < c->nin; i++) strset_free(&c->in_tok[i]);
    for (size_t i = 0; i < c->nout; i++) strset_free(&c->out_tok[i]);
    free(c->out_name);
    free(c->out_type);
    free(c->out_tok);
}

static int literal_fits_input(const literal *l, const json_t *prop);

/* Whether the task carries a value for an input: a literal of its type whose surrounding words
 * share a word with the input's name or description, a mention of its name's words, an enum
 * value or a described example value it names, or a default. */
static int input_evidence(const mctx *m, const char *name, const json_t *prop, const strset *ptoks) {
    if (json_object_get(prop, "default")) return 1;
    strset nt = {0};
    strset_text(&nt, name);
    int ok = nt.n && strset_overlap(&nt, &m->whole.toks) == nt.n;
    strset_free(&nt);
    for (size_t k = 0; !ok && k < m->nlit; k++)
        ok = literal_fits_input(&m->lit[k], prop) && strset_overlap(ptoks, &m->lit[k].ctx) > 0;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(prop, "enum"), i, v) {
        if (ok) break;
        strset et = {0};
        strset_text(&et, json_string_value(v));
        ok = et.n && strset_overlap(&et, &m->whole.toks) == et.n;
        strset_free(&et);
    }
    if (!ok) { /* an example value its description lists ("such as 'cat', 'dog'") */
        json_t *ex = x4_planner_examples(json_string_value(json_object_get(prop, "description")));
        json_array_foreach(ex, i, v) {
            if (ok) break;
            strset et = {0};
            strset_text(&et, json_string_value(v));
            ok = et.n && strset_overlap(&et, &m->whole.toks) == et.n;
            strset_free(&et);
        }
        json_decref(ex);
    }
    return ok;
}

static int jcand_init(jcand *c, const x4_service *s) {
    const json_t *props = json_object_get(s->input, "properties");
    const json_t *req = json_object_get(s->input, "required");
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r) {
        const json_t *p = json_object_get(props, json_string_value(r));
        if (!p || c->nin >= 64) continue;
        c->in_name[c->nin] = json_string_value(r);
        c->in_type[c->nin] = schema_type(p);
        param_tokens(&c->in_tok[c->nin], json_string_value(r), p);
        c->nin++;
    }
    const char *k;
    json_t *p;
    if (!c->nin) json_object_foreach((json_t *)props, k, p) {
            if (c->nin >= 64) break;
            c->in_name[c->nin] = k;
            c->in_type[c->nin] = schema_type(p);
            param_tokens(&c->in_tok[c->nin], k, p);
            c->nin++;
        }
    const json_t *outs = json_object_get(s->output, "properties");
    size_t no = json_object_size(outs);
    c->out_name = calloc(no ? no : 1, sizeof *c->out_name);
    c->out_type = calloc(no ? no : 1, sizeof *c->out_type);
    c->out_tok = calloc(no ? no : 1, sizeof *c->out_tok);
    if (!c->out_name || !c->out_type || !c->out_tok) return -1;
    json_object_foreach((json_t *)outs, k, p) {
        c->out_name[c->nout] = k;
        c->out_type[c->nout] = schema_type(p);
        param_tokens(&c->out_tok[c->nout], k, p);
        c->nout++;
    }
    return 0;
}

/* The inputs of b (bit i: b's considered input i) an output of a can feed: the same name, or a
 * name+description Dice ≥ wire_threshold(), with compatible types. */
static uint64_t jcand_feeds(const jcand *a, const jcand *b, const x4_planner_params *prm) {
    uint64_t mask = 0;
    for (size_t i = 0; i < b->nin; i++)
        for (size_t o = 0; o < a->nout; o++) {
            if (!type_compat(b->in_type[i], a->out_type[o])) continue;
            if (!strcmp(b->in_name[i], a->out_name[o])) {
                mask |= 1ULL << i;
                break;
            }
            const strset *x = &b->in_tok[i], *y = &a->out_tok[o];
            double sim = strset_dice(x, y);
            if (sim >= wire_threshold(prm, b->in_type[i], a->out_type[o])) {
                mask |= 1ULL << i;
                break;
            }
        }
    return mask;
}

typedef struct {
    int pick[MAX_CLAUSES]; /* candidate index per clause, -1: none */
    double score;
    uint64_t sum;
} jstate;

static int jstate_cmp(const void *x, const void *y) {
    const jstate *a = x, *b = y;
    return a->score < b->score ? 1 : a->score > b->score ? -1 : 0;
}

/* Chooses one service per clause for the whole task at once: each clause's top BEAM_K
 * services by rank, then a beam search over the clauses maximising Σ rank + wire_bonus × the
 * share of each service's inputs the services chosen for earlier clauses can feed, with no
 * service twice and the running price within max_cost. Services that pass data to each other
 * make a plan; the best service per clause in isolation often does not. pref[c] gets the
 * chosen catalog index (or -1: let the clause loop decide). */
static void preselect(mctx *m, ssize_t *pref) {
    for (size_t c = 0; c < m->ncl; c++) pref[c] = -1;
    if (m->prm.wire_bonus <= 0 || m->ncl < 2) return;
    jcand *cand = calloc(MAX_CAND, sizeof *cand);
    uint64_t *feed = NULL;
    unsigned char *lk = NULL;
    jstate *beam = calloc(BEAM_WIDTH, sizeof *beam), *next = calloc(BEAM_WIDTH * (BEAM_K + 2), sizeof *next);
    size_t nc = 0, nbeam = 1;
    if (!cand || !beam || !next) goto out;
    size_t first[MAX_CLAUSES + 1];
    for (size_t c = 0; c < m->ncl; c++) {
        first[c] = nc;
        score_clause(m, &m->cl[c]);
        for (int r = 0; r < BEAM_K; r++) {
            ssize_t b = -1;
            for (size_t i = 0; i < m->ncat; i++) {
                if (!eligible(m, i) || price_of(x4_catalog_at(m->cat, i)) > m->max_cost) continue;
                int dup = 0;
                for (size_t k = first[c]; k < nc; k++) dup |= cand[k].svc == i;
                if (!dup && (b < 0 || better(m, i, (size_t)b))) b = (ssize_t)i;
            }
            if (b < 0) break;
            cand[nc].svc = (size_t)b;
            cand[nc].clause = (int)c;
            cand[nc].base = m->acc[b];
            if (jcand_init(&cand[nc], x4_catalog_at(m->cat, (size_t)b))) {
                nc++;
                goto out;
            }
            nc++;
        }
    }
    first[m->ncl] = nc;
    if (x4_log_enabled(X4_LOG_DEBUG))
        for (size_t k = 0; k < nc; k++)
            x4_debug("matcher", "cand clause %d %s %.3f", cand[k].clause, x4_catalog_at(m->cat, cand[k].svc)->id,
                     cand[k].base);
    for (size_t k = 0; k < nc; k++) {
        const json_t *props = json_object_get(x4_catalog_at(m->cat, cand[k].svc)->input, "properties");
        for (size_t i = 0; i < cand[k].nin; i++)
            if (input_evidence(m, cand[k].in_name[i], json_object_get(props, cand[k].in_name[i]), &cand[k].in_tok[i]))
                cand[k].evid |= 1ULL << i;
    }
    feed = calloc(nc ? nc * nc : 1, sizeof *feed);
    if (!feed) goto out;
    for (size_t a = 0; a < nc; a++)
        for (size_t b = 0; b < nc; b++)
            if (cand[a].clause < cand[b].clause) feed[a * nc + b] = jcand_feeds(&cand[a], &cand[b], &m->prm);
    lk = calloc(nc ? nc * nc : 1, 1);
    if (!lk) goto out;
    for (size_t a = 0; a < nc; a++)
        for (size_t b = 0; b < nc; b++)
            if (cand[a].clause < cand[b].clause) {
                size_t n = shared_names(m->ix, x4_catalog_at(m->cat, cand[a].svc), x4_catalog_at(m->cat, cand[b].svc));
                lk[a * nc + b] = lk[b * nc + a] = (unsigned char)(n > 255 ? 255 : n);
            }
    for (size_t c = 0; c < MAX_CLAUSES; c++) beam[0].pick[c] = -1;
    for (size_t c = 0; c < m->ncl; c++) {
        size_t nn = 0;
        for (size_t s = 0; s < nbeam; s++) {
            int any = 0;
            for (size_t k = first[c]; k < first[c + 1]; k++) {
                int dup = 0;
                for (size_t e = 0; e < c; e++) dup |= beam[s].pick[e] >= 0 && cand[beam[s].pick[e]].svc == cand[k].svc;
                uint64_t sum = beam[s].sum + price_of(x4_catalog_at(m->cat, cand[k].svc));
                if (dup || sum < beam[s].sum || sum > m->max_cost) continue;
                uint64_t fed = 0;
                for (size_t e = 0; e < c; e++)
                    if (beam[s].pick[e] >= 0) fed |= feed[(size_t)beam[s].pick[e] * nc + k];
                double share = cand[k].nin ? (double)__builtin_popcountll(fed) / (double)cand[k].nin : 0;
                /* a specific parameter name shared with a service chosen for an earlier clause */
                int linked = 0;
                for (size_t e = 0; e < c && !linked; e++)
                    linked = beam[s].pick[e] >= 0 && lk[(size_t)beam[s].pick[e] * nc + k];
                double have = cand[k].nin ? (double)__builtin_popcountll(fed | cand[k].evid) / (double)cand[k].nin : 1;
                next[nn] = beam[s];
                next[nn].pick[c] = (int)k;
                next[nn].score += cand[k].base + m->prm.wire_bonus * share + m->prm.fill_bonus * have -
                                  m->prm.step_cost * m->cl[c].known + m->prm.link_bonus * linked;
                next[nn].sum = sum;
                nn++;
                any = 1;
            }
            /* or no step of its own (worth 0): a clause whose best service, with what the others
             * feed it and the task gives it, does not outweigh step_cost adds nothing */
            next[nn] = beam[s];
            next[nn].pick[c] = any ? -2 : -1;
            nn++;
        }
        qsort(next, nn, sizeof *next, jstate_cmp);
        nbeam = nn < BEAM_WIDTH ? nn : BEAM_WIDTH;
        memcpy(beam, next, nbeam * sizeof *beam);
    }
    /* the best choice that plans something (none at all: the clauses decide alone) */
    size_t best = nbeam;
    for (size_t b = 0; b < nbeam && best == nbeam; b++)
        for (size_t c = 0; c < m->ncl; c++)
            if (beam[b].pick[c] >= 0) {
                best = b;
                break;
            }
    for (size_t c = 0; best < nbeam && c < m->ncl; c++)
        if (beam[best].pick[c] >= 0) pref[c] = (ssize_t)cand[beam[best].pick[c]].svc;
        else if (beam[best].pick[c] == -2) pref[c] = -2;
out:
    for (size_t k = 0; cand && k < nc; k++) jcand_free(&cand[k]);
    free(cand);
    free(feed);
    free(lk);
    free(beam);
    free(next);
}

/* ---- driver ----------------------------------------------------------------------------- */

static void mctx_free(mctx *m) {
    index_put(m->ix);
    for (size_t i = 0; i < m->ncl; i++) {
        strset_free(&m->cl[i].toks);
        free(m->cl[i].ids);
        free(m->cl[i].xw);
    }
    strset_free(&m->whole.toks);
    free(m->whole.ids);
    free(m->whole.xw);
    for (size_t i = 0; i < m->nlit; i++) {
        free(m->lit[i].text);
        strset_free(&m->lit[i].ctx);
        strset_free(&m->lit[i].near);
    }
    for (size_t i = 0; i < m->nsteps; i++) {
        json_decref(m->steps[i].inputs);
        free(m->steps[i].deps);
    }
    free(m->steps);
    free(m->used);
    free(m->acc);
    free(m->bm25);
    free(m->ctx);
    free(m->hits);
    free(m->strong);
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
    return x4_planner_plan(cat, task, max_cost, NULL, plan, NULL, err, errlen);
}

int x4_planner_plan(const x4_catalog *cat, const char *task, uint64_t max_cost, const x4_planner_params *prm,
                    json_t **plan, json_t **draft, char *err, size_t errlen) {
    return x4_planner_plan_lua(cat, task, max_cost, prm, NULL, plan, draft, err, errlen);
}

int x4_planner_plan_lua(const x4_catalog *cat, const char *task, uint64_t max_cost, const x4_planner_params *prm,
                        x4_lua_rt *lua, json_t **plan, json_t **draft, char *err, size_t errlen) {
    mctx m;
    int rc = -1;
    memset(&m, 0, sizeof m);
    if (prm) {
        m.prm = *prm;
    } else {
        x4_planner_params_default(&m.prm);
        char why[300];
        if (lua && x4_planner_params_lua(lua, &m.prm, why, sizeof why) < 0) {
            /* said once per policy version: the built-in weights stay in force */
            static char warned[40];
            if (strcmp(warned, x4_lua_version(lua))) {
                snprintf(warned, sizeof warned, "%s", x4_lua_version(lua));
                x4_warn("matcher", "%s; built-in weights used", why);
            }
        }
    }
    m.lua = lua && x4_lua_has_hook(lua, "matching.score") ? lua : NULL;
    if (plan) *plan = NULL;
    if (draft) *draft = NULL;
    if (!cat || !plan) {
        x4_seterr(err, errlen, "no catalog");
        return -1;
    }
    if (!task || !*task) {
        x4_seterr(err, errlen, "the task is empty");
        return -1;
    }
    if (strlen(task) > 16384) {
        x4_seterr(err, errlen, "the task is longer than 16384 bytes");
        return -1;
    }
    if (x4_catalog_count(cat) == 0) {
        x4_seterr(err, errlen, "the catalog is empty");
        return -1;
    }
    m.cat = cat;
    m.task = task;
    m.max_cost = max_cost;
    if (mctx_alloc(&m)) {
        x4_seterr(err, errlen, "out of memory");
        goto done;
    }
    split_clauses(&m);
    if (x4_log_enabled(X4_LOG_DEBUG)) x4_debug("matcher", "task \"%.60s\": %zu clauses", task, m.ncl);
    m.whole.start = 0;
    m.whole.end = strlen(task);
    clause_prepare(&m, &m.whole);
    for (size_t c = 0; c < m.ncl; c++) clause_prepare(&m, &m.cl[c]);
    m.lused = m.lused_buf;
    m.ctx = calloc(m.ncat ? m.ncat : 1, sizeof *m.ctx);
    if (!m.ctx) {
        x4_seterr(err, errlen, "out of memory");
        goto done;
    }
    bm25_clause(&m, &m.whole);
    memcpy(m.ctx, m.acc, m.ncat * sizeof *m.ctx);
    extract_literals(&m);

    int matched_any = 0;
    ssize_t pref[MAX_CLAUSES];
    preselect(&m, pref);
    for (size_t c = 0; c < m.ncl; c++) {
        if (pref[c] == -2) { /* the joint choice gave this clause no step */
            x4_debug("matcher", "clause %zu \"%.*s\": best - 0.000 (no step)", c, (int)(m.cl[c].end - m.cl[c].start),
                     task + m.cl[c].start);
            continue;
        }
        score_clause(&m, &m.cl[c]);
        /* the joint choice goes first when it is still free */
        if (pref[c] >= 0 && !m.used[pref[c]] && eligible(&m, (size_t)pref[c])) {
            double mx = 0;
            for (size_t i = 0; i < m.ncat; i++)
                if (m.hits[i] && m.acc[i] > mx) mx = m.acc[i];
            m.acc[pref[c]] = mx + 1.0;
        }
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
            x4_seterr(err, errlen, "out of memory");
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
            x4_seterr(err, errlen,
                   "no service for \"%.*s\" fits maxCost %s: the cheapest match, %s, costs %s and %s is already "
                   "planned",
                   (int)(m.cl[c].end - m.cl[c].start > 80 ? 80 : m.cl[c].end - m.cl[c].start), task + m.cl[c].start,
                   max_cost == X4_NO_MAX_COST ? "(none)" : mc, x4_catalog_at(cat, (size_t)cheapest_over)->id, pr, sum);
            goto done;
        }
    }
    if (!matched_any || m.nsteps == 0) {
        x4_seterr(err, errlen, "no service in the catalog matches the task");
        goto done;
    }

    json_t *pj = steps_json(&m);
    x4_plan *parsed = NULL;
    json_t *errors = NULL;
    if (!pj) {
        x4_seterr(err, errlen, "out of memory");
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
        x4_seterr(err, errlen, "%s", b.data ? b.data : "invalid plan");
        x4_buf_free(&b);
        json_decref(errors);
        if (draft) *draft = pj;
        else json_decref(pj);
        goto done;
    }
    x4_plan_free(parsed);
    *plan = pj;
    rc = 0;
done:
    mctx_free(&m);
    return rc;
}

/* ---- the pieces, for tests and tools ------------------------------------------------------ */

static int mctx_for(mctx *m, const x4_catalog *cat, const char *task) {
    memset(m, 0, sizeof *m);
    x4_planner_params_default(&m->prm);
    m->cat = cat;
    m->task = task;
    m->lused = m->lused_buf;
    return cat ? mctx_alloc(m) : 0;
}

int x4_planner_retrieve(const x4_catalog *cat, const char *query, size_t k, size_t *idx, double *score) {
    mctx m;
    int n = -1;
    if (!cat || !query || mctx_for(&m, cat, query)) goto done;
    m.whole.start = 0;
    m.whole.end = strlen(query);
    clause_prepare(&m, &m.whole);
    score_clause_r(&m, &m.whole, 0);
    unsigned char *took = calloc(m.ncat ? m.ncat : 1, 1);
    if (!took) goto done;
    n = 0;
    while ((size_t)n < k) {
        ssize_t b = -1;
        for (size_t i = 0; i < m.ncat; i++)
            if (!took[i] && m.hits[i] && (b < 0 || better(&m, i, (size_t)b))) b = (ssize_t)i;
        if (b < 0) break;
        took[b] = 1;
        if (idx) idx[n] = (size_t)b;
        if (score) score[n] = m.acc[b];
        n++;
    }
    free(took);
done:
    mctx_free(&m);
    return n;
}

json_t *x4_planner_clauses(const x4_catalog *cat, const char *task) {
    mctx m;
    json_t *arr = NULL;
    if (!task || mctx_for(&m, cat, task)) goto done;
    if (!m.ix) {
        m.ix = calloc(1, sizeof *m.ix); /* an empty index: built-in verbs only */
        if (!m.ix) goto done;
        m.ix->refs = 1;
    }
    split_clauses(&m);
    arr = json_array();
    for (size_t i = 0; arr && i < m.ncl; i++)
        json_array_append_new(arr, json_stringn(task + m.cl[i].start, m.cl[i].end - m.cl[i].start));
done:
    mctx_free(&m);
    return arr;
}

json_t *x4_planner_literals(const char *task) {
    mctx m;
    json_t *arr = NULL;
    if (!task || mctx_for(&m, NULL, task)) goto done;
    extract_literals(&m);
    arr = json_array();
    for (size_t i = 0; arr && i < m.nlit; i++) {
        const literal *l = &m.lit[i];
        json_t *v = l->kind == L_STR ? json_string(l->text) : l->kind == L_BOOL ? json_boolean(l->bval)
                    : l->is_int ? json_integer(l->ival) : json_real(l->num);
        json_t *ctx = json_array();
        for (size_t k = 0; ctx && k < l->ctx.n; k++) json_array_append_new(ctx, json_string(l->ctx.v[k]));
        json_array_append_new(arr, json_pack("{s:s, s:o, s:s, s:o}", "kind",
                                             l->date == 2 ? "time" : l->date ? "date" : l->kind == L_STR ? "string" : l->kind == L_NUM ? "number" : "boolean",
                                             "value", v, "text", l->text ? l->text : "", "context", ctx));
    }
done:
    mctx_free(&m);
    return arr;
}

const char *x4_planner_wire(const x4_service *producer, const x4_service *consumer, const char *param,
                            const x4_planner_params *prm) {
    if (!producer || !consumer || !param) return NULL;
    const json_t *prop = json_object_get(json_object_get(consumer->input, "properties"), param);
    const json_t *outs = json_object_get(producer->output, "properties");
    if (!prop) return NULL;
    const char *k;
    json_t *op;
    json_object_foreach((json_t *)outs, k, op) {
        if (!strcmp(k, param) && type_compat(schema_type(prop), schema_type(op))) return k;
    }
    x4_planner_params d;
    if (!prm) {
        x4_planner_params_default(&d);
        prm = &d;
    }
    strset a = {0};
    param_tokens(&a, param, prop);
    double best = 0;
    const char *bf = NULL;
    json_object_foreach((json_t *)outs, k, op) {
        const char *ti = schema_type(prop), *to = schema_type(op);
        if (ti && to && !type_compat(ti, to)) continue;
        strset b = {0};
        param_tokens(&b, k, op);
        double sim = strset_dice(&a, &b);
        strset_free(&b);
        if (sim > best + 1e-9 && sim >= prm->sim_min) {
            best = sim;
            bf = k;
        }
    }
    strset_free(&a);
    return bf;
}
