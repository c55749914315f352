/* The Flask integration's two handlers in C, for the common configuration.
 *
 * ``FlaskHandler(kind, fallback)``: kind 0 is the ``Flask.wsgi_app`` handler, called as
 * ``(call, app, environ, start_response)``; kind 1 the ``Flask.full_dispatch_request`` one,
 * ``(call, app)``. Disabled (the default, and whenever hooks, excluded paths or prefix
 * forwarding rules are configured, or the instrumentation is off) every call goes to
 * ``fallback``, the Python handler. Enabled, they do what the Python handlers do for a
 * request that has a matched route and a non-streamed answer; at every other turn
 * (suppression, no route, a streamed body, an exception, a request handled without our
 * wsgi_app) they hand the request to the Python methods they were given, which stay the
 * reference (flask.py). The Python code this replaces is about 450 bytecodes in 11 frames.
 *
 * Our errors go to ``report(what, exc)``, never to the application; its exceptions pass
 * through unchanged. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "../opentracing_sls/csrc/compat.h"
#include "csrc/handlers.h"
#include "csrc/request_state.h"
#include "csrc/server_tags.h"

#define N_CONFIG 30

/* What enable() was given: made once, never changed, and held by each request for its
 * whole duration, so an enable() or disable() from inside a request (a view calling
 * uninstrument()) cannot pull objects from under it. */
typedef struct {
    PyObject_HEAD
    PyObject *fallback;        /* the handler's, for the turns the Python method takes */
    PyObject *tracer;          /* the configured tracer, or None for opentracing.tracer */
    PyObject *opentracing;
    PyObject *suppressed;      /* ContextVar: suppress_instrumentation() */
    PyObject *forwarded_var;   /* ContextVar: forwarding.FORWARDED */
    PyObject *key_pairs;       /* ForwardList.key_pairs(), or None */
    PyObject *capture;         /* _cglue.capture */
    PyObject *new_state;       /* _cglue.new_state */
    PyObject *state_type;      /* _cglue.RequestState */
    PyObject *state_key;       /* flask.STATE_KEY */
    PyObject *excluded;        /* flask._EXCLUDED */
    PyObject *now;             /* time.time */
    PyObject *request_context; /* flask.globals._cv_request */
    PyObject *tracer_type, *noop_type, *context_type, *composite_type;
    PyObject *http_headers;
    PyObject *quiet_errors;    /* extract errors that mean "no parent" (tuple) */
    PyObject *server_tags;     /* (environ, method) -> tags */
    PyObject *server_tag_base; /* see ServerTagConfig */
    PyObject *server_tag_names;
    PyObject *ip_kinds;
    PyObject *is_streamed;     /* werkzeug's Response.is_streamed property */
    PyObject *status_codes;    /* flask._STATUS_CODES, status line -> code */
    PyObject *status_code;     /* flask._status_code */
    PyObject *status_tag;
    PyObject *not_handled;     /* propagation.composite._NOT_HANDLED */
    PyObject *log_server_error;
    PyObject *report;
    PyObject *owner;           /* the FlaskInstrumentor: its methods for the rare turns */
    long sampled_flag;
} FlaskConfig;

typedef struct {
    PyObject_HEAD
    int kind;
    PyObject *fallback;
    FlaskConfig *config; /* NULL: disabled */
    vectorcallfunc vectorcall;
} FlaskHandler;

static const char *const CONFIG_NAMES[N_CONFIG] = {
    "tracer", "opentracing", "suppressed", "forwarded_var", "key_pairs", "capture",
    "new_state", "state_type", "state_key", "excluded", "now", "request_context",
    "tracer_type", "noop_type", "context_type", "composite_type", "http_headers",
    "quiet_errors", "server_tags", "is_streamed", "status_codes", "status_code",
    "status_tag", "not_handled", "log_server_error", "report", "owner", "server_tag_base",
    "server_tag_names", "ip_kinds",
};

