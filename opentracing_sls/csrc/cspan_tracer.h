/* Part of _cspan.c (one translation unit, split for reading; every symbol stays static):
 * TracerCore: start_span/start_active_span for the common shapes. */
#ifndef CSPAN_TRACER_H
#define CSPAN_TRACER_H

#include "cspan_ids.h"
#include "cspan_scope.h"

/* -------------------------------------------------------------------- TracerCore */

/* Set once by set_tracer_types(). */
static PyTypeObject *context_cls = NULL; /* span_context.SpanContext */
static PyTypeObject *span_cls = NULL;    /* span.Span */

static PyObject *tracer_start_span(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames);
static PyObject *s_start_span_public, *s_scope_manager, *s_active, *s_start_span, *s_sampler,
    *s_is_sampled, *s_gen128, *s_started_sampled, *s_started_unsampled,
    *s_traces_sampled, *s_traces_unsampled, *s_context, *s_span, *s_empty, *s_one;

/* A new SpanContext (skips __init__'s argument parsing); every argument is borrowed. */
static PyObject *new_context(PyObject *trace_id, PyObject *span_id, PyObject *parent_id,
                             PyObject *flags, PyObject *baggage, PyObject *trace_state) {
    PyObject *copy;
    int truthy = baggage ? PyObject_IsTrue(baggage) : 0;
    if (truthy < 0)
        return NULL;
    if (!truthy) {
        copy = Py_NewRef(empty_baggage);
    } else if (PyDict_Check(baggage)) {
        copy = PyDict_Copy(baggage);
    } else if ((copy = PyDict_New()) != NULL && PyDict_Merge(copy, baggage, 1) < 0) {
        Py_CLEAR(copy);
    }
    if (copy == NULL)
        return NULL;
    return fill_context(context_cls, trace_id, span_id, parent_id, flags, copy, 0,
                        trace_state);
}

/* The context of a root span: new ids, the local sampler's decision. Sets *sampler_tags
 * (new reference or NULL). Mirrors the root case of Tracer._start_span. */
