/*
 * workerbridge._fast: the C hot path of a round trip -- waiting for a pipe by
 * spinning, and the frame codec.
 *
 * Data flow
 * ---------
 *
 *     spin_readable(fds, seconds)   poll(fds, 0) in a loop with the GIL released,
 *         |                         sched_yield() every 16 polls, until one fd is
 *         v                         readable (True) or the budget is spent (False)
 *     the caller's blocking read or poll (woken at once if the spin saw data)
 *
 *     encode_frame(kind, id, channel, op, payload, bufs, direct) -> bytes
 *         the same msgpack bytes as workerbridge._protocol's Python encoder,
 *         or NotImplemented for an input it does not handle (the caller then
 *         uses the Python encoder, which also raises its errors)
 *
 *     decode_frame(data, frame_type) -> Frame | None
 *         parses exactly the frames our own encoders write, and validates them as
 *         the Python decoder does; None for anything else (an unknown key, a
 *         duplicate key, a wrong type, garbage): the caller then runs the Python
 *         decoder, which returns the same Frame or raises the ProtocolError.
 *         So the two decoders can never disagree: this one only ever accepts a
 *         subset of what the Python one accepts, and builds the same value.
 *
 * The module is optional (setup.py builds it with optional=True); every caller
 * has a pure-Python path with the same behaviour.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define MAX_SPIN_FDS 4
/* Longest spin accepted: anything longer is a configuration mistake. */
#define MAX_SPIN_S 0.1
/* Polls between two sched_yield() calls (a power of two). */
#define YIELD_EVERY 16

/* ------------------------------------------------------------------------ */
/* spin_readable                                                             */

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

PyDoc_STRVAR(spin_readable_doc,
"spin_readable(fds, seconds, /)\n--\n\n"
"Poll ``fds`` without blocking, yielding the CPU every few polls, until one is\n"
"readable (or at end of file, or in error) or ``seconds`` have passed.\n"
"Returns ``True`` if one is ready.  The GIL is released while spinning.");

static PyObject *
fast_spin_readable(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "spin_readable() takes exactly 2 arguments");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "fds must be a sequence of ints");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > MAX_SPIN_FDS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "spin_readable() takes 1 to %d fds", MAX_SPIN_FDS);
        return NULL;
    }
    struct pollfd pfd[MAX_SPIN_FDS];
    for (Py_ssize_t i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (fd == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        if (fd < 0 || fd > INT32_MAX) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "file descriptors must be >= 0");
            return NULL;
        }
        pfd[i].fd = (int)fd;
        pfd[i].events = POLLIN;
        pfd[i].revents = 0;
    }
    Py_DECREF(seq);
    double seconds = PyFloat_AsDouble(args[1]);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(seconds >= 0.0)) {
        PyErr_SetString(PyExc_ValueError, "seconds must be >= 0");
        return NULL;
    }
    if (seconds > MAX_SPIN_S) {
        seconds = MAX_SPIN_S;
    }
    int ready = 0;
    Py_BEGIN_ALLOW_THREADS
    int64_t end = now_ns() + (int64_t)(seconds * 1e9);
    for (unsigned spins = 1;; spins++) {
        int r = poll(pfd, (nfds_t)n, 0);
        if (r > 0 || (r < 0 && errno != EINTR)) {
            /* ready, or an error the caller's own blocking call will report */
            ready = 1;
            break;
        }
        if (now_ns() >= end) {
            break;
        }
        /* now and then, let a runnable thread of this CPU go first: on a machine
           with fewer CPUs than busy processes, a spinner must not delay the work it
           waits for (a yield on every poll costs the round trip microseconds) */
        if ((spins & (YIELD_EVERY - 1)) == 0) {
            sched_yield();
        }
    }
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ready);
}

/* ------------------------------------------------------------------------ */
/* encode_frame                                                              */

typedef struct {
    char *buf;
    Py_ssize_t len;
    Py_ssize_t cap;
    char small[512];
} out_t;

