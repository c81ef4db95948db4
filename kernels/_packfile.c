/*
 * metre.kernels._packfile: objects inside git pack files, read from their bytes, compiled.
 *
 * The compiled twin of kernels/_packfile_reference.py, which states the format (git's
 * documented version-2 pack index and pack entry layout) and the results; tests hold the two
 * equal. Written for metre from that description, not derived from git's or libgit2's sources.
 *
 * Why compiled: a backfill reads every blob and tree of a history (160,000 objects for
 * pytest's); per object, finding it in the index, parsing its header and inflating it cost
 * about 10 µs of Python calls, more than zlib itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#define NAMES_AT (8 + 1024)
#define OFS_DELTA 6
#define REF_DELTA 7

static const unsigned char MAGIC[8] = {0xff, 't', 'O', 'c', 0, 0, 0, 2};

static uint32_t
be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static PyObject *
py_pack_find(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "pack_find(index, sha)");
        return NULL;
    }
    if (!PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "pack_find: sha must be bytes");
        return NULL;
    }
    if (PyBytes_GET_SIZE(args[1]) != 20) {
        PyErr_SetString(PyExc_ValueError, "an object name is 20 bytes");
        return NULL;
    }
    const unsigned char *sha = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_buffer buf;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *idx = buf.buf;
    Py_ssize_t size = buf.len;
    long long found = -1;
    const char *error = NULL;
    if (size < NAMES_AT || memcmp(idx, MAGIC, 8) != 0) {
        error = "not a version-2 pack index";
        goto done;
    }
    unsigned first = sha[0];
    uint32_t count = be32(idx + 8 + 4 * 255);
    uint32_t lo = first ? be32(idx + 8 + 4 * (first - 1)) : 0;
    uint32_t hi = be32(idx + 8 + 4 * first);
    Py_ssize_t offsets = NAMES_AT + (Py_ssize_t)24 * count;
    if (!(lo <= hi && hi <= count) || size < offsets + (Py_ssize_t)4 * count) {
        error = "pack index is truncated or inconsistent";
        goto done;
    }
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int r = memcmp(idx + NAMES_AT + (Py_ssize_t)20 * mid, sha, 20);
        if (r < 0) {
            lo = mid + 1;
        } else if (r > 0) {
            hi = mid;
        } else {
            uint32_t off = be32(idx + offsets + (Py_ssize_t)4 * mid);
            if (off & 0x80000000u) {
                Py_ssize_t large =
                    offsets + (Py_ssize_t)4 * count + (Py_ssize_t)8 * (off & 0x7fffffffu);
                if (size < large + 8) {
                    error = "pack index is truncated or inconsistent";
                    goto done;
                }
                found = (long long)(((uint64_t)be32(idx + large) << 32) | be32(idx + large + 4));
            } else {
                found = off;
            }
            break;
        }
    }
done:
    PyBuffer_Release(&buf);
    if (error != NULL) {
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    return PyLong_FromLongLong(found);
}

/* Inflate exactly `size` bytes from in[0:avail] into a new bytes object (NULL + error). */
static PyObject *
inflate_exactly(const unsigned char *in, Py_ssize_t avail, Py_ssize_t size, Py_ssize_t *used_out)
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL || (size == 0 && used_out == NULL)) {
        return out;
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_MemoryError, "zlib could not start");
        return NULL;
    }
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
    Py_ssize_t got = 0;
    int ret = Z_OK;
    while (got < size) {
        uInt in_now = avail > (Py_ssize_t)UINT_MAX ? UINT_MAX : (uInt)avail;
        Py_ssize_t want = size - got;
        uInt out_now = want > (Py_ssize_t)UINT_MAX ? UINT_MAX : (uInt)want;
        z.next_in = (Bytef *)in;
        z.avail_in = in_now;
        z.next_out = dst + got;
        z.avail_out = out_now;
        ret = inflate(&z, Z_SYNC_FLUSH);
        Py_ssize_t used = (Py_ssize_t)(in_now - z.avail_in);
        in += used;
        avail -= used;
        got += (Py_ssize_t)(out_now - z.avail_out);
        if (ret == Z_STREAM_END || (ret != Z_OK && ret != Z_BUF_ERROR)) {
            break;
        }
        if (ret == Z_BUF_ERROR && avail == 0) {
            break; /* the stream is cut short */
        }
    }
    if (got == size && used_out != NULL) {
        /* read on to the end of the stream (its checksum): where the next entry starts */
        unsigned char spare;
        while (ret != Z_STREAM_END && (ret == Z_OK || ret == Z_BUF_ERROR)) {
            uInt in_now = avail > (Py_ssize_t)UINT_MAX ? UINT_MAX : (uInt)avail;
            z.next_in = (Bytef *)in;
            z.avail_in = in_now;
            z.next_out = &spare;
            z.avail_out = 1;
            ret = inflate(&z, Z_SYNC_FLUSH);
            Py_ssize_t used = (Py_ssize_t)(in_now - z.avail_in);
            in += used;
            avail -= used;
            if (z.avail_out == 0) {
                got = size + 1; /* more data than the header says */
                break;
            }
            if (used == 0 && ret != Z_STREAM_END) {
                break;
            }
        }
        if (ret != Z_STREAM_END && got == size) {
            got = -1; /* the stream does not end */
        }
        *used_out = (Py_ssize_t)z.total_in;
    }
    inflateEnd(&z);
    if (got == size) {
        return out;
    }
    if (used_out != NULL && (got == size + 1 || got == -1) && ret != Z_DATA_ERROR) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, got == -1 ? "object data does not end"
                                                    : "object data is longer than its header says");
        return NULL;
    }
    Py_DECREF(out);
    if (ret == Z_DATA_ERROR || ret == Z_NEED_DICT || ret == Z_STREAM_ERROR) {
        PyErr_Format(PyExc_ValueError, "damaged object data: %s", z.msg ? z.msg : "zlib error");
    } else if (ret == Z_MEM_ERROR) {
        PyErr_NoMemory();
    } else {
        PyErr_Format(PyExc_ValueError, "object inflated to %zd bytes, expected %zd", got, size);
    }
    return NULL;
}

