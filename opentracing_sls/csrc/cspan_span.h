/* Part of _cspan.c (one translation unit, split for reading; every symbol stays static):
 * SpanCore: tags, logs, finish and the finished-span record. */
#ifndef CSPAN_SPAN_H
#define CSPAN_SPAN_H

#include "cspan_context.h"

/* ----------------------------------------------------------------------- SpanCore */

typedef struct {
    PyObject_HEAD
    PyObject *tracer, *context, *operation_name, *start_time, *tags, *logs, *references;
    Py_ssize_t limit;
    char finished;
    char finish_set; /* `finish` assigned on the instance: scopes must look it up */
} SpanCore;

static PyTypeObject SpanCore_Type;
static PyTypeObject *span_seen = NULL;
#define IS_SPAN(o) is_core((o), &SpanCore_Type, &span_seen)

static int span_traverse(SpanCore *self, visitproc visit, void *arg) {
    Py_VISIT(self->tracer);
    Py_VISIT(self->context);
    Py_VISIT(self->operation_name);
    Py_VISIT(self->start_time);
    Py_VISIT(self->tags);
    Py_VISIT(self->logs);
    Py_VISIT(self->references);
    return 0;
}

static int span_clear(SpanCore *self) {
    Py_CLEAR(self->tracer);
    Py_CLEAR(self->context);
    Py_CLEAR(self->operation_name);
    Py_CLEAR(self->start_time);
    Py_CLEAR(self->tags);
    Py_CLEAR(self->logs);
    Py_CLEAR(self->references);
    return 0;
}

static void span_dealloc(SpanCore *self) {
    PyObject_GC_UnTrack(self);
    span_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Span(tracer, context, operation_name, start_time=None, references=None) */
/* Sets every field of a new span (`start` None: now). Returns 0, or -1 with an error. */
static int span_fill(SpanCore *self, PyObject *tracer, PyObject *context, PyObject *name,
                     PyObject *start, PyObject *refs) {
    Py_ssize_t limit = DEFAULT_LIMIT;
    PyObject *limit_obj = TRACER_ATTR(tracer, max_len, s_max_len);
    if (limit_obj != NULL) {
        limit = PyLong_AsSsize_t(limit_obj);
        Py_DECREF(limit_obj);
    }
    if (limit_obj == NULL || (limit == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        limit = DEFAULT_LIMIT;
    }
    PyObject *start_time = start == Py_None ? now() : Py_NewRef(start);
    if (start_time == NULL)
        return -1;
    PyObject *tags = PyDict_New();
    PyObject *logs = PyList_New(0);
    if (tags == NULL || logs == NULL) {
        Py_XDECREF(tags);
        Py_XDECREF(logs);
        Py_DECREF(start_time);
        return -1;
    }
    Py_XSETREF(self->tracer, Py_NewRef(tracer));
    Py_XSETREF(self->context, Py_NewRef(context));
    Py_XSETREF(self->operation_name, Py_NewRef(name));
    Py_XSETREF(self->start_time, start_time);
    Py_XSETREF(self->tags, tags);
    Py_XSETREF(self->logs, logs);
    Py_XSETREF(self->references, Py_NewRef(refs));
    self->limit = limit < 0 ? 0 : limit;
    self->finished = 0;
    return 0;
}

/* Span(tracer, context, operation_name, start_time=None, references=None) */
static int span_init(SpanCore *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"tracer", "context", "operation_name", "start_time", "references",
                            NULL};
    PyObject *tracer, *context, *name, *start = Py_None, *refs = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|OO:Span", names, &tracer, &context,
                                     &name, &start, &refs))
        return -1;
    return span_fill(self, tracer, context, name, start, refs);
}

static PyObject *span_set_operation_name(SpanCore *self, PyObject *name) {
    Py_XSETREF(self->operation_name, Py_NewRef(name));
    return Py_NewRef(self);
}

/* sampling.priority > 0 samples (and marks debug) the span, <= 0 unsamples it; a value
 * int() cannot take is ignored. Returns 0, or -1 with a non-Exception error pending. */
