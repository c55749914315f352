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

/* The cores live in csrc/, included here in dependency order: one translation unit, so
 * every function and type stays static to this module. */
#include "csrc/cspan_common.h"
#include "csrc/cspan_context.h"
#include "csrc/cspan_span.h"
#include "csrc/cspan_scope.h"
#include "csrc/cspan_tracer.h"

/* ------------------------------------------------------------------------ module */

static PyObject *configure(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs) {
    static char *names[] = {"record_type", "empty_baggage", "on_error", "time", "report_api",
                            NULL};
    PyObject *record, *empty, *error, *clock, *api = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!OO|O:configure", names, &PyType_Type,
                                     &record, &PyDict_Type, &empty, &error, &clock, &api))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)record, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "record_type must be a tuple subclass");
        return NULL;
    }
    const ReportAPI *found = report_api; /* report_api omitted: unchanged */
    if (api == Py_None) {
        found = NULL;
    } else if (api != NULL && (found = capsule_api(api, REPORT_API_CAPSULE, REPORT_API_VERSION,
                                                   "report_api")) == NULL) {
        return NULL;
    }
    /* the capsule lives as long as the _speedups module, which is never unloaded */
    report_api = found;
    Py_XSETREF(record_type, Py_NewRef(record));
    Py_XSETREF(empty_baggage, Py_NewRef(empty));
    Py_XSETREF(on_error, Py_NewRef(error));
    Py_XSETREF(time_time, Py_NewRef(clock));
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL)
        return NULL;
    /* the builtin time.time itself (whatever the module attribute holds now) */
    clock_is_time_time = PyCFunction_Check(clock) && PyCFunction_GET_SELF(clock) == time_module &&
                         strcmp(((PyCFunctionObject *)clock)->m_ml->ml_name, "time") == 0;
    Py_DECREF(time_module);
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
     "The SpanContext and Span classes TracerCore starts spans with."},
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
        intern(&s_gen128, "generate_128bit_trace_id") < 0 ||
        intern(&s_started_sampled, "_started_sampled") < 0 ||
        intern(&s_started_unsampled, "_started_unsampled") < 0 ||
        intern(&s_traces_sampled, "_traces_sampled") < 0 ||
        intern(&s_traces_unsampled, "_traces_unsampled") < 0 ||
        intern(&s_context, "context") < 0 || intern(&s_span, "span") < 0 ||
        intern(&s_empty, "") < 0)
        return NULL;
    if (ids_init() < 0 || (s_one = PyLong_FromLong(1)) == NULL)
        return NULL;
    if ((s_million = PyLong_FromLong(1000000)) == NULL || (s_zero = PyLong_FromLong(0)) == NULL)
        return NULL;
    PyTypeObject *types[] = {&ContextCore_Type, &SpanCore_Type, &ScopeCore_Type,
                             &VarManagerCore_Type, &TracerCore_Type, &Tally_Type};
    const char *type_names[] = {"ContextCore", "SpanCore", "ScopeCore", "VarManagerCore",
                                "TracerCore", "Tally"};
    enum { N_TYPES = sizeof(types) / sizeof(types[0]) };
    for (int i = 0; i < N_TYPES; i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    for (int i = 0; i < N_TYPES; i++) {
        Py_INCREF(types[i]);
        if (PyModule_AddObject(module, type_names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(types[i]);
            Py_DECREF(module);
            return NULL;
        }
    }
    PyObject *api = PyCapsule_New((void *)&context_api, CONTEXT_API_CAPSULE, NULL);
    if (api == NULL || PyModule_AddObject(module, "_context_api", api) < 0) {
        Py_XDECREF(api);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

