/*
 * Optional C accelerator of the local store's write path (shim/store_write.py).
 *
 * Preparer.run() turns model spans into exactly the rows, index documents, dedupe keys, hours
 * and new operations that SpanWriter's pure-Python loop produces, byte for byte. It handles
 * the spans whose fields all have the model's usual exact types (ints, str, float, bool,
 * bytes in Span/Tag/Log/Reference tuples); at the first span it does not (an odd type, an
 * out-of-range id, a callback error) it stops and returns that span's index, and the Python
 * loop stores it (or counts it as rejected) with the reference code, then calls run() again
 * for the rest. So the C code never decides anything the Python code would decide
 * differently: rejections and every unusual case are the Python path's.
 *
 * The encodings it reproduces are store_codec's: compact JSON as CPython's C encoder writes
 * it with ensure_ascii (\uXXXX escapes, lowercase hex, surrogate pairs, floats by repr, NaN
 * and Infinity as the json module's extension, binary as base64), search strings as
 * store_codec.search_string (Go's %.10g for doubles), index terms as term_part (hex of the
 * UTF-8; values longer than 40 bytes go through the Python term_part, which hashes them).
 *
 * untrack() removes spans from the cyclic garbage collector: a decoded span is a tree of
 * tuples holding only strings and numbers, which can never be part of a reference cycle,
 * but while tens of thousands of them wait in a sink queue every collection walks them all
 * (measured: 13 us of the shim's 34 us of CPU per span). CPython untracks such plain tuples
 * itself, only not tuple subclasses such as NamedTuples.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define HOUR_US 3600000000LL
#define PART_MAX 40          /* longer term parts are digests (store_codec.term_part) */
#define UNTRACK_DEPTH 16
#define SPAN_COLUMNS 13      /* values of a spans row (store_write._INSERT_SPAN) */

enum { T_STRING = 0, T_DOUBLE = 1, T_BOOL = 2, T_LONG = 3, T_BINARY = 4 };

/* From opentracing_sls.shim.model, imported at module init. */
static PyObject *SpanType, *TagType, *LogType, *ReferenceType;
static PyObject *int_64, *empty_str;

static const char HEX[] = "0123456789abcdef";
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* --- a growable byte buffer ------------------------------------------------------------- */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

static int buf_grow(Buf *b, Py_ssize_t extra) {
    if (extra > PY_SSIZE_T_MAX - b->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = b->len + extra;
    if (need <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        cap = cap > PY_SSIZE_T_MAX / 2 ? need : cap * 2;
    }
    char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

#define RESERVE(b, n) ((b)->len + (Py_ssize_t)(n) <= (b)->cap ? 0 : buf_grow((b), (n)))

static int put(Buf *b, const char *s, Py_ssize_t n) {
    if (RESERVE(b, n) < 0) {
        return -1;
    }
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

static int putc_(Buf *b, char c) {
    if (RESERVE(b, 1) < 0) {
        return -1;
    }
    b->p[b->len++] = c;
    return 0;
}

static int put_hex(Buf *b, const unsigned char *s, Py_ssize_t n) {
    if (n > PY_SSIZE_T_MAX / 2) {
        PyErr_NoMemory();
        return -1;
    }
    if (RESERVE(b, 2 * n) < 0) {
        return -1;
    }
    char *o = b->p + b->len;
    for (Py_ssize_t i = 0; i < n; i++) {
        *o++ = HEX[s[i] >> 4];
        *o++ = HEX[s[i] & 15];
    }
    b->len += 2 * n;
    return 0;
}

/* A non-negative number in lowercase hex, zero-padded to at least ``width`` digits ("%0*llx";
 * snprintf was a sixth of the C loop's time). */
static int put_hex_ll(Buf *b, unsigned long long v, int width) {
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = HEX[v & 15];
        v >>= 4;
    } while (v);
    while (n < width) {
        tmp[n++] = '0';
    }
    if (RESERVE(b, n) < 0) {
        return -1;
    }
    while (n) {
        b->p[b->len++] = tmp[--n];
    }
    return 0;
}

/* "%lld" */
static int put_dec_ll(Buf *b, long long v) {
    char tmp[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        tmp[n++] = '-';
    }
    if (RESERVE(b, n) < 0) {
        return -1;
    }
    while (n) {
        b->p[b->len++] = tmp[--n];
    }
    return 0;
}

/* The ASCII text of a str known to be ASCII (the results of repr, term_part). */
static int put_ascii_str(Buf *b, PyObject *s) {
    if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s)) {
        PyErr_SetString(PyExc_TypeError, "expected an ASCII str");
        return -1;
    }
    return put(b, (const char *)PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s));
}

/* --- JSON (CPython's _json encoder with ensure_ascii) ----------------------------------- */