static int set_priority(SpanCore *self, PyObject *value) {
    PyObject *priority = PyNumber_Long(value);
    if (priority == NULL) {
        /* a value int() cannot take is ignored */
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return -1;
        PyErr_Clear();
        return 0;
    }
    int rc = 0;
    if (!self->finished) {
        int positive = PyObject_RichCompareBool(priority, s_zero, Py_GT);
        PyObject *flags = positive < 0 ? NULL : PyObject_GetAttrString(self->context, "flags");
        PyObject *mask = NULL, *updated = NULL;
        if (flags != NULL) {
            mask = PyLong_FromLong(positive ? SAMPLED_FLAG | DEBUG_FLAG : ~(SAMPLED_FLAG | DEBUG_FLAG));
            if (mask != NULL)
                updated = positive ? PyNumber_Or(flags, mask) : PyNumber_And(flags, mask);
        }
        if (updated == NULL || PyObject_SetAttrString(self->context, "flags", updated) < 0 ||
            (positive && PyDict_SetItem(self->tags, s_priority_key, priority) < 0))
            rc = swallow(self->tracer, "set_tag");
        Py_XDECREF(flags);
        Py_XDECREF(mask);
        Py_XDECREF(updated);
    }
    Py_DECREF(priority);
    return rc;
}

