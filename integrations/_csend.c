/* The requests integration's ``Session.send`` handler in C, for the common configuration.
 *
 * ``SendHandler(fallback)`` is called as the Python handler is, ``(call, session, request,
 * **kwargs)``. While it is disabled (the default, and whenever hooks or excluded URLs are
 * configured or the instrumentation is off) it hands every call to ``fallback``, the Python
 * handler (``RequestsInstrumentor._send``). Enabled, it does what that handler does for a
 * configuration without hooks and exclusions: skip suppressed calls, start the client span
 * (tags left out when the tracer will not sample it), inject the trace headers, add the
 * forwarded ones, call the original, tag the status and close the scope. The Python code
 * it would have run is about 250 bytecodes in 7 frames, some 20 k instructions per call.
 *
 * The rules are the Python handler's, which stays the reference (requests.py): our errors
 * are reported through ``report(what, exc)`` and never raised; the application's
 * exception goes to ``after(scope, request, None, exc)`` and is then re-raised unchanged.
 * What is rare (a non-requests header mapping, stale trace headers to rewrite, a 5xx) calls
 * the Python helpers it is given. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "../opentracing_sls/csrc/compat.h"
#include "csrc/handlers.h"

/* What the fast path uses, made by enable(**objects) and never changed after: each call
 * holds it while it runs, so an enable() or disable() from inside a call (a response hook
 * of requests' calling uninstrument()) cannot pull objects from under it. */
typedef struct {
    PyObject_HEAD
    PyObject *tracer;         /* the configured tracer, or None for opentracing.tracer */
    PyObject *opentracing;    /* the opentracing module */
    PyObject *suppressed;     /* ContextVar: suppress_instrumentation() is active */
    PyObject *own_thread;     /* () -> bool: the calling thread is one of ours */
    PyObject *forwarded;      /* FORWARDED.get: carry()'d headers, or None */
    PyObject *request_source; /* forwarding.REQUEST_SOURCE: [context variable, environ key] */
    PyObject *tracer_type;    /* our Tracer: the unsampled shortcut applies */
    PyObject *noop_type;      /* opentracing.Tracer: keeps nothing */
    PyObject *context_type;   /* our SpanContext */
    PyObject *composite_type; /* our CompositeCodec */
    long sampled_flag;
    PyObject *client_tags;    /* {span.kind: client, component: requests} */
    PyObject *method_tag;     /* "http.method" */
    PyObject *status_tag;     /* "http.status_code" */
    PyObject *url_tags;       /* url -> its http.url and peer tags (cached in url_cache) */
    PyObject *url_cache;      /* url -> those tags, filled by url_tags */
    PyObject *http_headers;   /* Format.HTTP_HEADERS */
    PyObject *odict_type;     /* collections.OrderedDict */
    PyObject *headers_type;   /* requests.structures.CaseInsensitiveDict */
    PyObject *apply_store;    /* _cglue.apply_store */
    PyObject *trace_names;    /* the trace-context header names (tuple) */
    PyObject *rewrite_stale;  /* (store, injected) -> None */
    PyObject *apply;          /* forwarding.apply, for any other header mapping */
    PyObject *after;          /* (scope, request, response, exc) -> None */
    PyObject *log_server_error; /* (span, code) -> None */
    PyObject *report;         /* (what, exc) -> None */
} SendConfig;

typedef struct {
    PyObject_HEAD
    PyObject *fallback;
    SendConfig *config; /* NULL: disabled */
    vectorcallfunc vectorcall;
} SendHandler;

#define N_CONFIG 25

static const char *const CONFIG_NAMES[N_CONFIG] = {
    "tracer", "opentracing", "suppressed", "own_thread", "forwarded", "tracer_type",
    "noop_type", "context_type", "composite_type", "client_tags", "method_tag",
    "status_tag", "url_tags", "url_cache", "http_headers", "odict_type", "headers_type",
    "apply_store", "trace_names", "rewrite_stale", "apply", "after", "log_server_error",
    "report", "request_source",
};

