"""WSGI helpers shared by the server-side integration: a header carrier over an environ,
the request URL, and the server's file wrapper."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Dict, Iterator
from urllib.parse import quote

_URL_SAFE = "/:@!$&'()*+,;=-._~%"


class WSGIHeaders(Mapping):
    """A read-only, case-insensitive view of the HTTP headers of a WSGI environ.

    A carrier every OpenTracing tracer can read (iteration yields lower-case names). Ours
    sees the ``environ`` attribute and looks up the few keys it needs in place.
    """

    __slots__ = ("environ",)

    def __init__(self, environ: Dict[str, Any]) -> None:
        self.environ = environ

    def __getitem__(self, name: str) -> Any:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        return self.environ[key]

    def __iter__(self) -> Iterator[str]:
        for key in list(self.environ):
            if isinstance(key, str) and key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self)


def is_file_wrapper(result: Any, environ: Dict[str, Any]) -> bool:
    """Whether ``result`` is the server's ``wsgi.file_wrapper``."""
    # Wrapping the server's own file wrapper would cost it its sendfile() path; the span then
    # ends when the file is handed over.
    wrapper = environ.get("wsgi.file_wrapper")
    return isinstance(wrapper, type) and isinstance(result, wrapper)


_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9/:@!$&'()*+,;=\-._~%]")


def request_url(environ: Dict[str, Any]) -> str:
    """The request URL as the client sent it (PEP 3333's reconstruction)."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "")
        port = environ.get("SERVER_PORT", "")
        if port and port != ("443" if scheme == "https" else "80"):
            host = "%s:%s" % (host, port)
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if _NEEDS_QUOTING.search(path):
        path = quote(path.encode("latin-1", "replace"), safe=_URL_SAFE)
    query = environ.get("QUERY_STRING")
    # f-strings, not "%s" formatting: about 1 k instructions less per sampled request.
    if query:
        return f"{scheme}://{host}{path}?{query}"
    return f"{scheme}://{host}{path}"
