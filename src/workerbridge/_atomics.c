/*
 * workerbridge._atomics: lock-free int64 atomics and futex waits on shared memory.
 *
 * Data flow
 * ---------
 *
 *     Segment.buf (memoryview of an mmap of /dev/shm/wb_...)
 *         |  PyObject_GetBuffer(PyBUF_WRITABLE): the mapping is pinned, so
 *         |  Segment.close() raises BufferError until release() is called
 *         v
 *     AtomicArray --- load/store/fetch_add/exchange/compare_exchange --->
 *         |            __atomic_* builtins, __ATOMIC_SEQ_CST, on int64 slots
 *         |
 *         +-- wait(i, expected) --> FUTEX_WAIT on the slot's low 32-bit half
 *         |                         (shared futex: no FUTEX_PRIVATE_FLAG, so a
 *         |                         wake from another process reaches it)
 *         +-- wake(i, n) ---------> FUTEX_WAKE
 *
 *     watch_parent(fd, names) --> detached pthread: read(fd) until EOF/error,
 *                                 unlink /dev/shm/<name>... (a name holding * ? [
 *                                 is a glob pattern), kill(getpid(), SIGKILL)
 *
 * Threading: every operation except the blocking part of wait() runs with the
 * GIL held, so release() cannot race with them.  wait() drops the GIL around
 * the futex call; the waiters in progress are kept in a list so that release()
 * can wake them and postpone dropping the buffer until the last one has left.
 *
 * The pure-Python fallback with the same interface is workerbridge._atomics_py.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SLOT_SIZE 8
/* Timeouts above this (about 31 years) are treated as "wait forever". */
#define MAX_TIMEOUT_S 1e9
#define SHM_DIR "/dev/shm/"
#define MAX_SHM_NAME 200

/* ------------------------------------------------------------------------ */
/* futex helpers                                                             */

static inline uint32_t *
futex_word(int64_t *slot)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint32_t *)slot + 1;
#else
    return (uint32_t *)slot;
#endif
}

static inline long
futex_wait(uint32_t *word, uint32_t expected, const struct timespec *rel)
{
    return syscall(SYS_futex, word, FUTEX_WAIT, expected, rel, NULL, 0);
}

static inline long
futex_wake(uint32_t *word, int n)
{
    return syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* AtomicArray                                                               */

typedef struct waiter {
    struct waiter *next;
    uint32_t *word;
} waiter_t;

typedef struct {
    PyObject_HEAD
    Py_buffer view;   /* valid while has_view */
    int has_view;
    char *base;       /* first slot; NULL when uninitialised or released */
    Py_ssize_t count; /* number of slots */
    Py_ssize_t offset;
    waiter_t *waiters; /* wait() calls in progress; touched only with the GIL */
} AtomicArrayObject;

static void
aa_drop_view(AtomicArrayObject *self)
{
    if (self->has_view) {
        self->has_view = 0;
        PyBuffer_Release(&self->view);
    }
}

static int
aa_parse_index(PyObject *obj, Py_ssize_t *out)
{
    Py_ssize_t i = PyNumber_AsSsize_t(obj, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = i;
    return 0;
}

/* Resolve slot i; call only after every argument has been converted, since a
   conversion can run Python code (__index__) that releases the array. */
static int64_t *
aa_slot(AtomicArrayObject *self, Py_ssize_t i)
{
    if (self->base == NULL) {
        PyErr_SetString(PyExc_ValueError, "operation on a released AtomicArray");
        return NULL;
    }
    if (i < 0 || i >= self->count) {
        PyErr_Format(PyExc_IndexError, "slot index %zd out of range for %zd slots", i,
                     self->count);
        return NULL;
    }
    return (int64_t *)(self->base + (size_t)i * SLOT_SIZE);
}

static int
aa_init(AtomicArrayObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer", "offset", "count", "lock_fd", NULL};
    PyObject *buffer, *count_obj = Py_None;
    Py_ssize_t offset = 0, count = 0;
    int lock_fd = -1; /* used only by the pure-Python implementation */

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|nOi:AtomicArray", kwlist, &buffer,
                                     &offset, &count_obj, &lock_fd)) {
        return -1;
    }
    if (self->waiters != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cannot re-initialise an AtomicArray being waited on");
        return -1;
    }
    self->base = NULL;
    aa_drop_view(self);

    if (offset < 0 || offset % SLOT_SIZE != 0) {
        PyErr_Format(PyExc_ValueError, "offset must be a non-negative multiple of 8, got %zd",
                     offset);
        return -1;
    }
    if (count_obj != Py_None) {
        count = PyNumber_AsSsize_t(count_obj, PyExc_OverflowError);
        if (count == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (count < 0) {
            PyErr_Format(PyExc_ValueError, "count must be non-negative, got %zd", count);
            return -1;
        }
    }
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0) {
        return -1;
    }
    self->has_view = 1;
    if (offset > self->view.len) {
        PyErr_Format(PyExc_ValueError, "offset %zd is beyond the end of a %zd-byte buffer",
                     offset, self->view.len);
        aa_drop_view(self);
        return -1;
    }
    if (count_obj == Py_None) {
        count = (self->view.len - offset) / SLOT_SIZE;
    }
    else if (count > (self->view.len - offset) / SLOT_SIZE) {
        PyErr_Format(PyExc_ValueError,
                     "%zd slots at offset %zd do not fit in a %zd-byte buffer", count, offset,
                     self->view.len);
        aa_drop_view(self);
        return -1;
    }
    if (count > 0 && ((uintptr_t)self->view.buf + (uintptr_t)offset) % SLOT_SIZE != 0) {
        PyErr_SetString(PyExc_ValueError, "the buffer address plus offset is not 8-byte aligned");
        aa_drop_view(self);
        return -1;
    }
    self->offset = offset;
    self->count = count;
    self->base = (char *)self->view.buf + offset;
    return 0;
}

