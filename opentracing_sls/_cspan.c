/* The span hot path in C: context, span and scope cores that opentracing_sls's Python
 * classes inherit from (span_context.py, span.py, scope_managers.py).
 *
 * Why C: a Python service makes spans a few at a time between waits, so the span path
 * runs with cold caches; its cost there is set by how much code and memory it touches,
 * and a dozen Python frames touch far more than these few C calls do.
 *
 * Why no per-span lock (the pure-Python twins take one): every method here runs under
 * the GIL without calling back into Python between its check of `_finished` and its
 * write, so each is atomic with respect to the others. Where Python code must run (a
 * non-primitive tag value made a string, the reporter), it runs before the check or after
 * the record is built.
 *
 * Behaviour is the pure-Python classes' exactly; tests/tracer/test_cspan.py compares the
 * records both produce for random operation sequences.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define SAMPLED_FLAG 1L
#define DEBUG_FLAG 2L
/* constants.MAX_TAG_VALUE_LENGTH, for a tracer object that lacks max_tag_value_length */
#define DEFAULT_LIMIT 1024

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *compat_new_ref(PyObject *o) {
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) compat_new_ref((PyObject *)(o))
#endif

/* Set once by configure(). */
static PyObject *record_type = NULL;  /* opentracing_sls.record.SpanRecord */
static PyObject *empty_baggage = NULL; /* span_context._EMPTY: shared, never mutated */
static PyObject *on_error = NULL;      /* opentracing.Span._on_error */
static PyObject *scope_type = NULL;    /* scope_managers._RestoringScope */
static PyObject *time_time = NULL;     /* time.time */

static PyObject *s_finished_count, *s_report, *s_internal_error, *s_tag_value, *s_log_value,
    *s_warn_twice, *s_max_len, *s_finish, *s_priority_key, *s_million, *s_zero;

/* ------------------------------------------------------------------- shared helpers */

/* Logs the pending exception through tracer._internal_error(what), inside an emulated
 * `except` block so the tracer's logging sees it as sys.exc_info(). Exceptions that are
 * not Exception subclasses (KeyboardInterrupt, SystemExit) stay pending: the pure-Python
 * code does not catch them either. Returns 0 when the exception was consumed. */
