/*
 * metre.kernels._codelines: lines of code of a text (blank and comment lines excluded), compiled.
 *
 * The compiled twin of kernels/_codelines_reference.py, which states the rules; property tests
 * hold the two equal. A backfill counts every blob of a history once, so this runs over every
 * byte ever committed: one pass, no allocation, the syntax read from the caller's tuples.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#define ESCAPES 1
#define MULTILINE 2
#define NESTED 1
#define WORD_START 2
#define MAX_TOKENS 16

typedef struct {
    const char *s;
    Py_ssize_t n;
} token_t;

typedef struct {
    token_t open, close;
    long flags;
} pair_t;

static int
is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static int
starts(const unsigned char *p, const unsigned char *end, token_t t)
{
    /* the first byte first: most positions start no token */
    return t.n > 0 && *p == (unsigned char)t.s[0] && end - p >= t.n
           && memcmp(p, t.s, (size_t)t.n) == 0;
}

static int
token_of(PyObject *o, token_t *t)
{
    char *s;
    if (!PyBytes_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "syntax tokens must be bytes");
        return -1;
    }
    if (PyBytes_AsStringAndSize(o, &s, &t->n) < 0) {
        return -1;
    }
    if (t->n == 0) {
        PyErr_SetString(PyExc_ValueError, "syntax tokens must not be empty");
        return -1;
    }
    t->s = s;
    return 0;
}

/* Read a tuple of up to MAX_TOKENS items: bytes (width 0), or tuples of `width` items whose
 * first two are bytes and whose third (width 3) is an int of flags. */
static Py_ssize_t
read_tokens(PyObject *seq, int width, token_t *singles, pair_t *pairs)
{
    if (!PyTuple_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "syntax lists must be tuples");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    if (n > MAX_TOKENS) {
        PyErr_SetString(PyExc_ValueError, "too many syntax tokens");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(seq, i);
        if (width == 0) {
            if (token_of(item, &singles[i]) < 0) {
                return -1;
            }
            continue;
        }
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != width) {
            PyErr_SetString(PyExc_TypeError, "syntax pairs must be tuples of the right size");
            return -1;
        }
        if (token_of(PyTuple_GET_ITEM(item, 0), &pairs[i].open) < 0
            || token_of(PyTuple_GET_ITEM(item, 1), &pairs[i].close) < 0) {
            return -1;
        }
        pairs[i].flags = 0;
        if (width == 3) {
            pairs[i].flags = PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
            if (pairs[i].flags == -1 && PyErr_Occurred()) {
                return -1;
            }
        }
    }
    return n;
}