static PyObject **config_field(SendConfig *self, int i) {
    PyObject **fields[N_CONFIG] = {
        &self->tracer, &self->opentracing, &self->suppressed, &self->own_thread,
        &self->forwarded, &self->tracer_type, &self->noop_type, &self->context_type,
        &self->composite_type, &self->client_tags, &self->method_tag, &self->status_tag,
        &self->url_tags, &self->url_cache, &self->http_headers, &self->odict_type,
        &self->headers_type, &self->apply_store, &self->trace_names, &self->rewrite_stale, &self->apply, &self->after,
        &self->log_server_error, &self->report, &self->request_source,
    };
    return fields[i];
}

static PyObject *s_tracer, *s_method, *s_url, *s_headers, *s_store, *s_span, *s_context,
    *s_scope_manager, *s_active, *s_start_active_span, *s_inject, *s_cinject,
    *s_inject_python, *s_history, *s_status_code, *s_set_tag, *s_close, *s_request,
    *s_environ, *s_forwarded,
    *s_own_key, *s_GET, *k_tags, *int_500;

static void report(SendConfig *self, const char *what) {
    report_to(self->report, what);
}

/* -- decisions -------------------------------------------------------------------------- */

/* 1 inside suppress_instrumentation() or on one of our own threads, 0 if not, -1 on error.
 * The thread's answer is kept in the thread state's dict (asked once per thread). */
static int suppressed(SendConfig *self) {
    PyObject *value;
    if (PyContextVar_Get(self->suppressed, NULL, &value) < 0)
        return -1;
    int on = value == NULL ? 0 : PyObject_IsTrue(value);
    Py_XDECREF(value);
    if (on != 0)
        return on;
    PyObject *thread_dict = PyThreadState_GetDict(); /* borrowed */
    PyObject *own = thread_dict == NULL ? NULL
                                        : PyDict_GetItemWithError(thread_dict, s_own_key);
    if (own != NULL)
        return PyObject_IsTrue(own);
    if (PyErr_Occurred())
        return -1;
    own = PyObject_CallNoArgs(self->own_thread);
    if (own == NULL)
        return -1;
    if (thread_dict != NULL && PyDict_SetItem(thread_dict, s_own_key, own) < 0) {
        Py_DECREF(own);
        return -1;
    }
    on = PyObject_IsTrue(own);
    Py_DECREF(own);
    return on;
}

/* unsampled.active_child_unsampled: 1 when a child of ``tracer``'s active span is
 * certainly not sampled (or the tracer is OpenTracing's no-op one). */
static int active_child_unsampled(SendConfig *self, PyObject *tracer) {
    PyObject *type = (PyObject *)Py_TYPE(tracer);
    if (type != self->tracer_type)
        return type == self->noop_type;
    PyObject *manager = PyObject_GetAttr(tracer, s_scope_manager);
    if (manager == NULL)
        return -1;
    PyObject *scope = PyObject_GetAttr(manager, s_active);
    Py_DECREF(manager);
    if (scope == NULL)
        return -1;
    if (scope == Py_None) {
        Py_DECREF(scope);
        return 0;
    }
    PyObject *span = PyObject_GetAttr(scope, s_span);
    Py_DECREF(scope);
    if (span == NULL)
        return -1;
    PyObject *context = PyObject_GetAttr(span, s_context);
    Py_DECREF(span);
    if (context == NULL)
        return -1;
    int result = context_unsampled(context, self->context_type, self->sampled_flag);
    Py_DECREF(context);
    return result;
}

/* -- headers ---------------------------------------------------------------------------- */

/* forwarding.apply for ``headers``: requests' own header mapping through apply_store, any
 * other through the Python function. -1 on error. */
