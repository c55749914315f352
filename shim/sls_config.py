"""Configuration keys of the ``aliyun_sls`` sink and its disk spool, with their rules.

The seed documents name the first five keys (``storage.aliyun_sls.endpoint``, ``.project``,
``.logstore``, ``.accesskey.id``, ``.accesskey.secret``) and the name rules of project and
logstore. :mod:`.config` adds these specs to its key table; :func:`check` runs the rules that
involve several keys once everything is resolved.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

PROJECT_RULE = ("must be 3 to 63 characters: lowercase letters, digits and hyphens (-), "
                "starting and ending with a lowercase letter or digit")
LOGSTORE_RULE = ("must be 3 to 63 characters: lowercase letters, digits, hyphens (-) and "
                 "underscores (_), starting and ending with a lowercase letter or digit")
_PROJECT = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]\Z")
_LOGSTORE = re.compile(r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]\Z")

SECRET_KEY = "storage.aliyun_sls.accesskey.secret"
SECRET_FILE_KEY = "storage.aliyun_sls.accesskey.secret_file"
TOKEN_KEY = "storage.aliyun_sls.security_token"


class Endpoint(NamedTuple):
    """``[http[s]://]host[:port][/]`` as the SDK reads it."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return "%s://%s:%d" % (self.scheme, self.host, self.port)

    @property
    def direct(self) -> bool:
        """Addressed without the ``<project>.`` host prefix: an IP literal or ``localhost``
        (a test server). The SDK decides this on the whole endpoint string, port included,
        so ``127.0.0.1:8080`` would become ``myproject.127.0.0.1:8080`` (§10)."""
        if self.host == "localhost":
            return True
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_endpoint(text: str) -> Endpoint:
    """Raises ValueError with the rule; accepts what ``LogClient`` accepts."""
    value = text.strip()
    scheme = "http"
    if "://" in value:
        scheme, value = value.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError("must use http:// or https:// (or no scheme)")
    if value.endswith("/"):
        value = value[:-1]
    if "/" in value or "?" in value or "@" in value:
        raise ValueError("must be a host name with an optional port, e.g. "
                         "cn-hangzhou.log.aliyuncs.com, without a path")
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port = value, (443 if scheme == "https" else 80)
    else:
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError("must be host[:port] with a numeric port") from None
        if not 1 <= port <= 65535:
            raise ValueError("must be host[:port] with a port from 1 to 65535")
    host = host.lower()
    if not host or any(not (c.isalnum() or c in ".-_") for c in host):
        raise ValueError("must be a host name such as cn-hangzhou.log.aliyuncs.com")
    return Endpoint(scheme, host, port)


class Secret:
    """A credential: shows as ``***`` in ``repr``/``str`` (``--check-config``, errors, logs);
    :meth:`reveal` gives the value to the SDK client."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "***" if self._value else "''"

    __str__ = __repr__


def _name(rule: str, pattern: re.Pattern[str]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = "" if value is None else str(value).strip()
        if text and not pattern.match(text):
            raise ValueError(rule)
        return text
    return parse


def _endpoint(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    if text:
        parse_endpoint(text)  # ValueError names the rule
    return text


def _secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if value is not None and not isinstance(value, str):
        raise ValueError("must be a string")
    return Secret((value or "").strip())


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("must be an integer from %d to %d" % (low, high))
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError("must be an integer from %d to %d" % (low, high)) from None
        if not low <= number <= high:
            raise ValueError("must be an integer from %d to %d" % (low, high))
        return number
    return parse


_S = "storage.aliyun_sls."
#: (name, default, parse, help, secret) for config.Key.
KEY_SPECS: Tuple[Tuple[str, Any, Callable[[Any], Any], str, bool], ...] = (
    (_S + "endpoint", "", _endpoint,
     "SLS endpoint of the project's region, e.g. cn-hangzhou.log.aliyuncs.com (https:// for "
     "TLS; host:port for a test server); required with storage.type aliyun_sls", False),
    (_S + "project", "", _name(PROJECT_RULE, _PROJECT),
     "SLS project for the spans (3-63 lowercase letters, digits, hyphens); required", False),
    (_S + "logstore", "jaeger-span", _name(LOGSTORE_RULE, _LOGSTORE),
     "Logstore for the spans (3-63 lowercase letters, digits, hyphens, underscores)", False),
    (_S + "accesskey.id", "", _text, "AccessKey ID; required", False),
    (SECRET_KEY, "", _secret,
     "AccessKey secret; prefer the environment variable or .secret_file (a flag is visible "
     "in ps)", True),
    (SECRET_FILE_KEY, "", _text,
     "file holding the AccessKey secret (e.g. a Kubernetes Secret mount), read at start", False),
    (TOKEN_KEY, "", _secret, "STS security token, with a temporary AccessKey", True),
    (_S + "auto_create", True, _bool,
     "create the project, logstore and index when missing (true/false)", False),
    (_S + "ttl_days", 180, _int_range(1, 3650), "retention of an auto-created logstore, days",
     False),
    (_S + "shard_count", 2, _int_range(1, 64), "shards of an auto-created logstore", False),
    (_S + "batch.max_logs", 4096, _int_range(1, 4096), "spans per PutLogs request", False),
    (_S + "batch.max_bytes", 3 * 1024 * 1024, _int_range(64 * 1024, 5 * 1024 * 1024),
     "raw bytes per PutLogs request (at most 5 MiB)", False),
    (_S + "batch.linger_ms", 1000, _int_range(0, 60000),
     "longest wait for a batch to fill before it is sent, ms", False),
    (_S + "senders", 2, _int_range(1, 32), "PutLogs requests in flight at once", False),
    (_S + "retry.max_attempts", 5, _int_range(1, 100),
     "attempts for a retryable error before the batch goes to the spool", False),
    (_S + "retry.initial_backoff_ms", 200, _int_range(1, 60000),
     "first backoff after a retryable error, ms (doubles each time, with jitter)", False),
    (_S + "retry.max_backoff_ms", 5000, _int_range(1, 600000), "largest backoff, ms", False),
    (_S + "timeout_ms", 10000, _int_range(100, 600000),
     "timeout of one SLS request (connect and each read), ms", False),
    ("spool.path", "./sls-spool", _text,
     "directory of the disk spool for batches SLS cannot take now; empty disables it", False),
    ("spool.max_bytes", 1024 * 1024 * 1024, _int_range(1024 * 1024, 1 << 50),
     "largest size of the spool's files; when full, new spans are dropped and counted", False),
    ("spool.fsync", False, _bool,
     "fsync every spooled batch (survives power loss, not only process death)", False),
)


def check(config: Dict[str, Any]) -> Optional[Tuple[str, str]]:
    """The first (key, problem) among the rules that involve several keys, or None. Reads
    the secret file into the secret key."""
    if "aliyun_sls" not in config["storage.type"]:
        return None
    missing: List[str] = [name for name in (_S + "endpoint", _S + "project", _S + "accesskey.id")
                          if not config[name]]
    if missing:
        return missing[0], "required when storage.type includes aliyun_sls"
    secret_file = config[SECRET_FILE_KEY]
    if secret_file:
        if config[SECRET_KEY]:
            return SECRET_FILE_KEY, "set either it or %s, not both" % SECRET_KEY
        try:
            with open(secret_file, encoding="utf-8") as handle:
                value = handle.read().strip()
        except OSError as exc:
            return SECRET_FILE_KEY, "cannot read %r: %s" % (secret_file, exc.strerror)
        if not value:
            return SECRET_FILE_KEY, "the file %r is empty" % secret_file
        config[SECRET_KEY] = Secret(value)
    if not config[SECRET_KEY]:
        return SECRET_KEY, ("required when storage.type includes aliyun_sls (or set %s)"
                            % SECRET_FILE_KEY)
    if config[_S + "retry.initial_backoff_ms"] > config[_S + "retry.max_backoff_ms"]:
        return _S + "retry.initial_backoff_ms", "must not exceed retry.max_backoff_ms"
    return None
