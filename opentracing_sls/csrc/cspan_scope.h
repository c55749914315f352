/* Part of _cspan.c (one translation unit, split for reading; every symbol stays static):
 * ScopeCore and VarManagerCore: activation over a ContextVar, in-order closing. */
#ifndef CSPAN_SCOPE_H
#define CSPAN_SCOPE_H

#include "cspan_span.h"

/* ---------------------------------------------------------------------- ScopeCore */

typedef struct {
    PyObject_HEAD
    PyObject *manager, *span, *previous;
    PyObject *var;           /* the manager's ContextVar, or NULL ... */
    PyObject *get, *set;     /* ... then these callables hold the active scope */
    char finish_on_close, closed;
} ScopeCore;

static PyTypeObject ScopeCore_Type;
static PyTypeObject *scope_seen = NULL;
#define IS_SCOPE(o) is_core((o), &ScopeCore_Type, &scope_seen)

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

static TypeAttrCache finish_cache = {C_FUNC(span_finish)};

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
    if (!self->finish_on_close)
        Py_RETURN_NONE;
    PyObject *span = Py_NewRef(self->span);
    if (IS_SPAN(span) && !((SpanCore *)span)->finish_set &&
        type_attr_is(&finish_cache, Py_TYPE(span), s_finish))
        r = finish((SpanCore *)span, Py_None);
    else
        r = PyObject_CallMethodNoArgs(span, s_finish);
    Py_DECREF(span);
    return r;
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
    char activate_set; /* `activate` assigned on the instance: the tracer must look it up */
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

static int manager_setattro(PyObject *self, PyObject *name, PyObject *value) {
    return note_setattr(self, name, value, s_activate, &((VarManagerCore *)self)->activate_set);
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
    .tp_setattro = manager_setattro,
};

#endif
