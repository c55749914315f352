"""Where a service finds the others: the environment variables of Istio's BookInfo.

``<NAME>_HOSTNAME`` (default: the service name), ``<NAME>_SERVICE_PORT`` (default 9080) and
``SERVICES_DOMAIN`` (optional suffix) give ``http://{host}{.domain}:{port}``. In Kubernetes
the defaults resolve through the Services; on a laptop the demo points them at loopback.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

DEFAULT_PORT = 9080


def service_url(name: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """Base URL of service ``name`` (``details``, ``reviews``, ``ratings``), no trailing slash."""
    env = os.environ if environ is None else environ
    prefix = name.upper()
    host = env.get(prefix + "_HOSTNAME") or name
    port = env.get(prefix + "_SERVICE_PORT") or str(DEFAULT_PORT)
    domain = env.get("SERVICES_DOMAIN", "")
    return "http://%s%s:%s" % (host, "." + domain if domain else "", port)
