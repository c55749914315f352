/* The integrations' per-request glue in C: what runs on every traced request but is not
 * tracing (binding a patched method, noting the response status, copying headers).
 *
 * Each piece has a pure-Python twin in the integrations (patching.py, flask.py,
 * forwarding.py); these exist because each Python frame that C code enters (a descriptor's
 * __get__, a __call__, an __init__) costs about a thousand instructions, several times per
 * request. Behaviour is the same; the tests run both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "../opentracing_sls/csrc/compat.h"

/* -------------------------------------------------------------------------------------
 * Handler: ``handler(owner, original, *args, **kwargs)`` as one callable.
 *
 * A patched method read through an instance is ``MethodType(Handler, instance)``, so the
 * call reaches the Python handler as ``handler(owner, original, instance, *args)`` with one
 * argument copy, where functools.partial over a bound method made three. It carries a
 * ``__dict__`` so functools.update_wrapper can give it the original's name, docstring and
 * ``__wrapped__`` (inspect.signature follows that). */

typedef struct {
    PyObject_HEAD
    PyObject *func;     /* the handler function */
    PyObject *owner;    /* its first argument (the instrumentor), or NULL */
    PyObject *original; /* the method being wrapped */
    PyObject *dict;
    vectorcallfunc vectorcall;
} Handler;

#define SMALL_STACK 8

static PyObject *handler_vectorcall(Handler *self, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    Py_ssize_t lead = self->owner == NULL ? 1 : 2;
    Py_ssize_t total = lead + nargs + nkw;
    PyObject *small[SMALL_STACK];
    PyObject **stack = small;
    if (total > SMALL_STACK) {
        stack = PyMem_Malloc(total * sizeof(PyObject *));
        if (stack == NULL)
            return PyErr_NoMemory();
    }
    if (lead == 2) {
        stack[0] = self->owner;
        stack[1] = self->original;
    } else {
        stack[0] = self->original;
    }
    memcpy(stack + lead, args, (nargs + nkw) * sizeof(PyObject *));
    PyObject *result = PyObject_Vectorcall(self->func, stack, lead + nargs, kwnames);
    if (stack != small)
        PyMem_Free(stack);
    return result;
}

static PyObject *handler_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *func, *owner, *original;
    static char *names[] = {"func", "owner", "original", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:Handler", names, &func, &owner,
                                     &original))
        return NULL;
    if (!PyCallable_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "Handler: func must be callable");
        return NULL;
    }
    Handler *self = (Handler *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->func = Py_NewRef(func);
    self->owner = owner == Py_None ? NULL : Py_NewRef(owner);
    self->original = Py_NewRef(original);
    self->vectorcall = (vectorcallfunc)handler_vectorcall;
    return (PyObject *)self;
}

static int handler_traverse(Handler *self, visitproc visit, void *arg) {
    Py_VISIT(self->func);
    Py_VISIT(self->owner);
    Py_VISIT(self->original);
    Py_VISIT(self->dict);
    return 0;
}

static int handler_clear(Handler *self) {
    Py_CLEAR(self->func);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->original);
    Py_CLEAR(self->dict);
    return 0;
}

static void handler_dealloc(Handler *self) {
    PyObject_GC_UnTrack(self);
    handler_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef handler_members[] = {
    {"func", T_OBJECT, offsetof(Handler, func), READONLY, NULL},
    {"owner", T_OBJECT, offsetof(Handler, owner), READONLY, NULL},
    {"original", T_OBJECT, offsetof(Handler, original), READONLY, NULL},
    {NULL},
};

static PyGetSetDef handler_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyTypeObject HandlerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "opentracing_sls.integrations._cglue.Handler",
    .tp_doc = "Handler(func, owner, original): calling it with (*args) calls "
              "func(owner, original, *args) (func(original, *args) when owner is None).",
    .tp_basicsize = sizeof(Handler),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = handler_new,
    .tp_traverse = (traverseproc)handler_traverse,
    .tp_clear = (inquiry)handler_clear,
    .tp_dealloc = (destructor)handler_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Handler, vectorcall),
    .tp_dictoffset = offsetof(Handler, dict),
    .tp_members = handler_members,
    .tp_getset = handler_getset,
};