static PyObject **config_field(FlaskConfig *self, int i) {
    PyObject **fields[N_CONFIG] = {
        &self->tracer, &self->opentracing, &self->suppressed, &self->forwarded_var,
        &self->key_pairs, &self->capture, &self->new_state, &self->state_type,
        &self->state_key, &self->excluded, &self->now, &self->request_context,
        &self->tracer_type, &self->noop_type, &self->context_type, &self->composite_type,
        &self->http_headers, &self->quiet_errors, &self->server_tags, &self->is_streamed,
        &self->status_codes, &self->status_code, &self->status_tag, &self->not_handled,
        &self->log_server_error, &self->report, &self->owner, &self->server_tag_base,
        &self->server_tag_names, &self->ip_kinds,
    };
    return fields[i];
}

#define N_FIELDS N_CONFIG

static PyObject *s_tracer, *s_request, *s_environ, *s_url_rule, *s_rule, *s_cextract,
    *s_extract_python, *s_start_active_span, *s_span, *s_close, *s_set_tag, *s_finish, *s_response,
    *s_is_streamed, *s_wsgi_version, *s_request_method, *s_GET, *s_end, *s_end_failed,
    *s_record_exception, *s_start_span, *s_finish_quietly, *k_parent, *k_root,
    *int_500;

static void report(FlaskConfig *self, const char *what) {
    report_to(self->report, what);
}

/* owner.<name>(*args): the Python method for a rare turn. */
static PyObject *owner_call(FlaskConfig *self, PyObject *name, PyObject *const *args,
                            Py_ssize_t nargs) {
    PyObject *stack[5];
    stack[0] = self->owner;
    for (Py_ssize_t i = 0; i < nargs; i++)
        stack[i + 1] = args[i];
    return PyObject_VectorcallMethod(name, stack, nargs + 1, NULL);
}

/* -- wsgi_app --------------------------------------------------------------------------- */

/* The request's state, stored in environ; NULL with no error when the request is to be
 * handed to the Python handler (suppressed), NULL with an error on failure. */
static PyObject *new_request(FlaskConfig *self, PyObject *environ,
                             PyObject *start_response) {
    PyObject *value;
    if (PyContextVar_Get(self->suppressed, NULL, &value) < 0)
        return NULL;
    int on = value == NULL ? 0 : PyObject_IsTrue(value);
    Py_XDECREF(value);
    if (on != 0)
        return NULL;
    PyObject *tracer = self->tracer != Py_None ? Py_NewRef(self->tracer)
                                               : PyObject_GetAttr(self->opentracing, s_tracer);
    if (tracer == NULL)
        return NULL;
    PyObject *forwarded = Py_None;
    if (self->key_pairs != Py_None) {
        PyObject *args[] = {self->key_pairs, environ};
        forwarded = PyObject_Vectorcall(self->capture, args, 2, NULL);
    } else {
        Py_INCREF(forwarded);
    }
    PyObject *start = forwarded == NULL ? NULL : PyObject_CallNoArgs(self->now);
    PyObject *state = NULL;
    if (start != NULL) {
        PyObject *args[] = {tracer, start, forwarded, start_response};
        state = PyObject_Vectorcall(self->new_state, args, 4, NULL);
    }
    Py_XDECREF(start);
    Py_XDECREF(forwarded);
    Py_DECREF(tracer);
    if (state != NULL && ((PyObject *)Py_TYPE(state) != self->state_type ||
                          PyDict_SetItem(environ, self->state_key, state) < 0)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "new_state made no RequestState");
        Py_CLEAR(state);
    }
    return state;
}

/* _finish for a state with a span: the status tag, a 5xx error, span.finish(). */
static int finish(FlaskConfig *self, RequestState *state) {
    if (state->finished || state->span == NULL)
        return 0;
    state->finished = 1;
    PyObject *span = Py_NewRef(state->span);
    PyObject *status = state->status == NULL ? Py_None : state->status;
    PyObject *code = PyDict_GetItemWithError(self->status_codes, status); /* borrowed */
    int failed = 0;
    if (code != NULL)
        Py_INCREF(code);
    else if (!PyErr_Occurred())
        code = PyObject_CallOneArg(self->status_code, status);
    if (code == NULL) {
        failed = 1;
    } else if (code != Py_None) {
        PyObject *args[] = {span, self->status_tag, code};
        PyObject *result = PyObject_VectorcallMethod(s_set_tag, args, 3, NULL);
        int error = result == NULL ? -1 : PyObject_RichCompareBool(code, int_500, Py_GE);
        Py_XDECREF(result);
        if (error > 0 && !state->error_logged) {
            result = PyObject_CallFunctionObjArgs(self->log_server_error, span, code, NULL);
            error = result == NULL ? -1 : 0;
            Py_XDECREF(result);
        }
        failed = error < 0;
    }
    Py_XDECREF(code);
    /* The span finishes even when tagging failed (the Python twin's try/finally). */
    PyObject *exc = failed ? take_exception() : NULL;
    PyObject *args[] = {span};
    PyObject *result = PyObject_VectorcallMethod(s_finish, args, 1, NULL);
    Py_DECREF(span);
    if (result == NULL) {
        Py_XDECREF(exc);
        return -1;
    }
    Py_DECREF(result);
    if (exc != NULL) {
        restore_exception(exc);
        return -1;
    }
    return 0;
}

