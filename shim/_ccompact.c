/*
 * Optional C accelerator of the shim's Jaeger Thrift compact decoder (UDP port 6831):
 * decode(data, message) gives exactly what opentracing_sls.shim.thrift_compact.decode gives,
 * the same model objects (Span, Tag, Log, Reference, Process NamedTuples), the same values and
 * DecodeError for malformed input of any kind, and nothing else. The module docstring of
 * shim/thrift_decode.py defines the semantics; thrift_compact.py's generic reader is the
 * reference this file follows field by field.
 *
 * Wire rules (Apache Thrift TCompactProtocol): field header (id delta << 4) | ctype, delta 0
 * meaning a zigzag varint id follows; i16/i32/i64 are zigzag varints, lengths plain varints; a
 * bool field's value is its ctype (1 true, 2 false), a bool element one byte; doubles are 8
 * bytes little-endian; list header (size << 4) | etype, size 15 meaning a varint follows.
 *
 * Unlike the Python decoder this one needs no special path for the usual field layout: a
 * switch on the field id costs a few nanoseconds, so every struct is read by one loop that
 * takes fields in any order (the last duplicate wins) and skips unknown ones. The time goes
 * into creating Python objects, so repeated strings (tag keys, operation and service names)
 * and small repeated tag values (span.kind, status codes, booleans) come from bounded,
 * direct-mapped caches, and consecutive spans of one trace share the trace id object.
 *
 * Robustness: every read is bounds-checked (running out of data is "truncated"); list,
 * string and map sizes are checked against the bytes left before anything is allocated;
 * varints stop at 10 bytes; skipping unknown containers stops at depth 32. Nothing is held
 * across an allocation that a re-entrant call (a finalizer run by the garbage collector that
 * decodes too) could invalidate: cache entries are re-read after allocating.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32
#define M64 UINT64_C(0xFFFFFFFFFFFFFFFF)

/* TagType of jaeger.thrift */
enum { T_STRING = 0, T_DOUBLE = 1, T_BOOL = 2, T_LONG = 3, T_BINARY = 4 };

/* compact protocol types */
enum {
    CT_STOP = 0, CT_TRUE = 1, CT_FALSE = 2, CT_BYTE = 3, CT_I16 = 4, CT_I32 = 5, CT_I64 = 6,
    CT_DOUBLE = 7, CT_BINARY = 8, CT_LIST = 9, CT_SET = 10, CT_MAP = 11, CT_STRUCT = 12,
    CT_UUID = 13
};

/* From opentracing_sls.shim.model, imported at module init. */
static PyObject *DecodeError, *SpanType, *TagType, *LogType, *ReferenceType, *ProcessType;
/* Python ints 0-4 (tag types), the int 64 (trace id shift), the zero values of tag types */
static PyObject *type_ints[5], *int_64, *zero_values[5];

/* --- caches -----------------------------------------------------------------------------
 * Direct-mapped: a slot per hash, a miss replaces the slot, so the size is fixed and no
 * clearing is needed; a collision only costs speed. Tag values are cached per key while the
 * key has at most VALUES_PER_KEY distinct small values (as thrift_model.value_tag does): a
 * key with more (URLs, ids) stops caching so it cannot evict the useful entries. */
#define STR_SLOTS 4096          /* tag keys; operation and service names (each) */
#define VALUE_SLOTS 4096        /* Tags by (key, type, value) */
#define CACHED_STR_MAX 127      /* longer strings are not cached */
#define VALUES_PER_KEY 16
#define VALUE_BYTES 64          /* longer STRING values are not cached */

typedef struct {
    PyObject *raw;   /* bytes: the UTF-8 as on the wire (owned), NULL if the slot is empty */
    PyObject *str;   /* its decoded str (owned) */
    uint64_t hash;
    int values;      /* Tags of this key in the value cache; -1: the key caches no values */
} StrSlot;

typedef struct {
    PyObject *tag;   /* the cached Tag (owned), NULL if the slot is empty */
    PyObject *key;   /* tag[0]: compared by identity (the Tag keeps it alive) */
    uint64_t hash;
    int64_t number;  /* LONG value, BOOL 0/1 */
    Py_ssize_t len;  /* STRING: raw length */
    int type;
    unsigned char raw[VALUE_BYTES];
} ValueSlot;

static StrSlot key_cache[STR_SLOTS];
static StrSlot name_cache[STR_SLOTS];
static ValueSlot value_cache[VALUE_SLOTS];

static uint64_t mix(uint64_t h) {
    h ^= h >> 31;
    h *= UINT64_C(0xBF58476D1CE4E5B9);
    h ^= h >> 29;
    return h;
}

/* A hash of n bytes, read 8 at a time (only used to pick a slot: equality is memcmp). */
static uint64_t hash_bytes(const unsigned char *p, Py_ssize_t n) {
    uint64_t h = (uint64_t)n * UINT64_C(0x9E3779B97F4A7C15);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * UINT64_C(0xC2B2AE3D27D4EB4F);
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t w = 0;
        memcpy(&w, p, (size_t)n);
        h = (h ^ w) * UINT64_C(0xC2B2AE3D27D4EB4F);
    }
    return mix(h);
}

static void clear_str_cache(StrSlot *table) {
    for (Py_ssize_t i = 0; i < STR_SLOTS; i++) {
        PyObject *raw = table[i].raw, *str = table[i].str;
        table[i].raw = NULL;
        table[i].str = NULL;
        Py_XDECREF(raw);
        Py_XDECREF(str);
    }
}

static void clear_value_cache(void) {
    for (Py_ssize_t i = 0; i < VALUE_SLOTS; i++) {
        PyObject *tag = value_cache[i].tag;
        value_cache[i].tag = NULL;
        value_cache[i].key = NULL;
        Py_XDECREF(tag);
    }
}

static PyObject *text(const unsigned char *p, Py_ssize_t n) {
    /* invalid UTF-8 becomes U+FFFD, as the Go collector keeps such bytes too */
    return PyUnicode_DecodeUTF8((const char *)p, n, "replace");
}