/* -------------------------------------------------------------------------------------
 * Getter: the ``__get__`` of a patched method's proxy class.
 *
 * The type slot calls it as ``__get__(proxy, instance, owner)``: through an instance it
 * gives ``MethodType(method, instance)``; on the class it defers to ``fallback`` (wrapt's
 * own ``FunctionWrapper.__get__``). */

typedef struct {
    PyObject_HEAD
    PyObject *method;
    PyObject *fallback;
    vectorcallfunc vectorcall;
} Getter;

static PyObject *getter_vectorcall(Getter *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && nargs >= 2 && nargs <= 3 && args[1] != Py_None)
        return PyMethod_New(self->method, args[1]);
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

/* Read as an attribute (``proxy.__get__``) it binds like a function would, so Python code
 * calling ``proxy.__get__(instance, owner)`` gets the same answer as the type slot. */
static PyObject *getter_descr_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static PyObject *getter_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *method, *fallback;
    static char *names[] = {"method", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:Getter", names, &method, &fallback))
        return NULL;
    Getter *self = (Getter *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->method = Py_NewRef(method);
    self->fallback = Py_NewRef(fallback);
    self->vectorcall = (vectorcallfunc)getter_vectorcall;
    return (PyObject *)self;
}

static int getter_traverse(Getter *self, visitproc visit, void *arg) {
    Py_VISIT(self->method);
    Py_VISIT(self->fallback);
    return 0;
}

static int getter_clear(Getter *self) {
    Py_CLEAR(self->method);
    Py_CLEAR(self->fallback);
    return 0;
}

static void getter_dealloc(Getter *self) {
    PyObject_GC_UnTrack(self);
    getter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef getter_members[] = {
    {"method", T_OBJECT, offsetof(Getter, method), READONLY, NULL},
    {"fallback", T_OBJECT, offsetof(Getter, fallback), READONLY, NULL},
    {NULL},
};

static PyTypeObject GetterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "opentracing_sls.integrations._cglue.Getter",
    .tp_doc = "Getter(method, fallback): called as (proxy, instance, owner), returns "
              "MethodType(method, instance), or fallback(proxy, instance, owner) when "
              "instance is None.",
    .tp_basicsize = sizeof(Getter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = getter_new,
    .tp_traverse = (traverseproc)getter_traverse,
    .tp_clear = (inquiry)getter_clear,
    .tp_dealloc = (destructor)getter_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Getter, vectorcall),
    .tp_members = getter_members,
    .tp_descr_get = getter_descr_get,
};

/* -------------------------------------------------------------------------------------
 * RequestState: one Flask request's tracing state, and the ``start_response`` handed to
 * the application (it notes the status line and headers, then calls the server's). */

#include "csrc/request_state.h"

static PyObject *state_vectorcall(RequestState *self, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError,
                     "start_response() takes the status and the headers (%zd given)", nargs);
        return NULL;
    }
    if (self->start_response == NULL || self->start_response == Py_None) {
        PyErr_SetString(PyExc_TypeError, "this request's start_response is not callable");
        return NULL;
    }
    Py_INCREF(args[0]);
    Py_XSETREF(self->status, args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(self->headers, args[1]);
    return PyObject_Vectorcall(self->start_response, args, nargs, kwnames);
}

static PyTypeObject RequestStateType;

static PyObject *state_make(PyObject *tracer, double start, PyObject *forwarded,
                            PyObject *start_response) {
    RequestState *self = (RequestState *)RequestStateType.tp_alloc(&RequestStateType, 0);
    if (self == NULL)
        return NULL;
    self->tracer = Py_NewRef(tracer);
    self->start = start;
    self->forwarded = Py_NewRef(forwarded);
    self->start_response = Py_NewRef(start_response);
    self->vectorcall = (vectorcallfunc)state_vectorcall;
    return (PyObject *)self;
}

static PyObject *state_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *tracer, *forwarded, *start_response;
    double start;
    static char *names[] = {"tracer", "start", "forwarded", "start_response", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OdOO:RequestState", names, &tracer, &start,
                                     &forwarded, &start_response))
        return NULL;
    return state_make(tracer, start, forwarded, start_response);
}