static char *escape_char(char *o, Py_UCS4 c) {
    *o++ = '\\';
    switch (c) {
    case '\\': *o++ = '\\'; break;
    case '"': *o++ = '"'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    default:
        if (c >= 0x10000) {
            Py_UCS4 hi = 0xD800 | ((c - 0x10000) >> 10);
            *o++ = 'u';
            *o++ = HEX[(hi >> 12) & 15];
            *o++ = HEX[(hi >> 8) & 15];
            *o++ = HEX[(hi >> 4) & 15];
            *o++ = HEX[hi & 15];
            c = 0xDC00 | ((c - 0x10000) & 0x3FF);
            *o++ = '\\';
        }
        *o++ = 'u';
        *o++ = HEX[(c >> 12) & 15];
        *o++ = HEX[(c >> 8) & 15];
        *o++ = HEX[(c >> 4) & 15];
        *o++ = HEX[c & 15];
    }
    return o;
}

static int put_json_str(Buf *b, PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    /* Worst case per character: \ud83d\ude00 (12) for astral ones, \u00e9 (6) otherwise. */
    Py_ssize_t per = kind == PyUnicode_4BYTE_KIND ? 12 : 6;
    if (n > (PY_SSIZE_T_MAX - 2) / per) {
        PyErr_NoMemory();
        return -1;
    }
    if (RESERVE(b, n * per + 2) < 0) {
        return -1;
    }
    char *o = b->p + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= ' ' && c <= '~' && c != '\\' && c != '"') {
            *o++ = (char)c;
        } else {
            o = escape_char(o, c);
        }
    }
    *o++ = '"';
    b->len = o - b->p;
    return 0;
}

/* An exact int in decimal (int.__repr__). */
static int put_int(Buf *b, PyObject *v) {
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (!overflow) {
        return put_dec_ll(b, x);
    }
    PyObject *text = PyLong_Type.tp_repr(v);
    if (text == NULL) {
        return -1;
    }
    int rc = put_ascii_str(b, text);
    Py_DECREF(text);
    return rc;
}

/* A float in JSON: repr, or the json module's NaN / Infinity / -Infinity. */
static int put_json_float(Buf *b, double x) {
    if (Py_IS_NAN(x)) {
        return put(b, "NaN", 3);
    }
    if (Py_IS_INFINITY(x)) {
        return x > 0 ? put(b, "Infinity", 8) : put(b, "-Infinity", 9);
    }
    char *text = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) {
        return -1;
    }
    int rc = put(b, text, (Py_ssize_t)strlen(text));
    PyMem_Free(text);
    return rc;
}

static int put_base64(Buf *b, const unsigned char *s, Py_ssize_t n) {
    if (n > PY_SSIZE_T_MAX / 2) {
        PyErr_NoMemory();
        return -1;
    }
    if (RESERVE(b, (n + 2) / 3 * 4) < 0) {
        return -1;
    }
    char *o = b->p + b->len;
    Py_ssize_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = B64[(v >> 6) & 63];
        *o++ = B64[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)s[i] << 16;
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8;
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = B64[(v >> 6) & 63];
        *o++ = '=';
    }
    b->len = o - b->p;
    return 0;
}

/* --- the Preparer --------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *processes;   /* dict: Process -> (service id, process id, process term) */
    PyObject *resolve;     /* callable: Process -> that tuple (stores a new process) */
    PyObject *operations;  /* set of (service id, operation, kind) already stored */
    PyObject *term_part;   /* store_codec.term_part, for parts longer than PART_MAX */
    PyObject *long_parts;  /* dict: str -> its term part, for long strings */
    Py_ssize_t max_cached;
} Preparer;

/* A span the C code leaves to the Python loop (no exception set), or a real error. */
#define DEFER (-1)
#define FAIL (-2)

/* One run() call: buffers and the last process seen (spans of a packet share one). */
typedef struct {
    Buf doc, body, text;
    PyObject *last_process, *last_known;
} Run;

/* The term part of a long str: the Python term_part, cached (long values repeat: URLs,
 * SQL statements). */
