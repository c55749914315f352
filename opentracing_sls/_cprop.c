/*
 * Optional C fast path of text propagation (opentracing_sls.propagation.composite):
 *
 * - Extractor.extract(carrier): CompositeCodec.extract for a WSGI environ that carries only
 *   B3 headers (the Istio request), or no propagation header at all (a new trace);
 * - Injector.inject(span_context, carrier): CompositeCodec.inject of a context with ids into
 *   a fresh dict, with the B3, W3C and Jaeger codecs.
 *
 * Why C: both run on every traced request, and in Python each costs dozens of dict reads,
 * string operations and calls (tens of thousands of instructions), for input that is almost
 * always one of a few shapes. These functions handle those shapes and return NOT_HANDLED
 * for anything else (a value that is not an ASCII str, a header of another codec, baggage,
 * a carrier that is not a dict, an id out of range ...), before touching the carrier; the
 * Python code then runs as if this module did not exist. The rules are the Python codecs'
 * (b3.py extract_dict, carrier.py read_planned, the codecs' write_ids) and must stay so:
 * tests/propagation/test_cprop.py compares both on random input.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* T_OBJECT_EX */
#include <stdint.h>
#include <string.h>

#include "csrc/compat.h"
#include "csrc/context_api.h"

#define SAMPLED_FLAG 1L
#define DEBUG_FLAG 2L

static PyObject *not_handled = NULL; /* NOT_HANDLED: the Python code must run */

/* Set by configure(). */
static PyObject *context_type = NULL; /* span_context.SpanContext */
static const ContextAPI *context_api = NULL; /* _cspan's constructor, when loaded */
static PyTypeObject *codec_types[3];  /* B3Codec, W3CCodec, JaegerCodec (exactly) */
enum { B3, W3C, JAEGER };

/* Offsets of the slots read here, from the classes' own member descriptors: the layout of
 * the C core or of the pure-Python core (__slots__), whichever SpanContext was built on. */
enum { F_TRACE, F_SPAN, F_PARENT, F_FLAGS, F_BAGGAGE, F_DEFERRED, F_STATE, N_FIELDS };
static const char *const field_names[N_FIELDS] = {
    "trace_id", "span_id", "parent_id", "flags", "_baggage", "sampling_deferred", "trace_state"};
static Py_ssize_t field_offsets[N_FIELDS];
static Py_ssize_t b3_multi_offset, b3_single_offset;
static int configured = 0;

#define SLOT(o, offset) (*(PyObject **)((char *)(o) + (offset)))

/* ----------------------------------------------------------------- header names */

/* The headers the codecs read, by index; WSGI environ keys as carrier.py spells them. */
enum {
    H_B3, H_TRACE, H_SPAN, H_PARENT, H_SAMPLED, H_FLAGS, /* B3 first: b3_extract() reads these */
    H_TRACEPARENT, H_TRACESTATE, H_UBER, H_DEBUG_ID, H_BAGGAGE, N_HEADERS
};
static const char *const header_names[N_HEADERS] = {
    "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
    "traceparent", "tracestate", "uber-trace-id", "jaeger-debug-id", "jaeger-baggage"};
static const char *const environ_keys[N_HEADERS] = {
    "HTTP_B3", "HTTP_X_B3_TRACEID", "HTTP_X_B3_SPANID", "HTTP_X_B3_PARENTSPANID",
    "HTTP_X_B3_SAMPLED", "HTTP_X_B3_FLAGS", "HTTP_TRACEPARENT", "HTTP_TRACESTATE",
    "HTTP_UBER_TRACE_ID", "HTTP_JAEGER_DEBUG_ID", "HTTP_JAEGER_BAGGAGE"};
/* By the length of an environ key: the headers whose key has it (at most two). */
#define MAX_KEY_LEN 22
static signed char by_length[MAX_KEY_LEN + 1][2];
#define BAGGAGE_PREFIX "uberctx-"
#define ENVIRON_BAGGAGE_PREFIX "HTTP_UBERCTX_"
#define ENVIRON_BAGGAGE_PREFIX_LEN 13

/* Header keys of the dicts inject() writes, interned once. */
enum {
    K_TRACE, K_SPAN, K_PARENT, K_SAMPLED, K_FLAGS, K_B3, K_TRACEPARENT, K_TRACESTATE, K_UBER,
    N_KEYS
};
static const char *const key_texts[N_KEYS] = {
    "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3",
    "traceparent", "tracestate", "uber-trace-id"};