static int state_traverse(RequestState *self, visitproc visit, void *arg) {
    Py_VISIT(self->tracer);
    Py_VISIT(self->span);
    Py_VISIT(self->scope);
    Py_VISIT(self->status);
    Py_VISIT(self->headers);
    Py_VISIT(self->forwarded);
    Py_VISIT(self->start_response);
    return 0;
}

static int state_clear(RequestState *self) {
    Py_CLEAR(self->tracer);
    Py_CLEAR(self->span);
    Py_CLEAR(self->scope);
    Py_CLEAR(self->status);
    Py_CLEAR(self->headers);
    Py_CLEAR(self->forwarded);
    Py_CLEAR(self->start_response);
    return 0;
}

static void state_dealloc(RequestState *self) {
    PyObject_GC_UnTrack(self);
    state_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *state_get_headers(RequestState *self, void *closure) {
    if (self->headers == NULL && (self->headers = PyList_New(0)) == NULL)
        return NULL;
    return Py_NewRef(self->headers);
}

static int state_set_headers(RequestState *self, PyObject *value, void *closure) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "headers cannot be deleted");
        return -1;
    }
    Py_INCREF(value);
    Py_XSETREF(self->headers, value);
    return 0;
}

static PyMemberDef state_members[] = {
    {"tracer", T_OBJECT, offsetof(RequestState, tracer), 0, NULL},
    {"start", T_DOUBLE, offsetof(RequestState, start), 0, NULL},
    {"span", T_OBJECT, offsetof(RequestState, span), 0, NULL},
    {"scope", T_OBJECT, offsetof(RequestState, scope), 0, NULL},
    {"status", T_OBJECT, offsetof(RequestState, status), 0, NULL},
    {"forwarded", T_OBJECT, offsetof(RequestState, forwarded), 0, NULL},
    {"start_response", T_OBJECT, offsetof(RequestState, start_response), 0, NULL},
    {"streamed", T_BOOL, offsetof(RequestState, streamed), 0, NULL},
    {"error_logged", T_BOOL, offsetof(RequestState, error_logged), 0, NULL},
    {"finished", T_BOOL, offsetof(RequestState, finished), 0, NULL},
    {NULL},
};

static PyGetSetDef state_getset[] = {
    {"headers", (getter)state_get_headers, (setter)state_set_headers, NULL, NULL},
    {NULL},
};

static PyTypeObject RequestStateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "opentracing_sls.integrations._cglue.RequestState",
    .tp_doc = "RequestState(tracer, start, forwarded, start_response): a Flask request's "
              "tracing state; calling it as start_response notes the status and headers.",
    .tp_basicsize = sizeof(RequestState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = state_new,
    .tp_traverse = (traverseproc)state_traverse,
    .tp_clear = (inquiry)state_clear,
    .tp_dealloc = (destructor)state_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(RequestState, vectorcall),
    .tp_members = state_members,
    .tp_getset = state_getset,
};

/* new_state(tracer, start, forwarded, start_response): RequestState without argument
 * parsing (one per request). */
static PyObject *new_state(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "new_state() takes 4 arguments");
        return NULL;
    }
    double start = PyFloat_AsDouble(args[1]);
    if (start == -1.0 && PyErr_Occurred())
        return NULL;
    return state_make(args[0], start, args[2], args[3]);
}

/* -------------------------------------------------------------------------------------
 * Headers. */

/* capture(key_pairs, environ): {name: environ[key]} for the ``key, name`` pairs of
 * ``key_pairs`` (a flat tuple: key, name, key, name ...; a tuple walks in a fifth of a
 * dict's time) present in ``environ`` (an exact dict), or None when none is. */
static PyObject *capture(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) % 2 != 0 ||
        !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "capture(key_pairs: tuple of key, name ..., environ: dict)");
        return NULL;
    }
    PyObject *pairs = args[0], *environ = args[1], *found = NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pairs); i += 2) {
        PyObject *key = PyTuple_GET_ITEM(pairs, i), *name = PyTuple_GET_ITEM(pairs, i + 1);
        PyObject *value = PyDict_GetItemWithError(environ, key);
        if (value == NULL) {
            if (PyErr_Occurred())
                goto error;
            continue;
        }
        if (found == NULL && (found = PyDict_New()) == NULL)
            goto error;
        if (PyDict_SetItem(found, name, value) < 0)
            goto error;
    }
    if (found == NULL)
        Py_RETURN_NONE;
    return found;
