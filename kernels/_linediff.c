/*
 * metre.kernels._linediff: line counts equal to `git diff --numstat --minimal`, compiled.
 *
 * The compiled twin of kernels/_reference.py, which states the algorithm and where the facts
 * come from; the two are held equal by property tests and both are checked against the git CLI.
 * Written for metre from that description (not derived from git's xdiff sources).
 *
 * Steps, all without the GIL:
 *   1. Identical inputs: nothing changed.
 *   2. Common leading and trailing *lines* found at byte level (memcmp speed, no hashing).
 *      If either middle is then empty, the counts are its line counts.
 *   3. The middle lines of both sides are hashed and interned into equivalence classes; the
 *      trimmed lines are looked up too, because occurrence counts cover whole files.
 *   4. Each middle line is classified by its occurrences on the other side (none: changed;
 *      at least the side's limit: maybe; else kept), maybes among changed runs become changed.
 *   5. The forward greedy Myers search gives the LCS length of the kept lines.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BINARY_SNIFF_BYTES 8000
#define MAX_MAYBE_LIMIT 1024
#define SCAN_WINDOW 100

enum { MARK_KEEP = 0, MARK_DISCARD = 1, MARK_MAYBE = 2 };

typedef ptrdiff_t idx_t;

typedef struct {
    const unsigned char *ptr;
    size_t len;
} span_t;

/* ---------------------------------------------------------------- bytes and lines */

static size_t
common_prefix(const unsigned char *a, const unsigned char *b, size_t n)
{
    size_t i = 0;
    while (i + 8 <= n) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            break;
        i += 8;
    }
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

static size_t
common_suffix(const unsigned char *a, size_t na, const unsigned char *b, size_t nb, size_t cap)
{
    size_t i = 0;
    while (i + 8 <= cap) {
        uint64_t x, y;
        memcpy(&x, a + na - i - 8, 8);
        memcpy(&y, b + nb - i - 8, 8);
        if (x != y)
            break;
        i += 8;
    }
    while (i < cap && a[na - i - 1] == b[nb - i - 1])
        i++;
    return i;
}

/* Newlines in p[0:n]; *last gets the offset just past the last one (0 if none). */
static idx_t
count_newlines(const unsigned char *p, size_t n, size_t *last)
{
    idx_t count = 0;
    size_t at = 0;
    *last = 0;
    while (at < n) {
        const unsigned char *nl = memchr(p + at, '\n', n - at);
        if (nl == NULL)
            break;
        count++;
        at = (size_t)(nl - p) + 1;
        *last = at;
    }
    return count;
}

/* Lines in a span that starts at a line start and ends at a line end or the end of file. */
static idx_t
lines_in(span_t s)
{
    size_t last;
    idx_t n = count_newlines(s.ptr, s.len, &last);
    return n + (s.len > 0 && s.ptr[s.len - 1] != '\n');
}

/* ---------------------------------------------------------------- hashing and classes */

static uint64_t
hash_bytes(const unsigned char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    }
    h ^= h >> 32;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 29;
    return h;
}

#define FILTER_BITS 65536

/* A cheap fingerprint of a line for the pre-filter: its length and two of its bytes. */
static inline size_t
line_key(const unsigned char *p, size_t n)
{
    size_t k = n * 0x9e37u + (size_t)p[0] * 0x1f1u + (n > 1 ? (size_t)p[n - 2] : 0);
    return k & (FILTER_BITS - 1);
}

typedef struct {
    uint8_t filter[FILTER_BITS / 8]; /* line_key bits of the middle lines: skips most lookups */
    idx_t *slots;        /* class index + 1, 0 = empty; open addressing, linear probing */
    size_t mask;
    uint64_t *hashes;    /* per class */
    span_t *lines;       /* per class: one representative line */
    idx_t *count_old;    /* per class: occurrences in the whole old file */
    idx_t *count_new;
    idx_t n_classes;
} classes_t;

