/*
 * Optional C accelerator of the tracer's hot path: the Jaeger Thrift compact encoding of one
 * finished span (opentracing_sls.reporting.compact.encode_span), and the reporter's loop
 * that encodes queued spans and groups them into payloads (encoding.pack_spans).
 *
 * It produces byte-for-byte what the pure-Python encoder produces, and handles only the
 * common shapes itself: exact str keys and names that encode as strict UTF-8, and exact
 * str / bool / int (i64 range) / float / bytes values. Anything else (a lone surrogate, an
 * int beyond i64, a custom value type, a non-dict tags mapping) is handed to the Python
 * encoder given to set_fallback(), so the typing rules live in one place (_wire.py).
 *
 * Wire rules (jaeger-wire.md section 3): field header (delta << 4) | ctype; i32/i64 are
 * zigzag varints; a bool's value is its ctype; doubles are 8 bytes little-endian; list
 * header (size << 4) | etype below 15 elements, else 0xF0 | etype then a varint size.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "csrc/compat.h"
#include "csrc/report_api.h"
#include <stddef.h>
#include <string.h>

static PyObject *fallback = NULL; /* the pure-Python encode_span */

typedef struct {
    unsigned char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    unsigned char stack[2048];
} Buf;

/* Returned by the writers when the span needs the Python encoder (no exception set). */
#define FALLBACK 1
#define FAILED (-1)

static void buf_init(Buf *b) {
    b->data = b->stack;
    b->len = 0;
    b->cap = (Py_ssize_t)sizeof(b->stack);
}