error:
    Py_XDECREF(found);
    return NULL;
}

static int store_set(PyObject *store, PyObject *name, PyObject *value) {
    PyObject *pair = PyTuple_Pack(2, name, value);
    if (pair == NULL)
        return -1;
    /* PyObject_SetItem, not PyDict_SetItem: the store is an OrderedDict, whose own
     * bookkeeping must see every insertion. */
    int rc = PyObject_SetItem(store, name, pair);
    Py_DECREF(pair);
    return rc;
}

/* Whether one of ``names`` (a tuple) is a key of ``mapping`` (a dict or subclass whose
 * lookups are dict's). */
static int any_key_in(PyObject *names, PyObject *mapping) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        int has = PyDict_Contains(mapping, PyTuple_GET_ITEM(names, i));
        if (has != 0)
            return has;
    }
    return 0;
}

/* apply_store(store, injected, forwarded, trace_names): forwarding.apply's first part for
 * requests' CaseInsensitiveDict ``_store`` (an OrderedDict of ``lower name -> (name,
 * value)``): forwarded headers the application and the tracer did not set, then the
 * injected ones. True when trace-context headers the tracer did not write may be stale
 * (the caller rewrites them), else False. ``injected`` and ``forwarded`` (or None) are
 * exact dicts; ``trace_names`` a tuple of the trace-context header names. */
static PyObject *apply_store(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyDict_Check(args[0]) || !PyDict_CheckExact(args[1]) ||
        (args[2] != Py_None && !PyDict_CheckExact(args[2])) || !PyTuple_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_store(store: OrderedDict, injected: dict, forwarded: dict | "
                        "None, trace_names: tuple)");
        return NULL;
    }
    PyObject *store = args[0], *injected = args[1], *forwarded = args[2], *names = args[3];
    PyObject *name, *value;
    Py_ssize_t pos = 0;
    if (forwarded != Py_None) {
        while (PyDict_Next(forwarded, &pos, &name, &value)) {
            int has = PyDict_Contains(injected, name);
            if (has == 0)
                has = PyDict_Contains(store, name);
            if (has < 0 || (has == 0 && store_set(store, name, value) < 0))
                return NULL;
        }
    }
    if (PyDict_GET_SIZE(injected) == 0)
        Py_RETURN_FALSE;
    int maybe_stale = any_key_in(names, store);
    if (maybe_stale < 0)
        return NULL;
    pos = 0;
    while (PyDict_Next(injected, &pos, &name, &value)) {
        if (store_set(store, name, value) < 0)
            return NULL;
    }
    if (!maybe_stale)
        Py_RETURN_FALSE;
    int speaks = any_key_in(names, injected);
    if (speaks < 0)
        return NULL;
    return PyBool_FromLong(speaks);
}

static PyMethodDef methods[] = {
    {"new_state", (PyCFunction)(void (*)(void))new_state, METH_FASTCALL,
     "new_state(tracer, start, forwarded, start_response) -> RequestState"},
    {"capture", (PyCFunction)(void (*)(void))capture, METH_FASTCALL,
     "capture(key_pairs, environ) -> dict | None"},
    {"apply_store", (PyCFunction)(void (*)(void))apply_store, METH_FASTCALL,
     "apply_store(store, injected, forwarded, trace_names) -> bool (stale copies to fix)"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "opentracing_sls.integrations._cglue",
    .m_doc = "C twins of the integrations' per-request glue (see the Python modules).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__cglue(void) {
    PyTypeObject *types[] = {&HandlerType, &GetterType, &RequestStateType};
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        const char *dot = strrchr(types[i]->tp_name, '.');
        if (PyType_Ready(types[i]) < 0 ||
            PyModule_AddObject(module, dot + 1, Py_NewRef(types[i])) < 0) {
            Py_DECREF(module);
            return NULL;
        }
    }
    return module;
}