static int apply_headers(SendConfig *self, PyObject *headers, PyObject *injected,
                         PyObject *forwarded) {
    PyObject *result;
    PyObject *store = NULL;
    if ((PyObject *)Py_TYPE(headers) == self->headers_type &&
        (forwarded == Py_None || PyDict_CheckExact(forwarded))) {
        store = PyObject_GetAttr(headers, s_store);
        if (store == NULL)
            PyErr_Clear(); /* getattr(outgoing, "_store", None) */
        else if ((PyObject *)Py_TYPE(store) != self->odict_type)
            Py_CLEAR(store);
    }
    if (store == NULL) {
        result = PyObject_CallFunctionObjArgs(self->apply, headers, injected, forwarded, NULL);
    } else {
        PyObject *args[] = {store, injected, forwarded, self->trace_names};
        result = PyObject_Vectorcall(self->apply_store, args, 4, NULL);
        if (result == Py_True) {
            Py_DECREF(result);
            result = PyObject_CallFunctionObjArgs(self->rewrite_stale, store, injected, NULL);
        }
        Py_DECREF(store);
    }
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* tracer.inject(context, HTTP_HEADERS, injected); for our tracer and codec, what
 * Tracer.inject and CompositeCodec.inject would do, without their frames. */
static PyObject *inject(SendConfig *self, PyObject *tracer, PyObject *context,
                        PyObject *injected) {
    PyObject *codec = (PyObject *)Py_TYPE(context) != self->context_type
                          ? NULL : our_codec(tracer, self->tracer_type, self->composite_type,
                                             self->http_headers);
    if (codec == NULL) {
        if (PyErr_Occurred())
            return NULL;
        PyObject *args[] = {tracer, context, self->http_headers, injected};
        return PyObject_VectorcallMethod(s_inject, args, 4, NULL);
    }
    /* The C injector returns None when done and declines with anything else. */
    PyObject *result = call_hook(codec, s_cinject, context, injected, 2);
    if (result == NULL && !PyErr_Occurred()) {
        result = Py_NewRef(Py_False);
    }
    if (result != NULL && result != Py_None) {
        Py_DECREF(result);
        PyObject *args[] = {codec, context, injected};
        result = PyObject_VectorcallMethod(s_inject_python, args, 3, NULL);
    }
    Py_DECREF(codec);
    return result;
}

/* forwarding.current(): carry()'s headers, else those of the Flask request being handled,
 * found through its request context; a context that is not Flask's reads as none. */
static PyObject *current_forwarded(SendConfig *self) {
    PyObject *headers = PyObject_CallNoArgs(self->forwarded);
    PyObject *source = self->request_source;
    if (headers != Py_None || PyList_GET_SIZE(source) != 2 ||
        PyList_GET_ITEM(source, 0) == Py_None)
        return headers;
    /* Held: the attribute reads below may run Python code that changes the list. */
    PyObject *variable = Py_NewRef(PyList_GET_ITEM(source, 0));
    PyObject *key = Py_NewRef(PyList_GET_ITEM(source, 1));
    PyObject *context = NULL, *request = NULL, *environ = NULL, *state = NULL;
    if (PyContextVar_Get(variable, Py_None, &context) < 0) {
        Py_DECREF(variable);
        Py_DECREF(key);
        Py_DECREF(headers);
        return NULL;
    }
    if (context != Py_None) {
        request = PyObject_GetAttr(context, s_request);
        environ = request == NULL ? NULL : PyObject_GetAttr(request, s_environ);
        state = environ == NULL || !PyDict_Check(environ)
                    ? NULL : Py_XNewRef(PyDict_GetItemWithError(environ, key));
        PyObject *found = state == NULL ? NULL : PyObject_GetAttr(state, s_forwarded);
        if (found != NULL)
            Py_SETREF(headers, found);
        PyErr_Clear(); /* as forwarding.current: nothing to forward */
    }
    Py_XDECREF(state);
    Py_XDECREF(environ);
    Py_XDECREF(request);
    Py_DECREF(context);
    Py_DECREF(variable);
    Py_DECREF(key);
    return headers;
}

/* The trace headers of ``scope``'s span and the forwarded ones onto the request; errors are
 * reported, as the Python handler's two guarded blocks do. */
static void add_headers(SendConfig *self, PyObject *tracer, PyObject *scope,
                        PyObject *request) {
    PyObject *injected = PyDict_New();
    if (injected == NULL) {
        report(self, "adding headers to a requests call");
        return;
    }
    PyObject *span = PyObject_GetAttr(scope, s_span);
    PyObject *context = span == NULL ? NULL : PyObject_GetAttr(span, s_context);
    PyObject *result = context == NULL ? NULL : inject(self, tracer, context, injected);
    if (result == NULL)
        report(self, "injecting trace headers");
    Py_XDECREF(result);
    Py_XDECREF(context);
    Py_XDECREF(span);
    PyObject *headers = PyObject_GetAttr(request, s_headers);
    PyObject *forwarded = headers == NULL ? NULL : current_forwarded(self);
    if (forwarded == NULL || apply_headers(self, headers, injected, forwarded) < 0)
        report(self, "adding headers to a requests call");
    Py_XDECREF(forwarded);
    Py_XDECREF(headers);
    Py_DECREF(injected);
}

/* -- the span --------------------------------------------------------------------------- */

/* The client span's scope, with the headers added; NULL (nothing pending) when it could not
 * start: the call then goes through untraced. */
static PyObject *before(SendConfig *self, PyObject *request) {
    PyObject *tracer = NULL, *method = NULL, *tags = NULL, *url = NULL, *scope = NULL;
    tracer = self->tracer != Py_None ? Py_NewRef(self->tracer)
                                     : PyObject_GetAttr(self->opentracing, s_tracer);
    if (tracer == NULL)
        goto failed;
    method = PyObject_GetAttr(request, s_method);
    if (method == NULL)
        goto failed;
    int truth = PyObject_IsTrue(method);
    if (truth < 0)
        goto failed;
    if (truth == 0)
        Py_SETREF(method, Py_NewRef(s_GET));
    int unsampled = active_child_unsampled(self, tracer);
    if (unsampled < 0)
        goto failed;
    if (unsampled) {
        PyObject *args[] = {tracer, method};
        scope = PyObject_VectorcallMethod(s_start_active_span, args, 2, NULL);
    } else {
        tags = PyDict_Copy(self->client_tags);
        if (tags == NULL || PyDict_SetItem(tags, self->method_tag, method) < 0)
            goto failed;
        url = PyObject_GetAttr(request, s_url);
        PyObject *url_tags = url == NULL ? NULL : PyDict_GetItemWithError(self->url_cache, url);
        if (url_tags != NULL)
            Py_INCREF(url_tags);
        else if (url != NULL && !PyErr_Occurred())
            url_tags = PyObject_CallOneArg(self->url_tags, url);
        int merged = url_tags == NULL ? -1 : PyDict_Merge(tags, url_tags, 1);
        Py_XDECREF(url_tags);
        if (merged < 0)
            goto failed;
        PyObject *args[] = {tracer, method, tags};
        scope = PyObject_VectorcallMethod(s_start_active_span, args, 2, k_tags);
    }
    if (scope == NULL)
        goto failed;
    Py_DECREF(method);
    Py_XDECREF(tags);
    Py_XDECREF(url);
    add_headers(self, tracer, scope, request);
    Py_DECREF(tracer);
    return scope;
failed:
    report(self, "starting a requests client span");
    Py_XDECREF(tracer);
    Py_XDECREF(method);
    Py_XDECREF(tags);
    Py_XDECREF(url);
    return NULL;
}

/* The status of this span's own exchange (the first one after redirects). */
static int tag_status(SendConfig *self, PyObject *span, PyObject *response) {
    PyObject *history = PyObject_GetAttr(response, s_history);
    if (history == NULL)
        return -1;
    int redirected = PyObject_IsTrue(history);
    PyObject *exchange = redirected < 0   ? NULL
                         : redirected > 0 ? PySequence_GetItem(history, 0)
                                          : Py_NewRef(response);
    Py_DECREF(history);
    if (exchange == NULL)
        return -1;
    PyObject *code = PyObject_GetAttr(exchange, s_status_code);
    Py_DECREF(exchange);
    if (code == NULL)
        return -1;
    PyObject *args[] = {span, self->status_tag, code};
    PyObject *result = PyObject_VectorcallMethod(s_set_tag, args, 3, NULL);
    int error = PyLong_Check(code) && result != NULL
                    ? PyObject_RichCompareBool(code, int_500, Py_GE) : 0;
    if (error > 0) {
        Py_XSETREF(result, PyObject_CallFunctionObjArgs(self->log_server_error, span, code,
                                                        NULL));
    }
    Py_DECREF(code);
    if (result == NULL || error < 0) {
        Py_XDECREF(result);
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static void after(SendConfig *self, PyObject *scope, PyObject *response) {
    PyObject *span = PyObject_GetAttr(scope, s_span);
    if (span == NULL || tag_status(self, span, response) < 0)
        report(self, "tagging a requests client span");
    Py_XDECREF(span);
    PyObject *args[] = {scope};
    PyObject *result = PyObject_VectorcallMethod(s_close, args, 1, NULL);
    if (result == NULL)
        report(self, "finishing a requests client span");
    Py_XDECREF(result);
}

/* -- the handler ------------------------------------------------------------------------ */

static PyObject *send(SendConfig *self, PyObject *const *args, PyObject *kwnames) {
    /* args: call, session, request, then the keyword values; the original takes the rest. */
    PyObject *call = args[0], *request = args[2];
    int skip = suppressed(self);
    if (skip < 0) {
        report(self, "checking whether instrumentation is suppressed");
        skip = 1;
    }
    PyObject *scope = skip ? NULL : before(self, request);
    if (scope == NULL)
        return PyObject_Vectorcall(call, args + 1, 2, kwnames);
    PyObject *response = PyObject_Vectorcall(call, args + 1, 2, kwnames);
    if (response == NULL) {
        PyObject *exc = take_exception();
        PyObject *done = exc == NULL ? NULL
                                     : PyObject_CallFunctionObjArgs(self->after, scope, request,
                                                                    Py_None, exc, NULL);
        if (done == NULL)
            PyErr_Clear(); /* after() guards itself; nothing of ours may replace the app's */
        Py_XDECREF(done);
        Py_DECREF(scope);
        restore_exception(exc);
        return NULL;
    }
    after(self, scope, response);
    Py_DECREF(scope);
    return response;
}

static PyObject *send_vectorcall(SendHandler *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    SendConfig *config = self->config;
    if (config == NULL || nargs != 3)
        return PyObject_Vectorcall(self->fallback, args, nargs, kwnames);
    Py_INCREF(config);
    PyObject *result = send(config, args, kwnames);
    Py_DECREF(config);
    return result;
}

/* -- the types -------------------------------------------------------------------------- */

static int config_traverse(SendConfig *self, visitproc visit, void *arg) {
    for (int i = 0; i < N_CONFIG; i++)
        Py_VISIT(*config_field(self, i));
    return 0;
}

static int config_clear(SendConfig *self) {
    for (int i = 0; i < N_CONFIG; i++)
        Py_CLEAR(*config_field(self, i));
    return 0;
}

static void config_dealloc(SendConfig *self) {
    PyObject_GC_UnTrack(self);
    config_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject SendConfigType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "opentracing_sls.integrations._csend.SendConfig",
    .tp_doc = "The objects a SendHandler was enabled with (made by enable()).",
    .tp_basicsize = sizeof(SendConfig),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)config_traverse,
    .tp_clear = (inquiry)config_clear,
    .tp_dealloc = (destructor)config_dealloc,
};

static PyObject *send_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *fallback;
    static char *names[] = {"fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:SendHandler", names, &fallback))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "SendHandler: fallback must be callable");
        return NULL;
    }
    SendHandler *self = (SendHandler *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->fallback = Py_NewRef(fallback);
    self->vectorcall = (vectorcallfunc)send_vectorcall;
    return (PyObject *)self;
}