static void
aa_dealloc(AtomicArrayObject *self)
{
    /* No wait() can be in progress: it holds a reference to self. */
    self->base = NULL;
    aa_drop_view(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
aa_repr(AtomicArrayObject *self)
{
    if (self->base == NULL) {
        return PyUnicode_FromFormat("<%s released>", Py_TYPE(self)->tp_name);
    }
    return PyUnicode_FromFormat("<%s count=%zd offset=%zd>", Py_TYPE(self)->tp_name,
                                self->count, self->offset);
}

static Py_ssize_t
aa_length(AtomicArrayObject *self)
{
    if (self->base == NULL) {
        PyErr_SetString(PyExc_ValueError, "operation on a released AtomicArray");
        return -1;
    }
    return self->count;
}

static PyObject *
aa_load(AtomicArrayObject *self, PyObject *index)
{
    Py_ssize_t i;
    if (aa_parse_index(index, &i) < 0) {
        return NULL;
    }
    int64_t *p = aa_slot(self, i);
    if (p == NULL) {
        return NULL;
    }
    return PyLong_FromLongLong(__atomic_load_n(p, __ATOMIC_SEQ_CST));
}

/* Parse (index, int64) or (index, int64, int64) positional arguments. */
static int64_t *
aa_parse_args(AtomicArrayObject *self, const char *name, PyObject *const *args,
              Py_ssize_t nargs, Py_ssize_t want, long long *a, long long *b)
{
    Py_ssize_t i;
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)", name, want,
                     nargs);
        return NULL;
    }
    if (aa_parse_index(args[0], &i) < 0) {
        return NULL;
    }
    *a = PyLong_AsLongLong(args[1]);
    if (*a == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (want == 3) {
        *b = PyLong_AsLongLong(args[2]);
        if (*b == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    return aa_slot(self, i);
}

static PyObject *
aa_store(AtomicArrayObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long value, unused;
    int64_t *p = aa_parse_args(self, "store", args, nargs, 2, &value, &unused);
    if (p == NULL) {
        return NULL;
    }
    __atomic_store_n(p, (int64_t)value, __ATOMIC_SEQ_CST);
    Py_RETURN_NONE;
}

static PyObject *
aa_fetch_add(AtomicArrayObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long delta, unused;
    int64_t *p = aa_parse_args(self, "fetch_add", args, nargs, 2, &delta, &unused);
    if (p == NULL) {
        return NULL;
    }
    /* Unsigned arithmetic: two's-complement wrap-around without undefined behaviour. */
    uint64_t old = __atomic_fetch_add((uint64_t *)p, (uint64_t)delta, __ATOMIC_SEQ_CST);
    return PyLong_FromLongLong((long long)(int64_t)old);
}

static PyObject *
aa_exchange(AtomicArrayObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long value, unused;
    int64_t *p = aa_parse_args(self, "exchange", args, nargs, 2, &value, &unused);
    if (p == NULL) {
        return NULL;
    }
    return PyLong_FromLongLong(__atomic_exchange_n(p, (int64_t)value, __ATOMIC_SEQ_CST));
}

static PyObject *
aa_compare_exchange(AtomicArrayObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long expected, desired;
    int64_t *p = aa_parse_args(self, "compare_exchange", args, nargs, 3, &expected, &desired);
    if (p == NULL) {
        return NULL;
    }
    int64_t exp = (int64_t)expected;
    int ok = __atomic_compare_exchange_n(p, &exp, (int64_t)desired, 0, __ATOMIC_SEQ_CST,
                                         __ATOMIC_SEQ_CST);
    return PyBool_FromLong(ok);
}

static void
aa_waiter_leave(AtomicArrayObject *self, waiter_t *w)
{
    waiter_t **pp = &self->waiters;
    while (*pp != NULL && *pp != w) {
        pp = &(*pp)->next;
    }
    if (*pp == w) {
        *pp = w->next;
    }
    if (self->base == NULL && self->waiters == NULL) {
        aa_drop_view(self); /* a release() happened while we waited */
    }
}

static PyObject *
aa_wait(AtomicArrayObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"", "", "timeout", NULL};
    PyObject *index, *timeout_obj = Py_None;
    long long expected;
    Py_ssize_t i;
    double timeout = -1.0; /* negative: no timeout */
    struct timespec deadline = {0, 0};

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OL|O:wait", kwlist, &index, &expected,
                                     &timeout_obj)) {
        return NULL;
    }
    if (aa_parse_index(index, &i) < 0) {
        return NULL;
    }
    if (timeout_obj != Py_None) {
        timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (isnan(timeout)) {
            PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
            return NULL;
        }
        if (timeout < 0.0) {
            timeout = 0.0;
        }
        else if (timeout > MAX_TIMEOUT_S) {
            timeout = -1.0;
        }
    }
    int64_t *p = aa_slot(self, i);
    if (p == NULL) {
        return NULL;
    }
    if (timeout >= 0.0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        double whole = floor(timeout);
        deadline.tv_sec += (time_t)whole;
        deadline.tv_nsec += (long)((timeout - whole) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec += 1;
            deadline.tv_nsec -= 1000000000L;
        }
    }

    waiter_t w = {self->waiters, futex_word(p)};
    self->waiters = &w;
    PyObject *result = NULL;
    for (;;) {
        if (self->base == NULL) {
            PyErr_SetString(PyExc_ValueError, "AtomicArray was released during wait()");
            break;
        }
        if (__atomic_load_n(p, __ATOMIC_SEQ_CST) != (int64_t)expected) {
            result = Py_True;
            break;
        }
        struct timespec rel, *relp = NULL;
        if (timeout >= 0.0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            rel.tv_sec = deadline.tv_sec - now.tv_sec;
            rel.tv_nsec = deadline.tv_nsec - now.tv_nsec;
            if (rel.tv_nsec < 0) {
                rel.tv_sec -= 1;
                rel.tv_nsec += 1000000000L;
            }
            if (rel.tv_sec < 0 || (rel.tv_sec == 0 && rel.tv_nsec == 0)) {
                result = Py_False;
                break;
            }
            relp = &rel;
        }
        long r;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        r = futex_wait(w.word, (uint32_t)(uint64_t)expected, relp);
        if (r == -1) {
            err = errno;
        }
        Py_END_ALLOW_THREADS
        if (r == -1) {
            if (err == EINTR) {
                if (PyErr_CheckSignals() < 0) {
                    break;
                }
            }
            else if (err != EAGAIN && err != ETIMEDOUT) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
                break;
            }
        }
        /* Woken, timed out, interrupted or spurious: re-check from the top. */
    }
    aa_waiter_leave(self, &w);
    Py_XINCREF(result);
    return result;
}