static int
classes_init(classes_t *c, idx_t capacity)
{
    size_t slots = 16;
    while (slots < (size_t)capacity * 2)
        slots <<= 1;
    memset(c, 0, sizeof(*c));
    c->mask = slots - 1;
    c->slots = calloc(slots, sizeof(idx_t));
    c->hashes = malloc((size_t)capacity * sizeof(uint64_t));
    c->lines = malloc((size_t)capacity * sizeof(span_t));
    c->count_old = calloc((size_t)capacity, sizeof(idx_t));
    c->count_new = calloc((size_t)capacity, sizeof(idx_t));
    return c->slots && c->hashes && c->lines && c->count_old && c->count_new ? 0 : -1;
}

static void
classes_free(classes_t *c)
{
    free(c->slots);
    free(c->hashes);
    free(c->lines);
    free(c->count_old);
    free(c->count_new);
}

/* The class of a line; a new one when `insert`, else -1 for a line of no known class. */
static idx_t
classes_find(classes_t *c, const unsigned char *p, size_t n, int insert)
{
    uint64_t h = hash_bytes(p, n);
    size_t at = (size_t)h & c->mask;
    for (;;) {
        idx_t slot = c->slots[at];
        if (slot == 0)
            break;
        idx_t k = slot - 1;
        if (c->hashes[k] == h && c->lines[k].len == n && memcmp(c->lines[k].ptr, p, n) == 0)
            return k;
        at = (at + 1) & c->mask;
    }
    if (!insert)
        return -1;
    size_t key = line_key(p, n);
    c->filter[key >> 3] |= (uint8_t)(1u << (key & 7));
    idx_t k = c->n_classes++;
    c->hashes[k] = h;
    c->lines[k].ptr = p;
    c->lines[k].len = n;
    c->slots[at] = k + 1;
    return k;
}

/* Interns each line of `s`, storing class ids (when `ids`) and counting occurrences. */
static void
classes_scan(classes_t *c, span_t s, idx_t *ids, idx_t *counts, idx_t *counts_too)
{
    size_t at = 0;
    idx_t i = 0;
    while (at < s.len) {
        const unsigned char *nl = memchr(s.ptr + at, '\n', s.len - at);
        size_t end = nl ? (size_t)(nl - s.ptr) + 1 : s.len;
        idx_t k = -1;
        if (ids != NULL) {
            k = classes_find(c, s.ptr + at, end - at, 1);
        } else {
            /* A trimmed line matters only if some middle line equals it. */
            size_t key = line_key(s.ptr + at, end - at);
            if (c->filter[key >> 3] & (1u << (key & 7)))
                k = classes_find(c, s.ptr + at, end - at, 0);
        }
        if (k >= 0) {
            counts[k]++;
            if (counts_too)
                counts_too[k]++;
        }
        if (ids)
            ids[i++] = k;
        at = end;
    }
}

/* ---------------------------------------------------------------- git's preparation step */

static idx_t
maybe_limit(idx_t n_lines)
{
    idx_t limit = 1;
    for (idx_t n = n_lines; n > 0; n >>= 2)
        limit <<= 1;
    return limit < MAX_MAYBE_LIMIT ? limit : MAX_MAYBE_LIMIT;
}

static int
maybe_is_changed(const unsigned char *marks, idx_t n, idx_t i)
{
    idx_t maybes = 2, before = 0, after = 0;
    idx_t lo = i - SCAN_WINDOW > 0 ? i - SCAN_WINDOW : 0;
    idx_t hi = i + SCAN_WINDOW < n - 1 ? i + SCAN_WINDOW : n - 1;
    for (idx_t j = i - 1; j >= lo; j--) {
        if (marks[j] == MARK_DISCARD)
            before++;
        else if (marks[j] == MARK_MAYBE)
            maybes++;
        else
            break;
    }
    if (before == 0)
        return 0;
    for (idx_t j = i + 1; j <= hi; j++) {
        if (marks[j] == MARK_DISCARD)
            after++;
        else if (marks[j] == MARK_MAYBE)
            maybes++;
        else
            break;
    }
    if (after == 0)
        return 0;
    return maybes * 4 < maybes + before + after;
}

