/*
 * metre.kernels._ancestry: lowest common ancestors (merge bases) in a topologically numbered commit
 * graph, compiled.
 *
 * The compiled twin of kernels/_ancestry_reference.py, which states the graph's layout, the
 * result and the method; property tests hold the two equal. Written for metre from the idea of
 * git's merge-base search (paint ancestors of each side, stop when only stale commits remain)
 * with generation order as its commit-graph gives it; not derived from git's sources.
 *
 * starts and parents are buffers of C ints (array('i')), read in place. The paint is one byte
 * per commit up to the highest input, allocated per call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>

#define P_FIRST 1u
#define P_OTHER 2u
#define P_STALE 4u
#define P_BOTH (P_FIRST | P_OTHER)

static int
int_buffer(PyObject *obj, Py_buffer *view, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    if (view->itemsize != (Py_ssize_t)sizeof(int) || view->format == NULL ||
        (view->format[0] != 'i' && !(view->format[0] == '@' && view->format[1] == 'i')) ||
        view->format[view->format[0] == '@' ? 2 : 1] != '\0') {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must be a buffer of C ints (array('i'))", what);
        return -1;
    }
    return 0;
}

static PyObject *
py_lca(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "lowest_common_ancestors(starts, parents, first, others)");
        return NULL;
    }
    Py_buffer sb, pb;
    if (int_buffer(args[0], &sb, "starts") < 0) {
        return NULL;
    }
    if (int_buffer(args[1], &pb, "parents") < 0) {
        PyBuffer_Release(&sb);
        return NULL;
    }
    PyObject *result = NULL;
    PyObject *others = NULL;
    unsigned char *paint = NULL;
    const int *starts = (const int *)sb.buf;
    const int *parents = (const int *)pb.buf;
    Py_ssize_t n = sb.len / (Py_ssize_t)sizeof(int) - 1;
    Py_ssize_t np = pb.len / (Py_ssize_t)sizeof(int);
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "starts must hold n + 1 offsets");
        goto done;
    }
    Py_ssize_t first = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (first == -1 && PyErr_Occurred()) {
        goto done;
    }
    others = PySequence_Fast(args[3], "others must be a sequence of ints");
    if (others == NULL) {
        goto done;
    }
    Py_ssize_t k = PySequence_Fast_GET_SIZE(others);
    if (first < 0 || first >= n) {
        PyErr_Format(PyExc_ValueError, "commit %zd is not in the graph of %zd commits", first, n);
        goto done;
    }
    Py_ssize_t top = first;
    for (Py_ssize_t j = 0; j < k; j++) {
        Py_ssize_t c = PyNumber_AsSsize_t(PySequence_Fast_GET_ITEM(others, j), PyExc_OverflowError);
        if (c == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (c < 0 || c >= n) {
            PyErr_Format(PyExc_ValueError, "commit %zd is not in the graph of %zd commits", c, n);
            goto done;
        }
        if (c > top) {
            top = c;
        }
    }
    result = PyList_New(0);
    if (result == NULL || k == 0) {
        goto done;
    }
    paint = calloc((size_t)top + 1, 1);
    if (paint == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_ssize_t live = 0;
    paint[first] = P_FIRST;
    live = 1;
    for (Py_ssize_t j = 0; j < k; j++) {
        Py_ssize_t c = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(others, j));
        if (!paint[c]) {
            live++;
        }
        paint[c] |= P_OTHER;
    }
    for (Py_ssize_t i = top; i >= 0; i--) {
        unsigned int f = paint[i];
        if (!f) {
            continue;
        }
        if (!(f & P_STALE)) {
            live--;
            if ((f & P_BOTH) == P_BOTH) {
                PyObject *v = PyLong_FromSsize_t(i);
                if (v == NULL || PyList_Append(result, v) < 0) {
                    Py_XDECREF(v);
                    goto fail;
                }
                Py_DECREF(v);
                f |= P_STALE;
            }
        }
        int lo = starts[i], hi = starts[i + 1];
        if (lo < 0 || lo > hi || hi > np) {
            PyErr_Format(PyExc_ValueError, "starts of commit %zd are out of range", i);
            goto fail;
        }
        for (int q = lo; q < hi; q++) {
            int p = parents[q];
            if (p < 0 || p >= i) {
                PyErr_Format(PyExc_ValueError, "parent %d of commit %zd is not below it", p, i);
                goto fail;
            }
            unsigned int old = paint[p];
            unsigned int new = old | f;
            if (new != old) {
                paint[p] = (unsigned char)new;
                if (!old) {
                    live += !(new & P_STALE);
                } else if (!(old & P_STALE) && (new & P_STALE)) {
                    live--;
                }
            }
        }
        if (!live) {
            break;
        }
    }
    if (PyList_Reverse(result) < 0) {
        goto fail;
    }
    goto done;
fail:
    Py_CLEAR(result);
done:
    free(paint);
    Py_XDECREF(others);
    PyBuffer_Release(&pb);
    PyBuffer_Release(&sb);
    return result;
}

static PyMethodDef methods[] = {
    {"lowest_common_ancestors", (PyCFunction)(void (*)(void))py_lca, METH_FASTCALL,
     "lowest_common_ancestors(starts, parents, first, others) -> [commit]\n"
     "Merge bases of first and others in a topologically numbered graph; see "
     "metre.kernels._ancestry_reference."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "metre.kernels._ancestry",
    "Lowest common ancestors in a topologically numbered commit graph (compiled twin of "
    "metre.kernels._ancestry_reference).",
    0,
    methods,
    slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__ancestry(void)
{
    return PyModuleDef_Init(&module);
}