static int put_long_part(Preparer *self, Buf *b, PyObject *text) {
    PyObject *part = PyDict_GetItemWithError(self->long_parts, text);
    if (part != NULL) {
        return put_ascii_str(b, part);
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    part = PyObject_CallOneArg(self->term_part, text);
    if (part == NULL) {
        return -1;
    }
    if (PyDict_GET_SIZE(self->long_parts) >= self->max_cached) {
        PyDict_Clear(self->long_parts);
    }
    int rc = PyDict_SetItem(self->long_parts, text, part);
    if (rc == 0) {
        rc = put_ascii_str(b, part);
    }
    Py_DECREF(part);
    return rc;
}

/* term_part(str). */
static int put_part(Preparer *self, Buf *b, PyObject *text) {
    const char *raw;
    Py_ssize_t n;
    if (PyUnicode_IS_COMPACT_ASCII(text)) {
        raw = (const char *)PyUnicode_DATA(text);
        n = PyUnicode_GET_LENGTH(text);
    } else {
        raw = PyUnicode_AsUTF8AndSize(text, &n);
        if (raw == NULL) {  /* lone surrogates: surrogatepass, in Python */
            PyErr_Clear();
            return put_long_part(self, b, text);
        }
    }
    if (n > PART_MAX) {
        return put_long_part(self, b, text);
    }
    return put_hex(b, (const unsigned char *)raw, n);
}

/* term_part of ASCII text built in a buffer (search strings of numbers and binaries). */
static int put_part_ascii(Preparer *self, Buf *b, const char *raw, Py_ssize_t n) {
    if (n <= PART_MAX) {
        return put_hex(b, (const unsigned char *)raw, n);
    }
    PyObject *text = PyUnicode_DecodeASCII(raw, n, NULL);
    if (text == NULL) {
        return -1;
    }
    int rc = put_long_part(self, b, text);
    Py_DECREF(text);
    return rc;
}

/* A (key, type, value) tag as the model has it: a Tag (or plain tuple) with an exact str key,
 * a type 0-4 and a value of exactly that type's Python type. DEFER otherwise. */
static int check_tag(PyObject *tag, PyObject **key, int *type, PyObject **value) {
    if ((Py_TYPE(tag) != (PyTypeObject *)TagType && !PyTuple_CheckExact(tag))
        || PyTuple_GET_SIZE(tag) != 3) {
        return DEFER;
    }
    *key = PyTuple_GET_ITEM(tag, 0);
    PyObject *t = PyTuple_GET_ITEM(tag, 1);
    *value = PyTuple_GET_ITEM(tag, 2);
    if (!PyUnicode_CheckExact(*key) || !PyLong_CheckExact(t)) {
        return DEFER;
    }
    long v = PyLong_AsLong(t);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return DEFER;
    }
    switch (v) {
    case T_STRING: if (!PyUnicode_CheckExact(*value)) return DEFER; break;
    case T_DOUBLE: if (!PyFloat_CheckExact(*value)) return DEFER; break;
    case T_BOOL: if (*value != Py_True && *value != Py_False) return DEFER; break;
    case T_LONG: if (!PyLong_CheckExact(*value)) return DEFER; break;
    case T_BINARY: if (!PyBytes_CheckExact(*value)) return DEFER; break;
    default: return DEFER;
    }
    *type = (int)v;
    return 0;
}

/* " s<service>k<key part>v<value part>": the index term of a tag (store_codec.tag_term) with
 * the search string of its value (store_codec.search_string). */
static int put_tag_term(Preparer *self, Run *r, long long service, PyObject *key, int type,
                        PyObject *value) {
    Buf *b = &r->doc;
    if (put(b, " s", 2) < 0 || put_hex_ll(b, (unsigned long long)service, 1) < 0
        || putc_(b, 'k') < 0 || put_part(self, b, key) < 0 || putc_(b, 'v') < 0) {
        return -1;
    }
    switch (type) {
    case T_STRING:
        return put_part(self, b, value);
    case T_BOOL:
        return value == Py_True ? put_hex(b, (const unsigned char *)"true", 4)
                                : put_hex(b, (const unsigned char *)"false", 5);
    case T_DOUBLE: {
        double x = PyFloat_AS_DOUBLE(value);
        if (Py_IS_NAN(x)) {
            return put_hex(b, (const unsigned char *)"NaN", 3);
        }
        if (Py_IS_INFINITY(x)) {
            return put_hex(b, (const unsigned char *)(x > 0 ? "+Inf" : "-Inf"), 4);
        }
        char *text = PyOS_double_to_string(x, 'g', 10, 0, NULL);
        if (text == NULL) {
            return -1;
        }
        int rc = put_part_ascii(self, b, text, (Py_ssize_t)strlen(text));
        PyMem_Free(text);
        return rc;
    }
    case T_LONG:
        r->text.len = 0;
        if (put_int(&r->text, value) < 0) {
            return -1;
        }
        return put_part_ascii(self, b, r->text.p, r->text.len);
    default: /* T_BINARY: the hex of the bytes */
        r->text.len = 0;
        if (put_hex(&r->text, (const unsigned char *)PyBytes_AS_STRING(value),
                    PyBytes_GET_SIZE(value)) < 0) {
            return -1;
        }
        return put_part_ascii(self, b, r->text.p, r->text.len);
    }
}

/* ["key",type,value] */
static int put_json_tag(Buf *b, PyObject *key, int type, PyObject *value) {
    char head[4] = {',', (char)('0' + type), ',', 0};
    if (putc_(b, '[') < 0 || put_json_str(b, key) < 0 || put(b, head, 3) < 0) {
        return -1;
    }
    int rc;
    switch (type) {
    case T_STRING: rc = put_json_str(b, value); break;
    case T_DOUBLE: rc = put_json_float(b, PyFloat_AS_DOUBLE(value)); break;
    case T_BOOL: rc = value == Py_True ? put(b, "true", 4) : put(b, "false", 5); break;
    case T_LONG: rc = put_int(b, value); break;
    default:
        rc = putc_(b, '"');
        if (rc == 0) {
            rc = put_base64(b, (const unsigned char *)PyBytes_AS_STRING(value),
                            PyBytes_GET_SIZE(value));
        }
        if (rc == 0) {
            rc = putc_(b, '"');
        }
    }
    return rc < 0 ? -1 : putc_(b, ']');
}

static int is_sequence(PyObject *o) {
    return PyTuple_CheckExact(o) || PyList_CheckExact(o);
}