static void buf_free(Buf *b) {
    if (b->data != b->stack) {
        PyMem_Free(b->data);
    }
}

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap;
    while (cap < b->len + extra) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return FAILED;
        }
        cap *= 2;
    }
    unsigned char *data = PyMem_Malloc((size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    memcpy(data, b->data, (size_t)b->len);
    buf_free(b);
    b->data = data;
    b->cap = cap;
    return 0;
}

/* Callers reserve first; these write without checks. */
static inline void put_byte(Buf *b, unsigned char c) { b->data[b->len++] = c; }

static inline void put_varint(Buf *b, uint64_t z) {
    while (z >= 0x80) {
        b->data[b->len++] = (unsigned char)(z | 0x80);
        z >>= 7;
    }
    b->data[b->len++] = (unsigned char)z;
}

static inline void put_i64(Buf *b, uint64_t u) {
    /* zigzag of the two's-complement i64 whose bits are u */
    put_varint(b, (u << 1) ^ (uint64_t)(-(int64_t)(u >> 63)));
}

static inline void put_i32(Buf *b, uint32_t u) {
    put_varint(b, (uint64_t)((u << 1) ^ (uint32_t)(-(int32_t)(u >> 31))));
}

static inline void put_raw(Buf *b, const char *s, Py_ssize_t n) {
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
}

/* Bound of a varint and of a field or list header: reserve this much per scalar. */
#define SCALAR 16

/* Low 64 bits of an int (any sign or size, modulo 2^64, as _varint.i64 does). */
static int low64(PyObject *v, uint64_t *out) {
    if (!PyLong_Check(v)) {
        return FALLBACK;
    }
    *out = (uint64_t)PyLong_AsUnsignedLongLongMask(v);
    if (*out == (uint64_t)-1 && PyErr_Occurred()) {
        return FAILED;
    }
    return 0;
}

/* traceIdHigh: (trace_id >> 64) modulo 2^64; 0 for the common 64-bit non-negative id. */
static int high64(PyObject *v, uint64_t *out) {
    int overflow = 0;
    long long small = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (small == -1 && PyErr_Occurred()) {
        return FAILED;
    }
    if (overflow == 0) {
        *out = small < 0 ? (uint64_t)-1 : 0; /* arithmetic shift of an i64 */
        return 0;
    }
    PyObject *shift = PyLong_FromLong(64);
    if (shift == NULL) {
        return FAILED;
    }
    PyObject *hi = PyNumber_Rshift(v, shift);
    Py_DECREF(shift);
    if (hi == NULL) {
        return FAILED;
    }
    int rc = low64(hi, out);
    Py_DECREF(hi);
    return rc;
}

/* Both halves of a trace id; one call for the common non-negative id below 2^128. */
static int trace_halves(PyObject *v, uint64_t *low, uint64_t *high) {
    int fits = unsigned_id_halves(v, 16, high, low);
    if (fits != 0)
        return fits < 0 ? FAILED : 0;
    int rc = low64(v, low); /* negative, wider or not an exact int: the general rules */
    return rc ? rc : high64(v, high);
}

static int put_string(Buf *b, PyObject *s) {
    Py_ssize_t n;
    const char *raw;
    if (!PyUnicode_CheckExact(s)) {
        return FALLBACK;
    }
    raw = PyUnicode_AsUTF8AndSize(s, &n);
    if (raw == NULL) { /* lone surrogates: the Python encoder replaces them */
        PyErr_Clear();
        return FALLBACK;
    }
    if (buf_reserve(b, n + SCALAR) < 0) {
        return FAILED;
    }
    put_varint(b, (uint64_t)n);
    put_raw(b, raw, n);
    return 0;
}

static void put_list_head(Buf *b, unsigned char field_header, Py_ssize_t n) {
    put_byte(b, field_header);
    if (n < 15) {
        put_byte(b, (unsigned char)(n << 4 | 0x0C));
    } else {
        put_byte(b, 0xFC);
        put_varint(b, (uint64_t)n);
    }
}

static void put_double(Buf *b, double d) {
    unsigned char bytes[8];
    memcpy(bytes, &d, 8);
#if !PY_LITTLE_ENDIAN
    for (int i = 0; i < 4; i++) {
        unsigned char t = bytes[i];
        bytes[i] = bytes[7 - i];
        bytes[7 - i] = t;
    }
#endif
    put_raw(b, (const char *)bytes, 8);
}

/* One Tag struct: key (field 1), vType (field 2), the value field of that type, STOP. */
static int put_tag(Buf *b, PyObject *key, PyObject *value) {
    PyTypeObject *t = Py_TYPE(value);
    if (t != &PyUnicode_Type && t != &PyBool_Type && t != &PyLong_Type &&
        t != &PyFloat_Type && t != &PyBytes_Type) {
        return FALLBACK;
    }
    long long number = 0;
    if (t == &PyLong_Type) {
        int overflow = 0;
        number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow) {
            return FALLBACK; /* beyond i64: a STRING tag, typed in Python */
        }
        if (number == -1 && PyErr_Occurred()) {
            return FAILED;
        }
    }
    if (buf_reserve(b, SCALAR) < 0) {
        return FAILED;
    }
    put_byte(b, 0x18);
    int rc = put_string(b, key);
    if (rc) {
        return rc;
    }
    if (buf_reserve(b, 3 * SCALAR) < 0) {
        return FAILED;
    }
    put_byte(b, 0x15);
    if (t == &PyUnicode_Type) {
        put_byte(b, 0x00); /* STRING, then vStr: field 3, delta 1, BINARY */
        put_byte(b, 0x18);
        rc = put_string(b, value);
        if (rc) {
            return rc;
        }
    } else if (t == &PyBool_Type) {
        put_byte(b, 0x04); /* BOOL; vBool is field 5 (delta 3) and its value the ctype */
        put_byte(b, value == Py_True ? 0x31 : 0x32);
    } else if (t == &PyLong_Type) {
        put_byte(b, 0x06); /* LONG, then vLong: field 6, delta 4, I64 */
        put_byte(b, 0x46);
        put_i64(b, (uint64_t)number);
    } else if (t == &PyFloat_Type) {
        put_byte(b, 0x02); /* DOUBLE, then vDouble: field 4, delta 2, DOUBLE */
        put_byte(b, 0x27);
        put_double(b, PyFloat_AS_DOUBLE(value));
    } else {
        Py_ssize_t n = PyBytes_GET_SIZE(value);
        put_byte(b, 0x08); /* BINARY, then vBinary: field 7, delta 5, BINARY */
        put_byte(b, 0x58);
        if (buf_reserve(b, n + 2 * SCALAR) < 0) {
            return FAILED;
        }
        put_varint(b, (uint64_t)n);
        put_raw(b, PyBytes_AS_STRING(value), n);
    }
    if (buf_reserve(b, 1) < 0) {
        return FAILED;
    }
    put_byte(b, 0x00);
    return 0;
}