/* The str of n UTF-8 bytes, from table when it was seen before (new reference). *where is
 * the slot now holding it, or NULL if the string is too long to cache; it stays valid until
 * the next allocation (after one, check that the slot still holds the str). */
static PyObject *cached_text(StrSlot *table, const unsigned char *p, Py_ssize_t n,
                             StrSlot **where) {
    *where = NULL;
    if (n > CACHED_STR_MAX) {
        return text(p, n);
    }
    uint64_t h = hash_bytes(p, n);
    StrSlot *slot = &table[h & (STR_SLOTS - 1)];
    if (slot->raw != NULL && slot->hash == h && PyBytes_GET_SIZE(slot->raw) == n
            && memcmp(PyBytes_AS_STRING(slot->raw), p, (size_t)n) == 0) {
        Py_INCREF(slot->str);
        *where = slot;
        return slot->str;
    }
    PyObject *str = text(p, n);
    if (str == NULL) {
        return NULL;
    }
    PyObject *raw = PyBytes_FromStringAndSize((const char *)p, n);
    if (raw == NULL) {
        Py_DECREF(str);
        return NULL;
    }
    /* the slot is written only now, after the allocations (see the top of the file) */
    PyObject *old_raw = slot->raw, *old_str = slot->str;
    Py_INCREF(str);
    slot->raw = raw;
    slot->str = str;
    slot->hash = h;
    slot->values = 0;
    Py_XDECREF(old_raw);
    Py_XDECREF(old_str); /* (frees a str or bytes: runs no Python code) */
    *where = slot;
    return str;
}

static PyObject *cached_name(const unsigned char *p, Py_ssize_t n) {
    StrSlot *unused;
    return cached_text(name_cache, p, n, &unused);
}

/* --- reader ------------------------------------------------------------------------------ */

typedef struct {
    const unsigned char *buf;
    Py_ssize_t end;
    Py_ssize_t pos;
    /* the last trace id object: consecutive spans (and their references) share it */
    PyObject *trace;
    uint64_t trace_hi, trace_lo;
} Reader;

static int fail(const char *reason) {
    PyErr_SetString(DecodeError, reason);
    return -1;
}

static int truncated(void) {
    return fail("truncated");
}

static int need(Reader *r, Py_ssize_t n) {
    return n <= r->end - r->pos ? 0 : truncated();
}

static int advance(Reader *r, Py_ssize_t n) {
    if (need(r, n) < 0) {
        return -1;
    }
    r->pos += n;
    return 0;
}

/* Unsigned varint, at most 10 bytes, mod 2^64. */
static int read_uvarint(Reader *r, uint64_t *out) {
    const unsigned char *p = r->buf + r->pos;
    Py_ssize_t left = r->end - r->pos;
    if (left > 0 && p[0] < 0x80) {
        *out = p[0];
        r->pos++;
        return 0;
    }
    uint64_t z = 0;
    for (int i = 0; i < 10; i++) {
        if (i >= left) {
            return truncated();
        }
        unsigned b = p[i];
        z |= (uint64_t)(b & 0x7F) << (7 * i); /* the 10th byte: bits above 63 drop out */
        if (b < 0x80) {
            r->pos += i + 1;
            *out = z;
            return 0;
        }
    }
    return fail("varint longer than 10 bytes");
}

static int read_i64(Reader *r, int64_t *out) {
    uint64_t z;
    if (read_uvarint(r, &z) < 0) {
        return -1;
    }
    *out = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return 0;
}

/* An i64 id as unsigned 64 bits. */
static int read_id(Reader *r, uint64_t *out) {
    uint64_t z;
    if (read_uvarint(r, &z) < 0) {
        return -1;
    }
    *out = (z & 1) ? (z >> 1) ^ M64 : z >> 1;
    return 0;
}

static int read_i32(Reader *r, int32_t *out) {
    uint64_t z;
    if (read_uvarint(r, &z) < 0) {
        return -1;
    }
    uint32_t low = (uint32_t)z; /* as the Go reader does: the low 32 bits of the varint */
    *out = (int32_t)(low >> 1) ^ -(int32_t)(low & 1);
    return 0;
}

static int read_double(Reader *r, double *out) {
    if (need(r, 8) < 0) {
        return -1;
    }
    const unsigned char *p = r->buf + r->pos;
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--) { /* little-endian on the wire, whatever the host is */
        bits = bits << 8 | p[i];
    }
    memcpy(out, &bits, 8);
    r->pos += 8;
    return 0;
}

/* A length-prefixed string or binary: its offset and length, checked against the data. */
static int read_bytes(Reader *r, Py_ssize_t *off, Py_ssize_t *len) {
    uint64_t n;
    if (read_uvarint(r, &n) < 0) {
        return -1;
    }
    if (n > (uint64_t)(r->end - r->pos)) {
        PyErr_Format(DecodeError, "string of %llu bytes past the end of the data",
                     (unsigned long long)n);
        return -1;
    }
    *off = r->pos;
    *len = (Py_ssize_t)n;
    r->pos += (Py_ssize_t)n;
    return 0;
}

/* Field header: *ct (0 is STOP) and *fid. A header byte whose type nibble is 0 is a STOP
 * whatever its delta, as in the Python reader. */
static int read_field(Reader *r, int *ct, int64_t *fid) {
    if (r->pos >= r->end) {
        return truncated();
    }
    unsigned h = r->buf[r->pos++];
    *ct = (int)(h & 0x0F);
    if (*ct == CT_STOP) {
        return 0;
    }
    if (h >> 4) {
        /* ids only grow by deltas: clamp far beyond any known id instead of overflowing */
        *fid = *fid > INT64_MAX - 16 ? *fid : *fid + (int64_t)(h >> 4);
        return 0;
    }
    uint64_t z; /* long form: a zigzag varint id follows (not cut to 16 bits, as in Python) */
    if (read_uvarint(r, &z) < 0) {
        return -1;
    }
    *fid = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return 0;
}