/* One tag of put_tags. */
static int put_tag_fields(Preparer *self, Run *r, long long service, PyObject *key, int type,
                          PyObject *value, Py_ssize_t i, PyObject **kind, int *error) {
    Buf *body = &r->body;
    if (kind != NULL && PyUnicode_IS_COMPACT_ASCII(key)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(key);
        const char *k = (const char *)PyUnicode_DATA(key);
        if (n == 9 && memcmp(k, "span.kind", 9) == 0 && type == T_STRING
            && (*kind == NULL || PyUnicode_GET_LENGTH(*kind) == 0)) {
            Py_INCREF(value);
            Py_XSETREF(*kind, value);
        } else if (n == 5 && memcmp(k, "error", 5) == 0) {
            if (type == T_BOOL ? value == Py_True
                : type == T_STRING && PyUnicode_IS_COMPACT_ASCII(value)
                  && PyUnicode_GET_LENGTH(value) == 4
                  && memcmp(PyUnicode_DATA(value), "true", 4) == 0) {
                *error = 1;
            }
        }
    }
    if (put_tag_term(self, r, service, key, type, value) < 0) {
        return -1;
    }
    if ((i && putc_(body, ',') < 0) || put_json_tag(body, key, type, value) < 0) {
        return -1;
    }
    return 0;
}

/* Tags (or log fields) into the document and the JSON. For span tags (kind != NULL) also the
 * span kind (a new reference to the first non-empty span.kind STRING tag's value) and error
 * (error=true). */
static int put_tags(Preparer *self, Run *r, long long service, PyObject *tags, PyObject **kind,
                    int *error) {
    Buf *body = &r->body;
    if (!is_sequence(tags)) {
        return DEFER;
    }
    if (putc_(body, '[') < 0) {
        return DEFER;
    }
    /* A list's size is re-read: term_part runs Python code, so another thread may run. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(tags); i++) {
        PyObject *key, *value;
        int type;
        PyObject *tag = PySequence_Fast_GET_ITEM(tags, i);
        if (check_tag(tag, &key, &type, &value) < 0) {
            return DEFER;
        }
        /* term_part (Python) may let another thread change a list of tags meanwhile. */
        Py_INCREF(tag);
        int rc = put_tag_fields(self, r, service, key, type, value, i, kind, error);
        Py_DECREF(tag);
        if (rc < 0) {
            return DEFER;
        }
    }
    return putc_(body, ']') < 0 ? DEFER : 0;
}

static int put_logs(Preparer *self, Run *r, long long service, PyObject *logs) {
    Buf *body = &r->body;
    if (!is_sequence(logs)) {
        return DEFER;
    }
    if (putc_(body, '[') < 0) {
        return DEFER;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(logs); i++) {
        PyObject *log = PySequence_Fast_GET_ITEM(logs, i);
        if ((Py_TYPE(log) != (PyTypeObject *)LogType && !PyTuple_CheckExact(log))
            || PyTuple_GET_SIZE(log) != 2 || !PyLong_CheckExact(PyTuple_GET_ITEM(log, 0))) {
            return DEFER;
        }
        if ((i && putc_(body, ',') < 0) || putc_(body, '[') < 0
            || put_int(body, PyTuple_GET_ITEM(log, 0)) < 0 || putc_(body, ',') < 0) {
            return DEFER;
        }
        Py_INCREF(log);
        int rc = put_tags(self, r, service, PyTuple_GET_ITEM(log, 1), NULL, NULL);
        Py_DECREF(log);
        if (rc < 0) {
            return rc;
        }
        if (putc_(body, ']') < 0) {
            return DEFER;
        }
    }
    return putc_(body, ']') < 0 ? DEFER : 0;
}