static PyObject *keys[N_KEYS];
static PyObject *environ_key_objs[N_HEADERS], *s_wsgi_version; /* interned once */
static PyObject *s_one, *s_zero; /* "1", "0" */

/* ----------------------------------------------------------------- text and hex */

typedef struct {
    const char *s;
    Py_ssize_t n;
} Text;

static signed char hex_values[256];
static const char hex_digits[] = "0123456789abcdef";

/* The whitespace str.strip() removes from ASCII text. */
static inline int is_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* An exact str made of ASCII only: the one kind of value handled here (str.strip() and
 * str.lower() of other text follow Unicode rules, bytes and lists need decoding). */
static inline int is_ascii_str(PyObject *o) {
    if (!PyUnicode_CheckExact(o))
        return 0;
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(o))
        return 0;
#endif
    return PyUnicode_IS_ASCII(o);
}

/* carrier.header_token() of an ASCII str: up to the first comma, stripped. */
static Text header_token(PyObject *value) {
    Text t = {(const char *)PyUnicode_1BYTE_DATA(value), PyUnicode_GET_LENGTH(value)};
    const char *comma = memchr(t.s, ',', (size_t)t.n);
    if (comma != NULL)
        t.n = comma - t.s;
    while (t.n > 0 && is_space((unsigned char)t.s[0])) {
        t.s++;
        t.n--;
    }
    while (t.n > 0 && is_space((unsigned char)t.s[t.n - 1]))
        t.n--;
    return t;
}

/* Hex digits of either case, at most 16, into *out; 0 when one is not a hex digit. */
static int parse_hex(const char *s, Py_ssize_t n, uint64_t *out) {
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int d = hex_values[(unsigned char)s[i]];
        if (d < 0)
            return 0;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return 1;
}

/* A trace id of 16 or 32 hex digits. */
static int parse_trace(const char *s, Py_ssize_t n, uint64_t *hi, uint64_t *lo) {
    if (n == 16) {
        *hi = 0;
        return parse_hex(s, 16, lo);
    }
    return n == 32 && parse_hex(s, 16, hi) && parse_hex(s + 16, 16, lo);
}

/* Two lowercase hex digits per byte value. */
static char hex_pairs[256][2];

static inline void put_hex16(char *out, uint64_t v) {
    for (int i = 14; i >= 0; i -= 2, v >>= 8)
        memcpy(out + i, hex_pairs[v & 0xFF], 2);
}

/* "%x" of the 16 digits at hex16 (its leading zeros skipped). Returns the length. */
static inline Py_ssize_t put_hex_min(char *out, const char *hex16) {
    Py_ssize_t skip = 0;
    while (skip < 15 && hex16[skip] == '0')
        skip++;
    memcpy(out, hex16 + skip, (size_t)(16 - skip));
    return 16 - skip;
}

/* An ASCII str of the n chars at s. New reference. */
static PyObject *ascii_str(const char *s, Py_ssize_t n) {
    PyObject *str = PyUnicode_New(n, 127);
    if (str != NULL)
        memcpy(PyUnicode_1BYTE_DATA(str), s, (size_t)n);
    return str;
}

/* ------------------------------------------------------------------- extraction */

typedef struct {
    uint64_t trace_hi, trace_lo, span, parent;
    long flags;
    int deferred;
} Ids;

/* Ids and ints meet as little-endian bytes: one call each way, where the public API's
 * shifts and masks cost an int object per step (the 128-bit trace ids of a mesh are the
 * common case). The byte-array functions before 3.13 are private, but their signature held
 * from 3.x to 3.12; 3.13 made the same public. */
static inline void store_le64(unsigned char *b, uint64_t v) {
    for (int i = 0; i < 8; i++, v >>= 8)
        b[i] = (unsigned char)v;
}