static int put_tags(Buf *b, unsigned char field_header, PyObject *tags) {
    if (!PyDict_CheckExact(tags)) {
        return FALLBACK;
    }
    if (buf_reserve(b, SCALAR) < 0) {
        return FAILED;
    }
    put_list_head(b, field_header, PyDict_GET_SIZE(tags));
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(tags, &pos, &key, &value)) {
        int rc = put_tag(b, key, value);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

static int put_refs(Buf *b, PyObject *refs) {
    if (!PyList_CheckExact(refs) && !PyTuple_CheckExact(refs)) {
        return FALLBACK;
    }
    PyObject *seq = refs;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (buf_reserve(b, SCALAR) < 0) {
        return FAILED;
    }
    put_list_head(b, 0x19, n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ref = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(ref) || PyTuple_GET_SIZE(ref) != 3) {
            return FALLBACK;
        }
        uint64_t kind, low, high, span;
        int rc;
        if ((rc = low64(PyTuple_GET_ITEM(ref, 0), &kind)) ||
            (rc = trace_halves(PyTuple_GET_ITEM(ref, 1), &low, &high)) ||
            (rc = low64(PyTuple_GET_ITEM(ref, 2), &span))) {
            return rc;
        }
        if (buf_reserve(b, 5 * SCALAR) < 0) {
            return FAILED;
        }
        put_byte(b, 0x15);
        put_i32(b, (uint32_t)kind);
        put_byte(b, 0x16);
        put_i64(b, low);
        put_byte(b, 0x16);
        put_i64(b, high);
        put_byte(b, 0x16);
        put_i64(b, span);
        put_byte(b, 0x00);
    }
    return 0;
}

