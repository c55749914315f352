/* What the C modules need across the Python versions we support (3.9+). */
#ifndef OPENTRACING_SLS_COMPAT_H
#define OPENTRACING_SLS_COMPAT_H

#include <Python.h>

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *compat_new_ref(PyObject *o) {
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) compat_new_ref((PyObject *)(o))
static inline PyObject *compat_xnew_ref(PyObject *o) {
    Py_XINCREF(o);
    return o;
}
#define Py_XNewRef(o) compat_xnew_ref((PyObject *)(o))
#endif

/* The pending exception, normalised and with its traceback, as a new reference; the error
 * indicator is cleared. */
static inline PyObject *take_exception(void) {
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Makes ``exc`` (a reference from take_exception, consumed) the pending exception again,
 * with its traceback unchanged. */
static inline void restore_exception(PyObject *exc) {
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (exc != NULL)
        PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

#endif