/* Keeps the lines of ids[0:n] that survive; returns how many (written over ids). */
static idx_t
keep_lines(idx_t *ids, idx_t n, const idx_t *other_counts, idx_t n_file, unsigned char *marks)
{
    idx_t limit = maybe_limit(n_file), kept = 0;
    for (idx_t i = 0; i < n; i++) {
        idx_t occurrences = other_counts[ids[i]];
        marks[i] = occurrences == 0 ? MARK_DISCARD
                 : occurrences >= limit ? MARK_MAYBE : MARK_KEEP;
    }
    for (idx_t i = 0; i < n; i++) {
        if (marks[i] == MARK_KEEP || (marks[i] == MARK_MAYBE && !maybe_is_changed(marks, n, i)))
            ids[kept++] = ids[i];
    }
    return kept;
}

/* ---------------------------------------------------------------- Myers */

/* LCS length of a[0:n] and b[0:m], exact; -1 when out of memory. */
static idx_t
lcs_length(const idx_t *a, idx_t n, const idx_t *b, idx_t m)
{
    idx_t common = 0;
    while (n > 0 && m > 0 && a[0] == b[0]) {
        a++, b++, n--, m--, common++;
    }
    while (n > 0 && m > 0 && a[n - 1] == b[m - 1]) {
        n--, m--, common++;
    }
    if (n == 0 || m == 0)
        return common;
    idx_t offset = n + m + 1;
    idx_t *v = malloc((size_t)(2 * offset + 1) * sizeof(idx_t));
    if (v == NULL)
        return -1;
    v[offset + 1] = 0;
    for (idx_t d = 0; d <= n + m; d++) {
        for (idx_t k = -d; k <= d; k += 2) {
            idx_t x;
            if (k == -d || (k != d && v[offset + k - 1] < v[offset + k + 1]))
                x = v[offset + k + 1];
            else
                x = v[offset + k - 1] + 1;
            idx_t y = x - k;
            while (x < n && y < m && a[x] == b[y]) {
                x++;
                y++;
            }
            v[offset + k] = x;
            if (x >= n && y >= m) {
                free(v);
                return common + (n + m - d) / 2;
            }
        }
    }
    free(v);
    return common; /* unreachable: d = n + m always reaches the end */
}

/* ---------------------------------------------------------------- the whole count */

/* (added, removed) into out; 0 on success, -1 when out of memory. */
static int
count_lines_impl(const unsigned char *a, size_t na, const unsigned char *b, size_t nb, idx_t out[2])
{
    out[0] = out[1] = 0;
    if (na == nb && memcmp(a, b, na) == 0)
        return 0;

    /* Leading lines: every newline inside the common byte prefix ends a common line. */
    size_t lead_end;
    size_t shorter = na < nb ? na : nb;
    idx_t lead = count_newlines(a, common_prefix(a, b, shorter), &lead_end);

    /* Trailing lines: inside the common byte suffix (not reaching into the leading lines), the
       line starts are the same on both sides; its first byte must be a line start on both. */
    size_t cap = shorter - lead_end;
    size_t tail_bytes = common_suffix(a, na, b, nb, cap);
    idx_t trail = 0;
    size_t tail_len = 0;
    if (tail_bytes > 0) {
        size_t ea = na - tail_bytes, eb = nb - tail_bytes, first;
        int boundary = (ea == 0 || a[ea - 1] == '\n') && (eb == 0 || b[eb - 1] == '\n');
        const unsigned char *nl = memchr(a + ea, '\n', tail_bytes - 1);
        if (boundary)
            first = ea;
        else
            first = nl ? (size_t)(nl - a) + 1 : na;
        size_t last;
        trail = count_newlines(a + ea, tail_bytes - 1, &last) + boundary;
        tail_len = na - first;
    }
    span_t mid_a = {a + lead_end, na - lead_end - tail_len};
    span_t mid_b = {b + lead_end, nb - lead_end - tail_len};
    idx_t n_mid_a = lines_in(mid_a), n_mid_b = lines_in(mid_b);
    if (n_mid_a == 0 || n_mid_b == 0) {
        out[0] = n_mid_b;
        out[1] = n_mid_a;
        return 0;
    }

    int status = -1;
    classes_t classes;
    idx_t *ids_a = malloc((size_t)n_mid_a * sizeof(idx_t));
    idx_t *ids_b = malloc((size_t)n_mid_b * sizeof(idx_t));
    unsigned char *marks = malloc((size_t)(n_mid_a > n_mid_b ? n_mid_a : n_mid_b));
    if (classes_init(&classes, n_mid_a + n_mid_b) < 0 || !ids_a || !ids_b || !marks)
        goto done;
    classes_scan(&classes, mid_a, ids_a, classes.count_old, NULL);
    classes_scan(&classes, mid_b, ids_b, classes.count_new, NULL);
    span_t head = {a, lead_end}, tail = {a + na - tail_len, tail_len};
    classes_scan(&classes, head, NULL, classes.count_old, classes.count_new);
    classes_scan(&classes, tail, NULL, classes.count_old, classes.count_new);

    idx_t kept_a = keep_lines(ids_a, n_mid_a, classes.count_new, lead + trail + n_mid_a, marks);
    idx_t kept_b = keep_lines(ids_b, n_mid_b, classes.count_old, lead + trail + n_mid_b, marks);
    idx_t matched = lcs_length(ids_a, kept_a, ids_b, kept_b);
    if (matched < 0)
        goto done;
    out[0] = n_mid_b - matched;
    out[1] = n_mid_a - matched;
    status = 0;
done:
    classes_free(&classes);
    free(ids_a);
    free(ids_b);
    free(marks);
    return status;
}