/* List/set header: element type and size, the size checked (every element takes a byte). */
static int read_list_head(Reader *r, int *et, uint64_t *n) {
    if (need(r, 1) < 0) {
        return -1;
    }
    unsigned h = r->buf[r->pos++];
    *et = (int)(h & 0x0F);
    *n = h >> 4;
    if (*n == 15 && read_uvarint(r, n) < 0) {
        return -1;
    }
    if (*n > (uint64_t)(r->end - r->pos)) {
        PyErr_Format(DecodeError, "list of %llu elements past the end of the data",
                     (unsigned long long)*n);
        return -1;
    }
    return 0;
}

/* Skips a value of compact type ct (elem: a container element, where a bool is a byte). */
static int skip(Reader *r, int ct, int depth, int elem) {
    uint64_t n;
    Py_ssize_t off, len;
    switch (ct) {
    case CT_TRUE:
    case CT_FALSE: /* a bool field's value is its type; an element is a byte */
        return elem ? advance(r, 1) : 0;
    case CT_BYTE:
        return advance(r, 1);
    case CT_I16:
    case CT_I32:
    case CT_I64:
        return read_uvarint(r, &n);
    case CT_DOUBLE:
        return advance(r, 8);
    case CT_BINARY:
        return read_bytes(r, &off, &len);
    case CT_UUID: /* Thrift 0.19+ */
        return advance(r, 16);
    }
    if (depth >= MAX_DEPTH) {
        PyErr_Format(DecodeError, "nesting deeper than %d", MAX_DEPTH);
        return -1;
    }
    switch (ct) {
    case CT_LIST:
    case CT_SET: {
        int et;
        if (read_list_head(r, &et, &n) < 0) {
            return -1;
        }
        for (uint64_t i = 0; i < n; i++) {
            if (skip(r, et, depth + 1, 1) < 0) {
                return -1;
            }
        }
        return 0;
    }
    case CT_MAP: { /* varint size, then (key ctype << 4 | value ctype) unless empty */
        if (read_uvarint(r, &n) < 0) {
            return -1;
        }
        if (n == 0) {
            return 0;
        }
        if (n > (uint64_t)(r->end - r->pos) / 2) { /* every entry takes at least 2 bytes */
            PyErr_Format(DecodeError, "map of %llu entries past the end of the data",
                         (unsigned long long)n);
            return -1;
        }
        if (need(r, 1) < 0) {
            return -1;
        }
        unsigned types = r->buf[r->pos++];
        for (uint64_t i = 0; i < n; i++) {
            if (skip(r, (int)(types >> 4), depth + 1, 1) < 0
                    || skip(r, (int)(types & 0x0F), depth + 1, 1) < 0) {
                return -1;
            }
        }
        return 0;
    }
    case CT_STRUCT: {
        int64_t fid = 0;
        int fct;
        for (;;) {
            if (read_field(r, &fct, &fid) < 0) {
                return -1;
            }
            if (fct == CT_STOP) {
                return 0;
            }
            if (skip(r, fct, depth + 1, 0) < 0) {
                return -1;
            }
        }
    }
    }
    PyErr_Format(DecodeError, "unknown compact type %d", ct);
    return -1;
}

/* A field the struct does not know, or known with another type (skipped as Apache Thrift
 * does). Unknown fields of known structs start at depth 1, as in the Python reader. */
static int skip_field(Reader *r, int ct) {
    return skip(r, ct, 1, 0);
}

static int missing(const char *what, int fid) {
    PyErr_Format(DecodeError, "%s without its required field %d", what, fid);
    return -1;
}

/* --- model objects ------------------------------------------------------------------------ */

/* An instance of the NamedTuple class cls holding items (stolen): tuple.__new__(cls, items),
 * the documented way to make a tuple subclass instance (the NamedTuple's own __new__ is a
 * Python function, several times slower). Allocating the subclass instance directly
 * (tp_alloc, then filling it in) measured ~12% faster overall but depends on how CPython
 * lays out and initialises tuples (3.14 adds a cached hash, for one): not worth it. */
static PyObject *instance(PyObject *cls, PyObject *items) {
    if (items == NULL) {
        return NULL;
    }
    PyObject *args = PyTuple_New(1);
    if (args == NULL) {
        Py_DECREF(items);
        return NULL;
    }
    PyTuple_SET_ITEM(args, 0, items);
    PyObject *obj = PyTuple_Type.tp_new((PyTypeObject *)cls, args, NULL);
    Py_DECREF(args);
    return obj;
}

/* A new Tag(key, type, value); key and value are stolen. */
static PyObject *new_tag(PyObject *key, int type, PyObject *value) {
    if (key == NULL || value == NULL) {
        Py_XDECREF(key);
        Py_XDECREF(value);
        return NULL;
    }
    PyObject *items = PyTuple_New(3);
    if (items == NULL) {
        Py_DECREF(key);
        Py_DECREF(value);
        return NULL;
    }
    Py_INCREF(type_ints[type]);
    PyTuple_SET_ITEM(items, 0, key);
    PyTuple_SET_ITEM(items, 1, type_ints[type]);
    PyTuple_SET_ITEM(items, 2, value);
    return instance(TagType, items);
}

/* high << 64 | low as a Python int; the last one is reused (the spans of a batch often
 * belong to few traces). */
static PyObject *trace_id(Reader *r, uint64_t hi, uint64_t lo) {
    if (r->trace != NULL && r->trace_hi == hi && r->trace_lo == lo) {
        Py_INCREF(r->trace);
        return r->trace;
    }
    PyObject *value;
    if (hi == 0) {
        value = PyLong_FromUnsignedLongLong(lo);
    } else {
        PyObject *high = PyLong_FromUnsignedLongLong(hi);
        PyObject *shifted = high ? PyNumber_Lshift(high, int_64) : NULL;
        Py_XDECREF(high);
        PyObject *low = shifted ? PyLong_FromUnsignedLongLong(lo) : NULL;
        value = low ? PyNumber_Or(shifted, low) : NULL;
        Py_XDECREF(shifted);
        Py_XDECREF(low);
    }
    if (value == NULL) {
        return NULL;
    }
    PyObject *old = r->trace;
    Py_INCREF(value);
    r->trace = value;
    r->trace_hi = hi;
    r->trace_lo = lo;
    Py_XDECREF(old);
    return value;
}

