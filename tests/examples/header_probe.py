"""Test only: runs a BookInfo service unchanged, plus a hook that appends each request's
headers to a JSON-lines file, so a test can see what reached every service.

    python header_probe.py SERVICE RECORD_FILE [PORT] [--host HOST] [--quiet]

The services expose no such data themselves, and must not carry test code; the hook is
added to the app ``create_app()`` returns, the way any Flask extension adds one.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
from typing import Any

_lock = threading.Lock()


def main() -> int:
    service, record_path, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    module = importlib.import_module("bookinfo.%s.app" % service)
    serving = importlib.import_module("bookinfo.serving")

    def create_app() -> Any:
        from flask import request

        app = module.create_app()

        def record() -> None:
            line = json.dumps({"service": service, "path": request.path,
                               "headers": {k.lower(): v for k, v in request.headers.items()}})
            with _lock, open(record_path, "a") as handle:
                handle.write(line + "\n")

        app.before_request(record)
        return app

    return serving.main(service, create_app, rest)


if __name__ == "__main__":
    sys.exit(main())
