/* The C call from _cspan's Span.finish() into _speedups' ReportSpan, shared by both modules.
 *
 * Why: the span's fields go to the encoder as they are, with no SpanRecord built and freed
 * per span. _speedups exports a ReportAPI in the capsule `_report_api`; _accel.py hands it
 * to _cspan.configure(). Without it (an extension not built, pure-Python mode) spans take
 * the record path, which behaves the same. */
#ifndef OPENTRACING_SLS_REPORT_API_H
#define OPENTRACING_SLS_REPORT_API_H

#include <Python.h>
#include <stdint.h>

#define REPORT_API_CAPSULE "opentracing_sls._speedups._report_api"
#define REPORT_API_VERSION 1

/* A finished span's fields, as the SpanRecord would hold them. Every object is borrowed. */
typedef struct {
    PyObject *trace_id, *span_id, *parent_id, *operation_name, *flags;
    int64_t start_us, duration; /* the record's start_time and duration */
    PyObject *tags, *logs;
    PyObject *references; /* a non-empty list of (type, trace_id, span_id), or NULL */
} SpanParts;

/* report() return values besides -1 (an exception is set, nothing was queued). */
#define REPORT_DONE 0
#define REPORT_NEEDS_RECORD 1 /* nothing happened: call the ReportSpan with a record */

typedef struct {
    int version;
    PyTypeObject *report_type; /* ReportSpan: report() takes only instances of it */
    int (*report)(PyObject *report_span, const SpanParts *parts);
} ReportAPI;

#endif