/* --- Tag --------------------------------------------------------------------------------- */

/* The Tag of a decoded Thrift Tag: the field vtype selects holds the value, its type's zero
 * value when missing (as in the Go collector); an unknown vType gives a STRING tag saying so,
 * so that one odd tag does not cost the whole batch. STRING (short), LONG and BOOL tags come
 * from the value cache while the key has few distinct values. */
typedef struct {
    Py_ssize_t key_off, key_len;
    int32_t vtype;
    int has_str, has_double, has_bool, has_long, has_binary;
    Py_ssize_t str_off, str_len, bin_off, bin_len;
    double dbl;
    int boolean;
    int64_t number;
} TagFields;

static PyObject *zero_value(int type) {
    Py_INCREF(zero_values[type]);
    return zero_values[type];
}

static PyObject *make_tag(Reader *r, const TagFields *f) {
    StrSlot *ks; /* the key's slot: per-key bookkeeping of the value cache */
    PyObject *key = cached_text(key_cache, r->buf + f->key_off, f->key_len, &ks);
    if (key == NULL) {
        return NULL;
    }
    int type = (int)f->vtype;
    if (type == T_DOUBLE) { /* not cached: measured values rarely repeat */
        return new_tag(key, type, f->has_double ? PyFloat_FromDouble(f->dbl) : zero_value(type));
    }
    if (type == T_BINARY) {
        return new_tag(key, type, f->has_binary
                       ? PyBytes_FromStringAndSize((const char *)r->buf + f->bin_off, f->bin_len)
                       : zero_value(type));
    }
    if (type < 0 || type > T_BINARY) {
        return new_tag(key, T_STRING, PyUnicode_FromFormat("unknown vType %d", (int)f->vtype));
    }
    /* STRING, BOOL, LONG: the value cache, unless the key is not cached or has too many
     * distinct values (URLs, ids) */
    const unsigned char *vp = (const unsigned char *)""; /* a missing value: empty */
    Py_ssize_t vlen = 0;
    int64_t number = 0;
    if (type == T_STRING) {
        if (f->has_str) {
            vp = r->buf + f->str_off;
            vlen = f->str_len;
        }
    } else {
        number = type == T_BOOL ? (f->has_bool ? f->boolean : 0) : (f->has_long ? f->number : 0);
    }
    int cacheable = ks != NULL && ks->values >= 0;
    uint64_t h = 0;
    if (cacheable) {
        h = mix((uint64_t)(uintptr_t)key ^ (uint64_t)type << 56);
        h = mix(h ^ (type == T_STRING ? hash_bytes(vp, vlen) : (uint64_t)number));
        ValueSlot *vs = &value_cache[h & (VALUE_SLOTS - 1)];
        if (vs->tag != NULL && vs->key == key && vs->hash == h && vs->type == type
                && (type == T_STRING ? vs->len == vlen && memcmp(vs->raw, vp, (size_t)vlen) == 0
                                     : vs->number == number)) {
            Py_DECREF(key);
            Py_INCREF(vs->tag);
            return vs->tag;
        }
    }
    PyObject *value;
    if (type == T_STRING) {
        value = vlen ? text(vp, vlen) : zero_value(type);
    } else if (type == T_BOOL) {
        value = PyBool_FromLong((long)number);
    } else {
        value = PyLong_FromLongLong(number);
    }
    Py_INCREF(key); /* kept for the cache bookkeeping below */
    PyObject *tag = new_tag(key, type, value);
    if (tag == NULL || !cacheable) {
        Py_DECREF(key);
        return tag;
    }
    /* Re-read both slots: the allocations above may have run a re-entrant decode. */
    if (ks->str == key && ks->values >= 0) {
        if (ks->values >= VALUES_PER_KEY || vlen > VALUE_BYTES) {
            ks->values = -1; /* a high-cardinality key: stop caching (and looking up) */
        } else {
            ks->values++;
            ValueSlot *vs = &value_cache[h & (VALUE_SLOTS - 1)];
            PyObject *old = vs->tag;
            Py_INCREF(tag);
            vs->tag = tag;
            vs->key = key; /* the Tag holds a reference, so the identity stays valid */
            vs->hash = h;
            vs->type = type;
            vs->number = number;
            vs->len = vlen;
            if (vlen) {
                memcpy(vs->raw, vp, (size_t)vlen);
            }
            Py_XDECREF(old);
        }
    }
    Py_DECREF(key);
    return tag;
}

/* Tag struct: 1 key, 2 vType, 3 vStr, 4 vDouble, 5 vBool, 6 vLong, 7 vBinary. Values are
 * located while reading and only the selected one is decoded (decoding cannot fail). */
static PyObject *read_tag(Reader *r) {
    TagFields f;
    memset(&f, 0, sizeof(f));
    int has_key = 0, has_type = 0;
    int64_t fid = 0;
    int ct;
    for (;;) {
        if (read_field(r, &ct, &fid) < 0) {
            return NULL;
        }
        if (ct == CT_STOP) {
            break;
        }
        switch (fid) {
        case 1:
            if (ct == CT_BINARY) {
                if (read_bytes(r, &f.key_off, &f.key_len) < 0) {
                    return NULL;
                }
                has_key = 1;
                continue;
            }
            break;
        case 2:
            if (ct == CT_I32) {
                if (read_i32(r, &f.vtype) < 0) {
                    return NULL;
                }
                has_type = 1;
                continue;
            }
            break;
        case 3:
            if (ct == CT_BINARY) {
                if (read_bytes(r, &f.str_off, &f.str_len) < 0) {
                    return NULL;
                }
                f.has_str = 1;
                continue;
            }
            break;
        case 4:
            if (ct == CT_DOUBLE) {
                if (read_double(r, &f.dbl) < 0) {
                    return NULL;
                }
                f.has_double = 1;
                continue;
            }
            break;
        case 5:
            if (ct == CT_TRUE || ct == CT_FALSE) {
                f.boolean = ct == CT_TRUE;
                f.has_bool = 1;
                continue;
            }
            break;
        case 6:
            if (ct == CT_I64) {
                if (read_i64(r, &f.number) < 0) {
                    return NULL;
                }
                f.has_long = 1;
                continue;
            }
            break;
        case 7:
            if (ct == CT_BINARY) {
                if (read_bytes(r, &f.bin_off, &f.bin_len) < 0) {
                    return NULL;
                }
                f.has_binary = 1;
                continue;
            }
            break;
        }
        if (skip_field(r, ct) < 0) {
            return NULL;
        }
    }
    if (!has_key) {
        missing("tag", 1);
        return NULL;
    }
    if (!has_type) {
        missing("tag", 2);
        return NULL;
    }
    return make_tag(r, &f);
}

