/* Part of _cspan.c (one translation unit, split for reading; every symbol stays static):
 * Tally, the counter behind metrics.Counter when _cspan is built.
 *
 * Why: an itertools.count makes an int object on every step past 256 and the caller drops
 * it (about 200 instructions per span start or finish); a Tally adds one to a C integer.
 * Steps are atomic under the GIL, as itertools.count's are. */
#ifndef CSPAN_TALLY_H
#define CSPAN_TALLY_H

typedef struct {
    PyObject_HEAD
    unsigned long long n;
    vectorcallfunc vectorcall;
} Tally;

static PyTypeObject Tally_Type;

static PyObject *tally_step(PyObject *self, PyObject *const *Py_UNUSED(args), size_t nargsf,
                            PyObject *kwnames) {
    if (PyVectorcall_NARGS(nargsf) != 0 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "Tally() takes no arguments");
        return NULL;
    }
    ((Tally *)self)->n++;
    Py_RETURN_NONE;
}

static PyObject *tally_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Tally takes no arguments");
        return NULL;
    }
    Tally *self = (Tally *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->vectorcall = tally_step;
    return (PyObject *)self;
}

static PyObject *tally_value(Tally *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->n);
}

static PyObject *tally_repr(Tally *self) {
    return PyUnicode_FromFormat("Tally(%llu)", self->n);
}

static PyGetSetDef tally_getset[] = {
    {"value", (getter)tally_value, NULL, "How many times it was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Tally_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "opentracing_sls._cspan.Tally",
    .tp_basicsize = sizeof(Tally),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Tally(): calling it adds one to `value` (a counter for hot paths).",
    .tp_new = tally_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Tally, vectorcall),
    .tp_repr = (reprfunc)tally_repr,
    .tp_getset = tally_getset,
};

#endif