static int swallow(PyObject *tracer, const char *what) {
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *saved = PyErr_GetHandledException();
    PyErr_SetHandledException(exc);
    PyObject *r = PyObject_CallMethod(tracer, "_internal_error", "s", what);
    if (r == NULL)
        PyErr_Clear(); /* a broken error logger must not break the app either */
    Py_XDECREF(r);
    PyErr_SetHandledException(saved);
    Py_XDECREF(saved);
    Py_XDECREF(exc);
#else
    PyObject *type, *value, *tb, *otype, *ovalue, *otb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    PyErr_GetExcInfo(&otype, &ovalue, &otb);
    PyErr_SetExcInfo(type, value, tb);
    PyObject *r = PyObject_CallMethod(tracer, "_internal_error", "s", what);
    if (r == NULL)
        PyErr_Clear();
    Py_XDECREF(r);
    PyErr_SetExcInfo(otype, ovalue, otb);
#endif
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

/* `now` as time.time() gives it. */
static PyObject *now(void) { return PyObject_CallNoArgs(time_time); }

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

/* -------------------------------------------------------------------- ContextCore */

typedef struct {
    PyObject_HEAD
    PyObject *trace_id, *span_id, *parent_id, *flags, *baggage, *debug_id, *deferred,
        *trace_state;
} ContextCore;

static PyTypeObject ContextCore_Type;

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

/* A context's flags as a C long (0 when they are not an int: such a context is unsampled
 * for the pure-Python code too, whose `flags & SAMPLED_FLAG` would raise and be caught). */
static long flags_of(PyObject *context) {
    PyObject *flags;
    if (PyObject_TypeCheck(context, &ContextCore_Type)) {
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

/* ----------------------------------------------------------------------- SpanCore */

typedef struct {
    PyObject_HEAD
    PyObject *tracer, *context, *operation_name, *start_time, *tags, *logs, *references;
    Py_ssize_t limit;
    char finished;
} SpanCore;

static PyTypeObject SpanCore_Type;

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
    PyObject *limit_obj = PyObject_GetAttr(tracer, s_max_len);
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
    int is_priority = PyUnicode_Check(key) ? PyUnicode_Compare(key, s_priority_key) == 0
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
    if (PyObject_TypeCheck(context, &ContextCore_Type)) {
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

/* Calls tracer.<name>() for a hot counter. */
static int call_counter(PyObject *tracer, PyObject *name) {
    PyObject *r = PyObject_CallMethodNoArgs(tracer, name);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *finish(SpanCore *self, PyObject *finish_time) {
    if (self->finished)
        return PyObject_CallMethodNoArgs((PyObject *)self, s_warn_twice);
    self->finished = 1;
    PyObject *tracer = self->tracer;
    if (!(flags_of(self->context) & SAMPLED_FLAG)) {
        /* unsampled: nothing to report, no clock to read */
        if (call_counter(tracer, s_finished_count) < 0 && swallow(tracer, "finish") < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *end = finish_time == Py_None ? now() : Py_NewRef(finish_time);
    if (end == NULL || call_counter(tracer, s_finished_count) < 0) {
        Py_XDECREF(end);
        if (swallow(tracer, "finish") < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *record = make_record(self, end);
    Py_DECREF(end);
    PyObject *r = record ? PyObject_CallMethodOneArg(tracer, s_report, record) : NULL;
    Py_XDECREF(record);
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
};

/* ---------------------------------------------------------------------- ScopeCore */

typedef struct {
    PyObject_HEAD
    PyObject *manager, *span, *previous;
    PyObject *var;           /* the manager's ContextVar, or NULL ... */
    PyObject *get, *set;     /* ... then these callables hold the active scope */
    char finish_on_close, closed;
} ScopeCore;

static PyTypeObject ScopeCore_Type;

static int scope_traverse(ScopeCore *self, visitproc visit, void *arg) {
    Py_VISIT(self->manager);
    Py_VISIT(self->span);
    Py_VISIT(self->previous);
    Py_VISIT(self->var);
    Py_VISIT(self->get);
    Py_VISIT(self->set);
    return 0;
}

static int scope_clear(ScopeCore *self) {
    Py_CLEAR(self->manager);
    Py_CLEAR(self->span);
    Py_CLEAR(self->previous);
    Py_CLEAR(self->var);
    Py_CLEAR(self->get);
    Py_CLEAR(self->set);
    return 0;
}

static void scope_dealloc(ScopeCore *self) {
    PyObject_GC_UnTrack(self);
    scope_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* _RestoringScope(manager, span, finish_on_close, previous, get, set_) */
static int scope_init(ScopeCore *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"manager", "span", "finish_on_close", "previous", "get", "set_",
                            NULL};
    PyObject *manager, *span, *finish, *previous, *get, *set;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOO:_RestoringScope", names, &manager,
                                     &span, &finish, &previous, &get, &set))
        return -1;
    int truthy = PyObject_IsTrue(finish);
    if (truthy < 0)
        return -1;
    Py_XSETREF(self->manager, Py_NewRef(manager));
    Py_XSETREF(self->span, Py_NewRef(span));
    Py_XSETREF(self->previous, Py_NewRef(previous));
    Py_XSETREF(self->get, Py_NewRef(get));
    Py_XSETREF(self->set, Py_NewRef(set));
    Py_CLEAR(self->var);
    self->finish_on_close = (char)truthy;
    self->closed = 0;
    return 0;
}

/* Only the active scope can be closed (OpenTracing 2.x): closing out of order must neither
 * clobber the scope activated after this one nor finish this span early. */
static PyObject *scope_close(ScopeCore *self, PyObject *Py_UNUSED(ignored)) {
    if (self->closed)
        Py_RETURN_NONE;
    PyObject *current;
    if (self->var != NULL) {
        if (PyContextVar_Get(self->var, NULL, &current) < 0)
            return NULL;
    } else if ((current = PyObject_CallNoArgs(self->get)) == NULL) {
        return NULL;
    }
    int active = current == (PyObject *)self;
    Py_XDECREF(current);
    if (!active)
        Py_RETURN_NONE;
    self->closed = 1;
    PyObject *previous = self->previous ? self->previous : Py_None;
    PyObject *r = self->var ? PyContextVar_Set(self->var, previous)
                            : PyObject_CallOneArg(self->set, previous);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    if (self->finish_on_close)
        return PyObject_CallMethodNoArgs(self->span, s_finish);
    Py_RETURN_NONE;
}

static PyObject *scope_exit(ScopeCore *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "__exit__() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (args[1] != Py_None) {
        PyObject *call[4] = {self->span, args[0], args[1], args[2]};
        PyObject *r = PyObject_Vectorcall(on_error, call, 4, NULL);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    PyObject *r = scope_close(self, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE; /* never swallow the block's exception */
}

static PyObject *scope_get_span(ScopeCore *self, void *Py_UNUSED(closure)) {
    return Py_NewRef(self->span ? self->span : Py_None);
}

static PyObject *scope_get_manager(ScopeCore *self, void *Py_UNUSED(closure)) {
    return Py_NewRef(self->manager ? self->manager : Py_None);
}

static PyMethodDef scope_methods[] = {
    {"close", (PyCFunction)scope_close, METH_NOARGS, NULL},
    {"__enter__", (PyCFunction)enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))scope_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef scope_getset[] = {
    {"span", (getter)scope_get_span, NULL, NULL, NULL},
    {"manager", (getter)scope_get_manager, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef scope_members[] = {
    {"_manager", T_OBJECT_EX, offsetof(ScopeCore, manager), 0, NULL},
    {"_span", T_OBJECT_EX, offsetof(ScopeCore, span), 0, NULL},
    {"_previous", T_OBJECT, offsetof(ScopeCore, previous), 0, NULL},
    {"_finish_on_close", T_BOOL, offsetof(ScopeCore, finish_on_close), 0, NULL},
    {"_closed", T_BOOL, offsetof(ScopeCore, closed), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ScopeCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "opentracing_sls._cspan.ScopeCore",
    .tp_basicsize = sizeof(ScopeCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "C core of a scope that reinstates the previously active one when closed.",
    .tp_traverse = (traverseproc)scope_traverse,
    .tp_clear = (inquiry)scope_clear,
    .tp_dealloc = (destructor)scope_dealloc,
    .tp_init = (initproc)scope_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = scope_methods,
    .tp_getset = scope_getset,
    .tp_members = scope_members,
};

/* ---------------------------------------------------------------- VarManagerCore */

typedef struct {
    PyObject_HEAD
    PyObject *var;
} VarManagerCore;

static int manager_traverse(VarManagerCore *self, visitproc visit, void *arg) {
    Py_VISIT(self->var);
    return 0;
}

static int manager_clear(VarManagerCore *self) {
    Py_CLEAR(self->var);
    return 0;
}

static void manager_dealloc(VarManagerCore *self) {
    PyObject_GC_UnTrack(self);
    manager_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *manager_activate(VarManagerCore *self, PyObject *const *argv,
                                  Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"span", "finish_on_close"};
    PyObject *args[2];
    if (bind("activate", argv, nargs, kwnames, names, 2, 2, args) < 0)
        return NULL;
    if (self->var == NULL || scope_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scope manager not initialised");
        return NULL;
    }
    int finish = PyObject_IsTrue(args[1]);
    if (finish < 0)
        return NULL;
    PyObject *previous;
    if (PyContextVar_Get(self->var, Py_None, &previous) < 0)
        return NULL;
    PyTypeObject *type = (PyTypeObject *)scope_type;
    ScopeCore *scope = (ScopeCore *)type->tp_alloc(type, 0);
    if (scope == NULL) {
        Py_DECREF(previous);
        return NULL;
    }
    scope->manager = Py_NewRef(self);
    scope->span = Py_NewRef(args[0]);
    scope->previous = previous;
    scope->var = Py_NewRef(self->var);
    scope->finish_on_close = (char)finish;
    PyObject *token = PyContextVar_Set(self->var, (PyObject *)scope);
    if (token == NULL) {
        Py_DECREF(scope);
        return NULL;
    }
    Py_DECREF(token);
    return (PyObject *)scope;
}

static PyObject *manager_active(VarManagerCore *self, void *Py_UNUSED(closure)) {
    PyObject *value;
    if (self->var == NULL)
        Py_RETURN_NONE;
    if (PyContextVar_Get(self->var, Py_None, &value) < 0)
        return NULL;
    return value;
}

static PyMethodDef manager_methods[] = {
    {"activate", (PyCFunction)(void (*)(void))manager_activate, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef manager_getset[] = {
    {"active", (getter)manager_active, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef manager_members[] = {
    {"_var", T_OBJECT_EX, offsetof(VarManagerCore, var), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject VarManagerCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "opentracing_sls._cspan.VarManagerCore",
    .tp_basicsize = sizeof(VarManagerCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "C core of ContextVarsScopeManager: activate() and active.",
    .tp_traverse = (traverseproc)manager_traverse,
    .tp_clear = (inquiry)manager_clear,
    .tp_dealloc = (destructor)manager_dealloc,
    .tp_new = PyType_GenericNew,
    .tp_methods = manager_methods,
    .tp_getset = manager_getset,
    .tp_members = manager_members,
};

/* -------------------------------------------------------------------- TracerCore */

/* Set once by set_tracer_types(). */
static PyTypeObject *context_cls = NULL; /* span_context.SpanContext */
static PyTypeObject *span_cls = NULL;    /* span.Span */
static PyObject *getrandbits = NULL, *new_id = NULL, *new_trace_id = NULL; /* ids.* */

static PyObject *tracer_start_span(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames);
static PyObject *s_start_span_public, *s_scope_manager, *s_active, *s_activate, *s_start_span, *s_sampler,
    *s_is_sampled, *s_trace_id_bits, *s_gen128, *s_started_sampled, *s_started_unsampled,
    *s_traces_sampled, *s_traces_unsampled, *s_context, *s_span, *s_empty, *s_64, *s_one;

/* `bits` random bits, or `fallback(arg)` when they came out zero (ids are never zero). */
static PyObject *random_id(PyObject *bits, PyObject *fallback, PyObject *arg) {
    PyObject *value = PyObject_CallOneArg(getrandbits, bits);
    if (value == NULL)
        return NULL;
    int zero = PyObject_Not(value);
    if (zero == 0)
        return value;
    Py_DECREF(value);
    if (zero < 0)
        return NULL;
    return arg ? PyObject_CallOneArg(fallback, arg) : PyObject_CallNoArgs(fallback);
}

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
    ContextCore *c = (ContextCore *)context_cls->tp_alloc(context_cls, 0);
    if (c == NULL) {
        Py_DECREF(copy);
        return NULL;
    }
    c->trace_id = Py_NewRef(trace_id);
    c->span_id = Py_NewRef(span_id);
    c->parent_id = Py_NewRef(parent_id);
    c->flags = Py_NewRef(flags);
    c->baggage = copy;
    c->debug_id = Py_NewRef(Py_None);
    c->deferred = Py_NewRef(Py_False);
    c->trace_state = Py_NewRef(trace_state ? trace_state : Py_None);
    return (PyObject *)c;
}

/* The context of a root span: new ids, the local sampler's decision. Sets *sampler_tags
 * (new reference or NULL). Mirrors the root case of Tracer._start_span. */
static PyObject *root_context(PyObject *tracer, PyObject *name, PyObject **sampler_tags) {
    *sampler_tags = NULL;
    PyObject *bits = PyObject_GetAttr(tracer, s_trace_id_bits);
    PyObject *gen128 = bits ? PyObject_GetAttr(tracer, s_gen128) : NULL;
    PyObject *trace_id = gen128 ? random_id(bits, new_trace_id, gen128) : NULL;
    Py_XDECREF(bits);
    Py_XDECREF(gen128);
    if (trace_id == NULL)
        return NULL;
    int sampled = 0;
    PyObject *sampler = PyObject_GetAttr(tracer, s_sampler);
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
    if (call_counter(tracer, sampled ? s_traces_sampled : s_traces_unsampled) == 0) {
        PyObject *span_id = random_id(s_64, new_id, NULL);
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

/* The parent context a span with no child_of gets: the active span's, or None. New ref. */
static PyObject *active_parent(PyObject *tracer) {
    PyObject *manager = PyObject_GetAttr(tracer, s_scope_manager);
    PyObject *scope = manager ? PyObject_GetAttr(manager, s_active) : NULL;
    Py_XDECREF(manager);
    if (scope == NULL || scope == Py_None)
        return scope;
    PyObject *span = PyObject_TypeCheck(scope, &ScopeCore_Type) && ((ScopeCore *)scope)->span
                         ? Py_NewRef(((ScopeCore *)scope)->span)
                         : PyObject_GetAttr(scope, s_span);
    Py_DECREF(scope);
    if (span == NULL)
        return NULL;
    PyObject *context = PyObject_TypeCheck(span, &SpanCore_Type) && ((SpanCore *)span)->context
                            ? Py_NewRef(((SpanCore *)span)->context)
                            : PyObject_GetAttr(span, s_context);
    Py_DECREF(span);
    return context;
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
    if (activate) {
        /* start_active_span goes through start_span, which a subclass or the instance may
         * have replaced (jaeger-client's does the same) */
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
            if (PyObject_TypeCheck(child_of, &ContextCore_Type))
                parent = Py_NewRef(child_of);
            else if (PyObject_TypeCheck(child_of, &SpanCore_Type) && ((SpanCore *)child_of)->context)
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
        int usable = PyObject_TypeCheck(parent, &ContextCore_Type) && p->trace_id && p->span_id &&
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
                PyObject *span_id = random_id(s_64, new_id, NULL);
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
            int ok = call_counter(self, sampled ? s_started_sampled : s_started_unsampled) == 0;
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
    PyObject *manager = PyObject_GetAttr(self, s_scope_manager);
    PyObject *scope = NULL;
    if (manager != NULL) {
        PyObject *call[3] = {manager, span, a[6] ? a[6] : Py_True};
        scope = PyObject_VectorcallMethod(s_activate, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                          NULL);
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

static PyTypeObject TracerCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "opentracing_sls._cspan.TracerCore",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "C core of Tracer: start_span and start_active_span for the common shapes.",
    .tp_new = PyType_GenericNew,
    .tp_methods = tracer_methods,
};

static PyObject *set_tracer_types(PyObject *Py_UNUSED(module), PyObject *args,
                                  PyObject *kwargs) {
    static char *names[] = {"context_type", "span_type", "getrandbits", "new_id",
                            "new_trace_id", NULL};
    PyObject *ctx, *span, *bits, *id, *trace;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!OOO:set_tracer_types", names,
                                     &PyType_Type, &ctx, &PyType_Type, &span, &bits, &id, &trace))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)ctx, &ContextCore_Type) ||
        !PyType_IsSubtype((PyTypeObject *)span, &SpanCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "types must subclass ContextCore and SpanCore");
        return NULL;
    }
    Py_XSETREF(context_cls, (PyTypeObject *)Py_NewRef(ctx));
    Py_XSETREF(span_cls, (PyTypeObject *)Py_NewRef(span));
    Py_XSETREF(getrandbits, Py_NewRef(bits));
    Py_XSETREF(new_id, Py_NewRef(id));
    Py_XSETREF(new_trace_id, Py_NewRef(trace));
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------ module */

static PyObject *configure(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs) {
    static char *names[] = {"record_type", "empty_baggage", "on_error", "time", NULL};
    PyObject *record, *empty, *error, *clock;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!OO:configure", names, &PyType_Type,
                                     &record, &PyDict_Type, &empty, &error, &clock))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)record, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "record_type must be a tuple subclass");
        return NULL;
    }
    Py_XSETREF(record_type, Py_NewRef(record));
    Py_XSETREF(empty_baggage, Py_NewRef(empty));
    Py_XSETREF(on_error, Py_NewRef(error));
    Py_XSETREF(time_time, Py_NewRef(clock));
    Py_RETURN_NONE;
}

static PyObject *set_scope_type(PyObject *Py_UNUSED(module), PyObject *type) {
    if (!PyType_Check(type) || !PyType_IsSubtype((PyTypeObject *)type, &ScopeCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "scope type must subclass ScopeCore");
        return NULL;
    }
    Py_XSETREF(scope_type, Py_NewRef(type));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "Hands the module the Python objects it builds on (once, at import)."},
    {"set_scope_type", set_scope_type, METH_O,
     "The ScopeCore subclass that VarManagerCore.activate() creates."},
    {"set_tracer_types", (PyCFunction)(void (*)(void))set_tracer_types,
     METH_VARARGS | METH_KEYWORDS,
     "The SpanContext and Span classes and id functions TracerCore starts spans with."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "opentracing_sls._cspan",
    "C cores of SpanContext, Span and the scopes (see span.py).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

static int intern(PyObject **slot, const char *text) {
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__cspan(void) {
    if (intern(&s_finished_count, "_finished_count") < 0 || intern(&s_report, "_report") < 0 ||
        intern(&s_internal_error, "_internal_error") < 0 ||
        intern(&s_tag_value, "_tag_value") < 0 || intern(&s_log_value, "_log_value") < 0 ||
        intern(&s_warn_twice, "_warn_finished_twice") < 0 ||
        intern(&s_max_len, "max_tag_value_length") < 0 || intern(&s_finish, "finish") < 0 ||
        intern(&s_priority_key, "sampling.priority") < 0 ||
        intern(&s_scope_manager, "_scope_manager") < 0 || intern(&s_active, "active") < 0 ||
        intern(&s_activate, "activate") < 0 || intern(&s_start_span, "_start_span") < 0 ||
        intern(&s_start_span_public, "start_span") < 0 ||
        intern(&s_sampler, "sampler") < 0 || intern(&s_is_sampled, "is_sampled") < 0 ||
        intern(&s_trace_id_bits, "_trace_id_bits") < 0 ||
        intern(&s_gen128, "generate_128bit_trace_id") < 0 ||
        intern(&s_started_sampled, "_started_sampled") < 0 ||
        intern(&s_started_unsampled, "_started_unsampled") < 0 ||
        intern(&s_traces_sampled, "_traces_sampled") < 0 ||
        intern(&s_traces_unsampled, "_traces_unsampled") < 0 ||
        intern(&s_context, "context") < 0 || intern(&s_span, "span") < 0 ||
        intern(&s_empty, "") < 0)
        return NULL;
    if ((s_64 = PyLong_FromLong(64)) == NULL || (s_one = PyLong_FromLong(1)) == NULL)
        return NULL;
    if ((s_million = PyLong_FromLong(1000000)) == NULL || (s_zero = PyLong_FromLong(0)) == NULL)
        return NULL;
    PyTypeObject *types[] = {&ContextCore_Type, &SpanCore_Type, &ScopeCore_Type,
                             &VarManagerCore_Type, &TracerCore_Type};
    const char *type_names[] = {"ContextCore", "SpanCore", "ScopeCore", "VarManagerCore",
                                "TracerCore"};
    for (int i = 0; i < 5; i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    for (int i = 0; i < 5; i++) {
        Py_INCREF(types[i]);
        if (PyModule_AddObject(module, type_names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(types[i]);
            Py_DECREF(module);
            return NULL;
        }
    }
    return module;
}