static PyObject *root_context(PyObject *tracer, PyObject *name, PyObject **sampler_tags) {
    *sampler_tags = NULL;
    PyObject *gen128 = TRACER_ATTR(tracer, gen128, s_gen128);
    int bits_128 = gen128 ? PyObject_IsTrue(gen128) : -1;
    Py_XDECREF(gen128);
    PyObject *trace_id = bits_128 < 0 ? NULL : new_trace_id_obj(bits_128);
    if (trace_id == NULL)
        return NULL;
    int sampled = 0;
    PyObject *sampler = TRACER_ATTR(tracer, sampler, s_sampler);
    if (sampler == NULL) {
        Py_DECREF(trace_id);
        return NULL;
    }
    PyObject *call[3] = {sampler, trace_id, name};
    PyObject *decision = PyObject_VectorcallMethod(s_is_sampled, call,
                                                   3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(sampler);
    if (decision != NULL && PyTuple_CheckExact(decision) && PyTuple_GET_SIZE(decision) == 2) {
        sampled = PyObject_IsTrue(PyTuple_GET_ITEM(decision, 0));
        if (sampled >= 0)
            *sampler_tags = Py_NewRef(PyTuple_GET_ITEM(decision, 1));
    } else if (decision != NULL) {
        /* any other shape: unpack it the way Python would, errors included */
        PyObject *seq = PySequence_Fast(decision, "cannot unpack sampler decision");
        if (seq != NULL && PySequence_Fast_GET_SIZE(seq) == 2) {
            sampled = PyObject_IsTrue(PySequence_Fast_GET_ITEM(seq, 0));
            if (sampled >= 0)
                *sampler_tags = Py_NewRef(PySequence_Fast_GET_ITEM(seq, 1));
        } else if (seq != NULL) {
            PyErr_SetString(PyExc_ValueError, "sampler decision is not a pair");
            sampled = -1;
        } else {
            sampled = -1;
        }
        Py_XDECREF(seq);
    } else {
        sampled = -1;
    }
    Py_XDECREF(decision);
    if (sampled < 0) {
        /* a broken sampler must not break the app */
        if (swallow(tracer, "sampler") < 0) {
            Py_DECREF(trace_id);
            return NULL;
        }
        sampled = 0;
        Py_CLEAR(*sampler_tags);
    }
    PyObject *context = NULL;
    int counted = sampled ? COUNT(tracer, traces_sampled, s_traces_sampled)
                          : COUNT(tracer, traces_unsampled, s_traces_unsampled);
    if (counted == 0) {
        PyObject *span_id = new_span_id();
        if (span_id != NULL)
            context = new_context(trace_id, span_id, s_zero, sampled ? s_one : s_zero, NULL,
                                  NULL);
        Py_XDECREF(span_id);
    }
    Py_DECREF(trace_id);
    if (context == NULL)
        Py_CLEAR(*sampler_tags);
    return context;
}

static PyTypeObject *manager_seen = NULL;
static TypeAttrCache active_cache = {C_FUNC(manager_active)},
                     activate_cache = {C_FUNC(manager_activate)};

/* The parent context a span with no child_of gets: the active span's, or None. New ref. */
static PyObject *active_parent(PyObject *tracer) {
    PyObject *manager = TRACER_ATTR(tracer, scope_manager, s_scope_manager);
    PyObject *scope = NULL;
    if (manager != NULL && is_core(manager, &VarManagerCore_Type, &manager_seen) &&
        type_attr_is(&active_cache, Py_TYPE(manager), s_active))
        scope = manager_active((VarManagerCore *)manager, NULL);
    else if (manager != NULL)
        scope = PyObject_GetAttr(manager, s_active);
    Py_XDECREF(manager);
    if (scope == NULL || scope == Py_None)
        return scope;
    PyObject *span = IS_SCOPE(scope) && ((ScopeCore *)scope)->span
                         ? Py_NewRef(((ScopeCore *)scope)->span)
                         : PyObject_GetAttr(scope, s_span);
    Py_DECREF(scope);
    if (span == NULL)
        return NULL;
    PyObject *context = IS_SPAN(span) && ((SpanCore *)span)->context
                            ? Py_NewRef(((SpanCore *)span)->context)
                            : PyObject_GetAttr(span, s_context);
    Py_DECREF(span);
    return context;
}

/* Whether set_tag would store every item of `tags` (an exact dict) as it is: str keys other
 * than sampling.priority, values that are str of at most `limit` characters, bool, int or
 * float. Then one dict update does what a set_tag per item does, in a fraction of the time
 * (each call costs about 500 instructions; an HTTP span gets six or seven tags). */
static int tags_as_given(PyObject *tags, Py_ssize_t limit) {
    PyObject *key, *value;
    Py_ssize_t pos = 0, priority_len = PyUnicode_GET_LENGTH(s_priority_key);
    while (PyDict_Next(tags, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || key == s_priority_key ||
            (PyUnicode_GET_LENGTH(key) == priority_len &&
             PyUnicode_Compare(key, s_priority_key) == 0))
            return 0;
        if (PyUnicode_CheckExact(value) ? PyUnicode_GET_LENGTH(value) > limit
                                        : !PyBool_Check(value) && !PyLong_CheckExact(value) &&
                                              !PyFloat_CheckExact(value))
            return 0;
    }
    return 1;
}

/* Tags passed to start_span, as Tracer._start_span applies them. */
static int apply_tags(SpanCore *span, PyObject *tags, int sampled) {
    if (tags == NULL || tags == Py_None)
        return 0;
    PyObject *key, *value, *args[2];
    Py_ssize_t pos = 0;
    if (!sampled) {
        /* only sampling.priority can matter on an unsampled span */
        value = PyDict_GetItemWithError(tags, s_priority_key);
        if (value == NULL)
            return PyErr_Occurred() ? -1 : 0;
        Py_INCREF(value);
        int rc = set_priority(span, value);
        Py_DECREF(value);
        return rc;
    }
    if (tags_as_given(tags, span->limit))
        return PyDict_Update(span->tags, tags);
    while (PyDict_Next(tags, &pos, &key, &value)) {
        args[0] = key;
        args[1] = value;
        PyObject *r = span_set_tag(span, args, 2, NULL);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

static TypeAttrCache start_span_cache = {C_FUNC(tracer_start_span)};

/* start_span / start_active_span: the common shapes here, the rest in Python. */
static PyObject *tracer_start(PyObject *self, PyObject *const *argv, Py_ssize_t nargs,
                              PyObject *kwnames, int activate) {
    static const char *const names[] = {"operation_name", "child_of", "references", "tags",
                                        "start_time", "ignore_active_span", "finish_on_close"};
    PyObject *a[7];
    if (bind(activate ? "start_active_span" : "start_span", argv, nargs, kwnames, names,
             activate, activate ? 7 : 6, a) < 0)
        return NULL;
    PyObject *name = a[0] ? a[0] : Py_None, *child_of = a[1] ? a[1] : Py_None;
    PyObject *refs = a[2], *tags = a[3], *start = a[4] ? a[4] : Py_None;
    PyObject *parent = NULL, *span = NULL, *sampler_tags = NULL;
    int fast = context_cls != NULL && span_cls != NULL;
    /* start_active_span goes through start_span, which a subclass or the instance may have
     * replaced (jaeger-client's does the same); known not to be, it is not looked up */
    if (activate && !(IS_TRACER(self) && !((TracerCore *)self)->start_span_set &&
                      type_attr_is(&start_span_cache, Py_TYPE(self), s_start_span_public))) {
        PyObject *method = PyObject_GetAttr(self, s_start_span_public);
        if (method == NULL)
            return NULL;
        int ours = PyCFunction_Check(method) &&
                   PyCFunction_GET_FUNCTION(method) == (PyCFunction)(void (*)(void))tracer_start_span;
        if (!ours) {
            PyObject *call[6] = {name, child_of, refs ? refs : Py_None, tags ? tags : Py_None,
                                 start, a[5] ? a[5] : Py_False};
            span = PyObject_Vectorcall(method, call, 6, NULL);
            fast = -1;
        }
        Py_DECREF(method);
        if (fast < 0)
            goto activate;
    }
    if (fast && refs != NULL && refs != Py_None) {
        int any = PyObject_IsTrue(refs);
        if (any < 0)
            return NULL;
        fast = !any;
    }
    if (fast && tags != NULL && tags != Py_None && !PyDict_CheckExact(tags))
        fast = 0;
    if (fast) {
        if (child_of != Py_None) {
            if (IS_CONTEXT(child_of))
                parent = Py_NewRef(child_of);
            else if (IS_SPAN(child_of) && ((SpanCore *)child_of)->context)
                parent = Py_NewRef(((SpanCore *)child_of)->context);
            else
                fast = 0;
        } else {
            int ignore = a[5] ? PyObject_IsTrue(a[5]) : 0;
            if (ignore < 0)
                return NULL;
            if (!ignore && (parent = active_parent(self)) == NULL)
                return NULL;
        }
    }
    if (fast && parent == Py_None)
        Py_CLEAR(parent);
    if (fast && parent != NULL) {
        ContextCore *p = (ContextCore *)parent;
        int usable = IS_CONTEXT(parent) && p->trace_id && p->span_id &&
                     p->flags && p->deferred;
        if (usable) {
            int has_trace = PyObject_IsTrue(p->trace_id), has_span = PyObject_IsTrue(p->span_id);
            int deferred = PyObject_IsTrue(p->deferred);
            if (has_trace < 0 || has_span < 0 || deferred < 0) {
                Py_DECREF(parent);
                return NULL;
            }
            usable = has_trace && has_span && !deferred;
        }
        fast = usable;
    }
    if (!fast) {
        /* references, foreign or deferred parents, debug ids ...: the Python path */
        Py_XDECREF(parent);
        PyObject *call[7] = {self, name, child_of, refs ? refs : Py_None, tags ? tags : Py_None,
                             start, a[5] ? a[5] : Py_False};
        span = PyObject_VectorcallMethod(s_start_span, call, 7 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                         NULL);
    } else {
        int named = PyObject_IsTrue(name);
        PyObject *context = NULL;
        if (named >= 0) {
            PyObject *op = named ? name : s_empty;
            if (parent == NULL) {
                context = root_context(self, op, &sampler_tags);
            } else {
                ContextCore *p = (ContextCore *)parent;
                PyObject *span_id = new_span_id();
                if (span_id != NULL)
                    context = new_context(p->trace_id, span_id, p->span_id, p->flags, p->baggage,
                                          p->trace_state);
                Py_XDECREF(span_id);
            }
            if (context != NULL) {
                span = span_cls->tp_alloc(span_cls, 0);
                if (span != NULL && span_fill((SpanCore *)span, self, context, op, start,
                                              Py_None) < 0)
                    Py_CLEAR(span);
            }
        }
        Py_XDECREF(context);
        Py_XDECREF(parent);
        if (span != NULL) {
            int sampled = (flags_of(((SpanCore *)span)->context) & SAMPLED_FLAG) != 0;
            int ok = (sampled ? COUNT(self, started_sampled, s_started_sampled)
                              : COUNT(self, started_unsampled, s_started_unsampled)) == 0;
            if (ok && sampled && sampler_tags != NULL && sampler_tags != Py_None) {
                int any = PyObject_IsTrue(sampler_tags);
                ok = any >= 0 && (!any || PyDict_Update(((SpanCore *)span)->tags,
                                                        sampler_tags) == 0);
            }
            if (!ok || apply_tags((SpanCore *)span, tags, sampled) < 0)
                Py_CLEAR(span);
        }
        Py_XDECREF(sampler_tags);
    }
activate:
    if (span == NULL || !activate)
        return span;
    PyObject *manager = TRACER_ATTR(self, scope_manager, s_scope_manager);
    PyObject *scope = NULL;
    if (manager != NULL) {
        PyObject *call[3] = {manager, span, a[6] ? a[6] : Py_True};
        if (is_core(manager, &VarManagerCore_Type, &manager_seen) &&
            !((VarManagerCore *)manager)->activate_set &&
            type_attr_is(&activate_cache, Py_TYPE(manager), s_activate))
            scope = manager_activate((VarManagerCore *)manager, call + 1, 2, NULL);
        else
            scope = PyObject_VectorcallMethod(s_activate, call,
                                              3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(manager);
    }
    Py_DECREF(span);
    return scope;
}

static PyObject *tracer_start_span(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
    return tracer_start(self, args, nargs, kwnames, 0);
}

static PyObject *tracer_start_active_span(PyObject *self, PyObject *const *args,
                                          Py_ssize_t nargs, PyObject *kwnames) {
    return tracer_start(self, args, nargs, kwnames, 1);
}

static PyMethodDef tracer_methods[] = {
    {"start_span", (PyCFunction)(void (*)(void))tracer_start_span,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"start_active_span", (PyCFunction)(void (*)(void))tracer_start_active_span,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL, NULL, 0, NULL},
};

#define TRACER_FIELDS(X)                                                                     \
    X(scope_manager) X(sampler) X(max_len) X(gen128) X(report) X(started_sampled)             \
    X(started_unsampled) X(traces_sampled) X(traces_unsampled) X(finished_count)              \
    X(started_sampled_it) X(started_unsampled_it) X(traces_sampled_it)                        \
    X(traces_unsampled_it) X(finished_count_it)

static int tracer_traverse(TracerCore *self, visitproc visit, void *arg) {
#define VISIT_FIELD(f) Py_VISIT(self->f);
    TRACER_FIELDS(VISIT_FIELD)
#undef VISIT_FIELD
    return 0;
}

static int tracer_clear(TracerCore *self) {
#define CLEAR_FIELD(f) Py_CLEAR(self->f);
    TRACER_FIELDS(CLEAR_FIELD)
#undef CLEAR_FIELD
    return 0;
}

static void tracer_dealloc(TracerCore *self) {
    PyObject_GC_UnTrack(self);
    tracer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The Python names of the fields: unset reads raise AttributeError, like a missing
 * instance attribute. */
static PyMemberDef tracer_members[] = {
    {"_scope_manager", T_OBJECT_EX, offsetof(TracerCore, scope_manager), 0, NULL},
    {"sampler", T_OBJECT_EX, offsetof(TracerCore, sampler), 0, NULL},
    {"max_tag_value_length", T_OBJECT_EX, offsetof(TracerCore, max_len), 0, NULL},
    {"generate_128bit_trace_id", T_OBJECT_EX, offsetof(TracerCore, gen128), 0, NULL},
    {"_report", T_OBJECT_EX, offsetof(TracerCore, report), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

/* The counters: read like members; assigning one also notes a Tally, or the
 * itertools.count behind a count's bound __next__, which count_at() then advances directly. */
typedef struct {
    const char *name;
    size_t field, it;
} CounterSlot;

#define COUNTER_SLOT(attr, f) {attr, offsetof(TracerCore, f), offsetof(TracerCore, f##_it)}
static CounterSlot counter_slots[] = {
    COUNTER_SLOT("_started_sampled", started_sampled),
    COUNTER_SLOT("_started_unsampled", started_unsampled),
    COUNTER_SLOT("_traces_sampled", traces_sampled),
    COUNTER_SLOT("_traces_unsampled", traces_unsampled),
    COUNTER_SLOT("_finished_count", finished_count),
};
#undef COUNTER_SLOT

static PyObject *counter_get(PyObject *self, void *closure) {
    CounterSlot *slot = (CounterSlot *)closure;
    PyObject *value = SLOT_AT(self, slot->field);
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%s'",
                     Py_TYPE(self)->tp_name, slot->name);
        return NULL;
    }
    return Py_NewRef(value);
}

/* The itertools.count whose __next__ `value` is, or NULL (new reference, no error). */
static PyObject *count_behind(PyObject *value) {
    if (strcmp(Py_TYPE(value)->tp_name, "method-wrapper") != 0)
        return NULL;
    PyObject *name = PyObject_GetAttrString(value, "__name__");
    PyObject *owner = name ? PyObject_GetAttrString(value, "__self__") : NULL;
    int next = name && PyUnicode_Check(name) &&
               PyUnicode_CompareWithASCIIString(name, "__next__") == 0;
    Py_XDECREF(name);
    if (owner == NULL || !next || strcmp(Py_TYPE(owner)->tp_name, "itertools.count") != 0 ||
        !PyIter_Check(owner)) {
        PyErr_Clear();
        Py_XDECREF(owner);
        return NULL;
    }
    return owner;
}

static int counter_set(PyObject *self, PyObject *value, void *closure) {
    CounterSlot *slot = (CounterSlot *)closure;
    if (value == NULL && SLOT_AT(self, slot->field) == NULL) {
        PyErr_SetString(PyExc_AttributeError, slot->name);
        return -1;
    }
    PyObject *it = value == NULL           ? NULL
                   : Py_IS_TYPE(value, &Tally_Type) ? Py_NewRef(value)
                                                   : count_behind(value);
    Py_XSETREF(SLOT_AT(self, slot->field), value ? Py_NewRef(value) : NULL);
    Py_XSETREF(SLOT_AT(self, slot->it), it);
    return 0;
}

static PyGetSetDef tracer_getset[] = {
    {"_started_sampled", counter_get, counter_set, NULL, &counter_slots[0]},
    {"_started_unsampled", counter_get, counter_set, NULL, &counter_slots[1]},
    {"_traces_sampled", counter_get, counter_set, NULL, &counter_slots[2]},
    {"_traces_unsampled", counter_get, counter_set, NULL, &counter_slots[3]},
    {"_finished_count", counter_get, counter_set, NULL, &counter_slots[4]},
    {NULL, NULL, NULL, NULL, NULL},
};

/* Notes an instance-level start_span (start_active_span must then call it). */
static int tracer_setattro(PyObject *self, PyObject *name, PyObject *value) {
    return note_setattr(self, name, value, s_start_span_public,
                        &((TracerCore *)self)->start_span_set);
}

static PyTypeObject TracerCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "opentracing_sls._cspan.TracerCore",
    .tp_basicsize = sizeof(TracerCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "C core of Tracer: start_span and start_active_span for the common shapes; "
              "the attributes they read are member slots.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)tracer_dealloc,
    .tp_traverse = (traverseproc)tracer_traverse,
    .tp_clear = (inquiry)tracer_clear,
    .tp_methods = tracer_methods,
    .tp_members = tracer_members,
    .tp_getset = tracer_getset,
    .tp_setattro = tracer_setattro,
};

static PyObject *set_tracer_types(PyObject *Py_UNUSED(module), PyObject *args,
                                  PyObject *kwargs) {
    static char *names[] = {"context_type", "span_type", NULL};
    PyObject *ctx, *span;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!:set_tracer_types", names,
                                     &PyType_Type, &ctx, &PyType_Type, &span))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)ctx, &ContextCore_Type) ||
        !PyType_IsSubtype((PyTypeObject *)span, &SpanCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "types must subclass ContextCore and SpanCore");
        return NULL;
    }
    Py_XSETREF(context_cls, (PyTypeObject *)Py_NewRef(ctx));
    Py_XSETREF(span_cls, (PyTypeObject *)Py_NewRef(span));
    Py_RETURN_NONE;
}

#endif
