/* Part of _cspan.c (one translation unit, split for reading; every symbol stays static):
 * Shared by the parts of _cspan: includes, the objects configure() hands over, the
 * interned names, and the helpers every core uses. */
#ifndef CSPAN_COMMON_H
#define CSPAN_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define SAMPLED_FLAG 1L
#define DEBUG_FLAG 2L
/* constants.MAX_TAG_VALUE_LENGTH, for a tracer object that lacks max_tag_value_length */
#define DEFAULT_LIMIT 1024

#include "compat.h"
#include "report_api.h"
#include "cspan_tally.h"
#include <math.h>
#include <time.h>

/* Set once by configure(). */
static PyObject *record_type = NULL;  /* opentracing_sls.record.SpanRecord */
static PyObject *empty_baggage = NULL; /* span_context._EMPTY: shared, never mutated */
static PyObject *on_error = NULL;      /* opentracing.Span._on_error */
static const ReportAPI *report_api = NULL; /* _speedups' ReportSpan, if loaded */
static PyObject *scope_type = NULL;    /* scope_managers._RestoringScope */
static PyObject *time_time = NULL;     /* time.time */

static PyObject *s_finished_count, *s_report, *s_internal_error, *s_tag_value, *s_log_value,
    *s_warn_twice, *s_max_len, *s_finish, *s_priority_key, *s_million, *s_zero, *s_activate;

/* ------------------------------------------------------------------- shared helpers */

/* Logs the pending exception through tracer._internal_error(what), inside an emulated
 * `except` block so the tracer's logging sees it as sys.exc_info(). Exceptions that are
 * not Exception subclasses (KeyboardInterrupt, SystemExit) stay pending: the pure-Python
 * code does not catch them either. Returns 0 when the exception was consumed. */
static int swallow(PyObject *tracer, const char *what) {
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *exc = take_exception();
    if (exc == NULL)
        return 0;
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *saved = PyErr_GetHandledException();
    PyErr_SetHandledException(exc);
#else
    PyObject *otype, *ovalue, *otb;
    PyErr_GetExcInfo(&otype, &ovalue, &otb);
    PyErr_SetExcInfo(Py_NewRef(Py_TYPE(exc)), Py_NewRef(exc), PyException_GetTraceback(exc));
#endif
    PyObject *r = PyObject_CallMethod(tracer, "_internal_error", "s", what);
    if (r == NULL)
        PyErr_Clear(); /* a broken error logger must not break the app either */
    Py_XDECREF(r);
#if PY_VERSION_HEX >= 0x030B0000
    PyErr_SetHandledException(saved);
    Py_XDECREF(saved);
#else
    PyErr_SetExcInfo(otype, ovalue, otb);
#endif
    Py_DECREF(exc);
    return 0;
}

/* Binds a vectorcall's arguments to `out[0..n)` by position or by name, like a Python
 * signature whose first `required` parameters have no default (the others stay NULL). */
static int bind(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                const char *const *names, int required, int n, PyObject **out) {
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname, n,
                     nargs);
        return -1;
    }
    for (int i = 0; i < n; i++)
        out[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
        int i = 0;
        while (i < n && PyUnicode_CompareWithASCIIString(kw, names[i]) != 0)
            i++;
        if (i == n) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         kw);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (int i = 0; i < required; i++)
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    return 0;
}

/* PyObject_TypeCheck with a one-entry cache of the subclass last seen: each core is used
 * through one Python subclass, so the MRO walk of PyType_IsSubtype runs once, not per call.
 * The cache holds a reference, so its type cannot be freed and its address reused. */
static inline int is_core(PyObject *o, PyTypeObject *core, PyTypeObject **seen) {
    PyTypeObject *type = Py_TYPE(o);
    if (type == core || type == *seen)
        return 1;
    if (!PyType_IsSubtype(type, core))
        return 0;
    Py_INCREF(type);
    Py_XSETREF(*seen, type);
    return 1;
}

/* The C function behind a method or getter descriptor, cast the one way the compiler allows
 * between function types. */
typedef void (*CFunc)(void);
#define C_FUNC(f) ((CFunc)(f))

/* Whether type.<name> is still the C method or getter implemented by `fn`. The answer is
 * cached for one type and trusted while the type's version tag is unchanged: CPython gives a
 * type a new tag (or none) whenever it or a base is modified, as by monkeypatching the
 * class. */
typedef struct {
    CFunc fn;
    PyTypeObject *type;
    unsigned int version;
    int ours;
} TypeAttrCache;

static int is_c_descriptor(PyObject *attr, CFunc fn) {
    if (Py_IS_TYPE(attr, &PyMethodDescr_Type))
        return C_FUNC(((PyMethodDescrObject *)attr)->d_method->ml_meth) == fn;
    if (Py_IS_TYPE(attr, &PyGetSetDescr_Type))
        return C_FUNC(((PyGetSetDescrObject *)attr)->d_getset->get) == fn;
    return 0;
}

static int type_attr_is(TypeAttrCache *cache, PyTypeObject *type, PyObject *name) {
    if (cache->type == type && cache->version != 0 &&
        (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) && type->tp_version_tag == cache->version)
        return cache->ours;
    PyObject *attr = PyObject_GetAttr((PyObject *)type, name);
    if (attr == NULL) {
        PyErr_Clear(); /* the caller's generic path reports it */
        return 0;
    }
    int ours = is_c_descriptor(attr, cache->fn);
    Py_DECREF(attr);
    Py_INCREF(type); /* held, so its address cannot be reused by another type */
    Py_XSETREF(cache->type, type);
    cache->version = (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) ? type->tp_version_tag : 0;
    cache->ours = ours;
    return ours;
}

