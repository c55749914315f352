/* The Flask server span's tags in C for the common environ (flask.py's _server_tags and
 * wsgi.py's request_url): every part a str, a Host header, a path that needs no quoting,
 * a peer address seen before. Anything else returns NULL without an error and the Python
 * functions build the tags, so the two agree by construction. */
#ifndef OPENTRACING_SLS_SERVER_TAGS_H
#define OPENTRACING_SLS_SERVER_TAGS_H

#include <Python.h>

typedef struct {
    PyObject *base;      /* {span.kind: server, component: flask} */
    PyObject *names;     /* (http.method, http.url, peer.hostname, peer.port) */
    PyObject *ip_kinds;  /* tagging._ip_kind_cache: address -> peer.ipv4 | peer.ipv6 | None */
} ServerTagConfig;

static PyObject *st_scheme, *st_host, *st_script, *st_path, *st_query, *st_addr, *st_port,
    *st_http, *st_empty;

static int server_tags_init(void) {
    struct { PyObject **slot; const char *text; } strings[] = {
        {&st_scheme, "wsgi.url_scheme"}, {&st_host, "HTTP_HOST"}, {&st_script, "SCRIPT_NAME"},
        {&st_path, "PATH_INFO"}, {&st_query, "QUERY_STRING"}, {&st_addr, "REMOTE_ADDR"},
        {&st_port, "REMOTE_PORT"}, {&st_http, "http"}, {&st_empty, ""},
    };
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        if ((*strings[i].slot = PyUnicode_InternFromString(strings[i].text)) == NULL)
            return -1;
    }
    return 0;
}

/* environ[key] when it is absent (``fallback``) or an exact str (borrowed); NULL when it is
 * something else or on error. */
static PyObject *environ_str(PyObject *environ, PyObject *key, PyObject *fallback) {
    PyObject *value = PyDict_GetItemWithError(environ, key);
    if (value == NULL)
        return PyErr_Occurred() ? NULL : fallback;
    return PyUnicode_CheckExact(value) ? value : NULL;
}

/* Whether every character of ``text`` is one request_url leaves unquoted. */
static int url_safe(PyObject *text) {
    static char safe[128];
    if (!safe['a']) {
        const char *chars = "/:@!$&'()*+,;=-._~%";
        for (int c = 0; c < 128; c++)
            safe[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9');
        for (const char *p = chars; *p; p++)
            safe[(unsigned char)*p] = 1;
    }
    if (!PyUnicode_IS_ASCII(text))
        return 0;
    const unsigned char *data = PyUnicode_1BYTE_DATA(text);
    for (Py_ssize_t i = 0; i < PyUnicode_GET_LENGTH(text); i++) {
        if (!safe[data[i]])
            return 0;
    }
    return 1;
}

/* request_url(environ), or NULL (error set or not) when the Python function must build
 * it: only ASCII parts are joined here. */
static PyObject *request_url_fast(PyObject *environ) {
    PyObject *scheme = environ_str(environ, st_scheme, st_http);
    PyObject *host = scheme == NULL ? NULL : environ_str(environ, st_host, NULL);
    PyObject *script = host == NULL ? NULL : environ_str(environ, st_script, st_empty);
    PyObject *path = script == NULL ? NULL : environ_str(environ, st_path, st_empty);
    PyObject *query = path == NULL ? NULL : environ_str(environ, st_query, st_empty);
    if (query == NULL || PyUnicode_GET_LENGTH(host) == 0 || !PyUnicode_IS_ASCII(scheme) ||
        !PyUnicode_IS_ASCII(host) || !PyUnicode_IS_ASCII(query) || !url_safe(script) ||
        !url_safe(path))
        return NULL;
    PyObject *parts[] = {scheme, NULL, host, script, path, NULL, query};
    const char *literal[] = {NULL, "://", NULL, NULL, NULL, "?", NULL};
    int count = PyUnicode_GET_LENGTH(query) > 0 ? 7 : 5;
    Py_ssize_t length = 0;
    for (int i = 0; i < count; i++)
        length += parts[i] != NULL ? PyUnicode_GET_LENGTH(parts[i])
                                   : (Py_ssize_t)strlen(literal[i]);
    PyObject *url = PyUnicode_New(length, 127);
    if (url == NULL)
        return NULL;
    char *out = (char *)PyUnicode_1BYTE_DATA(url);
    for (int i = 0; i < count; i++) {
        const char *data = parts[i] != NULL ? (const char *)PyUnicode_1BYTE_DATA(parts[i])
                                            : literal[i];
        size_t size = parts[i] != NULL ? (size_t)PyUnicode_GET_LENGTH(parts[i])
                                       : strlen(literal[i]);
        memcpy(out, data, size);
        out += size;
    }
    return url;
}

/* _server_tags(environ, method), or NULL (error set or not) when the Python function must
 * build them. */
static PyObject *server_tags_fast(const ServerTagConfig *config, PyObject *environ,
                                  PyObject *method) {
    PyObject *url = request_url_fast(environ);
    if (url == NULL)
        return NULL;
    PyObject *names = config->names;
    PyObject *tags = PyDict_Copy(config->base);
    if (tags == NULL || PyDict_SetItem(tags, PyTuple_GET_ITEM(names, 0), method) < 0 ||
        PyDict_SetItem(tags, PyTuple_GET_ITEM(names, 1), url) < 0)
        goto fail;
    Py_CLEAR(url);
    PyObject *address = PyDict_GetItemWithError(environ, st_addr);
    if (address == NULL) {
        if (PyErr_Occurred())
            goto fail;
        return tags;
    }
    if (!PyUnicode_CheckExact(address))
        goto python;
    if (PyUnicode_GET_LENGTH(address) == 0)
        return tags;
    /* The address kind comes from tagging's cache; a new address goes to Python once. */
    PyObject *kind = PyDict_GetItemWithError(config->ip_kinds, address);
    if (kind == NULL)
        goto python;
    if (PyDict_SetItem(tags, kind == Py_None ? PyTuple_GET_ITEM(names, 2) : kind, address) < 0)
        goto fail;
    PyObject *port = PyDict_GetItemWithError(environ, st_port);
    if (port == NULL) {
        if (PyErr_Occurred())
            goto fail;
        return tags;
    }
    if (!PyUnicode_CheckExact(port))
        goto python;
    if (PyUnicode_GET_LENGTH(port) == 0)
        return tags;
    PyObject *number = PyLong_FromUnicodeObject(port, 10);
    if (number == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError))
            goto fail;
        PyErr_Clear(); /* int(port) failed: no peer.port, as in Python */
        return tags;
    }
    int rc = PyDict_SetItem(tags, PyTuple_GET_ITEM(names, 3), number);
    Py_DECREF(number);
    if (rc < 0)
        goto fail;
    return tags;
python:
    if (PyErr_Occurred())
        goto fail;
    Py_XDECREF(tags);
    return NULL;
fail:
    Py_XDECREF(url);
    Py_XDECREF(tags);
    return NULL;
}

#endif