/* --- lists of structs ---------------------------------------------------------------------- */

typedef PyObject *(*StructReader)(Reader *r);

/* A list<struct> field as a tuple; what names the error for a list of another type. */
static PyObject *read_struct_list(Reader *r, StructReader read, const char *what) {
    int et;
    uint64_t n;
    if (read_list_head(r, &et, &n) < 0) {
        return NULL;
    }
    if (n && et != CT_STRUCT) {
        PyErr_Format(DecodeError, what, et);
        return NULL;
    }
    PyObject *items = PyTuple_New((Py_ssize_t)n); /* n <= the bytes left: checked above */
    if (items == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < (Py_ssize_t)n; i++) {
        PyObject *item = read(r);
        if (item == NULL) {
            Py_DECREF(items);
            return NULL;
        }
        PyTuple_SET_ITEM(items, i, item);
    }
    return items;
}

static PyObject *read_tags(Reader *r) {
    return read_struct_list(r, read_tag, "tag list of ctype %d");
}

#define STRUCT_LIST_ERROR "list of ctype %d where structs were expected"

/* Log struct: 1 timestamp, 2 fields. */
static PyObject *read_log(Reader *r) {
    int64_t timestamp = 0;
    PyObject *fields = NULL;
    int has_timestamp = 0;
    int64_t fid = 0;
    int ct;
    for (;;) {
        if (read_field(r, &ct, &fid) < 0) {
            goto error;
        }
        if (ct == CT_STOP) {
            break;
        }
        if (fid == 1 && ct == CT_I64) {
            if (read_i64(r, &timestamp) < 0) {
                goto error;
            }
            has_timestamp = 1;
        } else if (fid == 2 && ct == CT_LIST) {
            PyObject *tags = read_tags(r);
            if (tags == NULL) {
                goto error;
            }
            Py_XDECREF(fields);
            fields = tags;
        } else if (skip_field(r, ct) < 0) {
            goto error;
        }
    }
    if (!has_timestamp || fields == NULL) {
        missing("log", has_timestamp ? 2 : 1);
        goto error;
    }
    PyObject *items = PyTuple_New(2);
    PyObject *ts = items ? PyLong_FromLongLong(timestamp) : NULL;
    if (ts == NULL) {
        Py_XDECREF(items);
        goto error;
    }
    PyTuple_SET_ITEM(items, 0, ts);
    PyTuple_SET_ITEM(items, 1, fields);
    return instance(LogType, items);
error:
    Py_XDECREF(fields);
    return NULL;
}

/* SpanRef struct: 1 refType, 2 traceIdLow, 3 traceIdHigh, 4 spanId. */
static PyObject *read_ref(Reader *r) {
    int32_t ref_type = 0;
    uint64_t lo = 0, hi = 0, span_id = 0;
    unsigned has = 0;
    int64_t fid = 0;
    int ct;
    for (;;) {
        if (read_field(r, &ct, &fid) < 0) {
            return NULL;
        }
        if (ct == CT_STOP) {
            break;
        }
        int rc;
        if (fid == 1 && ct == CT_I32) {
            rc = read_i32(r, &ref_type);
        } else if (fid == 2 && ct == CT_I64) {
            rc = read_id(r, &lo);
        } else if (fid == 3 && ct == CT_I64) {
            rc = read_id(r, &hi);
        } else if (fid == 4 && ct == CT_I64) {
            rc = read_id(r, &span_id);
        } else {
            if (skip_field(r, ct) < 0) {
                return NULL;
            }
            continue;
        }
        if (rc < 0) {
            return NULL;
        }
        has |= 1u << fid;
    }
    for (int i = 1; i <= 4; i++) {
        if (!(has & 1u << i)) {
            missing("span reference", i);
            return NULL;
        }
    }
    PyObject *items = PyTuple_New(3);
    if (items == NULL) {
        return NULL;
    }
    PyObject *a = PyLong_FromLong(ref_type);
    PyObject *b = a ? trace_id(r, hi, lo) : NULL;
    PyObject *c = b ? PyLong_FromUnsignedLongLong(span_id) : NULL;
    if (c == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        Py_DECREF(items);
        return NULL;
    }
    PyTuple_SET_ITEM(items, 0, a);
    PyTuple_SET_ITEM(items, 1, b);
    PyTuple_SET_ITEM(items, 2, c);
    return instance(ReferenceType, items);
}

/* --- Span ---------------------------------------------------------------------------------- */

/* Span struct: 1 traceIdLow, 2 traceIdHigh, 3 spanId, 4 parentSpanId, 5 operationName,
 * 6 references, 7 flags, 8 startTime, 9 duration, 10 tags, 11 logs. process may be NULL
 * (the Batch's process field comes later): None stands in until read_batch sets it. */