/* _end: the span is done with the response unless the body streams (then the Python
 * _end wraps it) or no span started (the Python _end starts one). */
static PyObject *end(FlaskConfig *self, RequestState *state, PyObject *result,
                     PyObject *environ) {
    if (state->span == NULL || state->streamed) {
        PyObject *args[] = {(PyObject *)state, result, environ};
        PyObject *body = owner_call(self, s_end, args, 3);
        if (body == NULL) { /* _end guards itself; the app's answer still goes out */
            report(self, "Flask request end");
            return result;
        }
        Py_DECREF(result);
        return body;
    }
    PyObject *scope = state->scope;
    state->scope = NULL;
    int ok = 0;
    if (scope != NULL) {
        PyObject *args[] = {scope};
        PyObject *done = PyObject_VectorcallMethod(s_close, args, 1, NULL);
        Py_DECREF(scope);
        ok = done == NULL ? -1 : 0;
        Py_XDECREF(done);
    }
    if (ok == 0)
        ok = finish(self, state);
    if (ok < 0) {
        report(self, "Flask request end");
        PyObject *args[] = {(PyObject *)state};
        PyObject *done = owner_call(self, s_finish_quietly, args, 1);
        if (done == NULL)
            PyErr_Clear();
        Py_XDECREF(done);
    }
    return result;
}

static PyObject *wsgi_app(FlaskConfig *self, PyObject *const *args, size_t nargsf,
                          PyObject *kwnames) {
    PyObject *call = args[0], *environ = args[2], *start_response = args[3];
    int handled = PyDict_Contains(environ, self->state_key);
    if (handled != 0) {
        if (handled < 0)
            report(self, "Flask request set-up");
        return PyObject_Vectorcall(call, args + 1, 3, NULL);
    }
    PyObject *state = new_request(self, environ, start_response);
    if (state == NULL) {
        if (!PyErr_Occurred()) /* suppressed: the Python handler marks and runs it */
            return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
        report(self, "Flask request set-up");
        return PyObject_Vectorcall(call, args + 1, 3, NULL);
    }
    RequestState *st = (RequestState *)state;
    /* Outgoing calls find the forwarded headers in the state (forwarding.current); the
     * variable is set only when headers carry()'d around this request would hide them. */
    PyContextToken *token = NULL;
    PyObject *outer = NULL;
    if (PyContextVar_Get(self->forwarded_var, NULL, &outer) < 0) {
        report(self, "Flask request set-up");
    } else if (outer != NULL && outer != Py_None) {
        token = (PyContextToken *)PyContextVar_Set(self->forwarded_var, st->forwarded);
        if (token == NULL)
            report(self, "Flask request set-up");
    }
    Py_XDECREF(outer);
    PyObject *call_args[] = {args[1], environ, state};
    PyObject *result = PyObject_Vectorcall(call, call_args, 3, NULL);
    PyObject *exc = result == NULL ? take_exception() : NULL;
    if (token != NULL) {
        if (PyContextVar_Reset(self->forwarded_var, (PyObject *)token) < 0)
            report(self, "Flask request end");
        Py_DECREF(token);
    }
    if (result == NULL) {
        PyObject *end_args[] = {state, exc == NULL ? Py_None : exc, environ};
        PyObject *done = owner_call(self, s_end_failed, end_args, 3);
        if (done == NULL)
            PyErr_Clear(); /* _end_failed guards itself; nothing may replace the app's error */
        Py_XDECREF(done);
        Py_DECREF(state);
        restore_exception(exc);
        return NULL;
    }
    result = end(self, st, result, environ);
    Py_DECREF(state);
    return result;
}