/* The references, unless exactly what parent_id implies (store_codec.encode_body). */
static int put_refs(Buf *body, PyObject *refs, PyObject *trace_id, unsigned long long parent,
                    PyObject *parent_id) {
    if (!is_sequence(refs)) {
        return DEFER;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(refs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ref = PySequence_Fast_GET_ITEM(refs, i);
        if ((Py_TYPE(ref) != (PyTypeObject *)ReferenceType && !PyTuple_CheckExact(ref))
            || PyTuple_GET_SIZE(ref) != 3 || !PyLong_CheckExact(PyTuple_GET_ITEM(ref, 0))
            || !PyLong_CheckExact(PyTuple_GET_ITEM(ref, 1))
            || !PyLong_CheckExact(PyTuple_GET_ITEM(ref, 2))) {
            return DEFER;
        }
    }
    if (n == 0 && parent == 0) {
        return 0;
    }
    if (n == 1 && parent != 0) {
        PyObject *ref = PySequence_Fast_GET_ITEM(refs, 0);
        long ref_type = PyLong_AsLong(PyTuple_GET_ITEM(ref, 0));
        if (ref_type == -1 && PyErr_Occurred()) {
            PyErr_Clear();
        } else if (ref_type == 0) {
            int same = PyObject_RichCompareBool(PyTuple_GET_ITEM(ref, 1), trace_id, Py_EQ);
            if (same < 0) {
                return DEFER;
            }
            if (same) {
                same = PyObject_RichCompareBool(PyTuple_GET_ITEM(ref, 2), parent_id, Py_EQ);
                if (same < 0) {
                    return DEFER;
                }
                if (same) {
                    return 0;
                }
            }
        }
    }
    if (put(body, ",[", 2) < 0) {
        return DEFER;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ref = PySequence_Fast_GET_ITEM(refs, i);
        if ((i && putc_(body, ',') < 0) || putc_(body, '[') < 0
            || put_int(body, PyTuple_GET_ITEM(ref, 0)) < 0 || putc_(body, ',') < 0
            || put_int(body, PyTuple_GET_ITEM(ref, 1)) < 0 || putc_(body, ',') < 0
            || put_int(body, PyTuple_GET_ITEM(ref, 2)) < 0 || putc_(body, ']') < 0) {
            return DEFER;
        }
    }
    return putc_(body, ']') < 0 ? DEFER : 0;
}

/* An unsigned 128-bit int as 16 bytes big-endian; -1 (no exception) when out of range. */
static int trace_bytes(PyObject *v, unsigned char out[16]) {
    unsigned long long hi = 0, lo = PyLong_AsUnsignedLongLong(v);
    if (lo == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        PyObject *high = PyNumber_Rshift(v, int_64);
        if (high == NULL) {
            return -1;
        }
        hi = PyLong_AsUnsignedLongLong(high);  /* negative or >= 2**128: overflow */
        Py_DECREF(high);
        if (hi == (unsigned long long)-1 && PyErr_Occurred()) {
            return -1;
        }
        lo = PyLong_AsUnsignedLongLongMask(v);
        if (lo == (unsigned long long)-1 && PyErr_Occurred()) {
            return -1;
        }
    }
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(hi & 255);
        out[i + 8] = (unsigned char)(lo & 255);
        hi >>= 8;
        lo >>= 8;
    }
    return 0;
}

/* The unsigned 64-bit id as the int64 with the same bits (store_codec.signed64). */
static PyObject *signed64(PyObject *obj, unsigned long long v) {
    if (v < (1ULL << 63)) {
        Py_INCREF(obj);
        return obj;
    }
    return PyLong_FromLongLong(-(long long)(~v) - 1);
}

static PyObject *ascii_from(Buf *b) {
    PyObject *s = PyUnicode_New(b->len, 127);
    if (s != NULL) {
        memcpy(PyUnicode_DATA(s), b->p, (size_t)b->len);
    }
    return s;
}

/* The outputs of one run() call (SpanWriter._write's lists and sets). */
typedef struct {
    PyObject *recent, *older, *batch_keys, *rows, *docs, *keys, *hours, *new_ops;
    long long row_id;
    Py_ssize_t duplicates;
} Out;

/* The known process of a span: (service id, process id, term), a new reference. */
static PyObject *known_process(Preparer *self, Run *r, PyObject *process) {
    if (process == r->last_process) {
        Py_INCREF(r->last_known);
        return r->last_known;
    }
    PyObject *known = PyDict_GetItemWithError(self->processes, process);
    if (known != NULL) {
        Py_INCREF(known);
    } else if (!PyErr_Occurred()) {
        known = PyObject_CallOneArg(self->resolve, process);
    }
    if (known == NULL) {
        return NULL;
    }
    if (!PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 3
        || !PyLong_CheckExact(PyTuple_GET_ITEM(known, 0))
        || !PyLong_CheckExact(PyTuple_GET_ITEM(known, 1))
        || !PyUnicode_CheckExact(PyTuple_GET_ITEM(known, 2))
        || !PyUnicode_IS_ASCII(PyTuple_GET_ITEM(known, 2))) {
        Py_DECREF(known);
        PyErr_SetString(PyExc_TypeError, "bad process cache entry");
        return NULL;
    }
    Py_INCREF(process);
    Py_XSETREF(r->last_process, process);
    Py_INCREF(known);
    Py_XSETREF(r->last_known, known);
    return known;
}

/* Stores one span's outputs; 1 stored, 0 duplicate, DEFER, or FAIL (exception set, the
 * outputs may be half-updated: the caller's transaction is rolled back). */
