/* Part of _cspan.c (one translation unit, split for reading; every symbol stays static):
 * ContextCore: the eight fields of a SpanContext. */
#ifndef CSPAN_CONTEXT_H
#define CSPAN_CONTEXT_H

#include "cspan_common.h"
#include "context_api.h"

/* -------------------------------------------------------------------- ContextCore */

typedef struct {
    PyObject_HEAD
    PyObject *trace_id, *span_id, *parent_id, *flags, *baggage, *debug_id, *deferred,
        *trace_state;
} ContextCore;

static PyTypeObject ContextCore_Type;
static PyTypeObject *context_seen = NULL;
#define IS_CONTEXT(o) is_core((o), &ContextCore_Type, &context_seen)

static int context_traverse(ContextCore *self, visitproc visit, void *arg) {
    Py_VISIT(self->trace_id);
    Py_VISIT(self->span_id);
    Py_VISIT(self->parent_id);
    Py_VISIT(self->flags);
    Py_VISIT(self->baggage);
    Py_VISIT(self->debug_id);
    Py_VISIT(self->deferred);
    Py_VISIT(self->trace_state);
    return 0;
}

static int context_clear(ContextCore *self) {
    Py_CLEAR(self->trace_id);
    Py_CLEAR(self->span_id);
    Py_CLEAR(self->parent_id);
    Py_CLEAR(self->flags);
    Py_CLEAR(self->baggage);
    Py_CLEAR(self->debug_id);
    Py_CLEAR(self->deferred);
    Py_CLEAR(self->trace_state);
    return 0;
}

static void context_dealloc(ContextCore *self) {
    PyObject_GC_UnTrack(self);
    context_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* SpanContext(trace_id, span_id, parent_id=0, flags=0, baggage=None, debug_id=None,
 *             sampling_deferred=False, trace_state=None) */
static int context_init(ContextCore *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"trace_id", "span_id", "parent_id", "flags", "baggage",
                            "debug_id", "sampling_deferred", "trace_state", NULL};
    PyObject *trace_id, *span_id, *parent_id = s_zero, *flags = s_zero, *baggage = Py_None,
        *debug_id = Py_None, *deferred = Py_False, *trace_state = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOOOOO:SpanContext", names, &trace_id,
                                     &span_id, &parent_id, &flags, &baggage, &debug_id,
                                     &deferred, &trace_state))
        return -1;
    int truthy = PyObject_IsTrue(baggage);
    if (truthy < 0)
        return -1;
    PyObject *copy = truthy ? PyDict_New() : Py_NewRef(empty_baggage);
    if (copy == NULL)
        return -1;
    if (truthy && PyDict_Merge(copy, baggage, 1) < 0) {
        Py_DECREF(copy);
        return -1;
    }
    Py_XSETREF(self->baggage, copy);
    Py_XSETREF(self->trace_id, Py_NewRef(trace_id));
    Py_XSETREF(self->span_id, Py_NewRef(span_id));
    Py_XSETREF(self->parent_id, Py_NewRef(parent_id));
    Py_XSETREF(self->flags, Py_NewRef(flags));
    Py_XSETREF(self->debug_id, Py_NewRef(debug_id));
    Py_XSETREF(self->deferred, Py_NewRef(deferred));
    Py_XSETREF(self->trace_state, Py_NewRef(trace_state));
    return 0;
}

static PyMemberDef context_members[] = {
    {"trace_id", T_OBJECT_EX, offsetof(ContextCore, trace_id), 0, NULL},
    {"span_id", T_OBJECT_EX, offsetof(ContextCore, span_id), 0, NULL},
    {"parent_id", T_OBJECT_EX, offsetof(ContextCore, parent_id), 0, NULL},
    {"flags", T_OBJECT_EX, offsetof(ContextCore, flags), 0, NULL},
    {"_baggage", T_OBJECT_EX, offsetof(ContextCore, baggage), 0, NULL},
    {"debug_id", T_OBJECT_EX, offsetof(ContextCore, debug_id), 0, NULL},
    {"sampling_deferred", T_OBJECT_EX, offsetof(ContextCore, deferred), 0, NULL},
    {"trace_state", T_OBJECT_EX, offsetof(ContextCore, trace_state), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ContextCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "opentracing_sls._cspan.ContextCore",
    .tp_basicsize = sizeof(ContextCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "C core of SpanContext: the eight propagated fields.",
    .tp_traverse = (traverseproc)context_traverse,
    .tp_clear = (inquiry)context_clear,
    .tp_dealloc = (destructor)context_dealloc,
    .tp_init = (initproc)context_init,
    .tp_new = PyType_GenericNew,
    .tp_members = context_members,
};

/* A ContextCore instance of `type` with its fields set directly (no __init__ argument
 * parsing). `baggage` is stolen (a dict the context owns, or the shared empty one), every
 * other argument borrowed; `trace_state` NULL means None. */
static PyObject *fill_context(PyTypeObject *type, PyObject *trace_id, PyObject *span_id,
                              PyObject *parent_id, PyObject *flags, PyObject *baggage,
                              int deferred, PyObject *trace_state) {
    ContextCore *c = (ContextCore *)type->tp_alloc(type, 0);
    if (c == NULL) {
        Py_DECREF(baggage);
        return NULL;
    }
    c->trace_id = Py_NewRef(trace_id);
    c->span_id = Py_NewRef(span_id);
    c->parent_id = Py_NewRef(parent_id);
    c->flags = Py_NewRef(flags);
    c->baggage = baggage;
    c->debug_id = Py_NewRef(Py_None);
    c->deferred = Py_NewRef(deferred ? Py_True : Py_False);
    c->trace_state = Py_NewRef(trace_state ? trace_state : Py_None);
    return (PyObject *)c;
}

/* ContextAPI.make (context_api.h): a class that kept ContextCore's __new__ and __init__
 * gets its fields set here, as context_init would set them; any other is called. */
static PyObject *api_make_context(PyTypeObject *type, PyObject *trace_id, PyObject *span_id,
                                  PyObject *parent_id, PyObject *flags, int deferred) {
    if (type->tp_init != (initproc)context_init || type->tp_new != PyType_GenericNew ||
        empty_baggage == NULL || !PyType_IsSubtype(type, &ContextCore_Type)) {
        PyObject *args[7] = {trace_id, span_id, parent_id, flags, Py_None, Py_None,
                             deferred ? Py_True : Py_False};
        return PyObject_Vectorcall((PyObject *)type, args, deferred ? 7 : 4, NULL);
    }
    return fill_context(type, trace_id, span_id, parent_id, flags, Py_NewRef(empty_baggage),
                        deferred, NULL);
}

static const ContextAPI context_api = {CONTEXT_API_VERSION, api_make_context};

/* A context's flags as a C long (0 when they are not an int: such a context is unsampled
 * for the pure-Python code too, whose `flags & SAMPLED_FLAG` would raise and be caught). */
static long flags_of(PyObject *context) {
    PyObject *flags;
    if (IS_CONTEXT(context)) {
        flags = ((ContextCore *)context)->flags;
        if (flags == NULL)
            return 0;
        Py_INCREF(flags);
    } else if ((flags = PyObject_GetAttrString(context, "flags")) == NULL) {
        PyErr_Clear();
        return 0;
    }
    long value = PyLong_Check(flags) ? PyLong_AsLong(flags) : 0;
    Py_DECREF(flags);
    if (value == -1 && PyErr_Occurred()) {
        /* a flags int too big for a long: only its low bits matter */
        PyErr_Clear();
        return 0;
    }
    return value;
}

#endif