/* The int hi * 2**64 + lo. New reference. */
static PyObject *trace_int(uint64_t hi, uint64_t lo) {
    if (hi == 0)
        return PyLong_FromUnsignedLongLong(lo);
    unsigned char bytes[16];
    store_le64(bytes, lo);
    store_le64(bytes + 8, hi);
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromUnsignedNativeBytes(bytes, 16, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
#else
    return _PyLong_FromByteArray(bytes, 16, 1, 0);
#endif
}

/* SpanContext(trace_id, span_id, parent_id, flags), or with sampling_deferred=True (after
 * baggage and debug id None, by position: cheaper than a keyword), as b3.py calls it.
 * New reference. */
static PyObject *make_context(const Ids *ids) {
    PyObject *args[7] = {NULL};
    PyObject *context = NULL;
    if ((args[0] = trace_int(ids->trace_hi, ids->trace_lo)) == NULL ||
        (args[1] = PyLong_FromUnsignedLongLong(ids->span)) == NULL ||
        (args[2] = PyLong_FromUnsignedLongLong(ids->parent)) == NULL ||
        (args[3] = PyLong_FromLong(ids->flags)) == NULL)
        goto done;
    if (context_api != NULL) {
        context = context_api->make((PyTypeObject *)context_type, args[0], args[1], args[2],
                                    args[3], ids->deferred);
        goto done;
    }
    args[4] = args[5] = Py_None;
    args[6] = ids->deferred ? Py_True : Py_False;
    context = PyObject_Vectorcall(context_type, args, ids->deferred ? 7 : 4, NULL);
done:
    for (int i = 0; i < 4; i++)
        Py_XDECREF(args[i]);
    return context;
}

static const Ids no_ids = {0, 0, 0, 0, 0, 0};

/* The flags of the single header's sampling state (0, 1, d, D): 1, or 0 for another. */
static int state_flags(char state, long *flags) {
    switch (state) {
    case '0':
        *flags = 0;
        return 1;
    case '1':
        *flags = SAMPLED_FLAG;
        return 1;
    case 'd':
    case 'D':
        *flags = SAMPLED_FLAG | DEBUG_FLAG;
        return 1;
    }
    return 0;
}

/* b3._parse_single(): 1 with *ids set, 0 when the value does not parse. */
static int parse_single(Text t, Ids *ids) {
    *ids = no_ids;
    if (t.n == 1) /* decision only: b3: 0 / 1 / d */
        return state_flags(t.s[0], &ids->flags);
    /* {16 or 32 hex}-{16 hex}[-{state}[-{16 hex}]] */
    Py_ssize_t pos;
    if (t.n > 16 && t.s[16] == '-')
        pos = 16;
    else if (t.n > 32 && t.s[32] == '-')
        pos = 32;
    else
        return 0;
    if (!parse_trace(t.s, pos, &ids->trace_hi, &ids->trace_lo) || t.n < pos + 17 ||
        !parse_hex(t.s + pos + 1, 16, &ids->span))
        return 0;
    pos += 17;
    if (pos == t.n) {
        ids->deferred = 1;
    } else {
        if (t.n < pos + 2 || t.s[pos] != '-' || !state_flags(t.s[pos + 1], &ids->flags))
            return 0;
        pos += 2;
        if (pos != t.n &&
            (t.n - pos != 17 || t.s[pos] != '-' || !parse_hex(t.s + pos + 1, 16, &ids->parent)))
            return 0;
    }
    return (ids->trace_hi | ids->trace_lo) != 0 && ids->span != 0;
}

/* A B3 id or flag value as extract_dict reads it, when it does. */
typedef struct {
    int present;
    Text text;
} Header;

static inline char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/* X-B3-Sampled: 1/0 or true/false, in any case (str.lower() of ASCII text). */
static int sampled_flags(Text t, long *flags) {
    static const char *const values[4] = {"1", "true", "0", "false"};
    for (int i = 0; i < 4; i++) {
        Py_ssize_t n = (Py_ssize_t)strlen(values[i]);
        if (t.n != n)
            continue;
        Py_ssize_t j = 0;
        while (j < n && ascii_lower(t.s[j]) == values[i][j])
            j++;
        if (j == n) {
            *flags = i < 2 ? SAMPLED_FLAG : 0;
            return 1;
        }
    }
    return 0;
}

/* b3.extract_dict() of the B3 values found (NULL: absent). New reference: a context,
 * None, or NOT_HANDLED for a value that is not an ASCII str. */
static PyObject *b3_extract(PyObject *const *values) {
    Header h[H_FLAGS + 1];
    for (int i = 0; i <= H_FLAGS; i++) {
        PyObject *value = values[i];
        h[i].present = value != NULL && value != Py_None;
        if (!h[i].present)
            continue;
        if (!is_ascii_str(value))
            return Py_NewRef(not_handled);
        h[i].text = header_token(value);
    }
    Ids ids;
    if (h[H_B3].present && parse_single(h[H_B3].text, &ids))
        return make_context(&ids);
    ids = no_ids;
    int decided = 0;
    if (h[H_SAMPLED].present) {
        if (!sampled_flags(h[H_SAMPLED].text, &ids.flags))
            Py_RETURN_NONE; /* empty or garbage: malformed, the spec's "restart the trace" */
        decided = 1;
    }
    if (h[H_FLAGS].present && h[H_FLAGS].text.n == 1 && h[H_FLAGS].text.s[0] == '1') {
        ids.flags = SAMPLED_FLAG | DEBUG_FLAG;
        decided = 1;
    }
    if (!h[H_TRACE].present) {
        if (!decided)
            Py_RETURN_NONE;
        return make_context(&ids);
    }
    Text trace = h[H_TRACE].text, span = h[H_SPAN].text;
    if (!h[H_SPAN].present || span.n != 16 ||
        !parse_trace(trace.s, trace.n, &ids.trace_hi, &ids.trace_lo) ||
        !parse_hex(span.s, 16, &ids.span) || (ids.trace_hi | ids.trace_lo) == 0 || ids.span == 0)
        Py_RETURN_NONE;
    if (h[H_PARENT].present) {
        Text parent = h[H_PARENT].text;
        if (parent.n != 16 || !parse_hex(parent.s, 16, &ids.parent))
            Py_RETURN_NONE;
    }
    ids.deferred = !decided;
    return make_context(&ids);
}

/* What an Extractor does with an environ key its composite's plan names. */
enum { IGNORE = 0, READ, DECLINE };

typedef struct {
    PyObject_HEAD
    unsigned char roles[N_HEADERS];
    int scan_baggage; /* the plan reads uberctx-* */
} Extractor;

/* The index of a known header name, or -1. */
static int header_index(PyObject *name) {
    for (int i = 0; i < N_HEADERS; i++)
        if (PyUnicode_CompareWithASCIIString(name, header_names[i]) == 0)
            return i;
    return -1;
}

/* The roles of the names in `names` (an iterable of str). */
static int set_roles(Extractor *self, PyObject *names, unsigned char role) {
    PyObject *iter = PyObject_GetIter(names);
    if (iter == NULL)
        return -1;
    PyObject *name;
    while ((name = PyIter_Next(iter)) != NULL) {
        int i = PyUnicode_Check(name) ? header_index(name) : -1;
        if (i < 0) {
            PyErr_Format(PyExc_ValueError, "no fast path reads header %R", name);
            Py_DECREF(name);
            Py_DECREF(iter);
            return -1;
        }
        Py_DECREF(name);
        if (role == READ && i > H_FLAGS) {
            PyErr_SetString(PyExc_ValueError, "only B3 headers are read in C");
            Py_DECREF(iter);
            return -1;
        }
        if (self->roles[i] == IGNORE)
            self->roles[i] = role;
    }
    Py_DECREF(iter);
    return PyErr_Occurred() ? -1 : 0;
}

/* Extractor(sole_names, plan_names, plan_prefixes): a CompositeCodec's plan. `sole_names`:
 * the B3 headers that no other codec reads (the composite's `_sole` names; empty when its
 * first codec is not exactly B3Codec). */
static PyObject *extractor_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"sole_names", "plan_names", "plan_prefixes", NULL};
    PyObject *sole, *plan, *prefixes;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:Extractor", names, &sole, &plan,
                                     &prefixes))
        return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_cprop.configure() was not called");
        return NULL;
    }
    Extractor *self = (Extractor *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    PyObject *seq = NULL;
    if (set_roles(self, sole, READ) < 0 || set_roles(self, plan, DECLINE) < 0 ||
        (seq = PySequence_Fast(prefixes, "plan_prefixes must be a sequence")) == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *prefix = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(prefix) ||
            PyUnicode_CompareWithASCIIString(prefix, BAGGAGE_PREFIX) != 0) {
            PyErr_Format(PyExc_ValueError, "no fast path reads prefix %R", prefix);
            goto fail;
        }
        self->scan_baggage = 1;
    }
    Py_DECREF(seq);
    return (PyObject *)self;