static PyObject *span_sampling_priority(SpanCore *self, PyObject *value) {
    if (set_priority(self, value) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *span_set_tag(SpanCore *self, PyObject *const *argv, Py_ssize_t nargs,
                              PyObject *kwnames) {
    static const char *const names[] = {"key", "value"};
    PyObject *args[2];
    if (bind("set_tag", argv, nargs, kwnames, names, 2, 2, args) < 0)
        return NULL;
    PyObject *key = args[0];
    /* the length first: nearly every key differs from it there, for a fraction of a compare */
    int is_priority =
        key == s_priority_key ? 1
        : PyUnicode_Check(key)
            ? PyUnicode_GET_LENGTH(key) == PyUnicode_GET_LENGTH(s_priority_key) &&
                  PyUnicode_Compare(key, s_priority_key) == 0
            : PyObject_RichCompareBool(key, s_priority_key, Py_EQ);
    if (is_priority < 0 && swallow(self->tracer, "set_tag") < 0)
        return NULL;
    if (is_priority > 0) {
        if (set_priority(self, args[1]) < 0)
            return NULL;
        return Py_NewRef(self);
    }
    if (flags_of(self->context) & SAMPLED_FLAG) {
        PyObject *value = storable(args[1], self->limit, self->tracer, s_tag_value);
        if (value == NULL || (!self->finished && PyDict_SetItem(self->tags, key, value) < 0)) {
            if (swallow(self->tracer, "set_tag") < 0) {
                Py_XDECREF(value);
                return NULL;
            }
        }
        Py_XDECREF(value);
    }
    return Py_NewRef(self);
}

/* int(ts * 1000000) for a float or any number, as the pure-Python span computes it. */
static PyObject *to_micros(PyObject *ts) {
    if (PyFloat_CheckExact(ts))
        return PyLong_FromDouble(PyFloat_AS_DOUBLE(ts) * 1000000.0);
    PyObject *scaled = PyNumber_Multiply(ts, s_million);
    if (scaled == NULL)
        return NULL;
    PyObject *result = PyNumber_Long(scaled);
    Py_DECREF(scaled);
    return result;
}

static PyObject *log_fields(SpanCore *self, PyObject *key_values) {
    PyObject *items = PyDict_CheckExact(key_values) ? NULL : PyMapping_Items(key_values);
    if (items == NULL && !PyDict_CheckExact(key_values))
        return NULL;
    PyObject *fields = PyDict_New();
    if (fields == NULL) {
        Py_XDECREF(items);
        return NULL;
    }
    Py_ssize_t pos = 0, n = items ? PyList_GET_SIZE(items) : 0;
    PyObject *key, *value;
    for (Py_ssize_t i = 0;; i++) {
        if (items == NULL) {
            if (!PyDict_Next(key_values, &pos, &key, &value))
                break;
        } else {
            if (i >= n)
                break;
            PyObject *pair = PyList_GET_ITEM(items, i);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
                PyErr_SetString(PyExc_TypeError, "items() must yield (key, value) pairs");
                goto fail;
            }
            key = PyTuple_GET_ITEM(pair, 0);
            value = PyTuple_GET_ITEM(pair, 1);
        }
        /* a value's conversion may run Python code that mutates the dict being iterated:
         * hold our own references across it */
        Py_INCREF(key);
        Py_INCREF(value);
        PyObject *kept = storable(value, self->limit, (PyObject *)self, s_log_value);
        int rc = kept == NULL ? -1 : PyDict_SetItem(fields, key, kept);
        Py_XDECREF(kept);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            goto fail;
    }
    Py_XDECREF(items);
    return fields;
fail:
    Py_XDECREF(items);
    Py_DECREF(fields);
    return NULL;
}

static PyObject *span_log_kv(SpanCore *self, PyObject *const *argv, Py_ssize_t nargs,
                             PyObject *kwnames) {
    static const char *const names[] = {"key_values", "timestamp"};
    PyObject *args[2];
    if (bind("log_kv", argv, nargs, kwnames, names, 1, 2, args) < 0)
        return NULL;
    PyObject *key_values = args[0], *timestamp = args[1] ? args[1] : Py_None;
    if (!(flags_of(self->context) & SAMPLED_FLAG))
        return Py_NewRef(self);
    PyObject *ts = timestamp == Py_None ? now() : Py_NewRef(timestamp);
    PyObject *micros = ts ? to_micros(ts) : NULL;
    Py_XDECREF(ts);
    PyObject *fields = micros ? log_fields(self, key_values) : NULL;
    PyObject *entry = fields ? PyTuple_Pack(2, micros, fields) : NULL;
    Py_XDECREF(micros);
    Py_XDECREF(fields);
    if (entry == NULL || (!self->finished && PyList_Append(self->logs, entry) < 0)) {
        if (swallow(self->tracer, "log_kv") < 0) {
            Py_XDECREF(entry);
            return NULL;
        }
    }
    Py_XDECREF(entry);
    return Py_NewRef(self);
}

/* The SpanRecord of this span finished at `end` (new reference, or NULL). */
static PyObject *make_record(SpanCore *self, PyObject *end) {
    PyObject *context = self->context, *start = self->start_time;
    PyObject *start_us = NULL, *duration = NULL, *refs = NULL, *trace_id, *span_id, *parent_id,
             *flags, *record = NULL;
    int owned = 0;
    if (IS_CONTEXT(context)) {
        ContextCore *c = (ContextCore *)context;
        trace_id = c->trace_id;
        span_id = c->span_id;
        parent_id = c->parent_id;
        flags = c->flags;
        if (!trace_id || !span_id || !parent_id || !flags) {
            PyErr_SetString(PyExc_AttributeError, "incomplete SpanContext");
            return NULL;
        }
    } else {
        owned = 1;
        trace_id = PyObject_GetAttrString(context, "trace_id");
        span_id = PyObject_GetAttrString(context, "span_id");
        parent_id = PyObject_GetAttrString(context, "parent_id");
        flags = PyObject_GetAttrString(context, "flags");
        if (!trace_id || !span_id || !parent_id || !flags)
            goto done;
    }
    if (PyFloat_CheckExact(start) && PyFloat_CheckExact(end)) {
        double s = PyFloat_AS_DOUBLE(start), e = PyFloat_AS_DOUBLE(end);
        start_us = PyLong_FromDouble(s * 1000000.0);
        duration = PyLong_FromDouble((e - s) * 1000000.0);
    } else {
        start_us = to_micros(start);
        PyObject *diff = start_us ? PyNumber_Subtract(end, start) : NULL;
        duration = diff ? to_micros(diff) : NULL;
        Py_XDECREF(diff);
    }
    if (duration == NULL)
        goto done;
    int negative = PyObject_RichCompareBool(duration, s_zero, Py_LT);
    if (negative < 0)
        goto done;
    if (negative)
        Py_SETREF(duration, Py_NewRef(s_zero));
    int has_refs = self->references == NULL ? 0 : PyObject_IsTrue(self->references);
    if (has_refs < 0)
        goto done;
    refs = has_refs ? Py_NewRef(self->references) : PyList_New(0);
    if (refs == NULL || duration == NULL)
        goto done;
    PyTypeObject *type = (PyTypeObject *)record_type;
    record = type->tp_alloc(type, 10);
    if (record == NULL)
        goto done;
    PyObject *items[10] = {trace_id, span_id, parent_id, self->operation_name, flags,
                           start_us, duration, self->tags, self->logs, refs};
    for (int i = 0; i < 10; i++)
        PyTuple_SET_ITEM(record, i, Py_NewRef(items[i]));
done:
    Py_XDECREF(start_us);
    Py_XDECREF(duration);
    Py_XDECREF(refs);
    if (owned) {
        Py_XDECREF(trace_id);
        Py_XDECREF(span_id);
        Py_XDECREF(parent_id);
        Py_XDECREF(flags);
    }
    return record;
}

static PyObject *span_to_record(SpanCore *self, PyObject *end) { return make_record(self, end); }

/* Hands the span to _speedups' ReportSpan as its fields, skipping the SpanRecord, when
 * `report` is one and the span has the common shape (our context, float times in range).
 * Returns what ReportAPI.report does, REPORT_NEEDS_RECORD for any other case. */
static int report_parts(SpanCore *self, PyObject *report, PyObject *end) {
    PyObject *start = self->start_time;
    ContextCore *c = (ContextCore *)self->context;
    if (report_api == NULL || !Py_IS_TYPE(report, report_api->report_type) ||
        !IS_CONTEXT(self->context) || !c->trace_id || !c->span_id || !c->parent_id ||
        !c->flags || !PyFloat_CheckExact(start) || !PyFloat_CheckExact(end))
        return REPORT_NEEDS_RECORD;
    double s = PyFloat_AS_DOUBLE(start) * 1000000.0;
    double d = (PyFloat_AS_DOUBLE(end) - PyFloat_AS_DOUBLE(start)) * 1000000.0;
    /* what make_record's PyLong_FromDouble truncates to an i64; beyond, it is the record's
     * business (a huge int, or the error for inf and nan) */
    if (!(fabs(s) < 9.2e18) || !(fabs(d) < 9.2e18))
        return REPORT_NEEDS_RECORD;
    int has_refs = self->references == NULL ? 0 : PyObject_IsTrue(self->references);
    if (has_refs < 0)
        return -1;
    int64_t duration = (int64_t)d;
    SpanParts parts = {
        .trace_id = c->trace_id,
        .span_id = c->span_id,
        .parent_id = c->parent_id,
        .operation_name = self->operation_name,
        .flags = c->flags,
        .start_us = (int64_t)s,
        .duration = duration < 0 ? 0 : duration,
        .tags = self->tags,
        .logs = self->logs,
        .references = has_refs ? self->references : NULL,
    };
    return report_api->report(report, &parts);
}

static PyObject *finish(SpanCore *self, PyObject *finish_time) {
    if (self->finished)
        return PyObject_CallMethodNoArgs((PyObject *)self, s_warn_twice);
    self->finished = 1;
    PyObject *tracer = self->tracer;
    if (!(flags_of(self->context) & SAMPLED_FLAG)) {
        /* unsampled: nothing to report, no clock to read */
        if (COUNT(tracer, finished_count, s_finished_count) < 0 && swallow(tracer, "finish") < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *end = finish_time == Py_None ? now() : Py_NewRef(finish_time);
    if (end == NULL || COUNT(tracer, finished_count, s_finished_count) < 0) {
        Py_XDECREF(end);
        if (swallow(tracer, "finish") < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *report = TRACER_ATTR(tracer, report, s_report), *r = NULL;
    int rc = report ? report_parts(self, report, end) : -1;
    if (rc == REPORT_NEEDS_RECORD) {
        PyObject *record = make_record(self, end);
        r = record ? PyObject_CallOneArg(report, record) : NULL;
        Py_XDECREF(record);
    } else if (rc == REPORT_DONE) {
        r = Py_NewRef(Py_None);
    }
    Py_DECREF(end);
    Py_XDECREF(report);
    if (r == NULL && swallow(tracer, "report_span") < 0)
        return NULL;
    Py_XDECREF(r);
    Py_RETURN_NONE;
}

static PyObject *span_finish(SpanCore *self, PyObject *const *argv, Py_ssize_t nargs,
                             PyObject *kwnames) {
    static const char *const names[] = {"finish_time"};
    PyObject *finish_time;
    if (bind("finish", argv, nargs, kwnames, names, 0, 1, &finish_time) < 0)
        return NULL;
    return finish(self, finish_time ? finish_time : Py_None);
}

static PyObject *span_exit(SpanCore *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "__exit__() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (args[1] != Py_None) {
        PyObject *call[4] = {(PyObject *)self, args[0], args[1], args[2]};
        PyObject *r = PyObject_Vectorcall(on_error, call, 4, NULL);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    /* looked up, not called directly: code may replace finish on the instance */
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, s_finish);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE; /* never swallow the block's exception */
}

static PyObject *enter(PyObject *self, PyObject *Py_UNUSED(ignored)) { return Py_NewRef(self); }

static PyMethodDef span_methods[] = {
    {"set_tag", (PyCFunction)(void (*)(void))span_set_tag, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"log_kv", (PyCFunction)(void (*)(void))span_log_kv, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"finish", (PyCFunction)(void (*)(void))span_finish, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"__enter__", (PyCFunction)enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))span_exit, METH_FASTCALL, NULL},
    {"to_record", (PyCFunction)span_to_record, METH_O, NULL},
    {"set_operation_name", (PyCFunction)span_set_operation_name, METH_O, NULL},
    {"_set_sampling_priority", (PyCFunction)span_sampling_priority, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef span_members[] = {
    {"_tracer", T_OBJECT_EX, offsetof(SpanCore, tracer), 0, NULL},
    {"_context", T_OBJECT_EX, offsetof(SpanCore, context), 0, NULL},
    {"operation_name", T_OBJECT_EX, offsetof(SpanCore, operation_name), 0, NULL},
    {"start_time", T_OBJECT_EX, offsetof(SpanCore, start_time), 0, NULL},
    {"tags", T_OBJECT_EX, offsetof(SpanCore, tags), 0, NULL},
    {"logs", T_OBJECT_EX, offsetof(SpanCore, logs), 0, NULL},
    {"references", T_OBJECT, offsetof(SpanCore, references), 0, NULL},
    {"_finished", T_BOOL, offsetof(SpanCore, finished), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *span_get_context(SpanCore *self, void *Py_UNUSED(closure)) {
    return Py_NewRef(self->context ? self->context : Py_None);
}

static PyObject *span_get_tracer(SpanCore *self, void *Py_UNUSED(closure)) {
    return Py_NewRef(self->tracer ? self->tracer : Py_None);
}

static PyGetSetDef span_getset[] = {
    {"context", (getter)span_get_context, NULL, NULL, NULL},
    {"tracer", (getter)span_get_tracer, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static int span_setattro(PyObject *self, PyObject *name, PyObject *value) {
    return note_setattr(self, name, value, s_finish, &((SpanCore *)self)->finish_set);
}

static PyTypeObject SpanCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "opentracing_sls._cspan.SpanCore",
    .tp_basicsize = sizeof(SpanCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "C core of Span: tags, logs, finish and the finished-span record.",
    .tp_traverse = (traverseproc)span_traverse,
    .tp_clear = (inquiry)span_clear,
    .tp_dealloc = (destructor)span_dealloc,
    .tp_init = (initproc)span_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = span_methods,
    .tp_members = span_members,
    .tp_getset = span_getset,
    .tp_setattro = span_setattro,
};

#endif