static int send_traverse(SendHandler *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    Py_VISIT(self->config);
    return 0;
}

static int send_clear(SendHandler *self) {
    Py_CLEAR(self->config);
    Py_CLEAR(self->fallback);
    return 0;
}

static void send_dealloc(SendHandler *self) {
    PyObject_GC_UnTrack(self);
    send_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* enable(**objects): every name of CONFIG_NAMES and ``sampled_flag`` (an int), keyword
 * only; the handler takes the fast path from then on. */
static PyObject *send_enable(SendHandler *self, PyObject *args, PyObject *kwargs) {
    PyObject *values[N_CONFIG];
    long sampled_flag;
    if (read_config(args, kwargs, CONFIG_NAMES, N_CONFIG, values, &sampled_flag) < 0)
        return NULL;
    SendConfig *config = PyObject_GC_New(SendConfig, &SendConfigType);
    if (config == NULL)
        return NULL;
    for (int i = 0; i < N_CONFIG; i++)
        *config_field(config, i) = Py_NewRef(values[i]);
    config->sampled_flag = sampled_flag;
    if (!PyDict_CheckExact(config->client_tags) || !PyDict_CheckExact(config->url_cache) ||
        !PyTuple_CheckExact(config->trace_names) || !PyList_CheckExact(config->request_source)) {
        PyErr_SetString(PyExc_TypeError, "enable(): client_tags and url_cache must be dicts, "
                                         "trace_names a tuple and request_source a list");
        Py_DECREF(config);
        return NULL;
    }
    PyObject_GC_Track(config);
    Py_XSETREF(self->config, config);
    Py_RETURN_NONE;
}

static PyObject *send_disable(SendHandler *self, PyObject *unused) {
    Py_CLEAR(self->config);
    Py_RETURN_NONE;
}

static PyObject *send_get_enabled(SendHandler *self, void *closure) {
    return PyBool_FromLong(self->config != NULL);
}

static PyMethodDef send_methods[] = {
    {"enable", (PyCFunction)(void (*)(void))send_enable, METH_VARARGS | METH_KEYWORDS,
     "enable(**objects): take the C path with these objects (see the module source)."},
    {"disable", (PyCFunction)send_disable, METH_NOARGS, "disable(): every call to fallback."},
    {NULL},
};

static PyMemberDef send_members[] = {
    {"fallback", T_OBJECT, offsetof(SendHandler, fallback), READONLY, NULL},
    {NULL},
};

static PyGetSetDef send_getset[] = {
    {"enabled", (getter)send_get_enabled, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject SendHandlerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "opentracing_sls.integrations._csend.SendHandler",
    .tp_doc = "SendHandler(fallback): requests' Session.send handler, called as "
              "(call, session, request, **kwargs); calls fallback alike until enabled.",
    .tp_basicsize = sizeof(SendHandler),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = send_new,
    .tp_traverse = (traverseproc)send_traverse,
    .tp_clear = (inquiry)send_clear,
    .tp_dealloc = (destructor)send_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(SendHandler, vectorcall),
    .tp_methods = send_methods,
    .tp_members = send_members,
    .tp_getset = send_getset,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "opentracing_sls.integrations._csend",
    .m_doc = "The requests integration's Session.send handler in C (see requests.py).",
    .m_size = -1,
};

static int intern(PyObject **slot, const char *text) {
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__csend(void) {
    if (intern(&s_tracer, "tracer") < 0 || intern(&s_method, "method") < 0 ||
        intern(&s_url, "url") < 0 || intern(&s_headers, "headers") < 0 ||
        intern(&s_store, "_store") < 0 || intern(&s_span, "span") < 0 ||
        intern(&s_context, "context") < 0 || intern(&s_scope_manager, "_scope_manager") < 0 ||
        intern(&s_active, "active") < 0 ||
        intern(&s_start_active_span, "start_active_span") < 0 ||
        intern(&s_inject, "inject") < 0 || intern(&s_cinject, "_cinject") < 0 ||
        intern(&s_inject_python, "_inject_python") < 0 || intern(&s_history, "history") < 0 ||
        intern(&s_status_code, "status_code") < 0 || intern(&s_set_tag, "set_tag") < 0 ||
        intern(&s_close, "close") < 0 ||
        intern(&s_own_key, "opentracing_sls.integrations.own_thread") < 0 ||
        intern(&s_request, "request") < 0 || intern(&s_environ, "environ") < 0 ||
        intern(&s_forwarded, "forwarded") < 0 ||
        intern(&s_GET, "GET") < 0)
        return NULL;
    if ((k_tags = Py_BuildValue("(s)", "tags")) == NULL || (int_500 = PyLong_FromLong(500)) == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyType_Ready(&SendConfigType) < 0 || PyType_Ready(&SendHandlerType) < 0 ||
        PyModule_AddObject(module, "SendHandler", Py_NewRef(&SendHandlerType)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
