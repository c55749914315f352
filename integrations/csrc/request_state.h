/* The layout of _cglue's RequestState, shared with _cflask, which reads and writes the
 * fields of the states _cglue.new_state makes (it checks their type first). */
#ifndef OPENTRACING_SLS_REQUEST_STATE_H
#define OPENTRACING_SLS_REQUEST_STATE_H

#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *tracer;
    double start;
    PyObject *span;
    PyObject *scope;
    PyObject *status;
    PyObject *headers; /* NULL reads as a new empty list, as the Python twin's default */
    PyObject *forwarded;
    PyObject *start_response;
    char streamed;
    char error_logged;
    char finished;
    vectorcallfunc vectorcall;
} RequestState;

#endif
