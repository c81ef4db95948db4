/*
 * metre.kernels._authorship: degree of authorship and truck factor (Avelino et al., ICPC 2016),
 * compiled.
 *
 * The compiled twin of kernels/_authorship_reference.py, which states the model; property tests
 * hold the two equal. Floating-point expressions are evaluated in the reference's order, and
 * setup.py builds this file with -ffp-contract=off so that no fused multiply-add changes a bit.
 *
 * Arguments are converted to int64 arrays with the GIL held; the computation runs without it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DOA_CONSTANT 3.293
#define DOA_CREATOR 1.098
#define DOA_CHANGES 0.164
#define DOA_OTHERS 0.321
#define AUTHOR_MIN_DOA 3.293
#define AUTHOR_MIN_NORMALISED 0.75

/* A sequence of ints as a freshly allocated int64 array (*out NULL and n 0 for empty). */
static int
to_int64s(PyObject *seq, const char *what, int64_t **out, Py_ssize_t *n)
{
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL)
        return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    int64_t *arr = PyMem_Malloc((size_t)(len > 0 ? len : 1) * sizeof(int64_t));
    if (arr == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < len; i++) {
        long long v = PyLong_AsLongLong(items[i]);
        if (v == -1 && PyErr_Occurred()) {
            PyMem_Free(arr);
            Py_DECREF(fast);
            return -1;
        }
        arr[i] = (int64_t)v;
    }
    Py_DECREF(fast);
    *out = arr;
    *n = len;
    return 0;
}

static double
doa(int64_t created, int64_t changes, int64_t others)
{
    double fa = created > 0 ? 1.0 : 0.0;
    return DOA_CONSTANT + DOA_CREATOR * fa + DOA_CHANGES * (double)changes -
           DOA_OTHERS * log1p((double)others);
}

/* ---------------------------------------------------------------- authorship */

static void
authorship_impl(Py_ssize_t n, const int64_t *files, const int64_t *created,
                const int64_t *changes, double *doas, char *is_author)
{
    Py_ssize_t start = 0;
    while (start < n) {
        Py_ssize_t end = start;
        int64_t total = 0;
        while (end < n && files[end] == files[start]) {
            total += changes[end];
            end++;
        }
        double best = -INFINITY;
        for (Py_ssize_t i = start; i < end; i++) {
            doas[i] = doa(created[i], changes[i], total - changes[i]);
            if (doas[i] > best)
                best = doas[i];
        }
        for (Py_ssize_t i = start; i < end; i++)
            is_author[i] = doas[i] >= AUTHOR_MIN_DOA && doas[i] / best > AUTHOR_MIN_NORMALISED;
        start = end;
    }
}

static PyObject *
py_authorship(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "authorship(files, authors, created, changes)");
        return NULL;
    }
    static const char *names[4] = {"files", "authors", "created", "changes"};
    int64_t *cols[4] = {NULL, NULL, NULL, NULL};
    Py_ssize_t lens[4] = {0, 0, 0, 0};
    PyObject *result = NULL, *doa_list = NULL, *author_list = NULL;
    double *doas = NULL;
    char *is_author = NULL;

    for (int c = 0; c < 4; c++)
        if (to_int64s(args[c], names[c], &cols[c], &lens[c]) < 0)
            goto done;
    Py_ssize_t n = lens[0];
    for (int c = 1; c < 4; c++)
        if (lens[c] != n) {
            PyErr_SetString(PyExc_ValueError, "the sequences must have the same length");
            goto done;
        }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (cols[0][i] < 0 || cols[1][i] < 0 || cols[2][i] < 0 || cols[3][i] < 0) {
            PyErr_SetString(PyExc_ValueError, "ids and counts must be non-negative");
            goto done;
        }
        if (i && cols[0][i] < cols[0][i - 1]) {
            PyErr_SetString(PyExc_ValueError, "rows must be sorted by file id");
            goto done;
        }
    }
    doas = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    is_author = PyMem_Malloc((size_t)(n > 0 ? n : 1));
    if (doas == NULL || is_author == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    authorship_impl(n, cols[0], cols[2], cols[3], doas, is_author);
    Py_END_ALLOW_THREADS

    doa_list = PyList_New(n);
    author_list = PyList_New(n);
    if (doa_list == NULL || author_list == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyFloat_FromDouble(doas[i]);
        if (d == NULL)
            goto done;
        PyList_SET_ITEM(doa_list, i, d);
        PyList_SET_ITEM(author_list, i, Py_NewRef(is_author[i] ? Py_True : Py_False));
    }
    result = PyTuple_Pack(2, doa_list, author_list);
done:
    Py_XDECREF(doa_list);
    Py_XDECREF(author_list);
    PyMem_Free(doas);
    PyMem_Free(is_author);
    for (int c = 0; c < 4; c++)
        PyMem_Free(cols[c]);
    return result;
}

/* ---------------------------------------------------------------- truck factor */

typedef struct {
    int64_t author;
    int64_t authored;
} rank_t;