static int
out_reserve(out_t *o, Py_ssize_t n)
{
    if (o->len + n <= o->cap) {
        return 0;
    }
    Py_ssize_t cap = o->cap * 2;
    while (cap < o->len + n) {
        cap *= 2;
    }
    char *nb;
    if (o->buf == o->small) {
        nb = PyMem_Malloc((size_t)cap);
        if (nb != NULL) {
            memcpy(nb, o->small, (size_t)o->len);
        }
    }
    else {
        nb = PyMem_Realloc(o->buf, (size_t)cap);
    }
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = nb;
    o->cap = cap;
    return 0;
}

static int
out_put(out_t *o, const void *p, Py_ssize_t n)
{
    if (out_reserve(o, n) < 0) {
        return -1;
    }
    memcpy(o->buf + o->len, p, (size_t)n);
    o->len += n;
    return 0;
}

static int
out_byte(out_t *o, unsigned char b)
{
    return out_put(o, &b, 1);
}

static int
out_be(out_t *o, unsigned char tag, uint64_t v, int nbytes)
{
    unsigned char b[9];
    b[0] = tag;
    for (int i = 0; i < nbytes; i++) {
        b[1 + i] = (unsigned char)(v >> (8 * (nbytes - 1 - i)));
    }
    return out_put(o, b, 1 + nbytes);
}

/* 1: packed; 0: not an input this encoder handles (no exception set); -1: error */
static int
pack_int(out_t *o, PyObject *v)
{
    if (!PyLong_CheckExact(v)) {
        return 0;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow != 0) {
        if (overflow < 0) {
            return 0;
        }
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0; /* above 2**64 - 1: the Python packer raises */
        }
        return out_be(o, 0xcf, u, 8) < 0 ? -1 : 1;
    }
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    int r;
    if (x >= 0) {
        if (x < 128) {
            r = out_byte(o, (unsigned char)x);
        }
        else if (x < 256) {
            r = out_be(o, 0xcc, (uint64_t)x, 1);
        }
        else if (x < 65536) {
            r = out_be(o, 0xcd, (uint64_t)x, 2);
        }
        else if (x < 4294967296LL) {
            r = out_be(o, 0xce, (uint64_t)x, 4);
        }
        else {
            r = out_be(o, 0xcf, (uint64_t)x, 8);
        }
    }
    else if (x >= -32) {
        r = out_byte(o, (unsigned char)(0xe0 | (x + 32)));
    }
    else if (x >= -128) {
        r = out_be(o, 0xd0, (uint64_t)x, 1);
    }
    else if (x >= -32768) {
        r = out_be(o, 0xd1, (uint64_t)x, 2);
    }
    else if (x >= -2147483648LL) {
        r = out_be(o, 0xd2, (uint64_t)x, 4);
    }
    else {
        r = out_be(o, 0xd3, (uint64_t)x, 8);
    }
    return r < 0 ? -1 : 1;
}

static int
pack_raw(out_t *o, const char *p, Py_ssize_t n, int bin)
{
    int r;
    if (bin) {
        if (n < 256) {
            r = out_be(o, 0xc4, (uint64_t)n, 1);
        }
        else if (n < 65536) {
            r = out_be(o, 0xc5, (uint64_t)n, 2);
        }
        else if (n <= 0xffffffffLL) {
            r = out_be(o, 0xc6, (uint64_t)n, 4);
        }
        else {
            return 0;
        }
    }
    else {
        if (n < 32) {
            r = out_byte(o, (unsigned char)(0xa0 | n));
        }
        else if (n < 256) {
            r = out_be(o, 0xd9, (uint64_t)n, 1);
        }
        else if (n < 65536) {
            r = out_be(o, 0xda, (uint64_t)n, 2);
        }
        else if (n <= 0xffffffffLL) {
            r = out_be(o, 0xdb, (uint64_t)n, 4);
        }
        else {
            return 0;
        }
    }
    if (r < 0 || out_put(o, p, n) < 0) {
        return -1;
    }
    return 1;
}

static int
pack_str(out_t *o, PyObject *v)
{
    if (!PyUnicode_CheckExact(v)) {
        return 0;
    }
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(v, &n);
    if (p == NULL) {
        PyErr_Clear(); /* a lone surrogate: the Python packer raises its own error */
        return 0;
    }
    return pack_raw(o, p, n, 0);
}

