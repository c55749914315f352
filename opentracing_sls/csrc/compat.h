/* What the C modules need across the Python versions we support (3.9+). */
#ifndef OPENTRACING_SLS_COMPAT_H
#define OPENTRACING_SLS_COMPAT_H

#include <Python.h>
#include <stdint.h>
#include <structmember.h> /* T_OBJECT_EX */

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

/* The halves of ``v`` when it is an exact int in [0, 2**(8 * size)) (size 8 or 16): 1 with
 * *hi and *lo set, 0 for anything else (negative, wider, not an exact int; no error), -1 on
 * another error. One call for a 128-bit id, where shifts and masks make an int per step and
 * PyLong_AsUnsignedLongLong raises (and makes an exception object) for it. The byte-array
 * function before 3.13 is private, but its signature held from 3.x to 3.12; 3.13 made the
 * same public. */
static inline uint64_t compat_load_le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

static inline int unsigned_id_halves(PyObject *v, size_t size, uint64_t *hi, uint64_t *lo) {
    if (v == NULL || !PyLong_CheckExact(v))
        return 0;
    unsigned char bytes[16];
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t need = PyLong_AsNativeBytes(v, bytes, (Py_ssize_t)size,
                                           Py_ASNATIVEBYTES_LITTLE_ENDIAN |
                                               Py_ASNATIVEBYTES_UNSIGNED_BUFFER |
                                               Py_ASNATIVEBYTES_REJECT_NEGATIVE);
    if (need < 0) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError))
            return -1;
        PyErr_Clear(); /* negative */
        return 0;
    }
    if ((size_t)need > size)
        return 0;
#else
    if (_PyLong_AsByteArray((PyLongObject *)v, bytes, size, 1, 0) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear(); /* negative or too wide */
        return 0;
    }
#endif
    *lo = compat_load_le64(bytes);
    *hi = size > 8 ? compat_load_le64(bytes + 8) : 0;
    return 1;
}

/* The struct a module exports in the capsule `capsule` named `name` for another (the
 * ReportAPI, the ContextAPI), checked to begin with `int version` equal to `version`; NULL
 * with an error set when it is not such a capsule. `what` names the argument in the error. */
static inline const void *capsule_api(PyObject *capsule, const char *name, int version,
                                      const char *what) {
    const int *found = (const int *)PyCapsule_GetPointer(capsule, name);
    if (found == NULL)
        return NULL;
    if (*found != version) {
        PyErr_Format(PyExc_ValueError, "%s version %d, expected %d", what, *found, version);
        return NULL;
    }
    return found;
}

/* The offset of the object slot `name` of `type`'s instances, from its member descriptor:
 * the attribute is that slot and nothing else (no property or class attribute in front).
 * 0, or -1 with a TypeError (or the lookup's error) set. */
static inline int object_slot_offset(PyTypeObject *type, const char *name,
                                     Py_ssize_t *offset) {
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL)
        return -1;
    int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
             ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX &&
             PyType_IsSubtype(type, PyDescr_TYPE(descr));
    if (ok)
        *offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    else
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", type->tp_name, name);
    Py_DECREF(descr);
    return ok ? 0 : -1;
}

#endif