static int
by_rank(const void *x, const void *y)
{
    const rank_t *a = x, *b = y;
    if (a->authored != b->authored)
        return a->authored > b->authored ? -1 : 1;
    return (a->author > b->author) - (a->author < b->author);
}

/* Fills removed[0:*n_removed]; returns -1 when out of memory. */
static int
truck_factor_impl(int64_t n_files, Py_ssize_t n, const int64_t *files, const int64_t *authors,
                  int64_t *removed, Py_ssize_t *n_removed)
{
    int64_t n_authors = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (authors[i] + 1 > n_authors)
            n_authors = authors[i] + 1;
    int64_t *authored = calloc((size_t)n_authors + 1, sizeof(int64_t));
    int64_t *start = calloc((size_t)n_authors + 2, sizeof(int64_t));
    int64_t *covering = calloc((size_t)n_files + 1, sizeof(int64_t));
    int64_t *owned = malloc(((size_t)n + 1) * sizeof(int64_t));
    rank_t *ranks = malloc(((size_t)n_authors + 1) * sizeof(rank_t));
    int status = -1;
    if (!authored || !start || !covering || !owned || !ranks)
        goto done;

    for (Py_ssize_t i = 0; i < n; i++) {
        authored[authors[i]]++;
        covering[files[i]]++;
    }
    /* Files of each author, grouped by author (counting sort, input order within an author). */
    for (int64_t a = 0; a < n_authors; a++)
        start[a + 1] = start[a] + authored[a];
    int64_t *fill = calloc((size_t)n_authors + 1, sizeof(int64_t));
    if (!fill)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++)
        owned[start[authors[i]] + fill[authors[i]]++] = files[i];
    free(fill);

    int64_t n_ranked = 0;
    for (int64_t a = 0; a < n_authors; a++)
        if (authored[a]) {
            ranks[n_ranked].author = a;
            ranks[n_ranked].authored = authored[a];
            n_ranked++;
        }
    qsort(ranks, (size_t)n_ranked, sizeof(rank_t), by_rank);

    int64_t orphans = 0;
    for (int64_t f = 0; f < n_files; f++)
        if (covering[f] == 0)
            orphans++;
    *n_removed = 0;
    for (int64_t r = 0; r < n_ranked; r++) {
        if (2 * orphans > n_files)
            break;
        int64_t a = ranks[r].author;
        for (int64_t k = start[a]; k < start[a + 1]; k++)
            if (--covering[owned[k]] == 0)
                orphans++;
        removed[(*n_removed)++] = a;
    }
    status = 0;
done:
    free(authored);
    free(start);
    free(covering);
    free(owned);
    free(ranks);
    return status;
}

static PyObject *
py_truck_factor(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "truck_factor(n_files, files, authors)");
        return NULL;
    }
    long long n_files = PyLong_AsLongLong(args[0]);
    if (n_files == -1 && PyErr_Occurred())
        return NULL;
    int64_t *files = NULL, *authors = NULL, *removed = NULL;
    Py_ssize_t nf = 0, na = 0, n_removed = 0;
    PyObject *result = NULL;
    int status = 0;

    if (to_int64s(args[1], "files", &files, &nf) < 0 ||
        to_int64s(args[2], "authors", &authors, &na) < 0)
        goto done;
    if (nf != na) {
        PyErr_SetString(PyExc_ValueError, "the sequences must have the same length");
        goto done;
    }
    if (n_files < 0) {
        PyErr_SetString(PyExc_ValueError, "n_files must be non-negative");
        goto done;
    }
    for (Py_ssize_t i = 0; i < nf; i++) {
        if (files[i] < 0 || authors[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "ids must be non-negative");
            goto done;
        }
        if (files[i] >= n_files) {
            PyErr_SetString(PyExc_ValueError, "a file id is not below n_files");
            goto done;
        }
    }
    removed = PyMem_Malloc(((size_t)nf + 1) * sizeof(int64_t));
    if (removed == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    status = truck_factor_impl((int64_t)n_files, nf, files, authors, removed, &n_removed);
    Py_END_ALLOW_THREADS
    if (status < 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyList_New(n_removed);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n_removed; i++) {
        PyObject *v = PyLong_FromLongLong(removed[i]);
        if (v == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, v);
    }
done:
    PyMem_Free(files);
    PyMem_Free(authors);
    PyMem_Free(removed);
    return result;
}

static PyMethodDef methods[] = {
    {"authorship", (PyCFunction)(void (*)(void))py_authorship, METH_FASTCALL,
     "authorship(files, authors, created, changes, /) -> (doas, is_author): Avelino's DOA."},
    {"truck_factor", (PyCFunction)(void (*)(void))py_truck_factor, METH_FASTCALL,
     "truck_factor(n_files, files, authors, /) -> authors removed, in order."},
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
    .m_name = "metre.kernels._authorship",
    .m_doc = "Degree of authorship and truck factor (compiled twin of "
             "metre.kernels._authorship_reference).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__authorship(void)
{
    return PyModuleDef_Init(&module);
}