static int prepare_span(Preparer *self, Run *r, Out *out, PyObject *span) {
    if (Py_TYPE(span) != (PyTypeObject *)SpanType || PyTuple_GET_SIZE(span) != 11) {
        return DEFER;
    }
    PyObject *trace_id = PyTuple_GET_ITEM(span, 0), *span_id = PyTuple_GET_ITEM(span, 1),
             *parent_id = PyTuple_GET_ITEM(span, 2), *operation = PyTuple_GET_ITEM(span, 3),
             *flags = PyTuple_GET_ITEM(span, 4), *start = PyTuple_GET_ITEM(span, 5),
             *duration = PyTuple_GET_ITEM(span, 6), *tags = PyTuple_GET_ITEM(span, 7),
             *logs = PyTuple_GET_ITEM(span, 8), *refs = PyTuple_GET_ITEM(span, 9),
             *process = PyTuple_GET_ITEM(span, 10);
    if (!PyLong_CheckExact(trace_id) || !PyLong_CheckExact(span_id)
        || !PyLong_CheckExact(parent_id) || !PyLong_CheckExact(flags)
        || !PyLong_CheckExact(start) || !PyLong_CheckExact(duration)
        || !PyUnicode_CheckExact(operation)) {
        return DEFER;
    }
    /* Out of range: the Python code rejects the span (and counts it). */
    unsigned long long sid, pid;
    long long st;
    unsigned char key16[16];
    if ((sid = PyLong_AsUnsignedLongLong(span_id)) == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return DEFER;
    }
    if ((pid = PyLong_AsUnsignedLongLong(parent_id)) == (unsigned long long)-1
        && PyErr_Occurred()) {
        PyErr_Clear();
        return DEFER;
    }
    if (((st = PyLong_AsLongLong(start)) == -1 && PyErr_Occurred())
        || (PyLong_AsLongLong(duration) == -1 && PyErr_Occurred())
        || trace_bytes(trace_id, key16) < 0) {
        PyErr_Clear();
        return DEFER;
    }
    PyObject *known = known_process(self, r, process);
    if (known == NULL) {
        PyErr_Clear();
        return DEFER;
    }
    /* Any error before the outputs change leaves the span to the Python code, which stores
     * it, rejects it, or raises the same error itself. */
    int rc = DEFER;
    PyObject *service_obj = PyTuple_GET_ITEM(known, 0), *kind = NULL, *trace_key = NULL,
             *signed_id = NULL, *signed_parent = NULL, *key_tuple = NULL, *key = NULL,
             *row_obj = NULL, *body = NULL, *doc = NULL, *doc_row = NULL,
             *hour_obj = NULL, *op_key = NULL, *error_obj = NULL;
    long long service = PyLong_AsLongLong(service_obj);
    if (service < 0) {
        goto done;
    }
    long long hour = st > 0 ? st / HOUR_US : 0;
    int error = 0;

    r->doc.len = 0;
    r->body.len = 0;
    if (put_ascii_str(&r->doc, PyTuple_GET_ITEM(known, 2)) < 0 || putc_(&r->body, '[') < 0) {
        goto done;
    }
    if (put_tags(self, r, service, tags, &kind, &error) < 0 || putc_(&r->body, ',') < 0
        || put_logs(self, r, service, logs) < 0) {
        goto done;
    }
    /* " s<service>o<operation> h<hour> s<service>h<hour> r<trace id>" */
    Buf *doc_buf = &r->doc;
    if (put(doc_buf, " s", 2) < 0 || put_hex_ll(doc_buf, (unsigned long long)service, 1) < 0
        || putc_(doc_buf, 'o') < 0 || put_part(self, doc_buf, operation) < 0
        || put(doc_buf, " h", 2) < 0 || put_hex_ll(doc_buf, (unsigned long long)hour, 8) < 0
        || put(doc_buf, " s", 2) < 0 || put_hex_ll(doc_buf, (unsigned long long)service, 1) < 0
        || putc_(doc_buf, 'h') < 0 || put_hex_ll(doc_buf, (unsigned long long)hour, 8) < 0
        || put(doc_buf, " r", 2) < 0 || put_hex(doc_buf, key16, 16) < 0) {
        goto done;
    }
    if (put_refs(&r->body, refs, trace_id, pid, parent_id) < 0 || putc_(&r->body, ']') < 0) {
        goto done;
    }
    if (kind == NULL) {
        Py_INCREF(empty_str);
        kind = empty_str;
    }
    /* Lone surrogates cannot be bound as TEXT: the Python code rejects such a span. */
    if ((!PyUnicode_IS_ASCII(operation) && PyUnicode_AsUTF8AndSize(operation, NULL) == NULL)
        || (!PyUnicode_IS_ASCII(kind) && PyUnicode_AsUTF8AndSize(kind, NULL) == NULL)) {
        goto done;
    }

    /* The dedupe key: hash((trace key, signed span id, service id, kind)), as SpanWriter. */
    if ((trace_key = PyBytes_FromStringAndSize((const char *)key16, 16)) == NULL
        || (signed_id = signed64(span_id, sid)) == NULL
        || (key_tuple = PyTuple_Pack(4, trace_key, signed_id, service_obj, kind)) == NULL) {
        goto done;
    }
    Py_hash_t h = PyObject_Hash(key_tuple);
    if (h == -1 || (key = PyLong_FromSsize_t(h)) == NULL) {
        goto done;
    }
    int seen = PySet_Contains(out->recent, key);
    if (seen == 0) {
        seen = PySet_Contains(out->older, key);
    }
    if (seen == 0) {
        seen = PySet_Contains(out->batch_keys, key);
    }
    if (seen != 0) {
        if (seen < 0) {
            goto done;
        }
        out->duplicates++;
        rc = 0;
        goto done;
    }
    if ((signed_parent = signed64(parent_id, pid)) == NULL
        || (row_obj = PyLong_FromLongLong(out->row_id)) == NULL
        || (body = ascii_from(&r->body)) == NULL || (doc = ascii_from(&r->doc)) == NULL
        || (error_obj = PyLong_FromLong(error)) == NULL
        || (hour_obj = PyLong_FromLongLong(hour)) == NULL
        || (op_key = PyTuple_Pack(3, service_obj, operation, kind)) == NULL) {
        goto done;
    }
    if ((doc_row = PyTuple_Pack(2, row_obj, doc)) == NULL) {
        goto done;
    }
    /* From here on the outputs change: an error is the write's (it rolls back). */
    rc = FAIL;
    /* Only strings and numbers inside: nothing for the garbage collector to walk. */
    PyObject_GC_UnTrack(doc_row);
    PyObject_GC_UnTrack(op_key);
    /* The row's values go flat into rows (several rows per INSERT statement). */
    PyObject *values[SPAN_COLUMNS] = {
        row_obj, trace_key, signed_id, signed_parent, service_obj, PyTuple_GET_ITEM(known, 1),
        operation, kind, start, duration, flags, error_obj, body};
    for (int i = 0; i < SPAN_COLUMNS; i++) {
        if (PyList_Append(out->rows, values[i]) < 0) {
            goto done;
        }
    }
    if (PyList_Append(out->docs, doc_row) < 0 || PySet_Add(out->hours, hour_obj) < 0
        || PyList_Append(out->keys, key) < 0 || PySet_Add(out->batch_keys, key) < 0) {
        goto done;
    }
    out->row_id++;
    int known_op = PySet_Contains(self->operations, op_key);
    if (known_op < 0) {
        goto done;
    }
    if (!known_op) {
        if (PySet_GET_SIZE(self->operations) >= self->max_cached
            && PySet_Clear(self->operations) < 0) {
            goto done;
        }
        if (PySet_Add(self->operations, op_key) < 0 || PyList_Append(out->new_ops, op_key) < 0) {
            goto done;
        }
    }
    rc = 1;
done:
    if (rc == DEFER) {
        PyErr_Clear();
    }
    Py_DECREF(known);
    Py_XDECREF(trace_key);
    Py_XDECREF(signed_id);
    Py_XDECREF(signed_parent);
    Py_XDECREF(key_tuple);
    Py_XDECREF(key);
    Py_XDECREF(row_obj);
    Py_XDECREF(body);
    Py_XDECREF(doc);
    Py_XDECREF(doc_row);
    Py_XDECREF(hour_obj);
    Py_XDECREF(op_key);
    Py_XDECREF(error_obj);
    Py_XDECREF(kind);
    return rc;
}