/* Notes that `name` was assigned on an instance (*flag = 1), then assigns it: the C fast
 * paths call a method directly only while its instance has not replaced it. */
static int note_setattr(PyObject *self, PyObject *name, PyObject *value, PyObject *watched,
                        char *flag) {
    if (PyUnicode_Check(name) && PyUnicode_Compare(name, watched) == 0)
        *flag = 1;
    return PyObject_GenericSetAttr(self, name, value);
}

/* TracerCore's instance layout. The tracer attributes the span path reads are member slots
 * of the C object, not instance-dict entries: Python code reads and assigns them as usual
 * (`tracer.sampler = s`, a test replacing `tracer._report`), and C reads the field with no
 * lookup. Declared here because spans read them too (cspan_span.h). */
typedef struct {
    PyObject_HEAD
    PyObject *scope_manager;  /* _scope_manager (opentracing.Tracer's) */
    PyObject *sampler;        /* sampler */
    PyObject *max_len;        /* max_tag_value_length */
    PyObject *gen128;         /* generate_128bit_trace_id */
    PyObject *report;         /* _report: reporter.report_span */
    /* the counters' zero-argument incrementers (Metrics.Counter.hot()), and for each the
     * itertools.count it advances when it is that count's __next__ (set by the setter) */
    PyObject *started_sampled, *started_unsampled, *traces_sampled, *traces_unsampled,
        *finished_count;
    PyObject *started_sampled_it, *started_unsampled_it, *traces_sampled_it,
        *traces_unsampled_it, *finished_count_it;
    char start_span_set; /* an instance attribute start_span was ever assigned */
} TracerCore;

static PyTypeObject TracerCore_Type;
static PyTypeObject *tracer_seen = NULL;
#define IS_TRACER(o) is_core((o), &TracerCore_Type, &tracer_seen)

/* The object field at `offset` of a TracerCore (borrowed, may be NULL). */
#define SLOT_AT(self, offset) (*(PyObject **)((char *)(self) + (offset)))

/* tracer.<name>: the TracerCore field at `offset` when set, else a normal lookup (any
 * object can be a span's tracer). New reference. */
static inline PyObject *tracer_attr(PyObject *tracer, size_t offset, PyObject *name) {
    if (IS_TRACER(tracer)) {
        PyObject *value = SLOT_AT(tracer, offset);
        if (value != NULL)
            return Py_NewRef(value);
    }
    return PyObject_GetAttr(tracer, name);
}
#define TRACER_ATTR(tracer, field, name) \
    tracer_attr((tracer), offsetof(TracerCore, field), (name))

/* Calls the counter incrementer tracer.<name>(): a Tally is stepped in place; an
 * itertools.count's __next__ goes straight to its tp_iternext (a method-wrapper call costs
 * ten times more). Returns 0, or -1 with an error set. */
static int count_at(PyObject *tracer, size_t offset, size_t it_offset, PyObject *name) {
    if (IS_TRACER(tracer)) {
        PyObject *it = SLOT_AT(tracer, it_offset);
        if (it != NULL && Py_IS_TYPE(it, &Tally_Type)) {
            ((Tally *)it)->n++;
            return 0;
        }
        if (it != NULL) {
            PyObject *r = Py_TYPE(it)->tp_iternext(it);
            if (r == NULL)
                return -1;
            Py_DECREF(r);
            return 0;
        }
    }
    PyObject *counter = tracer_attr(tracer, offset, name);
    PyObject *r = counter ? PyObject_CallNoArgs(counter) : NULL;
    Py_XDECREF(counter);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}
#define COUNT(tracer, field, name) \
    count_at((tracer), offsetof(TracerCore, field), offsetof(TracerCore, field##_it), (name))

/* Seconds since the epoch as time.time() computes them (CLOCK_REALTIME in ns, then the
 * same conversion to double), without the call through the builtin. */
static PyObject *system_clock(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return PyObject_CallNoArgs(time_time); /* let time.time() report the error */
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    volatile double d; /* as CPython: no optimisation may change the rounding */
    if (ns % 1000000000 == 0) {
        d = (double)(ns / 1000000000);
    } else {
        d = (double)ns;
        d /= 1e9;
    }
    return PyFloat_FromDouble(d);
}

static int clock_is_time_time = 0; /* time_time is the builtin: system_clock() is the same */

static PyObject *now(void) {
    return clock_is_time_time ? system_clock() : PyObject_CallNoArgs(time_time);
}

/* value made storable, as Span.set_tag/log_kv do: str truncated to `limit`, bool/int/float
 * kept, anything else through `convert(value)` (a Python method). New reference. */
static PyObject *storable(PyObject *value, Py_ssize_t limit, PyObject *owner,
                          PyObject *convert) {
    if (PyUnicode_CheckExact(value)) {
        if (PyUnicode_GET_LENGTH(value) > limit)
            return PyUnicode_Substring(value, 0, limit);
    } else if (!PyBool_Check(value) && !PyLong_CheckExact(value) && !PyFloat_CheckExact(value)) {
        return PyObject_CallMethodOneArg(owner, convert, value);
    }
    Py_INCREF(value);
    return value;
}

#endif