static PyObject *
aa_wake(AtomicArrayObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"", "n", NULL};
    PyObject *index, *n_obj = NULL;
    Py_ssize_t i;
    long long n = INT_MAX;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:wake", kwlist, &index, &n_obj)) {
        return NULL;
    }
    if (aa_parse_index(index, &i) < 0) {
        return NULL;
    }
    if (n_obj != NULL) {
        int overflow;
        n = PyLong_AsLongLongAndOverflow(n_obj, &overflow);
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow > 0) {
            n = INT_MAX;
        }
        else if (overflow < 0 || n < 0) {
            PyErr_SetString(PyExc_ValueError, "n must be non-negative");
            return NULL;
        }
        if (n > INT_MAX) {
            n = INT_MAX;
        }
    }
    int64_t *p = aa_slot(self, i);
    if (p == NULL) {
        return NULL;
    }
    if (n == 0) {
        return PyLong_FromLong(0);
    }
    long r = futex_wake(futex_word(p), (int)n);
    if (r == -1) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(r);
}

static PyObject *
aa_release(AtomicArrayObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->base == NULL) {
        Py_RETURN_NONE;
    }
    self->base = NULL;
    if (self->waiters == NULL) {
        aa_drop_view(self);
    }
    else {
        /* The last waiter to leave drops the buffer; wake them so they notice. */
        for (waiter_t *w = self->waiters; w != NULL; w = w->next) {
            futex_wake(w->word, INT_MAX);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
aa_get_released(AtomicArrayObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->base == NULL);
}

static PyMethodDef aa_methods[] = {
    {"load", (PyCFunction)aa_load, METH_O,
     "load(i, /)\n--\n\nReturn slot *i* (sequentially consistent atomic load)."},
    {"store", (PyCFunction)(void (*)(void))aa_store, METH_FASTCALL,
     "store(i, value, /)\n--\n\nAtomically set slot *i* to *value*."},
    {"fetch_add", (PyCFunction)(void (*)(void))aa_fetch_add, METH_FASTCALL,
     "fetch_add(i, delta, /)\n--\n\nAtomically add *delta* (wrapping) and return the old "
     "value."},
    {"compare_exchange", (PyCFunction)(void (*)(void))aa_compare_exchange, METH_FASTCALL,
     "compare_exchange(i, expected, desired, /)\n--\n\nSet slot *i* to *desired* if it equals "
     "*expected*; return whether it did."},
    {"exchange", (PyCFunction)(void (*)(void))aa_exchange, METH_FASTCALL,
     "exchange(i, value, /)\n--\n\nAtomically set slot *i* to *value*; return the old value."},
    {"wait", (PyCFunction)(void (*)(void))aa_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(i, expected, /, timeout=None)\n--\n\nBlock while slot *i* equals *expected*; "
     "return False on timeout, True once it differs."},
    {"wake", (PyCFunction)(void (*)(void))aa_wake, METH_VARARGS | METH_KEYWORDS,
     "wake(i, /, n=2147483647)\n--\n\nWake up to *n* waiters on slot *i*; return how many "
     "were woken."},
    {"release", (PyCFunction)aa_release, METH_NOARGS,
     "release()\n--\n\nDrop the buffer (idempotent); later operations raise ValueError."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef aa_getset[] = {
    {"released", (getter)aa_get_released, NULL, "True once release() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMappingMethods aa_as_mapping = {
    .mp_length = (lenfunc)aa_length,
};

static PyTypeObject AtomicArrayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "workerbridge._atomics.AtomicArray",
    .tp_basicsize = sizeof(AtomicArrayObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "AtomicArray(buffer, offset=0, count=None, lock_fd=-1)\n--\n\n"
              "Lock-free atomic int64 slots over a writable buffer (usually shared memory).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)aa_init,
    .tp_dealloc = (destructor)aa_dealloc,
    .tp_repr = (reprfunc)aa_repr,
    .tp_as_mapping = &aa_as_mapping,
    .tp_methods = aa_methods,
    .tp_getset = aa_getset,
};

/* ------------------------------------------------------------------------ */
/* watch_parent / set_pdeathsig                                              */

typedef struct {
    int fd;
    Py_ssize_t n;
    char **names; /* without the leading '/'; may be fnmatch(3) patterns */
} watch_args_t;

static void
unlink_shm(const char *name)
{
    char path[sizeof(SHM_DIR) + MAX_SHM_NAME];
    if (strpbrk(name, "*?[") == NULL) {
        snprintf(path, sizeof(path), "%s%s", SHM_DIR, name);
        (void)unlink(path);
        return;
    }
    DIR *dir = opendir(SHM_DIR);
    if (dir == NULL) {
        return;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (fnmatch(name, entry->d_name, FNM_PERIOD) == 0) {
            (void)unlinkat(dirfd(dir), entry->d_name, 0);
        }
    }
    closedir(dir);
}

static void *
watch_main(void *arg)
{
    watch_args_t *a = (watch_args_t *)arg;
    char buf[256];
    for (;;) {
        ssize_t r = read(a->fd, buf, sizeof(buf));
        if (r > 0) {
            continue; /* data on the lifeline is ignored */
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {a->fd, POLLIN, 0};
            (void)poll(&pfd, 1, -1);
            continue;
        }
        break; /* EOF or a real error: the parent is gone */
    }
    for (Py_ssize_t i = 0; i < a->n; i++) {
        unlink_shm(a->names[i]);
    }
    kill(getpid(), SIGKILL);
    return NULL;
}

static void
watch_args_free(watch_args_t *a)
{
    if (a == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < a->n; i++) {
        free(a->names[i]);
    }
    free(a->names);
    free(a);
}

static PyObject *
mod_watch_parent(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "names", NULL};
    int fd;
    PyObject *names;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO:watch_parent", kwlist, &fd, &names)) {
        return NULL;
    }
    if (fcntl(fd, F_GETFD) == -1) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *seq = PySequence_Fast(names, "names must be a sequence of str");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    watch_args_t *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->names = calloc((size_t)n + 1, sizeof(char *))) == NULL) {
        free(a);
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    a->fd = fd;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        Py_ssize_t len;
        if (!PyUnicode_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "names must be a sequence of str");
            goto fail;
        }
        const char *name = PyUnicode_AsUTF8AndSize(item, &len);
        if (name == NULL) {
            goto fail;
        }
        if (len > 0 && name[0] == '/') {
            name++;
            len--;
        }
        if (len == 0 || len > MAX_SHM_NAME || memchr(name, '/', (size_t)len) != NULL ||
            memchr(name, '\0', (size_t)len) != NULL || strcmp(name, ".") == 0 ||
            strcmp(name, "..") == 0) {
            PyErr_Format(PyExc_ValueError, "invalid shared memory name %R", item);
            goto fail;
        }
        if ((a->names[i] = malloc((size_t)len + 1)) == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        memcpy(a->names[i], name, (size_t)len + 1);
        a->n = i + 1;
    }
    Py_CLEAR(seq);

    pthread_attr_t attr;
    pthread_t thread;
    sigset_t all, old;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        /* The watcher blocks every signal, so they keep going to Python's threads. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        rc = pthread_create(&thread, &attr, watch_main, a);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    Py_RETURN_NONE; /* the thread owns `a` for the rest of the process's life */

fail:
    Py_XDECREF(seq);
    watch_args_free(a);
    return NULL;
}