PyDoc_STRVAR(run_doc,
"run(spans, start, row_id, recent, older, batch_keys, rows, docs, keys, hours, new_ops)\n"
"-> (index, row_id, duplicates)\n\n"
"Prepares spans[start:] as SpanWriter._add does, appending to its lists and sets (rows\n"
"gets the 13 values of each spans row, flat). Stops\n"
"at the first span it leaves to the Python code: ``index`` is that span's (len(spans) when\n"
"all were done); ``row_id`` is the next row id, ``duplicates`` the spans skipped as\n"
"re-delivered.");

static PyObject *Preparer_run(Preparer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "run() takes 11 arguments");
        return NULL;
    }
    PyObject *spans = args[0];
    if (!is_sequence(spans)) {
        PyErr_SetString(PyExc_TypeError, "spans must be a list or tuple");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    long long row_id = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    for (int i = 3; i < 11; i++) {
        int is_set = i <= 5 || i == 9;
        if (is_set ? !PySet_Check(args[i]) : !PyList_Check(args[i])) {
            PyErr_Format(PyExc_TypeError, "run() argument %d must be a %s", i + 1,
                         is_set ? "set" : "list");
            return NULL;
        }
    }
    Out out = {args[3], args[4], args[5], args[6], args[7], args[8], args[9], args[10],
               row_id, 0};
    Run r = {{NULL, 0, 0}, {NULL, 0, 0}, {NULL, 0, 0}, NULL, NULL};
    Py_ssize_t i = start < 0 ? 0 : start;
    PyObject *result = NULL;
    for (; i < PySequence_Fast_GET_SIZE(spans); i++) {
        PyObject *span = PySequence_Fast_GET_ITEM(spans, i);
        Py_INCREF(span);
        int rc = prepare_span(self, &r, &out, span);
        Py_DECREF(span);
        if (rc == FAIL) {
            goto done;
        }
        if (rc == DEFER) {
            break;
        }
    }
    result = Py_BuildValue("(nLn)", i, out.row_id, out.duplicates);
done:
    PyMem_Free(r.doc.p);
    PyMem_Free(r.body.p);
    PyMem_Free(r.text.p);
    Py_XDECREF(r.last_process);
    Py_XDECREF(r.last_known);
    return result;
}

static int Preparer_init(Preparer *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"processes", "resolve", "operations", "term_part", "max_cached",
                            NULL};
    PyObject *processes, *resolve, *operations, *term_part;
    Py_ssize_t max_cached;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OO!On:Preparer", names, &PyDict_Type,
                                     &processes, &resolve, &PySet_Type, &operations,
                                     &term_part, &max_cached)) {
        return -1;
    }
    if (!PyCallable_Check(resolve) || !PyCallable_Check(term_part)) {
        PyErr_SetString(PyExc_TypeError, "resolve and term_part must be callable");
        return -1;
    }
    PyObject *long_parts = PyDict_New();
    if (long_parts == NULL) {
        return -1;
    }
    Py_INCREF(processes);
    Py_XSETREF(self->processes, processes);
    Py_INCREF(resolve);
    Py_XSETREF(self->resolve, resolve);
    Py_INCREF(operations);
    Py_XSETREF(self->operations, operations);
    Py_INCREF(term_part);
    Py_XSETREF(self->term_part, term_part);
    Py_XSETREF(self->long_parts, long_parts);
    self->max_cached = max_cached < 1 ? 1 : max_cached;
    return 0;
}