fail:
    Py_XDECREF(seq);
    Py_DECREF(self);
    return NULL;
}

/* extract(carrier): the context CompositeCodec.extract(carrier) returns, or NOT_HANDLED.
 *
 * One pass over the environ's keys does what read_planned() does with a set intersection
 * and a join: finds the planned headers and any uberctx- key. A key that merely contains
 * "\0HTTP_UBERCTX_" makes read_planned() scan for baggage too, and find none: the same
 * answer as here. */
static PyObject *extract_by_lookup(Extractor *self, PyObject *carrier);

static PyObject *extractor_extract(Extractor *self, PyObject *carrier) {
    if (!PyDict_CheckExact(carrier))
        return Py_NewRef(not_handled);
    if (!self->scan_baggage)
        return extract_by_lookup(self, carrier);
    PyObject *values[N_HEADERS] = {NULL};
    int is_environ = 0, found = 0;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(carrier, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key))
            return Py_NewRef(not_handled); /* PEP 3333 forbids it: the Python code copes */
#if PY_VERSION_HEX < 0x030C0000
        if (!PyUnicode_IS_READY(key))
            return Py_NewRef(not_handled);
#endif
        if (PyUnicode_KIND(key) != PyUnicode_1BYTE_KIND)
            return Py_NewRef(not_handled); /* may start with the baggage prefix */
        Py_ssize_t n = PyUnicode_GET_LENGTH(key);
        const char *s = (const char *)PyUnicode_1BYTE_DATA(key);
        if (n < 7 || memcmp(s, "HTTP_", 5) != 0) {
            /* PEP 3333 requires "wsgi.version" in every environ; no header dict has it. */
            if (n == 12 && memcmp(s, "wsgi.version", 12) == 0)
                is_environ = 1;
            continue;
        }
        int i = -1;
        if (n <= MAX_KEY_LEN) {
            i = by_length[n][0];
            if (i >= 0 && memcmp(s + 5, environ_keys[i] + 5, (size_t)n - 5) != 0) {
                i = by_length[n][1];
                if (i >= 0 && memcmp(s + 5, environ_keys[i] + 5, (size_t)n - 5) != 0)
                    i = -1;
            }
        }
        if (i >= 0) {
            if (self->roles[i] == DECLINE)
                return Py_NewRef(not_handled);
            if (self->roles[i] == READ) {
                values[i] = value;
                found = 1;
            }
        } else if (self->scan_baggage && n >= ENVIRON_BAGGAGE_PREFIX_LEN &&
                   memcmp(s, ENVIRON_BAGGAGE_PREFIX, ENVIRON_BAGGAGE_PREFIX_LEN) == 0) {
            return Py_NewRef(not_handled);
        }
    }
    if (!is_environ)
        return Py_NewRef(not_handled);
    if (!found)
        Py_RETURN_NONE; /* no propagation header at all: the common case of a new trace */
    return b3_extract(values);
}