static PyObject *read_span(Reader *r, PyObject *process) {
    uint64_t lo = 0, hi = 0, span_id = 0, parent_id = 0;
    int32_t flags = 0;
    int64_t start = 0, duration = 0;
    PyObject *op = NULL, *refs = NULL, *tags = NULL, *logs = NULL, *items = NULL;
    unsigned has = 0;
    int64_t fid = 0;
    int ct;
    for (;;) {
        if (read_field(r, &ct, &fid) < 0) {
            goto error;
        }
        if (ct == CT_STOP) {
            break;
        }
        int rc = 0;
        PyObject *obj = NULL, **slot = NULL;
        switch (fid) {
        case 1: if (ct != CT_I64) goto unknown; rc = read_id(r, &lo); break;
        case 2: if (ct != CT_I64) goto unknown; rc = read_id(r, &hi); break;
        case 3: if (ct != CT_I64) goto unknown; rc = read_id(r, &span_id); break;
        case 4: if (ct != CT_I64) goto unknown; rc = read_id(r, &parent_id); break;
        case 5: {
            if (ct != CT_BINARY) goto unknown;
            Py_ssize_t off, len;
            if (read_bytes(r, &off, &len) < 0) {
                goto error;
            }
            obj = cached_name(r->buf + off, len);
            slot = &op;
            break;
        }
        case 6:
            if (ct != CT_LIST) goto unknown;
            obj = read_struct_list(r, read_ref, STRUCT_LIST_ERROR);
            slot = &refs;
            break;
        case 7: if (ct != CT_I32) goto unknown; rc = read_i32(r, &flags); break;
        case 8: if (ct != CT_I64) goto unknown; rc = read_i64(r, &start); break;
        case 9: if (ct != CT_I64) goto unknown; rc = read_i64(r, &duration); break;
        case 10:
            if (ct != CT_LIST) goto unknown;
            obj = read_tags(r);
            slot = &tags;
            break;
        case 11:
            if (ct != CT_LIST) goto unknown;
            obj = read_struct_list(r, read_log, STRUCT_LIST_ERROR);
            slot = &logs;
            break;
        default:
            goto unknown;
        }
        if (slot != NULL) { /* an object field: the last duplicate wins */
            if (obj == NULL) {
                goto error;
            }
            Py_XDECREF(*slot);
            *slot = obj;
        } else if (rc < 0) {
            goto error;
        }
        has |= 1u << fid;
        continue;
    unknown:
        if (skip_field(r, ct) < 0) {
            goto error;
        }
    }
    static const int required[] = {1, 2, 3, 4, 5, 7, 8, 9};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (!(has & 1u << required[i])) {
            missing("span", required[i]);
            goto error;
        }
    }
    items = PyTuple_New(11);
    if (items == NULL) {
        goto error;
    }
    PyObject *values[7];
    values[0] = trace_id(r, hi, lo);
    values[1] = values[0] ? PyLong_FromUnsignedLongLong(span_id) : NULL;
    values[2] = values[1] ? PyLong_FromUnsignedLongLong(parent_id) : NULL;
    values[3] = op;
    op = NULL;
    values[4] = values[2] ? PyLong_FromLong(flags) : NULL;
    values[5] = values[4] ? PyLong_FromLongLong(start) : NULL;
    values[6] = values[5] ? PyLong_FromLongLong(duration) : NULL;
    for (int i = 0; i < 7; i++) {
        PyTuple_SET_ITEM(items, i, values[i]); /* NULLs are fine in a tuple being freed */
    }
    if (values[6] == NULL) {
        goto error;
    }
    if (process == NULL) {
        process = Py_None;
    }
    Py_INCREF(process);
    PyTuple_SET_ITEM(items, 7, tags ? tags : PyTuple_New(0));
    PyTuple_SET_ITEM(items, 8, logs ? logs : PyTuple_New(0));
    PyTuple_SET_ITEM(items, 9, refs ? refs : PyTuple_New(0));
    PyTuple_SET_ITEM(items, 10, process);
    tags = logs = refs = NULL;
    if (!PyTuple_GET_ITEM(items, 7) || !PyTuple_GET_ITEM(items, 8)
            || !PyTuple_GET_ITEM(items, 9)) {
        goto error;
    }
    return instance(SpanType, items);
error:
    Py_XDECREF(items);
    Py_XDECREF(op);
    Py_XDECREF(refs);
    Py_XDECREF(tags);
    Py_XDECREF(logs);
    return NULL;
}

/* --- Process, ClientStats, Batch, message --------------------------------------------------- */

/* Process struct: 1 serviceName, 2 tags. */
static PyObject *read_process(Reader *r) {
    PyObject *name = NULL, *tags = NULL;
    int64_t fid = 0;
    int ct;
    for (;;) {
        if (read_field(r, &ct, &fid) < 0) {
            goto error;
        }
        if (ct == CT_STOP) {
            break;
        }
        if (fid == 1 && ct == CT_BINARY) {
            Py_ssize_t off, len;
            if (read_bytes(r, &off, &len) < 0) {
                goto error;
            }
            PyObject *obj = cached_name(r->buf + off, len);
            if (obj == NULL) {
                goto error;
            }
            Py_XDECREF(name);
            name = obj;
        } else if (fid == 2 && ct == CT_LIST) {
            PyObject *obj = read_tags(r);
            if (obj == NULL) {
                goto error;
            }
            Py_XDECREF(tags);
            tags = obj;
        } else if (skip_field(r, ct) < 0) {
            goto error;
        }
    }
    if (name == NULL) {
        missing("process", 1);
        goto error;
    }
    if (tags == NULL && (tags = PyTuple_New(0)) == NULL) {
        goto error;
    }
    PyObject *items = PyTuple_New(2);
    if (items == NULL) {
        goto error;
    }
    PyTuple_SET_ITEM(items, 0, name);
    PyTuple_SET_ITEM(items, 1, tags);
    return instance(ProcessType, items);
error:
    Py_XDECREF(name);
    Py_XDECREF(tags);
    return NULL;
}