static int Preparer_traverse(Preparer *self, visitproc visit, void *arg) {
    Py_VISIT(self->processes);
    Py_VISIT(self->resolve);
    Py_VISIT(self->operations);
    Py_VISIT(self->term_part);
    Py_VISIT(self->long_parts);
    return 0;
}

static int Preparer_clear(Preparer *self) {
    Py_CLEAR(self->processes);
    Py_CLEAR(self->resolve);
    Py_CLEAR(self->operations);
    Py_CLEAR(self->term_part);
    Py_CLEAR(self->long_parts);
    return 0;
}

static void Preparer_dealloc(Preparer *self) {
    PyObject_GC_UnTrack(self);
    Preparer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Preparer_cached(Preparer *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromSsize_t(self->long_parts ? PyDict_GET_SIZE(self->long_parts) : 0);
}

static PyMethodDef Preparer_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Preparer_run, METH_FASTCALL, run_doc},
    {"cached_parts", (PyCFunction)Preparer_cached, METH_NOARGS,
     "Long strings whose term part is cached."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PreparerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "opentracing_sls.shim._cstore.Preparer",
    .tp_basicsize = sizeof(Preparer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Preparer(processes, resolve, operations, term_part, max_cached): the C loop "
              "of SpanWriter._write.",
    .tp_traverse = (traverseproc)Preparer_traverse,
    .tp_clear = (inquiry)Preparer_clear,
    .tp_dealloc = (destructor)Preparer_dealloc,
    .tp_init = (initproc)Preparer_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = Preparer_methods,
};

/* --- untrack ----------------------------------------------------------------------------- */

/* A tuple type whose instances are plain tuples underneath (NamedTuples): no __dict__, no
 * extra slots, so their only references are their items (and their type, immortal here). */
static int plain_tuple_type(PyTypeObject *t) {
    return t == &PyTuple_Type
        || (PyType_IsSubtype(t, &PyTuple_Type) && t->tp_dictoffset == 0
            && t->tp_basicsize == PyTuple_Type.tp_basicsize
            && t->tp_itemsize == PyTuple_Type.tp_itemsize);
}

/* Untracks o if it is a tree of plain tuples ending in untracked objects; whether o is (now)
 * outside the collector's view. */
static int settle(PyObject *o, int depth) {
    if (!PyObject_IS_GC(o)) {
        return 1;
    }
    if (!PyTuple_Check(o) || !plain_tuple_type(Py_TYPE(o))) {
        return 0;
    }
    if (!PyObject_GC_IsTracked(o)) {
        return 1;
    }
    if (depth >= UNTRACK_DEPTH) {
        return 0;
    }
    int inert = 1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(o); i++) {
        inert &= settle(PyTuple_GET_ITEM(o, i), depth + 1);
    }
    if (inert) {
        PyObject_GC_UnTrack(o);
    }
    return inert;
}

PyDoc_STRVAR(untrack_doc,
"untrack(spans) -> int\n\n"
"Takes the spans of a list (and the tuples inside them) out of the cyclic garbage\n"
"collector's view when they hold nothing but strings and numbers, as CPython does for plain\n"
"tuples; a span holding anything else stays tracked. Returns how many spans are untracked.");

static PyObject *untrack(PyObject *Py_UNUSED(module), PyObject *spans) {
    if (!PyList_Check(spans)) {
        PyErr_SetString(PyExc_TypeError, "untrack() takes a list");
        return NULL;
    }
    Py_ssize_t done = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(spans); i++) {
        done += settle(PyList_GET_ITEM(spans, i), 0);
    }
    return PyLong_FromSsize_t(done);
}

static PyMethodDef methods[] = {
    {"untrack", untrack, METH_O, untrack_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_cstore",
    "C accelerator of the local span store's write path (see store_write.SpanWriter).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cstore(void) {
    PyObject *model = PyImport_ImportModule("opentracing_sls.shim.model");
    if (model == NULL) {
        return NULL;
    }
    SpanType = PyObject_GetAttrString(model, "Span");
    TagType = PyObject_GetAttrString(model, "Tag");
    LogType = PyObject_GetAttrString(model, "Log");
    ReferenceType = PyObject_GetAttrString(model, "Reference");
    Py_DECREF(model);
    if (SpanType == NULL || TagType == NULL || LogType == NULL || ReferenceType == NULL) {
        return NULL;
    }
    if ((int_64 = PyLong_FromLong(64)) == NULL
        || (empty_str = PyUnicode_FromStringAndSize("", 0)) == NULL) {
        return NULL;
    }
    if (PyType_Ready(&PreparerType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&PreparerType);
    if (PyModule_AddObject(module, "Preparer", (PyObject *)&PreparerType) < 0) {
        Py_DECREF(&PreparerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