static PyObject *
mod_set_pdeathsig(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long sig = PyLong_AsLong(arg);
    if (sig == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (sig < 0 || sig >= NSIG) {
        PyErr_Format(PyExc_ValueError, "invalid signal number %ld", sig);
        return NULL;
    }
    if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0) == -1) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"watch_parent", (PyCFunction)(void (*)(void))mod_watch_parent,
     METH_VARARGS | METH_KEYWORDS,
     "watch_parent(fd, names)\n--\n\nStart a detached thread that waits for EOF on *fd*, then "
     "unlinks the shared memory *names* (glob patterns allowed) and kills this process with "
     "SIGKILL."},
    {"set_pdeathsig", (PyCFunction)mod_set_pdeathsig, METH_O,
     "set_pdeathsig(sig, /)\n--\n\nAsk the kernel to send *sig* to this process when its "
     "parent thread dies (prctl PR_SET_PDEATHSIG)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef atomics_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "workerbridge._atomics",
    .m_doc = "Lock-free int64 atomics and futex waits on shared memory (C implementation).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__atomics(void)
{
    if (PyType_Ready(&AtomicArrayType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&atomics_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&AtomicArrayType);
    if (PyModule_AddObject(m, "AtomicArray", (PyObject *)&AtomicArrayType) < 0) {
        Py_DECREF(&AtomicArrayType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "IMPLEMENTATION", "c") < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