static PyObject *
entry(PyObject *const *args, Py_ssize_t nargs, int with_end)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, with_end ? "pack_object(pack, offset)"
                                                  : "pack_entry(pack, offset)");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer buf;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *pack = buf.buf;
    Py_ssize_t end = buf.len;
    PyObject *base = NULL, *data = NULL, *result = NULL;
    const char *error = NULL;
    if (offset < 0 || offset >= end) {
        error = "pack offset out of range";
        goto done;
    }
    Py_ssize_t pos = offset;
    unsigned c = pack[pos++];
    int type_num = (c >> 4) & 7;
    uint64_t size = c & 0x0f;
    int shift = 4;
    while (c & 0x80) {
        if (pos >= end || shift > 56) {
            error = "malformed pack entry header";
            goto done;
        }
        c = pack[pos++];
        size |= (uint64_t)(c & 0x7f) << shift;
        shift += 7;
    }
    if (size > (uint64_t)PY_SSIZE_T_MAX) {
        error = "malformed pack entry header";
        goto done;
    }
    if (type_num == OFS_DELTA) {
        if (pos >= end) {
            error = "malformed pack entry header";
            goto done;
        }
        c = pack[pos++];
        uint64_t back = c & 0x7f;
        while (c & 0x80) {
            if (pos >= end || back >= ((uint64_t)1 << 56)) {
                error = "malformed pack entry header";
                goto done;
            }
            c = pack[pos++];
            back = ((back + 1) << 7) | (c & 0x7f);
        }
        if (back == 0 || back > (uint64_t)offset) {
            error = "delta base offset out of range";
            goto done;
        }
        base = PyLong_FromSsize_t(offset - (Py_ssize_t)back);
    } else if (type_num == REF_DELTA) {
        if (end - pos < 20) {
            error = "malformed pack entry header";
            goto done;
        }
        base = PyBytes_FromStringAndSize((const char *)pack + pos, 20);
        pos += 20;
    } else if (type_num < 1 || type_num > 4) {
        PyBuffer_Release(&buf);
        PyErr_Format(PyExc_ValueError, "unknown pack entry type %d", type_num);
        return NULL;
    } else {
        base = Py_NewRef(Py_None);
    }
    if (base == NULL) {
        goto done;
    }
    Py_ssize_t used = 0;
    data = inflate_exactly(pack + pos, end - pos, (Py_ssize_t)size, with_end ? &used : NULL);
    if (data == NULL) {
        goto done;
    }
    if (with_end) {
        result = Py_BuildValue("(iNNn)", type_num, data, base, pos + used);
    } else {
        result = Py_BuildValue("(iNN)", type_num, data, base);
    }
    data = base = NULL; /* stolen (or released by Py_BuildValue on failure) */
done:
    PyBuffer_Release(&buf);
    Py_XDECREF(base);
    Py_XDECREF(data);
    if (error != NULL) {
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    return result;
}

static PyObject *
py_pack_entry(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return entry(args, nargs, 0);
}

static PyObject *
py_pack_object(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return entry(args, nargs, 1);
}

static PyMethodDef methods[] = {
    {"pack_find", (PyCFunction)(void (*)(void))py_pack_find, METH_FASTCALL,
     "pack_find(index, sha) -> offset of the object in a version-2 pack index, or -1."},
    {"pack_entry", (PyCFunction)(void (*)(void))py_pack_entry, METH_FASTCALL,
     "pack_entry(pack, offset) -> (type, inflated data, base: None | offset | name)."},
    {"pack_object", (PyCFunction)(void (*)(void))py_pack_object, METH_FASTCALL,
     "pack_object(pack, offset) -> (type, data, base, end): pack_entry and where it ends."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "metre.kernels._packfile",
    .m_doc = "Objects inside git pack files (compiled twin of metre.kernels._packfile_reference).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__packfile(void)
{
    return PyModuleDef_Init(&module);
}