/* extractor_extract() when no uberctx- key is wanted: a lookup per header the plan names
 * (about ten) costs less than a pass over the forty-odd keys of a server's environ. The
 * answers are the pass's: a key that is not an exact str, or not Latin-1, matters to the
 * pass only as a possible baggage key, and the Python code's set intersection does not
 * match such a key either. */
static PyObject *extract_by_lookup(Extractor *self, PyObject *carrier) {
    PyObject *values[N_HEADERS] = {NULL};
    PyObject *version = PyDict_GetItemWithError(carrier, s_wsgi_version);
    if (version == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(not_handled);
    int found = 0;
    for (int i = 0; i < N_HEADERS; i++) {
        if (self->roles[i] == IGNORE)
            continue;
        PyObject *value = PyDict_GetItemWithError(carrier, environ_key_objs[i]);
        if (value == NULL) {
            if (PyErr_Occurred())
                return NULL;
            continue;
        }
        if (self->roles[i] == DECLINE)
            return Py_NewRef(not_handled);
        values[i] = value;
        found = 1;
    }
    if (!found)
        Py_RETURN_NONE;
    return b3_extract(values);
}

static PyMethodDef extractor_methods[] = {
    {"extract", (PyCFunction)extractor_extract, METH_O,
     "extract(carrier) -> the context CompositeCodec.extract gives, None, or NOT_HANDLED."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Extractor_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "opentracing_sls._cprop.Extractor",
    .tp_basicsize = sizeof(Extractor),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Extractor(sole_names, plan_names, plan_prefixes): CompositeCodec.extract "
              "from a WSGI environ with B3 headers or none.",
    .tp_new = extractor_new,
    .tp_methods = extractor_methods,
};

/* -------------------------------------------------------------------- injection */

typedef struct {
    PyObject_HEAD
    PyObject *codecs; /* tuple, distinct types among codec_types */
    int kinds[3];
} Injector;

/* Injector(codecs): CompositeCodec.inject with its `_writers`; each codec exactly B3Codec,
 * W3CCodec or JaegerCodec, each type once (the composite's `_distinct_writers`). */
static PyObject *injector_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"codecs", NULL};
    PyObject *codecs;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!:Injector", names, &PyTuple_Type, &codecs))
        return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_cprop.configure() was not called");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(codecs);
    int kinds[3], seen = 0;
    if (n < 1 || n > 3) {
        PyErr_SetString(PyExc_ValueError, "one to three codecs");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTypeObject *codec_type = Py_TYPE(PyTuple_GET_ITEM(codecs, i));
        int kind = 0;
        while (kind < 3 && codec_types[kind] != codec_type)
            kind++;
        if (kind == 3 || seen & (1 << kind)) {
            PyErr_Format(PyExc_ValueError, "no fast path injects with %R",
                         PyTuple_GET_ITEM(codecs, i));
            return NULL;
        }
        seen |= 1 << kind;
        kinds[i] = kind;
    }
    Injector *self = (Injector *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->codecs = Py_NewRef(codecs);
    memcpy(self->kinds, kinds, sizeof kinds);
    return (PyObject *)self;
}

static int injector_traverse(Injector *self, visitproc visit, void *arg) {
    Py_VISIT(self->codecs);
    return 0;
}

static int injector_clear(Injector *self) {
    Py_CLEAR(self->codecs);
    return 0;
}

static void injector_dealloc(Injector *self) {
    PyObject_GC_UnTrack(self);
    injector_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Consumes `value` (NULL: an error is set). */
static int put(PyObject *carrier, PyObject *key, PyObject *value) {
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItem(carrier, key, value);
    Py_DECREF(value);
    return rc;
}

/* inject(span_context, carrier): CompositeCodec.inject into `carrier`, returning None; or
 * NOT_HANDLED, with the carrier untouched. */
static PyObject *injector_inject(Injector *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "inject(span_context, carrier)");
        return NULL;
    }
    PyObject *context = args[0], *carrier = args[1];
    if (!PyDict_CheckExact(carrier) || PyDict_GET_SIZE(carrier) != 0 ||
        (PyObject *)Py_TYPE(context) != context_type)
        return Py_NewRef(not_handled);
    uint64_t trace_hi, trace_lo, span, parent, unused;
    int rc;
    PyObject *trace = SLOT(context, field_offsets[F_TRACE]);
    PyObject *span_id = SLOT(context, field_offsets[F_SPAN]);
    PyObject *parent_id = SLOT(context, field_offsets[F_PARENT]);
    /* an id that is not an exact int in range: the Python code formats it its way */
    if ((rc = unsigned_id_halves(trace, 16, &trace_hi, &trace_lo)) != 1 ||
        (rc = unsigned_id_halves(span_id, 8, &unused, &span)) != 1 ||
        (rc = unsigned_id_halves(parent_id, 8, &unused, &parent)) != 1)
        return rc < 0 ? NULL : Py_NewRef(not_handled);
    if ((trace_hi | trace_lo) == 0 || span == 0)
        return Py_NewRef(not_handled); /* no ids: each codec writes what it writes then */
    PyObject *flags_obj = SLOT(context, field_offsets[F_FLAGS]);
    PyObject *deferred_obj = SLOT(context, field_offsets[F_DEFERRED]);
    if (flags_obj == NULL || !PyLong_CheckExact(flags_obj) ||
        (deferred_obj != Py_True && deferred_obj != Py_False))
        return Py_NewRef(not_handled);
    int overflow;
    long flags = PyLong_AsLongAndOverflow(flags_obj, &overflow);
    if (flags == -1 && PyErr_Occurred())
        return NULL;
    if (overflow)
        return Py_NewRef(not_handled);
    int deferred = deferred_obj == Py_True;

    /* Everything the codecs read, checked before the first write. */
    Py_ssize_t n = PyTuple_GET_SIZE(self->codecs);
    int multi = 0, single = 0;
    PyObject *trace_state = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *codec = PyTuple_GET_ITEM(self->codecs, i);
        if (Py_TYPE(codec) != codec_types[self->kinds[i]])
            return Py_NewRef(not_handled);
        if (self->kinds[i] == B3) {
            PyObject *m = SLOT(codec, b3_multi_offset), *s = SLOT(codec, b3_single_offset);
            if ((m != Py_True && m != Py_False) || (s != Py_True && s != Py_False))
                return Py_NewRef(not_handled);
            multi = m == Py_True;
            single = s == Py_True;
        } else if (self->kinds[i] == W3C) {
            trace_state = SLOT(context, field_offsets[F_STATE]);
            if (trace_state == Py_None)
                trace_state = NULL;
            else if (trace_state == NULL || !PyUnicode_CheckExact(trace_state))
                return Py_NewRef(not_handled);
            else if (PyUnicode_GET_LENGTH(trace_state) == 0)
                trace_state = NULL;
        } else {
            PyObject *baggage = SLOT(context, field_offsets[F_BAGGAGE]);
            if (baggage == NULL || !PyDict_CheckExact(baggage) || PyDict_GET_SIZE(baggage))
                return Py_NewRef(not_handled); /* items to write as uberctx-* headers */
        }
    }

    char trace_hex[32], span_hex[16], parent_hex[16], flags_hex[16];
    Py_ssize_t trace_len = trace_hi ? 32 : 16;
    if (trace_hi) {
        put_hex16(trace_hex, trace_hi);
        put_hex16(trace_hex + 16, trace_lo);
    } else {
        put_hex16(trace_hex, trace_lo);
    }
    put_hex16(span_hex, span);
    put_hex16(parent_hex, parent);
    put_hex16(flags_hex, (uint64_t)(flags & 0xFF));
    /* B3's sampling state: 'd' debug, 0 deferred (written as nothing), '1' or '0' */
    char state = flags & DEBUG_FLAG ? 'd' : deferred ? 0 : flags & SAMPLED_FLAG ? '1' : '0';
    char buf[128];
    Py_ssize_t len;
    for (Py_ssize_t i = 0; i < n; i++) {
        switch (self->kinds[i]) {
        case B3:
            if (multi &&
                (put(carrier, keys[K_TRACE], ascii_str(trace_hex, trace_len)) < 0 ||
                 put(carrier, keys[K_SPAN], ascii_str(span_hex, 16)) < 0 ||
                 (parent && put(carrier, keys[K_PARENT], ascii_str(parent_hex, 16)) < 0) ||
                 (state == 'd' && put(carrier, keys[K_FLAGS], Py_NewRef(s_one)) < 0) ||
                 ((state == '1' || state == '0') &&
                  put(carrier, keys[K_SAMPLED], Py_NewRef(state == '1' ? s_one : s_zero)) < 0)))
                return NULL;
            if (!single)
                break;
            memcpy(buf, trace_hex, (size_t)trace_len);
            len = trace_len;
            buf[len++] = '-';
            memcpy(buf + len, span_hex, 16);
            len += 16;
            if (state != 0) { /* a deferred context has no state, so no parent field */
                buf[len++] = '-';
                buf[len++] = state;
                if (parent) {
                    buf[len++] = '-';
                    memcpy(buf + len, parent_hex, 16);
                    len += 16;
                }
            }
            if (put(carrier, keys[K_B3], ascii_str(buf, len)) < 0)
                return NULL;
            break;
        case W3C:
            /* debug means sampled, a deferred context is not sampled (as for B3) */
            memcpy(buf, "00-0000000000000000", 19);
            memcpy(buf + 35 - trace_len, trace_hex, (size_t)trace_len);
            buf[35] = '-';
            memcpy(buf + 36, span_hex, 16);
            memcpy(buf + 52,
                   (flags & DEBUG_FLAG) || ((flags & SAMPLED_FLAG) && !deferred) ? "-01" : "-00",
                   3);
            if (put(carrier, keys[K_TRACEPARENT], ascii_str(buf, 55)) < 0 ||
                (trace_state != NULL &&
                 put(carrier, keys[K_TRACESTATE], Py_NewRef(trace_state)) < 0))
                return NULL;
            break;
        default: /* JAEGER: ids without padding but the trace id's, flags' low byte */
            memcpy(buf, trace_hex, (size_t)trace_len);
            len = trace_len;
            buf[len++] = ':';
            len += put_hex_min(buf + len, span_hex);
            buf[len++] = ':';
            len += put_hex_min(buf + len, parent_hex);
            buf[len++] = ':';
            len += put_hex_min(buf + len, flags_hex);
            if (put(carrier, keys[K_UBER], ascii_str(buf, len)) < 0)
                return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef injector_methods[] = {
    {"inject", (PyCFunction)(void (*)(void))injector_inject, METH_FASTCALL,
     "inject(span_context, carrier) -> None when done, NOT_HANDLED when the Python code must "
     "inject (the carrier is then untouched)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Injector_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "opentracing_sls._cprop.Injector",
    .tp_basicsize = sizeof(Injector),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Injector(codecs): CompositeCodec.inject of a context with ids into an empty "
              "dict.",
    .tp_new = injector_new,
    .tp_traverse = (traverseproc)injector_traverse,
    .tp_clear = (inquiry)injector_clear,
    .tp_dealloc = (destructor)injector_dealloc,
    .tp_methods = injector_methods,
};

/* ------------------------------------------------------------------------ module */

/* configure(context_type, b3_type, w3c_type, jaeger_type, context_api=None), once at
 * import. */
static PyObject *configure(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs) {
    static char *names[] = {"context_type", "b3_type", "w3c_type", "jaeger_type",
                            "context_api", NULL};
    PyTypeObject *types[4];
    PyObject *api = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!O!|O:configure", names, &PyType_Type,
                                     &types[0], &PyType_Type, &types[1], &PyType_Type, &types[2],
                                     &PyType_Type, &types[3], &api))
        return NULL;
    const ContextAPI *found = NULL;
    if (api != Py_None && (found = capsule_api(api, CONTEXT_API_CAPSULE, CONTEXT_API_VERSION,
                                               "context_api")) == NULL)
        return NULL;
    Py_ssize_t offsets[N_FIELDS], multi, single;
    for (int i = 0; i < N_FIELDS; i++)
        if (object_slot_offset(types[0], field_names[i], &offsets[i]) < 0)
            return NULL;
    if (object_slot_offset(types[1], "multi_header", &multi) < 0 ||
        object_slot_offset(types[1], "single_header", &single) < 0)
        return NULL;
    memcpy(field_offsets, offsets, sizeof offsets);
    b3_multi_offset = multi;
    b3_single_offset = single;
    Py_XSETREF(context_type, Py_NewRef(types[0]));
    /* the capsule lives as long as the _cspan module, which is never unloaded */
    context_api = found;
    for (int i = 0; i < 3; i++)
        Py_XSETREF(codec_types[i], (PyTypeObject *)Py_NewRef(types[i + 1]));
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "configure(context_type, b3_type, w3c_type, jaeger_type, context_api=None): the "
     "classes the fast paths read and build, and _cspan's constructor (once, at import)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_cprop",
    "Optional C fast path of CompositeCodec.extract / inject for the common carriers.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cprop(void) {
    memset(hex_values, -1, sizeof hex_values);
    for (int i = 0; i < 256; i++) {
        hex_pairs[i][0] = hex_digits[i >> 4];
        hex_pairs[i][1] = hex_digits[i & 0xF];
    }
    for (int i = 0; i < 16; i++) {
        hex_values[(unsigned char)hex_digits[i]] = (signed char)i;
        hex_values[(unsigned char)"0123456789ABCDEF"[i]] = (signed char)i;
    }
    memset(by_length, -1, sizeof by_length);
    for (int i = 0; i < N_HEADERS; i++) {
        size_t n = strlen(environ_keys[i]);
        if (n > MAX_KEY_LEN) {
            PyErr_SetString(PyExc_SystemError, "_cprop: MAX_KEY_LEN too small");
            return NULL;
        }
        by_length[n][by_length[n][0] < 0 ? 0 : 1] = (signed char)i;
    }
    for (int i = 0; i < N_KEYS; i++)
        if ((keys[i] = PyUnicode_InternFromString(key_texts[i])) == NULL)
            return NULL;
    for (int i = 0; i < N_HEADERS; i++)
        if ((environ_key_objs[i] = PyUnicode_InternFromString(environ_keys[i])) == NULL)
            return NULL;
    if ((s_wsgi_version = PyUnicode_InternFromString("wsgi.version")) == NULL)
        return NULL;
    if ((s_one = PyUnicode_InternFromString("1")) == NULL ||
        (s_zero = PyUnicode_InternFromString("0")) == NULL ||
        (not_handled = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type)) == NULL ||
        PyType_Ready(&Extractor_Type) < 0 || PyType_Ready(&Injector_Type) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObject(module, "NOT_HANDLED", Py_NewRef(not_handled)) < 0 ||
        PyModule_AddObject(module, "Extractor", Py_NewRef(&Extractor_Type)) < 0 ||
        PyModule_AddObject(module, "Injector", Py_NewRef(&Injector_Type)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