static int put_logs(Buf *b, PyObject *logs, int after_tags) {
    if (!PyList_CheckExact(logs) && !PyTuple_CheckExact(logs)) {
        return FALLBACK;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(logs);
    if (buf_reserve(b, SCALAR) < 0) {
        return FAILED;
    }
    put_list_head(b, after_tags ? 0x19 : 0x29, n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *log = PySequence_Fast_GET_ITEM(logs, i);
        if (!PyTuple_Check(log) || PyTuple_GET_SIZE(log) != 2) {
            return FALLBACK;
        }
        uint64_t ts;
        int rc = low64(PyTuple_GET_ITEM(log, 0), &ts);
        if (rc) {
            return rc;
        }
        if (buf_reserve(b, 2 * SCALAR) < 0) {
            return FAILED;
        }
        put_byte(b, 0x16); /* Log.timestamp, field 1 */
        put_i64(b, ts);
        rc = put_tags(b, 0x19, PyTuple_GET_ITEM(log, 1)); /* Log.fields, field 2 */
        if (rc) {
            return rc;
        }
        if (buf_reserve(b, 1) < 0) {
            return FAILED;
        }
        put_byte(b, 0x00);
    }
    return 0;
}

static int put_parts(Buf *b, const SpanParts *p) {
    uint64_t low, high, span_id, parent_id, flags;
    int rc;
    if ((rc = trace_halves(p->trace_id, &low, &high)) ||
        (rc = low64(p->span_id, &span_id)) || (rc = low64(p->parent_id, &parent_id)) ||
        (rc = low64(p->flags, &flags))) {
        return rc;
    }
    if (buf_reserve(b, 5 * SCALAR) < 0) {
        return FAILED;
    }
    put_byte(b, 0x16); /* fields 1-4: traceIdLow, traceIdHigh, spanId, parentSpanId */
    put_i64(b, low);
    put_byte(b, 0x16);
    put_i64(b, high);
    put_byte(b, 0x16);
    put_i64(b, span_id);
    put_byte(b, 0x16);
    put_i64(b, parent_id);
    put_byte(b, 0x18); /* operationName, field 5 */
    if ((rc = put_string(b, p->operation_name))) {
        return rc;
    }
    int has_refs = p->references != NULL;
    if (has_refs && (rc = put_refs(b, p->references))) {
        return rc;
    }
    if (buf_reserve(b, 4 * SCALAR) < 0) {
        return FAILED;
    }
    put_byte(b, has_refs ? 0x15 : 0x25); /* flags, field 7 */
    put_i32(b, (uint32_t)flags);
    put_byte(b, 0x16); /* startTime, field 8 */
    put_i64(b, (uint64_t)p->start_us);
    put_byte(b, 0x16); /* duration, field 9 */
    put_i64(b, (uint64_t)p->duration);
    int has_tags = PyObject_IsTrue(p->tags);
    int has_logs = has_tags < 0 ? 0 : PyObject_IsTrue(p->logs);
    if (has_tags < 0 || has_logs < 0) {
        return FAILED;
    }
    if (has_tags && (rc = put_tags(b, 0x19, p->tags))) { /* field 10 */
        return rc;
    }
    if (has_logs && (rc = put_logs(b, p->logs, has_tags))) { /* field 11 */
        return rc;
    }
    if (buf_reserve(b, 1) < 0) {
        return FAILED;
    }
    put_byte(b, 0x00);
    return 0;
}

static int put_span(Buf *b, PyObject *record) {
    if (!PyTuple_Check(record) || PyTuple_GET_SIZE(record) != 10) {
        return FALLBACK;
    }
    uint64_t start, duration;
    int rc;
    if ((rc = low64(PyTuple_GET_ITEM(record, 5), &start)) ||
        (rc = low64(PyTuple_GET_ITEM(record, 6), &duration))) {
        return rc;
    }
    PyObject *refs = PyTuple_GET_ITEM(record, 9);
    int has_refs = PyObject_IsTrue(refs);
    if (has_refs < 0) {
        return FAILED;
    }
    SpanParts parts = {
        .trace_id = PyTuple_GET_ITEM(record, 0),
        .span_id = PyTuple_GET_ITEM(record, 1),
        .parent_id = PyTuple_GET_ITEM(record, 2),
        .operation_name = PyTuple_GET_ITEM(record, 3),
        .flags = PyTuple_GET_ITEM(record, 4),
        .start_us = (int64_t)start,
        .duration = (int64_t)duration,
        .tags = PyTuple_GET_ITEM(record, 7),
        .logs = PyTuple_GET_ITEM(record, 8),
        .references = has_refs ? refs : NULL,
    };
    return put_parts(b, &parts);
}

static PyObject *encode_span(PyObject *Py_UNUSED(module), PyObject *record) {
    Buf b;
    buf_init(&b);
    int rc = put_span(&b, record);
    PyObject *out = NULL;
    if (rc == 0) {
        out = PyBytes_FromStringAndSize((const char *)b.data, b.len);
    } else if (rc == FALLBACK) {
        if (fallback == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "_speedups: set_fallback() was not called");
        } else {
            out = PyObject_CallOneArg(fallback, record);
        }
    }
    buf_free(&b);
    return out;
}

