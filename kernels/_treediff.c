/*
 * metre.kernels._treediff: the differing entries of two git tree objects, compiled.
 *
 * The compiled twin of kernels/_treediff_reference.py, which states the format and the result;
 * property tests hold the two equal. Written for metre from the description of git's tree
 * format (entries "<octal mode> <name>\0<sha>", sorted by name with a directory's name
 * compared as if followed by '/'), not derived from git's or libgit2's sources.
 *
 * Both bodies are walked side by side once; only the entries that differ become Python
 * objects. Every entry of both sides is checked (format and strict order), so a malformed or
 * unsorted tree raises ValueError whatever the other side holds, as the reference does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#define S_IFMT_BITS 0170000u
#define S_IFDIR_BITS 0040000u
#define MAX_MODE_DIGITS 7

typedef struct {
    const unsigned char *name;
    Py_ssize_t name_len;
    unsigned int mode;
    int is_dir;
    const unsigned char *sha;
} entry_t;

typedef struct {
    const unsigned char *pos;
    const unsigned char *end;
    Py_ssize_t sha_len;
    entry_t last;
    int has_last;
} cursor_t;

/* The byte at position i of an entry's sort key (its name, then '/' for a directory). */
static inline int
key_at(const entry_t *e, Py_ssize_t i)
{
    return i < e->name_len ? e->name[i] : '/';
}

/* Compare two entries' sort keys as byte strings (a prefix sorts first). */
static int
key_cmp(const entry_t *a, const entry_t *b)
{
    Py_ssize_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int r = memcmp(a->name, b->name, (size_t)n);
    if (r != 0) {
        return r;
    }
    Py_ssize_t la = a->name_len + a->is_dir;
    Py_ssize_t lb = b->name_len + b->is_dir;
    for (Py_ssize_t i = n; i < la && i < lb; i++) {
        int ca = key_at(a, i), cb = key_at(b, i);
        if (ca != cb) {
            return ca - cb;
        }
    }
    return (la > lb) - (la < lb);
}

/* The next entry into *e: 1, or 0 at the end, or -1 with ValueError set. */
static int
next_entry(cursor_t *c, entry_t *e)
{
    const unsigned char *p = c->pos;
    if (p >= c->end) {
        return 0;
    }
    unsigned int mode = 0;
    int digits = 0;
    while (p < c->end && *p != ' ') {
        if (*p < '0' || *p > '7' || digits >= MAX_MODE_DIGITS) {
            PyErr_SetString(PyExc_ValueError,
                            "malformed tree entry: mode is not a short octal number");
            return -1;
        }
        mode = mode * 8u + (unsigned int)(*p - '0');
        digits++;
        p++;
    }
    if (digits == 0 || p >= c->end) {
        PyErr_SetString(PyExc_ValueError, "malformed tree entry: no mode");
        return -1;
    }
    p++; /* the space */
    const unsigned char *nul = memchr(p, 0, (size_t)(c->end - p));
    if (nul == NULL || c->end - (nul + 1) < c->sha_len) {
        PyErr_SetString(PyExc_ValueError, "malformed tree entry: truncated");
        return -1;
    }
    e->name = p;
    e->name_len = nul - p;
    e->mode = mode;
    e->is_dir = (mode & S_IFMT_BITS) == S_IFDIR_BITS;
    e->sha = nul + 1;
    if (c->has_last && key_cmp(e, &c->last) <= 0) {
        PyErr_SetString(PyExc_ValueError, "tree entries out of order");
        return -1;
    }
    c->last = *e;
    c->has_last = 1;
    c->pos = nul + 1 + c->sha_len;
    return 1;
}

/* Append (name, old mode, old sha, new mode, new sha) to out; NULL sides are None. */
static int
emit(PyObject *out, const entry_t *name_of, const entry_t *o, const entry_t *n,
     Py_ssize_t sha_len)
{
    PyObject *t = PyTuple_New(5);
    if (t == NULL) {
        return -1;
    }
    PyObject *name = PyBytes_FromStringAndSize((const char *)name_of->name, name_of->name_len);
    if (name == NULL) {
        Py_DECREF(t);
        return -1;
    }
    PyTuple_SET_ITEM(t, 0, name);
    const entry_t *sides[2] = {o, n};
    for (int s = 0; s < 2; s++) {
        PyObject *mode, *sha;
        if (sides[s] == NULL) {
            mode = Py_NewRef(Py_None);
            sha = Py_NewRef(Py_None);
        } else {
            mode = PyLong_FromUnsignedLong(sides[s]->mode);
            if (mode == NULL) {
                Py_DECREF(t);
                return -1;
            }
            sha = PyBytes_FromStringAndSize((const char *)sides[s]->sha, sha_len);
            if (sha == NULL) {
                Py_DECREF(mode);
                Py_DECREF(t);
                return -1;
            }
        }
        PyTuple_SET_ITEM(t, 1 + 2 * s, mode);
        PyTuple_SET_ITEM(t, 2 + 2 * s, sha);
    }
    int r = PyList_Append(out, t);
    Py_DECREF(t);
    return r;
}

static PyObject *
py_tree_diff(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "tree_diff(old, new, sha_len=20)");
        return NULL;
    }
    if (!PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "tree_diff: old and new must be bytes");
        return NULL;
    }
    Py_ssize_t sha_len = 20;
    if (nargs == 3) {
        sha_len = PyLong_AsSsize_t(args[2]);
        if (sha_len == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (sha_len <= 0) {
            PyErr_SetString(PyExc_ValueError, "sha_len must be positive");
            return NULL;
        }
    }
    cursor_t a = {(const unsigned char *)PyBytes_AS_STRING(args[0]), NULL, sha_len, {0}, 0};
    a.end = a.pos + PyBytes_GET_SIZE(args[0]);
    cursor_t b = {(const unsigned char *)PyBytes_AS_STRING(args[1]), NULL, sha_len, {0}, 0};
    b.end = b.pos + PyBytes_GET_SIZE(args[1]);

    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    entry_t x, y;
    int hx = next_entry(&a, &x);
    int hy = hx < 0 ? 0 : next_entry(&b, &y);
    while (hx > 0 || hy > 0) {
        if (hx < 0 || hy < 0) {
            goto fail;
        }
        int cmp = hx == 0 ? 1 : hy == 0 ? -1 : key_cmp(&x, &y);
        if (cmp < 0) {
            if (emit(out, &x, &x, NULL, sha_len) < 0) {
                goto fail;
            }
            hx = next_entry(&a, &x);
        } else if (cmp > 0) {
            if (emit(out, &y, NULL, &y, sha_len) < 0) {
                goto fail;
            }
            hy = next_entry(&b, &y);
        } else {
            if (x.mode != y.mode || memcmp(x.sha, y.sha, (size_t)sha_len) != 0) {
                if (emit(out, &x, &x, &y, sha_len) < 0) {
                    goto fail;
                }
            }
            hx = next_entry(&a, &x);
            hy = hx < 0 ? 0 : next_entry(&b, &y);
        }
    }
    if (hx < 0 || hy < 0) {
        goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"tree_diff", (PyCFunction)(void (*)(void))py_tree_diff, METH_FASTCALL,
     "tree_diff(old, new, sha_len=20) -> [(name, old_mode, old_sha, new_mode, new_sha)]\n"
     "Entries whose mode or sha differ between two raw git tree bodies; see "
     "metre.kernels._treediff_reference."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "metre.kernels._treediff",
    "The differing entries of two git tree objects (compiled twin of "
    "metre.kernels._treediff_reference).",
    0,
    methods,
    slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__treediff(void)
{
    return PyModuleDef_Init(&module);
}
