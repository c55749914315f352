/* What the C request handlers (_csend, _cflask) share: reporting our own errors and the
 * "certainly unsampled" test of unsampled.py. */
#ifndef OPENTRACING_SLS_HANDLERS_H
#define OPENTRACING_SLS_HANDLERS_H

#include <Python.h>

#include "../../opentracing_sls/csrc/compat.h"

/* Hands the pending exception to ``report(what, exc)`` (the integration's counter and
 * rate-limited log); never leaves an error set. */
static void report_to(PyObject *report, const char *what) {
    PyObject *exc = take_exception();
    PyObject *text = PyUnicode_FromString(what);
    if (exc != NULL && text != NULL) {
        PyObject *result = PyObject_CallFunctionObjArgs(report, text, exc, NULL);
        Py_XDECREF(result);
    }
    PyErr_Clear();
    Py_XDECREF(text);
    Py_XDECREF(exc);
}

static inline int attr_true(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return -1;
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* The fields context_unsampled() reads, and where ContextCore keeps them in instances of
 * `slots_of` (our SpanContext): read in place there, not through an attribute lookup each
 * (about 700 instructions a request). A type without those slots (no C core), or a slot
 * that is unset, reads as an attribute, as the Python twin does. */
enum { F_FLAGS, F_DEFERRED, F_TRACE_ID, F_SPAN_ID, N_CONTEXT_FIELDS };
static const char *const context_field_names[N_CONTEXT_FIELDS] = {
    "flags", "sampling_deferred", "trace_id", "span_id"};
static PyObject *context_field_objs[N_CONTEXT_FIELDS];
static PyTypeObject *slots_of = NULL;
static Py_ssize_t context_field_at[N_CONTEXT_FIELDS];

/* context.<field i> (new reference, or NULL with an error). */
static PyObject *context_field(PyObject *context, int i) {
    if (Py_TYPE(context) == slots_of) {
        PyObject *value = *(PyObject **)((char *)context + context_field_at[i]);
        if (value != NULL)
            return Py_NewRef(value);
    }
    return PyObject_GetAttr(context, context_field_objs[i]);
}

static int context_field_true(PyObject *context, int i) {
    PyObject *value = context_field(context, i);
    if (value == NULL)
        return -1;
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* unsampled.py's test on a parent context: 1 when it is exactly our SpanContext with ids
 * and a "not sampled" decision (a child inherits it), 0 if not, -1 on error. */
static int context_unsampled(PyObject *context, PyObject *context_type, long sampled_flag) {
    if (context_field_objs[0] == NULL)
        for (int i = 0; i < N_CONTEXT_FIELDS; i++)
            if ((context_field_objs[i] = PyUnicode_InternFromString(context_field_names[i])) ==
                NULL)
                return -1;
    if ((PyObject *)Py_TYPE(context) != context_type)
        return 0;
    if (slots_of != (PyTypeObject *)context_type) {
        Py_ssize_t found[N_CONTEXT_FIELDS];
        int ok = 1;
        for (int i = 0; i < N_CONTEXT_FIELDS && ok; i++)
            ok = object_slot_offset((PyTypeObject *)context_type, context_field_names[i],
                                    &found[i]) == 0;
        if (ok) {
            memcpy(context_field_at, found, sizeof found);
            Py_XSETREF(slots_of, (PyTypeObject *)Py_NewRef(context_type));
        } else {
            PyErr_Clear();
        }
    }
    PyObject *flags = context_field(context, F_FLAGS);
    long value = flags == NULL ? -1 : PyLong_AsLong(flags);
    Py_XDECREF(flags);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (value & sampled_flag)
        return 0;
    int deferred = context_field_true(context, F_DEFERRED);
    if (deferred != 0)
        return deferred < 0 ? -1 : 0;
    int trace = context_field_true(context, F_TRACE_ID);
    return trace != 1 ? trace : context_field_true(context, F_SPAN_ID);
}

/* The tracer's HTTP_HEADERS codec when the tracer is exactly ours and the codec exactly our
 * CompositeCodec (new reference); NULL without an error when not, with one on failure. The
 * handlers then call the codec's C hooks themselves, saving two Python frames a call. */
static PyObject *our_codec(PyObject *tracer, PyObject *tracer_type, PyObject *composite_type,
                           PyObject *format) {
    static PyObject *s_codecs;
    if (s_codecs == NULL && (s_codecs = PyUnicode_InternFromString("codecs")) == NULL)
        return NULL;
    if ((PyObject *)Py_TYPE(tracer) != tracer_type)
        return NULL;
    PyObject *codecs = PyObject_GetAttr(tracer, s_codecs);
    if (codecs == NULL)
        return NULL;
    PyObject *codec = PyDict_CheckExact(codecs)
                          ? Py_XNewRef(PyDict_GetItemWithError(codecs, format)) : NULL;
    Py_DECREF(codecs);
    if (codec != NULL && (PyObject *)Py_TYPE(codec) != composite_type)
        Py_CLEAR(codec);
    return codec;
}

/* codec.<hook>(a, b) where hook is the C hook attribute of a CompositeCodec: the result,
 * or NULL with no error when the codec has no such hook. */
static PyObject *call_hook(PyObject *codec, PyObject *hook_name, PyObject *a, PyObject *b,
                           Py_ssize_t nargs) {
    PyObject *hook = PyObject_GetAttr(codec, hook_name);
    if (hook == NULL || hook == Py_None) {
        Py_XDECREF(hook);
        return NULL;
    }
    PyObject *args[] = {a, b};
    PyObject *result = PyObject_Vectorcall(hook, args, nargs, NULL);
    Py_DECREF(hook);
    return result;
}

/* enable(**objects)'s keyword arguments: ``values[i]`` (borrowed) for each of the ``count``
 * ``names``, and ``sampled_flag`` (an int). 0, or -1 with a TypeError naming what is missing,
 * extra or not an int. */
static int read_config(PyObject *args, PyObject *kwargs, const char *const *names, int count,
                       PyObject **values, long *sampled_flag) {
    if (PyTuple_GET_SIZE(args) != 0 || kwargs == NULL) {
        PyErr_SetString(PyExc_TypeError, "enable() takes keyword arguments only");
        return -1;
    }
    for (int i = 0; i < count; i++) {
        values[i] = PyDict_GetItemString(kwargs, names[i]);
        if (values[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "enable() needs %s", names[i]);
            return -1;
        }
    }
    PyObject *flag = PyDict_GetItemString(kwargs, "sampled_flag");
    *sampled_flag = flag == NULL || !PyLong_Check(flag) ? -1 : PyLong_AsLong(flag);
    if (*sampled_flag == -1) {
        PyErr_Clear(); /* an int out of range: the same answer */
        PyErr_SetString(PyExc_TypeError, "enable() needs sampled_flag (an int)");
        return -1;
    }
    if (PyDict_GET_SIZE(kwargs) != count + 1) {
        PyErr_SetString(PyExc_TypeError, "enable(): unknown keyword argument");
        return -1;
    }
    return 0;
}

#endif