/* Appends `item` to `list` and drops the caller's reference to it. */
static int append_steal(PyObject *list, PyObject *item) {
    if (item == NULL)
        return -1;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

/* pack_spans(spans, budget, used): the C twin of encoding.pack_spans. */
static PyObject *pack_spans(PyObject *Py_UNUSED(module), PyObject *const *args,
                            Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "pack_spans() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t budget = PyLong_AsSsize_t(args[1]);
    if (budget == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t total = PyLong_AsSsize_t(args[2]);
    if (total == -1 && PyErr_Occurred())
        return NULL;
    PyObject *items = PySequence_Fast(args[0], "pack_spans() needs a sequence of spans");
    if (items == NULL)
        return NULL;
    PyObject *groups = PyList_New(0), *too_large = PyList_New(0), *spans = PyList_New(0);
    PyObject *result = NULL;
    if (groups == NULL || too_large == NULL || spans == NULL)
        goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *data = PySequence_Fast_GET_ITEM(items, i);
        Py_ssize_t size = PyObject_Length(data);
        if (size < 0)
            goto done;
        if (size > budget) {
            if (append_steal(too_large, PyLong_FromSsize_t(size)) < 0)
                goto done;
            continue;
        }
        if (total + size > budget) {
            if (append_steal(groups, Py_BuildValue("(On)", spans, total)) < 0)
                goto done;
            Py_SETREF(spans, PyList_New(0));
            total = 0;
            if (spans == NULL)
                goto done;
        }
        if (PyList_Append(spans, data) < 0)
            goto done;
        total += size;
    }
    if (append_steal(groups, Py_BuildValue("(On)", spans, total)) < 0)
        goto done;
    result = PyTuple_Pack(2, groups, too_large);
done:
    Py_DECREF(items);
    Py_XDECREF(groups);
    Py_XDECREF(too_large);
    Py_XDECREF(spans);
    return result;
}

static PyObject *set_fallback(PyObject *Py_UNUSED(module), PyObject *function) {
    if (!PyCallable_Check(function)) {
        PyErr_SetString(PyExc_TypeError, "set_fallback() needs a callable");
        return NULL;
    }
    Py_INCREF(function);
    Py_XSETREF(fallback, function);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ ReportSpan */

/* ReportSpan(reporter, python_report_span): Reporter.report_span for one reporter, in C.
 *
 * The same steps as the Python method (reporter.py), reading the same instance attributes
 * from the reporter's __dict__ on every call, so nothing is cached that fork handling or
 * close() could leave stale: accepting and room in the queue -> encode, append, wake the
 * worker once per batch; otherwise _report_slow(). An attribute that is not where the
 * Python method would find it sends the call to that method instead. Why: the Python frame
 * and its attribute lookups cost more than encoding the span does. */
typedef struct {
    PyObject_HEAD
    PyObject *reporter, *dict, *python;
    vectorcallfunc vectorcall;
} ReportSpan;

static PyObject *s_queue, *s_accepting, *s_queue_size, *s_encode, *s_batch_size,
    *s_wake_pending, *s_append, *s_wake_worker, *s_report_slow, *s_encode_failed;

/* `name` from the reporter's __dict__ (borrowed), or NULL without an error if absent. */
static PyObject *field(ReportSpan *self, PyObject *name) {
    return PyDict_GetItemWithError(self->dict, name);
}

static PyObject *report_python(ReportSpan *self, PyObject *record) {
    PyObject *args[2] = {self->reporter, record};
    return PyObject_Vectorcall(self->python, args, 2, NULL);
}

/* Ends the call the way the Python method's `return self.<name>(arg)` would. */
static PyObject *call_reporter(ReportSpan *self, PyObject *name, PyObject *arg) {
    PyObject *r = arg ? PyObject_CallMethodOneArg(self->reporter, name, arg)
                      : PyObject_CallMethodNoArgs(self->reporter, name);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* What report_span must do with the next span. */
#define STEP_QUEUE 0  /* encode and queue it: *queue and *encode are set (borrowed) */
#define STEP_PYTHON 1 /* an attribute is not where the Python method reads it: call that */
#define STEP_SLOW 2   /* closed, not started or full: _report_slow() */

static int next_step(ReportSpan *self, PyObject **queue, PyObject **encode) {
    PyObject *accepting = field(self, s_accepting), *size_obj = field(self, s_queue_size);
    *queue = field(self, s_queue);
    *encode = field(self, s_encode);
    if (*queue == NULL || accepting == NULL || size_obj == NULL || *encode == NULL ||
        !PyLong_CheckExact(size_obj)) {
        return PyErr_Occurred() ? -1 : STEP_PYTHON;
    }
    int open = PyObject_IsTrue(accepting);
    if (open <= 0) {
        return open < 0 ? -1 : STEP_SLOW;
    }
    Py_ssize_t queued = PyObject_Size(*queue);
    Py_ssize_t limit = PyLong_AsSsize_t(size_obj);
    if (queued < 0 || (limit == -1 && PyErr_Occurred())) {
        return -1;
    }
    return queued >= limit ? STEP_SLOW : STEP_QUEUE;
}

static int is_our_encoder(PyObject *encode) {
    return PyCFunction_Check(encode) &&
           PyCFunction_GET_FUNCTION(encode) == (PyCFunction)encode_span;
}

/* The encoder raised (the exception is pending): counted by _encode_failed(), as in Python. */
static PyObject *encoding_failed(ReportSpan *self) {
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return NULL;
    }
    PyObject *exc = take_exception();
    PyObject *r = call_reporter(self, s_encode_failed, exc);
    Py_XDECREF(exc);
    return r;
}

/* collections.deque and its append (METH_O), called without a method lookup: the
 * reporter's queue is a deque unless a test or a subclass put something else there. */
static PyTypeObject *deque_type = NULL;
static PyCFunction deque_append = NULL;

static int find_deque_append(void) {
    PyObject *collections = PyImport_ImportModule("collections");
    PyObject *type = collections ? PyObject_GetAttrString(collections, "deque") : NULL;
    PyObject *append = type ? PyObject_GetAttrString(type, "append") : NULL;
    Py_XDECREF(collections);
    if (append == NULL) {
        Py_XDECREF(type);
        return -1;
    }
    if (PyType_Check(type) && Py_IS_TYPE(append, &PyMethodDescr_Type) &&
        ((PyMethodDescrObject *)append)->d_method->ml_flags == METH_O) {
        deque_type = (PyTypeObject *)type; /* kept for the life of the process */
        deque_append = ((PyMethodDescrObject *)append)->d_method->ml_meth;
    } else {
        Py_DECREF(type);
    }
    Py_DECREF(append);
    return 0;
}

/* Appends the encoded span and wakes the worker once the batch is full. */
static PyObject *enqueue(ReportSpan *self, PyObject *queue, PyObject *data) {
    PyObject *r = Py_IS_TYPE(queue, deque_type) ? deque_append(queue, data)
                                                : PyObject_CallMethodOneArg(queue, s_append, data);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_ssize_t queued = PyObject_Size(queue);
    if (queued < 0) {
        return NULL;
    }
    PyObject *batch_obj = field(self, s_batch_size);
    int full;
    if (batch_obj != NULL && PyLong_CheckExact(batch_obj)) {
        Py_ssize_t batch = PyLong_AsSsize_t(batch_obj);
        if (batch == -1 && PyErr_Occurred()) {
            return NULL;
        }
        full = queued >= batch;
    } else {
        /* not a plain int in the instance dict: compare the way Python would */
        if (PyErr_Occurred()) {
            return NULL;
        }
        PyObject *length = PyLong_FromSsize_t(queued);
        PyObject *batch = length ? PyObject_GetAttr(self->reporter, s_batch_size) : NULL;
        full = batch ? PyObject_RichCompareBool(length, batch, Py_GE) : -1;
        Py_XDECREF(length);
        Py_XDECREF(batch);
        if (full < 0) {
            return NULL;
        }
    }
    if (!full) {
        Py_RETURN_NONE;
    }
    PyObject *pending = field(self, s_wake_pending);
    if (pending != NULL) {
        Py_INCREF(pending);
    } else if (!PyErr_Occurred()) {
        pending = PyObject_GetAttr(self->reporter, s_wake_pending);
    }
    int waking = pending ? PyObject_IsTrue(pending) : -1;
    Py_XDECREF(pending);
    if (waking < 0) {
        return NULL;
    }
    if (waking) {
        Py_RETURN_NONE;
    }
    return call_reporter(self, s_wake_worker, NULL);
}

static PyObject *report_span_call(ReportSpan *self, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "report_span() takes exactly one argument (record)");
        return NULL;
    }
    PyObject *record = args[0], *queue, *encode;
    int step = next_step(self, &queue, &encode);
    if (step < 0) {
        return NULL;
    }
    if (step == STEP_PYTHON) {
        return report_python(self, record);
    }
    if (step == STEP_SLOW) {
        return call_reporter(self, s_report_slow, record);
    }
    /* held: a Python encoder could replace either attribute while it runs */
    Py_INCREF(queue);
    Py_INCREF(encode);
    PyObject *data = is_our_encoder(encode) ? encode_span(NULL, record)
                                            : PyObject_CallOneArg(encode, record);
    Py_DECREF(encode);
    PyObject *r = data ? enqueue(self, queue, data) : encoding_failed(self);
    Py_XDECREF(data);
    Py_DECREF(queue);
    return r;
}