/* ClientStats struct: three i64 counters, as a plain 3-tuple. */
static PyObject *read_stats(Reader *r) {
    int64_t counters[4] = {0, 0, 0, 0};
    unsigned has = 0;
    int64_t fid = 0;
    int ct;
    for (;;) {
        if (read_field(r, &ct, &fid) < 0) {
            return NULL;
        }
        if (ct == CT_STOP) {
            break;
        }
        if (fid >= 1 && fid <= 3 && ct == CT_I64) {
            if (read_i64(r, &counters[fid]) < 0) {
                return NULL;
            }
            has |= 1u << fid;
        } else if (skip_field(r, ct) < 0) {
            return NULL;
        }
    }
    for (int i = 1; i <= 3; i++) {
        if (!(has & 1u << i)) {
            missing("client stats", i);
            return NULL;
        }
    }
    return Py_BuildValue("(LLL)", (long long)counters[1], (long long)counters[2],
                         (long long)counters[3]);
}

typedef struct {
    PyObject *spans;   /* list */
    PyObject *process;
    PyObject *seq_no;  /* int or NULL */
    PyObject *stats;   /* tuple or NULL */
} Batch;

static void batch_clear(Batch *b) {
    Py_CLEAR(b->spans);
    Py_CLEAR(b->process);
    Py_CLEAR(b->seq_no);
    Py_CLEAR(b->stats);
}

static PyObject *read_spans(Reader *r, PyObject *process) {
    int et;
    uint64_t n;
    if (read_list_head(r, &et, &n) < 0) {
        return NULL;
    }
    if (n && et != CT_STRUCT) {
        PyErr_Format(DecodeError, "span list of ctype %d", et);
        return NULL;
    }
    PyObject *spans = PyList_New((Py_ssize_t)n); /* n <= the bytes left: checked above */
    if (spans == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < (Py_ssize_t)n; i++) {
        PyObject *span = read_span(r, process);
        if (span == NULL) {
            Py_DECREF(spans);
            return NULL;
        }
        PyList_SET_ITEM(spans, i, span);
    }
    return spans;
}

/* Batch struct: 1 process, 2 spans, 3 seqNo, 4 stats. Every span shares the one Process
 * object; if the spans came first (no known writer does that) they get it afterwards. */
static int read_batch(Reader *r, Batch *b) {
    int spans_first = 0;
    int64_t fid = 0;
    int ct;
    for (;;) {
        if (read_field(r, &ct, &fid) < 0) {
            return -1;
        }
        if (ct == CT_STOP) {
            break;
        }
        PyObject *obj, **slot;
        if (fid == 1 && ct == CT_STRUCT) {
            obj = read_process(r);
            slot = &b->process;
        } else if (fid == 2 && ct == CT_LIST) {
            spans_first = b->process == NULL;
            obj = read_spans(r, b->process);
            slot = &b->spans;
        } else if (fid == 3 && ct == CT_I64) {
            int64_t seq_no;
            obj = read_i64(r, &seq_no) < 0 ? NULL : PyLong_FromLongLong(seq_no);
            slot = &b->seq_no;
        } else if (fid == 4 && ct == CT_STRUCT) {
            obj = read_stats(r);
            slot = &b->stats;
        } else {
            if (skip_field(r, ct) < 0) {
                return -1;
            }
            continue;
        }
        if (obj == NULL) {
            return -1;
        }
        Py_XDECREF(*slot);
        *slot = obj;
    }
    if (b->process == NULL) {
        return fail("batch without a process");
    }
    if (b->spans == NULL) {
        return fail("batch without spans");
    }
    if (spans_first) {
        /* The spans were made here and nobody else has seen them: filling in the process
         * now is filling in new tuples, as PyTuple_SET_ITEM is meant for. */
        Py_ssize_t n = PyList_GET_SIZE(b->spans);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *span = PyList_GET_ITEM(b->spans, i);
            PyObject *old = PyTuple_GET_ITEM(span, 10);
            Py_INCREF(b->process);
            PyTuple_SET_ITEM(span, 10, b->process);
            Py_DECREF(old);
        }
    }
    return 0;
}

static const unsigned char EMIT_BATCH[] = "emitBatch";

/* The header of a compact emitBatch message: protocol id 0x82, version 1, type ONEWAY as
 * sent (CALL tolerated: Thrift processors accept it), seqid, the name emitBatch. */
static int read_message_head(Reader *r) {
    /* (the first two bytes read as 0 past the end, as the Python reader's padding does) */
    unsigned b0 = r->end > 0 ? r->buf[0] : 0, b1 = r->end > 1 ? r->buf[1] : 0;
    if (b0 != 0x82) {
        return fail("not a compact protocol message");
    }
    if ((b1 & 0x1F) != 1) {
        PyErr_Format(DecodeError, "compact protocol version %d", (int)(b1 & 0x1F));
        return -1;
    }
    if (b1 >> 5 != 1 && b1 >> 5 != 4) {
        PyErr_Format(DecodeError, "message type %d is not a call", (int)(b1 >> 5));
        return -1;
    }
    r->pos = 2;
    uint64_t seqid;
    Py_ssize_t off, len;
    if (read_uvarint(r, &seqid) < 0 || read_bytes(r, &off, &len) < 0) {
        return -1;
    }
    if (len != (Py_ssize_t)sizeof(EMIT_BATCH) - 1
            || memcmp(r->buf + off, EMIT_BATCH, sizeof(EMIT_BATCH) - 1) != 0) {
        PyObject *name = PyBytes_FromStringAndSize((const char *)r->buf + off,
                                                   len < 40 ? len : 40);
        if (name != NULL) {
            PyErr_Format(DecodeError, "message %R is not emitBatch", name);
            Py_DECREF(name);
        }
        return -1;
    }
    return 0;
}

static int read_input(Reader *r, int message, Batch *b) {
    if (!message) {
        return read_batch(r, b);
    }
    if (read_message_head(r) < 0) {
        return -1;
    }
    int64_t fid = 0;
    int ct;
    for (;;) { /* emitBatch_args: the Batch is field 1 */
        if (read_field(r, &ct, &fid) < 0) {
            return -1;
        }
        if (ct == CT_STOP) {
            break;
        }
        if (fid == 1 && ct == CT_STRUCT) {
            batch_clear(b); /* a repeated field: the last one wins */
            if (read_batch(r, b) < 0) {
                return -1;
            }
        } else if (skip_field(r, ct) < 0) {
            return -1;
        }
    }
    if (b->spans == NULL) {
        return fail("emitBatch without a batch");
    }
    return 0;
}