static int
pack_array_header(out_t *o, Py_ssize_t n)
{
    int r;
    if (n < 16) {
        r = out_byte(o, (unsigned char)(0x90 | n));
    }
    else if (n < 65536) {
        r = out_be(o, 0xdc, (uint64_t)n, 2);
    }
    else if (n <= 0xffffffffLL) {
        r = out_be(o, 0xdd, (uint64_t)n, 4);
    }
    else {
        return 0;
    }
    return r < 0 ? -1 : 1;
}

/* the buffer table: a sequence of sequences of str and int */
static int
pack_bufs(out_t *o, PyObject *bufs)
{
    if (!PyList_CheckExact(bufs) && !PyTuple_CheckExact(bufs)) {
        return 0;
    }
    PyObject *outer = PySequence_Fast(bufs, "");
    if (outer == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(outer);
    int r = pack_array_header(o, n);
    for (Py_ssize_t i = 0; r == 1 && i < n; i++) {
        PyObject *row = PySequence_Fast_GET_ITEM(outer, i);
        if (!PyList_CheckExact(row) && !PyTuple_CheckExact(row)) {
            r = 0;
            break;
        }
        Py_ssize_t m = PySequence_Fast_GET_SIZE(row);
        PyObject **items = PySequence_Fast_ITEMS(row);
        r = pack_array_header(o, m);
        for (Py_ssize_t j = 0; r == 1 && j < m; j++) {
            r = PyUnicode_CheckExact(items[j]) ? pack_str(o, items[j]) : pack_int(o, items[j]);
        }
    }
    Py_DECREF(outer);
    return r;
}

PyDoc_STRVAR(encode_frame_doc,
"encode_frame(kind, id, channel, op, payload, bufs, direct, /)\n--\n\n"
"The frame's msgpack bytes, the same as the Python encoder's, or\n"
"``NotImplemented`` for an input this encoder leaves to the Python one.");

static PyObject *
fast_encode_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "encode_frame() takes exactly 7 arguments");
        return NULL;
    }
    PyObject *kind = args[0], *id = args[1], *channel = args[2], *op = args[3];
    PyObject *payload = args[4], *bufs = args[5];
    int has_bufs = PyObject_IsTrue(bufs);
    int direct = PyObject_IsTrue(args[6]);
    if (has_bufs < 0 || direct < 0) {
        return NULL;
    }
    out_t o;
    o.buf = o.small;
    o.len = 0;
    o.cap = (Py_ssize_t)sizeof(o.small);
    /* r: 1 so far so good, 0 an input left to the Python encoder, -1 an error */
    int r = out_byte(&o, (unsigned char)(0x80 | (6 + has_bufs + direct))) < 0 ? -1 : 1;
/* a key: a fixstr of the literal (every key is shorter than 32 bytes) */
#define KEY(lit) \
    if (r == 1) { r = out_byte(&o, (unsigned char)(0xa0 | (sizeof(lit) - 1))) < 0 ? -1 : 1; } \
    if (r == 1) { r = out_put(&o, lit, sizeof(lit) - 1) < 0 ? -1 : 1; }
    KEY("v")
    if (r == 1) {
        r = out_byte(&o, 1) < 0 ? -1 : 1; /* protocol VERSION */
    }
    KEY("id")
    if (r == 1) {
        r = id == Py_None ? (out_byte(&o, 0xc0) < 0 ? -1 : 1) : pack_int(&o, id);
    }
    KEY("kind")
    if (r == 1) {
        r = pack_str(&o, kind);
    }
    KEY("channel")
    if (r == 1) {
        r = pack_str(&o, channel);
    }
    KEY("op")
    if (r == 1) {
        r = pack_str(&o, op);
    }
    KEY("payload")
    if (r == 1) {
        if (payload == Py_None) {
            r = out_byte(&o, 0xc0) < 0 ? -1 : 1;
        }
        else if (PyBytes_CheckExact(payload)) {
            r = pack_raw(&o, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), 1);
        }
        else {
            r = 0;
        }
    }
    if (has_bufs) {
        KEY("bufs")
        if (r == 1) {
            r = pack_bufs(&o, bufs);
        }
    }
    if (direct) {
        KEY("d")
        if (r == 1) {
            r = out_byte(&o, 0xc3) < 0 ? -1 : 1;
        }
    }
