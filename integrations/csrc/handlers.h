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

static int attr_true(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return -1;
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* unsampled.py's test on a parent context: 1 when it is exactly our SpanContext with ids
 * and a "not sampled" decision (a child inherits it), 0 if not, -1 on error. */
static int context_unsampled(PyObject *context, PyObject *context_type, long sampled_flag) {
    static PyObject *s_flags, *s_deferred, *s_trace_id, *s_span_id;
    if (s_flags == NULL && ((s_flags = PyUnicode_InternFromString("flags")) == NULL ||
                            (s_deferred = PyUnicode_InternFromString("sampling_deferred")) ==
                                NULL ||
                            (s_trace_id = PyUnicode_InternFromString("trace_id")) == NULL ||
                            (s_span_id = PyUnicode_InternFromString("span_id")) == NULL))
        return -1;
    if ((PyObject *)Py_TYPE(context) != context_type)
        return 0;
    /* The four fields are ContextCore's slots: read in place, not through four attribute
     * lookups (about 700 instructions a request). Anything unexpected (no C core, a slot
     * that is unset) reads them as attributes, as the Python twin does. */
    static PyTypeObject *slots_of = NULL;
    static Py_ssize_t at[4]; /* flags, sampling_deferred, trace_id, span_id */
    if (slots_of != (PyTypeObject *)context_type) {
        static const char *const names[4] = {"flags", "sampling_deferred", "trace_id",
                                             "span_id"};
        Py_ssize_t found[4];
        int ok = 1;
        for (int i = 0; i < 4 && ok; i++)
            ok = object_slot_offset((PyTypeObject *)context_type, names[i], &found[i]) == 0;
        if (ok) {
            memcpy(at, found, sizeof at);
            Py_XSETREF(slots_of, (PyTypeObject *)Py_NewRef(context_type));
        } else {
            PyErr_Clear();
        }
    }
    if (slots_of == (PyTypeObject *)context_type) {
        PyObject *fields[4];
        int all = 1;
        for (int i = 0; i < 4; i++)
            all &= (fields[i] = *(PyObject **)((char *)context + at[i])) != NULL;
        if (all && PyLong_CheckExact(fields[0])) {
            /* held: a field's __bool__ could run code that replaces the others */
            for (int i = 0; i < 4; i++)
                Py_INCREF(fields[i]);
            long value = PyLong_AsLong(fields[0]);
            int result = value == -1 && PyErr_Occurred() ? -1 : 0;
            if (result == 0 && !(value & sampled_flag)) {
                int deferred = PyObject_IsTrue(fields[1]);
                result = deferred != 0 ? (deferred < 0 ? -1 : 0) : PyObject_IsTrue(fields[2]);
                if (result == 1)
                    result = PyObject_IsTrue(fields[3]);
            }
            for (int i = 0; i < 4; i++)
                Py_DECREF(fields[i]);
            return result;
        }
    }
    PyObject *flags = PyObject_GetAttr(context, s_flags);
    long value = flags == NULL ? -1 : PyLong_AsLong(flags);
    Py_XDECREF(flags);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (value & sampled_flag)
        return 0;
    int deferred = attr_true(context, s_deferred);
    if (deferred != 0)
        return deferred < 0 ? -1 : 0;
    int trace = attr_true(context, s_trace_id);
    return trace != 1 ? trace : attr_true(context, s_span_id);
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