/* Any exception other than DecodeError (MemoryError...) becomes DecodeError, as in the
 * Python decoder: the receivers count malformed input and expect nothing else. */
static void as_decode_error(void) {
    if (PyErr_ExceptionMatches(DecodeError) || !PyErr_ExceptionMatches(PyExc_Exception)) {
        return;
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException(); /* PyErr_Fetch is deprecated from 3.12 */
    PyErr_Format(DecodeError, "malformed (%s)", Py_TYPE(exc)->tp_name);
    Py_DECREF(exc);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_Format(DecodeError, "malformed (%s)", ((PyTypeObject *)type)->tp_name);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
#endif
}

PyDoc_STRVAR(decode_doc,
"decode(data, message) -> (spans, process, seq_no, stats)\n\n"
"An Agent.emitBatch message (message true) or a bare Batch in the Thrift compact protocol,\n"
"exactly as opentracing_sls.shim.thrift_compact.decode. Raises DecodeError and nothing else.");

static PyObject *decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "decode() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *data = args[0], *result = NULL;
    Batch b = {NULL, NULL, NULL, NULL};
    Reader r = {NULL, 0, 0, NULL, 0, 0};
    int message = PyObject_IsTrue(args[1]);
    if (message < 0) {
        goto done;
    }
    if (PyBytes_CheckExact(data)) {
        Py_INCREF(data);
    } else {
        /* any bytes-like object, copied (as bytes(memoryview(data)): bytes(10**9) would
         * allocate); the copy cannot change under us as a bytearray could */
        PyObject *view = PyMemoryView_FromObject(data);
        data = view ? PyBytes_FromObject(view) : NULL;
        Py_XDECREF(view);
        if (data == NULL) {
            goto done;
        }
    }
    r.buf = (const unsigned char *)PyBytes_AS_STRING(data);
    r.end = PyBytes_GET_SIZE(data);
    if (read_input(&r, message, &b) == 0) {
        if (r.pos < r.end) {
            PyErr_Format(DecodeError, "%zd bytes after the end", r.end - r.pos);
        } else {
            PyObject *seq_no = b.seq_no ? b.seq_no : Py_None;
            PyObject *stats = b.stats ? b.stats : Py_None;
            result = PyTuple_Pack(4, b.spans, b.process, seq_no, stats);
        }
    }
    Py_DECREF(data);
done:
    batch_clear(&b);
    Py_XDECREF(r.trace);
    if (result == NULL) {
        as_decode_error();
    }
    return result;
}

PyDoc_STRVAR(clear_caches_doc,
"clear_caches()\n\nEmpties the caches of strings and tags (tests; they are bounded anyway).");

static PyObject *clear_caches(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    clear_str_cache(key_cache);
    clear_str_cache(name_cache);
    clear_value_cache();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(cache_stats_doc,
"cache_stats() -> dict\n\nOccupied slots of each cache and their capacity (tests).");

static PyObject *cache_stats(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    Py_ssize_t keys = 0, names = 0, values = 0;
    for (Py_ssize_t i = 0; i < STR_SLOTS; i++) {
        keys += key_cache[i].raw != NULL;
        names += name_cache[i].raw != NULL;
    }
    for (Py_ssize_t i = 0; i < VALUE_SLOTS; i++) {
        values += value_cache[i].tag != NULL;
    }
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:i}", "keys", keys, "names", names,
                         "values", values, "str_slots", (Py_ssize_t)STR_SLOTS,
                         "value_slots", (Py_ssize_t)VALUE_SLOTS,
                         "values_per_key", VALUES_PER_KEY);
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL, decode_doc},
    {"clear_caches", clear_caches, METH_NOARGS, clear_caches_doc},
    {"cache_stats", cache_stats, METH_NOARGS, cache_stats_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_ccompact",
    "C accelerator of the shim's Jaeger Thrift compact decoder (see thrift_compact.decode).",
    -1, methods, NULL, NULL, NULL, NULL,
};

static int import_model(void) {
    PyObject *model = PyImport_ImportModule("opentracing_sls.shim.model");
    if (model == NULL) {
        return -1;
    }
    struct { PyObject **target; const char *name; } names[] = {
        {&DecodeError, "DecodeError"}, {&SpanType, "Span"}, {&TagType, "Tag"},
        {&LogType, "Log"}, {&ReferenceType, "Reference"}, {&ProcessType, "Process"},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && rc == 0; i++) {
        *names[i].target = PyObject_GetAttrString(model, names[i].name);
        if (*names[i].target == NULL) {
            rc = -1;
        } else if (i > 0 && !(PyType_Check(*names[i].target)
                              && PyType_IsSubtype((PyTypeObject *)*names[i].target,
                                                  &PyTuple_Type))) {
            /* instance() relies on it: every model class must be a tuple subclass */
            PyErr_Format(PyExc_TypeError, "model.%s is not a tuple subclass", names[i].name);
            rc = -1;
        }
    }
    Py_DECREF(model);
    return rc;
}

PyMODINIT_FUNC PyInit__ccompact(void) {
    if (import_model() < 0) {
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        if ((type_ints[i] = PyLong_FromLong(i)) == NULL) {
            return NULL;
        }
    }
    zero_values[T_STRING] = PyUnicode_FromString("");
    zero_values[T_DOUBLE] = PyFloat_FromDouble(0.0);
    zero_values[T_BOOL] = Py_False;
    Py_INCREF(Py_False);
    zero_values[T_LONG] = PyLong_FromLong(0);
    zero_values[T_BINARY] = PyBytes_FromStringAndSize(NULL, 0);
    int_64 = PyLong_FromLong(64);
    for (int i = 0; i < 5; i++) {
        if (zero_values[i] == NULL) {
            return NULL;
        }
    }
    if (int_64 == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