/* -- full_dispatch_request -------------------------------------------------------------- */

/* environ_carrier's test: our tracer with its own codec reads the environ itself. The
 * codec (new reference) when so, NULL without an error when not (the Python _start_span
 * then runs, with a WSGIHeaders view), NULL with one on failure. */
static PyObject *environ_codec(FlaskConfig *self, PyObject *tracer, PyObject *environ) {
    PyObject *codec = our_codec(tracer, self->tracer_type, self->composite_type,
                                self->http_headers);
    int has = codec == NULL ? 0 : PyDict_Contains(environ, s_wsgi_version);
    if (has <= 0)
        Py_CLEAR(codec);
    return codec;
}

/* CompositeCodec.extract(environ) without its frame (nor Tracer.extract's). */
static PyObject *extract(FlaskConfig *self, PyObject *codec, PyObject *environ) {
    PyObject *context = call_hook(codec, s_cextract, environ, NULL, 1);
    if (context != NULL && context != self->not_handled)
        return context;
    if (context == NULL && PyErr_Occurred())
        return NULL;
    Py_XDECREF(context);
    PyObject *args[] = {codec, environ};
    return PyObject_VectorcallMethod(s_extract_python, args, 2, NULL);
}

/* _start_span for a matched route and our tracer reading the environ: 1 started, 0 when
 * the Python _start_span is to do it, -1 on error. */