static PyObject *
code_lines(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    token_t lines[MAX_TOKENS];
    pair_t blocks[MAX_TOKENS], strs[MAX_TOKENS];
    Py_buffer buf;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "code_lines(data, line_comments, blocks, strings, flags)");
        return NULL;
    }
    Py_ssize_t n_lines = read_tokens(args[1], 0, lines, NULL);
    Py_ssize_t n_blocks = n_lines < 0 ? -1 : read_tokens(args[2], 2, NULL, blocks);
    Py_ssize_t n_strs = n_blocks < 0 ? -1 : read_tokens(args[3], 3, NULL, strs);
    if (n_strs < 0) {
        return NULL;
    }
    long flags = PyLong_AsLong(args[4]);
    if (flags == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    /* Bytes that may start a comment or a string: any other byte outside them is code or
     * whitespace, decided without trying the tokens. */
    unsigned char opens[256] = {0};
    for (Py_ssize_t k = 0; k < n_lines; k++) {
        opens[(unsigned char)lines[k].s[0]] = 1;
    }
    for (Py_ssize_t k = 0; k < n_blocks; k++) {
        opens[(unsigned char)blocks[k].open.s[0]] = 1;
    }
    for (Py_ssize_t k = 0; k < n_strs; k++) {
        opens[(unsigned char)strs[k].open.s[0]] = 1;
    }
    /* Bytes each state must stop at; every other byte is skipped in a tight loop. On a code
     * line (code = 1, outside comments and strings): newlines and the bytes that may open a
     * comment or a string. In block k: newlines, its close (and its open when nested). In
     * string k: newlines, its close, a backslash when it has escapes. */
    unsigned char stop_code[256];
    memcpy(stop_code, opens, sizeof opens);
    stop_code['\n'] = 1;
    unsigned char stop_block[MAX_TOKENS][256], stop_str[MAX_TOKENS][256];
    const int nested = (flags & NESTED) != 0, word_start = (flags & WORD_START) != 0;
    for (Py_ssize_t k = 0; k < n_blocks; k++) {
        memset(stop_block[k], 0, 256);
        stop_block[k]['\n'] = 1;
        stop_block[k][(unsigned char)blocks[k].close.s[0]] = 1;
        if (nested) {
            stop_block[k][(unsigned char)blocks[k].open.s[0]] = 1;
        }
    }
    for (Py_ssize_t k = 0; k < n_strs; k++) {
        memset(stop_str[k], 0, 256);
        stop_str[k]['\n'] = 1;
        stop_str[k][(unsigned char)strs[k].close.s[0]] = 1;
        if (strs[k].flags & ESCAPES) {
            stop_str[k]['\\'] = 1;
        }
    }
    const unsigned char *start = buf.buf, *p = start, *end = start + buf.len;
    Py_ssize_t count = 0, depth = 0, block = 0, str = -1;
    int code = 0;

    Py_BEGIN_ALLOW_THREADS
    while (p < end) {
        unsigned char c = *p;
        if (c == '\n') {
            count += code;
            code = 0;
            p++;
            if (str >= 0 && !(strs[str].flags & MULTILINE)) {
                str = -1;
            }
            continue;
        }
        if (depth) {
            const unsigned char *stop = stop_block[block];
            while (p < end && !stop[*p]) {
                p++;
            }
            if (p == end) {
                break;
            }
            if (*p == '\n') {
                continue;
            }
            if (starts(p, end, blocks[block].close)) {
                depth--;
                p += blocks[block].close.n;
            }
            else if (nested && starts(p, end, blocks[block].open)) {
                depth++;
                p += blocks[block].open.n;
            }
            else {
                p++;
            }
            continue;
        }
        if (str >= 0) {
            if (code) { /* inside a string on a code line: only its stops matter */
                const unsigned char *stop = stop_str[str];
                while (p < end && !stop[*p]) {
                    p++;
                }
                if (p == end) {
                    break;
                }
                c = *p;
                if (c == '\n') {
                    continue;
                }
            }
            if (!is_space(c)) {
                code = 1;
            }
            if ((strs[str].flags & ESCAPES) && c == '\\' && p + 1 < end) {
                if (p[1] == '\n') {
                    count += code;
                    code = 0;
                }
                p += 2;
            }
            else if (starts(p, end, strs[str].close)) {
                p += strs[str].close.n;
                str = -1;
            }
            else {
                p++;
            }
            continue;
        }
        if (is_space(c)) {
            p++;
            continue;
        }
        if (!opens[c]) {
            code = 1;
            p++;
            while (p < end && !stop_code[*p]) { /* the rest of a code line up to a stop */
                p++;
            }
            continue;
        }
        Py_ssize_t k;
        for (k = 0; k < n_blocks; k++) {
            if (starts(p, end, blocks[k].open)) {
                break;
            }
        }
        if (k < n_blocks) {
            depth = 1;
            block = k;
            p += blocks[k].open.n;
            continue;
        }
        if (!word_start || p == start || is_space(p[-1]) || p[-1] == '\n') {
            for (k = 0; k < n_lines; k++) {
                if (starts(p, end, lines[k])) {
                    break;
                }
            }
            if (k < n_lines) {
                const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
                p = nl ? nl : end;
                continue;
            }
        }
        code = 1;
        for (k = 0; k < n_strs; k++) {
            if (starts(p, end, strs[k].open)) {
                break;
            }
        }
        if (k < n_strs) {
            str = k;
            p += strs[k].open.n;
        }
        else {
            p++;
        }
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&buf);
    return PyLong_FromSsize_t(count + code);
}

static PyMethodDef methods[] = {
    {"code_lines", (PyCFunction)(void (*)(void))code_lines, METH_FASTCALL,
     "code_lines(data, line_comments, blocks, strings, flags, /) -> int\n\n"
     "Lines holding code: see kernels/_codelines_reference.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "metre.kernels._codelines",
    "Lines of code of a text (the compiled twin of metre.kernels._codelines_reference).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__codelines(void)
{
    return PyModule_Create(&module);
}