#undef KEY
    PyObject *result = NULL;
    if (r == 1) {
        result = PyBytes_FromStringAndSize(o.buf, o.len);
    }
    else if (r == 0) {
        result = Py_NewRef(Py_NotImplemented);
    }
    if (o.buf != o.small) {
        PyMem_Free(o.buf);
    }
    return result;
}

/* ------------------------------------------------------------------------ */
/* decode_frame                                                              */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} in_t;

static int
in_need(in_t *in, Py_ssize_t n)
{
    return n >= 0 && in->end - in->p >= n;
}

static uint64_t
in_be(in_t *in, int nbytes)
{
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++) {
        v = (v << 8) | in->p[i];
    }
    in->p += nbytes;
    return v;
}

/* a msgpack str or bin of the given family: 1 and (*s, *n), or 0 */
static int
read_raw(in_t *in, int bin, const char **s, Py_ssize_t *n)
{
    if (!in_need(in, 1)) {
        return 0;
    }
    unsigned char t = *in->p++;
    uint64_t len;
    if (!bin && (t & 0xe0) == 0xa0) {
        len = t & 0x1f;
    }
    else if (t == (bin ? 0xc4 : 0xd9) && in_need(in, 1)) {
        len = in_be(in, 1);
    }
    else if (t == (bin ? 0xc5 : 0xda) && in_need(in, 2)) {
        len = in_be(in, 2);
    }
    else if (t == (bin ? 0xc6 : 0xdb) && in_need(in, 4)) {
        len = in_be(in, 4);
    }
    else {
        return 0;
    }
    if (!in_need(in, (Py_ssize_t)len)) {
        return 0;
    }
    *s = (const char *)in->p;
    *n = (Py_ssize_t)len;
    in->p += len;
    return 1;
}

/* a Python str from a msgpack str: new reference, or NULL (no exception set) */
static PyObject *
read_str(in_t *in)
{
    const char *s;
    Py_ssize_t n;
    if (!read_raw(in, 0, &s, &n)) {
        return NULL;
    }
    PyObject *v = PyUnicode_DecodeUTF8(s, n, NULL);
    if (v == NULL) {
        PyErr_Clear();
    }
    return v;
}

/* a msgpack int: new reference, or NULL (no exception set, unless out of memory) */
static PyObject *
read_int(in_t *in, int nonnegative)
{
    if (!in_need(in, 1)) {
        return NULL;
    }
    unsigned char t = *in->p;
    if (t < 0x80) {
        in->p++;
        return PyLong_FromLong(t);
    }
    if (t >= 0xcc && t <= 0xcf) {
        int nb = 1 << (t - 0xcc);
        if (!in_need(in, 1 + nb)) {
            return NULL;
        }
        in->p++;
        return PyLong_FromUnsignedLongLong(in_be(in, nb));
    }
    if (nonnegative) {
        return NULL;
    }
    if (t >= 0xe0) {
        in->p++;
        return PyLong_FromLong((long)(signed char)t);
    }
    if (t >= 0xd0 && t <= 0xd3) {
        int nb = 1 << (t - 0xd0);
        if (!in_need(in, 1 + nb)) {
            return NULL;
        }
        in->p++;
        uint64_t u = in_be(in, nb);
        int64_t x;
        switch (nb) {
        case 1: x = (int8_t)u; break;
        case 2: x = (int16_t)u; break;
        case 4: x = (int32_t)u; break;
        default: x = (int64_t)u; break;
        }
        return PyLong_FromLongLong(x);
    }
    return NULL;
}

static int
read_array_header(in_t *in, Py_ssize_t *n)
{
    if (!in_need(in, 1)) {
        return 0;
    }
    unsigned char t = *in->p++;
    if ((t & 0xf0) == 0x90) {
        *n = t & 0x0f;
    }
    else if (t == 0xdc && in_need(in, 2)) {
        *n = (Py_ssize_t)in_be(in, 2);
    }
    else if (t == 0xdd && in_need(in, 4)) {
        *n = (Py_ssize_t)in_be(in, 4);
    }
    else {
        return 0;
    }
    /* every element takes at least one byte: a length beyond the data is garbage */
    return in_need(in, *n);
}