/* ReportAPI.report: the fast path of report_span_call for a span given as its parts. Any
 * case that needs the record (a slow path, another encoder, a value only the Python
 * encoder takes) returns REPORT_NEEDS_RECORD before anything happened. */
static int report_parts(PyObject *report, const SpanParts *parts) {
    ReportSpan *self = (ReportSpan *)report;
    PyObject *queue, *encode;
    int step = next_step(self, &queue, &encode);
    if (step != STEP_QUEUE || !is_our_encoder(encode)) {
        return step < 0 ? -1 : REPORT_NEEDS_RECORD;
    }
    Buf b;
    buf_init(&b);
    int rc = put_parts(&b, parts);
    PyObject *data = NULL, *r;
    if (rc == FALLBACK) {
        buf_free(&b);
        return REPORT_NEEDS_RECORD;
    }
    if (rc == 0) {
        data = PyBytes_FromStringAndSize((const char *)b.data, b.len);
    }
    buf_free(&b);
    Py_INCREF(queue);
    r = data ? enqueue(self, queue, data) : encoding_failed(self);
    Py_XDECREF(data);
    Py_DECREF(queue);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return REPORT_DONE;
}

static PyObject *report_span_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *reporter, *python;
    if (!PyArg_ParseTuple(args, "OO:ReportSpan", &reporter, &python))
        return NULL;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "ReportSpan() takes no keyword arguments");
        return NULL;
    }
    PyObject *dict = PyObject_GenericGetDict(reporter, NULL);
    if (dict == NULL)
        return NULL;
    ReportSpan *self = (ReportSpan *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(dict);
        return NULL;
    }
    self->reporter = Py_NewRef(reporter);
    self->dict = dict;
    self->python = Py_NewRef(python);
    self->vectorcall = (vectorcallfunc)report_span_call;
    return (PyObject *)self;
}

