/* The C call from _cprop's extractor into _cspan's context constructor, shared by both
 * modules.
 *
 * Why: calling the SpanContext class parses its eight arguments with
 * PyArg_ParseTupleAndKeywords, two thirds of an extraction's context cost; _cspan fills the
 * fields directly. _cspan exports a ContextAPI in the capsule `_context_api`; _accel.py
 * hands it to _cprop.configure(). Without it (pure-Python mode, or _cspan not built) the
 * extractor calls the class, which behaves the same. */
#ifndef OPENTRACING_SLS_CONTEXT_API_H
#define OPENTRACING_SLS_CONTEXT_API_H

#include <Python.h>

#define CONTEXT_API_CAPSULE "opentracing_sls._cspan._context_api"
#define CONTEXT_API_VERSION 1

typedef struct {
    int version;
    /* type(trace_id, span_id, parent_id, flags, None, None, deferred): what calling the
     * class does, without the call when the class keeps ContextCore's __new__ and
     * __init__. Every argument is borrowed; returns a new reference or NULL. */
    PyObject *(*make)(PyTypeObject *type, PyObject *trace_id, PyObject *span_id,
                      PyObject *parent_id, PyObject *flags, int deferred);
} ContextAPI;

#endif