/* the buffer table: a list of [str, int >= 0, int >= 0]; new reference or NULL */
static PyObject *
read_bufs(in_t *in)
{
    Py_ssize_t n;
    if (!read_array_header(in, &n)) {
        return NULL;
    }
    PyObject *table = PyList_New(n);
    if (table == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t m;
        if (!read_array_header(in, &m) || m != 3) {
            Py_DECREF(table);
            return NULL;
        }
        PyObject *name = read_str(in);
        PyObject *off = name ? read_int(in, 1) : NULL;
        PyObject *len = off ? read_int(in, 1) : NULL;
        if (len == NULL) {
            Py_XDECREF(name);
            Py_XDECREF(off);
            Py_DECREF(table);
            return NULL;
        }
        PyObject *row = PyList_New(3);
        if (row == NULL) {
            Py_DECREF(name);
            Py_DECREF(off);
            Py_DECREF(len);
            Py_DECREF(table);
            return NULL;
        }
        PyList_SET_ITEM(row, 0, name);
        PyList_SET_ITEM(row, 1, off);
        PyList_SET_ITEM(row, 2, len);
        PyList_SET_ITEM(table, i, row);
    }
    return table;
}

enum { F_V, F_ID, F_KIND, F_CHANNEL, F_OP, F_PAYLOAD, F_BUFS, F_D, F_COUNT };
static const char *const field_names[F_COUNT] = {
    "v", "id", "kind", "channel", "op", "payload", "bufs", "d",
};
#define N_KINDS 6
static const char *const kind_names[N_KINDS] = {
    "hello", "ready", "request", "response", "error", "shutdown",
};
static PyObject *kind_objects[N_KINDS];
static PyObject *empty_str;

PyDoc_STRVAR(decode_frame_doc,
"decode_frame(data, frame_type, /)\n--\n\n"
"``frame_type(kind, id, channel, op, payload, bufs, direct)`` for a frame as\n"
"our encoders write it, validated as the Python decoder validates; ``None``\n"
"for anything else (the Python decoder then decides).");