/* ---------------------------------------------------------------- Python bindings */

static int
get_buffers(const char *name, PyObject *const *args, Py_ssize_t nargs, Py_buffer *bufs, int n)
{
    if (nargs != n) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %d positional arguments (%zd given)",
                     name, n, nargs);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (PyObject_GetBuffer(args[i], &bufs[i], PyBUF_SIMPLE) < 0) {
            for (int j = 0; j < i; j++)
                PyBuffer_Release(&bufs[j]);
            return -1;
        }
    }
    return 0;
}

static int
buffer_is_binary(const Py_buffer *buf)
{
    size_t n = (size_t)buf->len < BINARY_SNIFF_BYTES ? (size_t)buf->len : BINARY_SNIFF_BYTES;
    return memchr(buf->buf, 0, n) != NULL;
}

static PyObject *
counts_or_error(Py_buffer bufs[2])
{
    idx_t out[2];
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = count_lines_impl(bufs[0].buf, (size_t)bufs[0].len, bufs[1].buf, (size_t)bufs[1].len,
                              out);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&bufs[0]);
    PyBuffer_Release(&bufs[1]);
    if (status < 0)
        return PyErr_NoMemory();
    return Py_BuildValue("(nn)", (Py_ssize_t)out[0], (Py_ssize_t)out[1]);
}

static PyObject *
py_count_lines(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer bufs[2];
    if (get_buffers("count_lines", args, nargs, bufs, 2) < 0)
        return NULL;
    return counts_or_error(bufs);
}

static PyObject *
py_numstat(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer bufs[2];
    if (get_buffers("numstat", args, nargs, bufs, 2) < 0)
        return NULL;
    if (buffer_is_binary(&bufs[0]) || buffer_is_binary(&bufs[1])) {
        PyBuffer_Release(&bufs[0]);
        PyBuffer_Release(&bufs[1]);
        Py_RETURN_NONE;
    }
    return counts_or_error(bufs);
}

static PyObject *
py_is_binary(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf;
    if (get_buffers("is_binary", args, nargs, &buf, 1) < 0)
        return NULL;
    int binary = buffer_is_binary(&buf);
    PyBuffer_Release(&buf);
    return PyBool_FromLong(binary);
}

static PyMethodDef methods[] = {
    {"count_lines", (PyCFunction)(void (*)(void))py_count_lines, METH_FASTCALL,
     "count_lines(old, new, /) -> (added, removed), as git diff --numstat --minimal."},
    {"numstat", (PyCFunction)(void (*)(void))py_numstat, METH_FASTCALL,
     "numstat(old, new, /) -> (added, removed), or None when either side is binary."},
    {"is_binary", (PyCFunction)(void (*)(void))py_is_binary, METH_FASTCALL,
     "is_binary(data, /) -> True when a NUL byte is among the first 8000 bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "metre.kernels._linediff",
    .m_doc = "Line counts equal to git diff --numstat --minimal (compiled twin of "
             "metre.kernels._reference).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__linediff(void)
{
    return PyModuleDef_Init(&module);
}