static int start_span(FlaskConfig *self, RequestState *state, PyObject *environ,
                      PyObject *request) {
    PyObject *tracer = state->tracer;
    PyObject *codec = environ_codec(self, tracer, environ);
    if (codec == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *rule = PyObject_GetAttr(request, s_url_rule);
    PyObject *name = rule == NULL || rule == Py_None ? NULL : PyObject_GetAttr(rule, s_rule);
    if (name == NULL) {
        int unmatched = rule == Py_None;
        Py_XDECREF(rule);
        Py_DECREF(codec);
        return unmatched ? 0 : -1;
    }
    Py_DECREF(rule);
    PyObject *method = PyDict_GetItemWithError(environ, s_request_method);
    method = method != NULL ? Py_NewRef(method) : PyErr_Occurred() ? NULL : Py_NewRef(s_GET);
    PyObject *parent = method == NULL ? NULL : extract(self, codec, environ);
    Py_DECREF(codec);
    if (parent == NULL && method != NULL) {
        if (!PyErr_ExceptionMatches(self->quiet_errors))
            report(self, "extracting the incoming span context");
        PyErr_Clear();
        parent = Py_NewRef(Py_None);
    }
    PyObject *tags = NULL, *scope = NULL, *start = NULL;
    /* The tracer is ours here (reads_environ): an unsampled parent means no tags. */
    int unsampled = parent == NULL ? -1
                                   : context_unsampled(parent, self->context_type,
                                                       self->sampled_flag);
    if (unsampled == 0) {
        ServerTagConfig config = {self->server_tag_base, self->server_tag_names,
                                  self->ip_kinds};
        tags = server_tags_fast(&config, environ, method);
        if (tags == NULL && !PyErr_Occurred())
            tags = PyObject_CallFunctionObjArgs(self->server_tags, environ, method, NULL);
    } else if (unsampled > 0) {
        tags = Py_NewRef(Py_None);
    }
    if (tags != NULL)
        start = PyFloat_FromDouble(state->start);
    if (start != NULL) {
        if (parent != Py_None) {
            PyObject *call_args[] = {tracer, name, parent, tags, start, Py_False};
            scope = PyObject_VectorcallMethod(s_start_active_span, call_args, 2, k_parent);
        } else {
            PyObject *call_args[] = {tracer, name, tags, start, Py_True, Py_False};
            scope = PyObject_VectorcallMethod(s_start_active_span, call_args, 2, k_root);
        }
    }
    Py_XDECREF(start);
    Py_XDECREF(tags);
    Py_XDECREF(parent);
    Py_XDECREF(method);
    Py_DECREF(name);
    if (scope == NULL)
        return -1;
    PyObject *span = PyObject_GetAttr(scope, s_span);
    if (span == NULL) {
        Py_DECREF(scope);
        return -1;
    }
    Py_XSETREF(state->scope, scope);
    Py_XSETREF(state->span, span);
    return 1;
}

/* state.streamed as the Python twin decides it (werkzeug's is_streamed, without its
 * property call for a list body). */
static void note_streamed(FlaskConfig *self, RequestState *state, PyObject *response) {
    PyObject *body = PyObject_GetAttr(response, s_response);
    int streamed = -1;
    if (body != NULL && PyList_CheckExact(body)) {
        PyObject *property = PyObject_GetAttr((PyObject *)Py_TYPE(response), s_is_streamed);
        if (property == self->is_streamed)
            streamed = 0;
        Py_XDECREF(property);
    }
    Py_XDECREF(body);
    PyErr_Clear();
    if (streamed < 0) {
        streamed = attr_true(response, s_is_streamed);
        if (streamed < 0) { /* not a werkzeug Response: it may stream */
            PyErr_Clear();
            streamed = 1;
        }
    }
    state->streamed = (char)streamed;
}

static PyObject *dispatch(FlaskConfig *self, PyObject *const *args, size_t nargsf,
                          PyObject *kwnames) {
    PyObject *call = args[0];
    PyObject *context = NULL, *request = NULL, *environ = NULL, *state = NULL;
    if (PyContextVar_Get(self->request_context, Py_None, &context) < 0)
        goto failed;
    if (context == Py_None)
        goto python; /* no request context: the Python handler decides */
    request = PyObject_GetAttr(context, s_request);
    environ = request == NULL ? NULL : PyObject_GetAttr(request, s_environ);
    if (environ == NULL)
        goto failed;
    state = PyDict_CheckExact(environ)
                ? Py_XNewRef(PyDict_GetItemWithError(environ, self->state_key)) : NULL;
    if (state == NULL) {
        if (PyErr_Occurred())
            goto failed;
        goto python; /* handled without our wsgi_app (a middleware kept the original) */
    }
    if (state == self->excluded)
        goto untraced;
    if ((PyObject *)Py_TYPE(state) != self->state_type)
        goto python;
    RequestState *st = (RequestState *)state;
    if (st->span != NULL)
        goto untraced;
    int started = start_span(self, st, environ, request);
    if (started < 0)
        goto failed;
    if (started == 0) {
        PyObject *start_args[] = {state, environ, request};
        PyObject *done = owner_call(self, s_start_span, start_args, 3);
        if (done == NULL)
            goto failed;
        Py_DECREF(done);
        if (st->span == NULL)
            goto untraced;
    }
    Py_DECREF(context);
    Py_DECREF(request);
    Py_DECREF(environ);
    PyObject *response = PyObject_Vectorcall(call, args + 1, 1, NULL);
    if (response == NULL) {
        PyObject *exc = take_exception();
        PyObject *record_args[] = {state, exc == NULL ? Py_None : exc};
        PyObject *done = owner_call(self, s_record_exception, record_args, 2);
        if (done == NULL)
            PyErr_Clear();
        Py_XDECREF(done);
        Py_DECREF(state);
        restore_exception(exc);
        return NULL;
    }
    note_streamed(self, st, response);
    Py_DECREF(state);
    return response;
failed:
    report(self, "Flask span start");
untraced:
    Py_XDECREF(context);
    Py_XDECREF(request);
    Py_XDECREF(environ);
    Py_XDECREF(state);
    return PyObject_Vectorcall(call, args + 1, 1, NULL);
python:
    Py_XDECREF(context);
    Py_XDECREF(request);
    Py_XDECREF(environ);
    Py_XDECREF(state);
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

/* -- the type --------------------------------------------------------------------------- */

static PyObject *handler_vectorcall(FlaskHandler *self, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    FlaskConfig *config = self->config;
    if (config != NULL && kwnames == NULL) {
        PyObject *result = NULL;
        int fast = self->kind == 0 ? nargs == 4 && PyDict_CheckExact(args[2]) : nargs == 2;
        if (fast) {
            Py_INCREF(config);
            result = self->kind == 0 ? wsgi_app(config, args, nargsf, kwnames)
                                     : dispatch(config, args, nargsf, kwnames);
            Py_DECREF(config);
            return result;
        }
    }
    return PyObject_Vectorcall(self->fallback, args, nargs, kwnames);
}

static PyObject *handler_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    int kind;
    PyObject *fallback;
    static char *names[] = {"kind", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iO:FlaskHandler", names, &kind, &fallback))
        return NULL;
    if ((kind != 0 && kind != 1) || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "FlaskHandler(kind: 0 (wsgi_app) or 1 "
                                         "(full_dispatch_request), fallback: callable)");
        return NULL;
    }
    FlaskHandler *self = (FlaskHandler *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->kind = kind;
    self->fallback = Py_NewRef(fallback);
    self->vectorcall = (vectorcallfunc)handler_vectorcall;
    return (PyObject *)self;
}

static int handler_traverse(FlaskHandler *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    Py_VISIT(self->config);
    return 0;
}

static int handler_clear(FlaskHandler *self) {
    Py_CLEAR(self->config);
    Py_CLEAR(self->fallback);
    return 0;
}

static void handler_dealloc(FlaskHandler *self) {
    PyObject_GC_UnTrack(self);
    handler_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int config_traverse(FlaskConfig *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    for (int i = 0; i < N_FIELDS; i++)
        Py_VISIT(*config_field(self, i));
    return 0;
}

static int config_clear(FlaskConfig *self) {
    Py_CLEAR(self->fallback);
    for (int i = 0; i < N_FIELDS; i++)
        Py_CLEAR(*config_field(self, i));
    return 0;
}

static void config_dealloc(FlaskConfig *self) {
    PyObject_GC_UnTrack(self);
    config_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FlaskConfigType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "opentracing_sls.integrations._cflask.FlaskConfig",
    .tp_doc = "The objects a FlaskHandler was enabled with (made by enable()).",
    .tp_basicsize = sizeof(FlaskConfig),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)config_traverse,
    .tp_clear = (inquiry)config_clear,
    .tp_dealloc = (destructor)config_dealloc,
};

/* enable(**objects): every name of CONFIG_NAMES, and sampled_flag (keyword only). */
static PyObject *handler_enable(FlaskHandler *self, PyObject *args, PyObject *kwargs) {
    PyObject *values[N_FIELDS];
    long sampled_flag;
    if (read_config(args, kwargs, CONFIG_NAMES, N_FIELDS, values, &sampled_flag) < 0)
        return NULL;
    FlaskConfig *config = PyObject_GC_New(FlaskConfig, &FlaskConfigType);
    if (config == NULL)
        return NULL;
    config->fallback = Py_NewRef(self->fallback);
    for (int i = 0; i < N_FIELDS; i++)
        *config_field(config, i) = Py_NewRef(values[i]);
    config->sampled_flag = sampled_flag;
    const char *wrong = NULL;
    if (config->key_pairs != Py_None && !PyTuple_CheckExact(config->key_pairs))
        wrong = "key_pairs must be a tuple or None";
    else if (!PyDict_CheckExact(config->status_codes) || !PyDict_CheckExact(config->ip_kinds) ||
             !PyDict_CheckExact(config->server_tag_base))
        wrong = "status_codes, ip_kinds and server_tag_base must be dicts";
    else if (!PyTuple_CheckExact(config->quiet_errors) ||
             !PyTuple_CheckExact(config->server_tag_names) ||
             PyTuple_GET_SIZE(config->server_tag_names) != 4)
        wrong = "quiet_errors must be a tuple and server_tag_names a tuple of 4";
    else if (!PyType_Check(config->state_type) ||
             ((PyTypeObject *)config->state_type)->tp_basicsize != sizeof(RequestState))
        wrong = "state_type must be _cglue.RequestState";
    if (wrong != NULL) {
        PyErr_Format(PyExc_TypeError, "enable(): %s", wrong);
        Py_DECREF(config);
        return NULL;
    }
    PyObject_GC_Track(config);
    Py_XSETREF(self->config, config);
    Py_RETURN_NONE;
}

static PyObject *handler_disable(FlaskHandler *self, PyObject *unused) {
    Py_CLEAR(self->config);
    Py_RETURN_NONE;
}

static PyObject *handler_get_enabled(FlaskHandler *self, void *closure) {
    return PyBool_FromLong(self->config != NULL);
}

static PyMethodDef handler_methods[] = {
    {"enable", (PyCFunction)(void (*)(void))handler_enable, METH_VARARGS | METH_KEYWORDS,
     "enable(**objects): take the C path with these objects (see the module source)."},
    {"disable", (PyCFunction)handler_disable, METH_NOARGS,
     "disable(): every call to fallback."},
    {NULL},
};

static PyMemberDef handler_members[] = {
    {"kind", T_INT, offsetof(FlaskHandler, kind), READONLY, NULL},
    {"fallback", T_OBJECT, offsetof(FlaskHandler, fallback), READONLY, NULL},
    {NULL},
};

static PyGetSetDef handler_getset[] = {
    {"enabled", (getter)handler_get_enabled, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject FlaskHandlerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "opentracing_sls.integrations._cflask.FlaskHandler",
    .tp_doc = "FlaskHandler(kind, fallback): Flask.wsgi_app's (kind 0) or "
              "full_dispatch_request's (kind 1) handler; calls fallback alike until enabled.",
    .tp_basicsize = sizeof(FlaskHandler),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = handler_new,
    .tp_traverse = (traverseproc)handler_traverse,
    .tp_clear = (inquiry)handler_clear,
    .tp_dealloc = (destructor)handler_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(FlaskHandler, vectorcall),
    .tp_methods = handler_methods,
    .tp_members = handler_members,
    .tp_getset = handler_getset,
};

/* server_tags(base, names, ip_kinds, environ, method): the tags the handler builds in C,
 * or None where it leaves them to flask._server_tags (for the tests comparing the two). */
static PyObject *server_tags(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyDict_CheckExact(args[0]) || !PyTuple_CheckExact(args[1]) ||
        PyTuple_GET_SIZE(args[1]) != 4 || !PyDict_CheckExact(args[2]) ||
        !PyDict_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "server_tags(base: dict, names: 4-tuple, ip_kinds: "
                                         "dict, environ: dict, method)");
        return NULL;
    }
    ServerTagConfig config = {args[0], args[1], args[2]};
    PyObject *tags = server_tags_fast(&config, args[3], args[4]);
    if (tags == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return tags;
}

static PyMethodDef module_methods[] = {
    {"server_tags", (PyCFunction)(void (*)(void))server_tags, METH_FASTCALL,
     "server_tags(base, names, ip_kinds, environ, method) -> dict | None"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "opentracing_sls.integrations._cflask",
    .m_doc = "The Flask integration's handlers in C (see flask.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int intern(PyObject **slot, const char *text) {
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__cflask(void) {
    const char *texts[] = {"tracer", "request", "environ", "url_rule", "rule", "_cextract",
                           "_extract_python", "start_active_span", "span", "close", "set_tag",
                           "finish", "response", "is_streamed", "wsgi.version",
                           "REQUEST_METHOD", "GET", "_end", "_end_failed",
                           "_record_exception", "_start_span", "_finish_quietly"};
    PyObject **slots[] = {&s_tracer, &s_request, &s_environ, &s_url_rule, &s_rule,
                          &s_cextract, &s_extract_python, &s_start_active_span, &s_span, &s_close, &s_set_tag,
                          &s_finish, &s_response, &s_is_streamed, &s_wsgi_version,
                          &s_request_method, &s_GET, &s_end, &s_end_failed,
                          &s_record_exception, &s_start_span, &s_finish_quietly};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        if (intern(slots[i], texts[i]) < 0)
            return NULL;
    }
    k_parent = Py_BuildValue("(ssss)", "child_of", "tags", "start_time", "finish_on_close");
    k_root = Py_BuildValue("(ssss)", "tags", "start_time", "ignore_active_span",
                           "finish_on_close");
    int_500 = PyLong_FromLong(500);
    if (server_tags_init() < 0 || k_parent == NULL || k_root == NULL || int_500 == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyType_Ready(&FlaskConfigType) < 0 || PyType_Ready(&FlaskHandlerType) < 0 ||
        PyModule_AddObject(module, "FlaskHandler", Py_NewRef(&FlaskHandlerType)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