static PyObject *
fast_decode_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode_frame() takes exactly 2 arguments");
        return NULL;
    }
    PyTypeObject *frame_type = (PyTypeObject *)args[1];
    if (!PyType_Check(args[1]) || !PyType_IsSubtype(frame_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "frame_type must be a tuple subclass");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    in_t in = {(const unsigned char *)view.buf, (const unsigned char *)view.buf + view.len};
    PyObject *val[F_COUNT] = {NULL};
    int seen[F_COUNT] = {0};
    int ok = 0;
    int kind_index = -1;
    if (!in_need(&in, 1) || (*in.p & 0xf0) != 0x80) {
        goto done;
    }
    int entries = *in.p++ & 0x0f;
    for (int e = 0; e < entries; e++) {
        if (!in_need(&in, 1) || (*in.p & 0xe0) != 0xa0) {
            goto done;
        }
        Py_ssize_t klen = *in.p & 0x1f;
        if (!in_need(&in, 1 + klen)) {
            goto done;
        }
        const char *key = (const char *)in.p + 1;
        in.p += 1 + klen;
        int f = -1;
        for (int i = 0; i < F_COUNT; i++) {
            if ((Py_ssize_t)strlen(field_names[i]) == klen &&
                memcmp(field_names[i], key, (size_t)klen) == 0) {
                f = i;
                break;
            }
        }
        if (f < 0 || seen[f] || !in_need(&in, 1)) {
            goto done; /* unknown or repeated key: the Python decoder decides */
        }
        seen[f] = 1;
        unsigned char t = *in.p;
        switch (f) {
        case F_V:
            if (t != 1) { /* VERSION */
                goto done;
            }
            in.p++;
            break;
        case F_ID:
            if (t == 0xc0) {
                in.p++;
                val[f] = Py_NewRef(Py_None);
            }
            else if ((val[f] = read_int(&in, 0)) == NULL) {
                goto done;
            }
            break;
        case F_KIND: {
            const char *s;
            Py_ssize_t n;
            if (!read_raw(&in, 0, &s, &n)) {
                goto done;
            }
            for (int k = 0; k < N_KINDS; k++) {
                if ((Py_ssize_t)strlen(kind_names[k]) == n &&
                    memcmp(kind_names[k], s, (size_t)n) == 0) {
                    kind_index = k;
                }
            }
            if (kind_index < 0) {
                goto done;
            }
            break;
        }
        case F_CHANNEL:
        case F_OP:
            if ((val[f] = read_str(&in)) == NULL) {
                goto done;
            }
            break;
        case F_PAYLOAD:
            if (t == 0xc0) {
                in.p++;
                val[f] = Py_NewRef(Py_None);
            }
            else {
                const char *s;
                Py_ssize_t n;
                if (!read_raw(&in, 1, &s, &n) ||
                    (val[f] = PyBytes_FromStringAndSize(s, n)) == NULL) {
                    goto done;
                }
            }
            break;
        case F_BUFS:
            if (t == 0xc0) {
                in.p++;
            }
            else if ((val[f] = read_bufs(&in)) == NULL) {
                goto done;
            }
            break;
        case F_D:
            if (t != 0xc2 && t != 0xc3) {
                goto done;
            }
            in.p++;
            val[f] = Py_NewRef(t == 0xc3 ? Py_True : Py_False);
            break;
        }
    }
    if (in.p != in.end || !seen[F_V] || kind_index < 0) {
        goto done;
    }
    if (kind_index == 2 /* request */ &&
        (val[F_ID] == NULL || val[F_ID] == Py_None || val[F_CHANNEL] == NULL ||
         PyUnicode_GET_LENGTH(val[F_CHANNEL]) == 0 || val[F_OP] == NULL ||
         PyUnicode_GET_LENGTH(val[F_OP]) == 0)) {
        goto done;
    }
    ok = 1;
done:
    PyBuffer_Release(&view);
    if (PyErr_Occurred()) { /* out of memory: not a verdict on the frame */
        for (int i = 0; i < F_COUNT; i++) {
            Py_XDECREF(val[i]);
        }
        return NULL;
    }
    if (!ok) {
        for (int i = 0; i < F_COUNT; i++) {
            Py_XDECREF(val[i]);
        }
        Py_RETURN_NONE;
    }
    PyObject *items[7] = {
        Py_NewRef(kind_objects[kind_index]),
        val[F_ID] ? val[F_ID] : Py_NewRef(Py_None),
        val[F_CHANNEL] ? val[F_CHANNEL] : Py_NewRef(empty_str),
        val[F_OP] ? val[F_OP] : Py_NewRef(empty_str),
        val[F_PAYLOAD] ? val[F_PAYLOAD] : Py_NewRef(Py_None),
        val[F_BUFS] ? val[F_BUFS] : PyList_New(0),
        val[F_D] ? val[F_D] : Py_NewRef(Py_False),
    };
    PyObject *frame = items[5] ? frame_type->tp_alloc(frame_type, 7) : NULL;
    if (frame == NULL) {
        for (int i = 0; i < 7; i++) {
            Py_XDECREF(items[i]);
        }
        return NULL;
    }
    for (int i = 0; i < 7; i++) {
        PyTuple_SET_ITEM(frame, i, items[i]);
    }
    return frame;
}

/* ------------------------------------------------------------------------ */
/* module                                                                    */

static PyMethodDef module_methods[] = {
    {"spin_readable", (PyCFunction)(void (*)(void))fast_spin_readable, METH_FASTCALL,
     spin_readable_doc},
    {"encode_frame", (PyCFunction)(void (*)(void))fast_encode_frame, METH_FASTCALL,
     encode_frame_doc},
    {"decode_frame", (PyCFunction)(void (*)(void))fast_decode_frame, METH_FASTCALL,
     decode_frame_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fast_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "workerbridge._fast",
    .m_doc = "The C hot path of a round trip: spin waits and the frame codec.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__fast(void)
{
    for (int k = 0; k < N_KINDS; k++) {
        if (kind_objects[k] == NULL &&
            (kind_objects[k] = PyUnicode_InternFromString(kind_names[k])) == NULL) {
            return NULL;
        }
    }
    if (empty_str == NULL && (empty_str = PyUnicode_FromString("")) == NULL) {
        return NULL;
    }
    return PyModule_Create(&fast_module);
}