static int report_span_traverse(ReportSpan *self, visitproc visit, void *arg) {
    Py_VISIT(self->reporter);
    Py_VISIT(self->dict);
    Py_VISIT(self->python);
    return 0;
}

static int report_span_clear(ReportSpan *self) {
    Py_CLEAR(self->reporter);
    Py_CLEAR(self->dict);
    Py_CLEAR(self->python);
    return 0;
}

static void report_span_dealloc(ReportSpan *self) {
    PyObject_GC_UnTrack(self);
    report_span_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ReportSpan_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "opentracing_sls._speedups.ReportSpan",
    .tp_basicsize = sizeof(ReportSpan),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "ReportSpan(reporter, python_report_span): the reporter's report_span in C.",
    .tp_new = report_span_new,
    .tp_dealloc = (destructor)report_span_dealloc,
    .tp_traverse = (traverseproc)report_span_traverse,
    .tp_clear = (inquiry)report_span_clear,
    .tp_vectorcall_offset = offsetof(ReportSpan, vectorcall),
    .tp_call = PyVectorcall_Call,
};

static PyMethodDef methods[] = {
    {"encode_span_compact", encode_span, METH_O,
     "encode_span_compact(record) -> bytes: one Jaeger Thrift compact Span struct."},
    {"pack_spans", (PyCFunction)(void (*)(void))pack_spans, METH_FASTCALL,
     "pack_spans(spans, budget, used) -> (groups, too_large)."},
    {"set_fallback", set_fallback, METH_O,
     "set_fallback(function): the Python encoder used for shapes the C path does not take."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "Optional C accelerator of the tracer's compact Thrift span encoder.", -1, methods,
    NULL, NULL, NULL, NULL,
};

static int intern(PyObject **slot, const char *text) {
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__speedups(void) {
    if (intern(&s_queue, "_queue") < 0 || intern(&s_accepting, "_accepting") < 0 ||
        intern(&s_queue_size, "queue_size") < 0 || intern(&s_encode, "_encode") < 0 ||
        intern(&s_batch_size, "batch_size") < 0 ||
        intern(&s_wake_pending, "_wake_pending") < 0 || intern(&s_append, "append") < 0 ||
        intern(&s_wake_worker, "_wake_worker") < 0 ||
        intern(&s_report_slow, "_report_slow") < 0 ||
        intern(&s_encode_failed, "_encode_failed") < 0 || find_deque_append() < 0 ||
        PyType_Ready(&ReportSpan_Type) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&ReportSpan_Type);
    if (PyModule_AddObject(module, "ReportSpan", (PyObject *)&ReportSpan_Type) < 0) {
        Py_DECREF(&ReportSpan_Type);
        Py_DECREF(module);
        return NULL;
    }
    static ReportAPI api = {REPORT_API_VERSION, &ReportSpan_Type, report_parts};
    PyObject *capsule = PyCapsule_New(&api, REPORT_API_CAPSULE, NULL);
    if (capsule == NULL || PyModule_AddObject(module, "_report_api", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
