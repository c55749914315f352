"""The official ``aliyun-log-python-sdk`` client, one attempt per call, errors by class.

The SDK's ``LogClient._send`` retries on its own: up to 10 attempts, 1 s apart, for any status
>= 500 and for connection errors (``shared/reference/sls.md`` §6). Inside the sink that would
block a writer for 10 s per batch during an outage and hide the failures from the sink's own
policy (capped exponential backoff with jitter, then the spool). :class:`_OneAttemptLogClient`
therefore wraps the exception of each attempt in a non-``LogException`` type, which the SDK's
retry loop does not catch; everything else (URLs, signing, compression, error parsing) is the
SDK's.

Errors are sorted into classes that decide what the sink does:

==============  ==========================================================================
class           errors
==============  ==========================================================================
``retryable``   HTTP >= 500, 429, ``ServerBusy``, ``InternalServerError``, ``RequestTimeout``,
                ``WriteQuotaExceed``/``ShardWriteQuotaExceed`` (403), timeouts, connection
                errors
``auth``        ``Unauthorized``, ``SignatureNotMatch``, ``InvalidAccessKeyId*``,
                ``SecurityToken*``, ``ProjectForbidden``, ``RequestTimeExpired`` (clock skew)
``too_large``   ``PostBodyTooLarge``, ``InvalidLogSize``, HTTP 413
``invalid``     the data was refused: ``PostBodyInvalid``, ``InvalidTimestamp``, ``InvalidKey``,
                ``InvalidEncoding``, ``PostBodyUncompressError``, ``InvalidLogContent``
``missing``     ``ProjectNotExist``, ``LogStoreNotExist``, ``ShardNotExist``
``fatal``       any other refusal (e.g. an endpoint that is not SLS)
==============  ==========================================================================
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional, TypeVar

from aliyun.log import LogClient, LogException

from .sls_config import Endpoint

T = TypeVar("T")

RETRYABLE = "retryable"
AUTH = "auth"
TOO_LARGE = "too_large"
INVALID = "invalid"
MISSING = "missing"
FATAL = "fatal"

_THROTTLED = frozenset(("ServerBusy", "WriteQuotaExceed", "ShardWriteQuotaExceed",
                        "ReadQuotaExceed", "ShardReadQuotaExceed"))
_SERVER = frozenset(("InternalServerError", "RequestTimeout"))
_AUTH = frozenset(("Unauthorized", "SignatureNotMatch", "InvalidAccessKeyId",
                   "InvalidAccessKeyId.NotFound", "SecurityToken.Expired",
                   "SecurityTokenExpired", "ProjectForbidden", "RequestTimeExpired",
                   "InvalidRequestTime"))
_TOO_LARGE = frozenset(("PostBodyTooLarge", "InvalidLogSize"))
_INVALID = frozenset(("PostBodyInvalid", "InvalidTimestamp", "InvalidKey", "InvalidEncoding",
                      "PostBodyUncompressError", "InvalidLogContent"))
_MISSING = frozenset(("ProjectNotExist", "LogStoreNotExist", "ShardNotExist"))


class SlsError(Exception):
    """One failed SLS call: ``kind`` is the class above; the message never holds the secret."""

    def __init__(self, operation: str, kind: str, code: str, message: str, status: int,
                 request_id: str = "") -> None:
        super().__init__("%s failed: %s %s (HTTP %s%s)" % (
            operation, code, message, status, ", request id " + request_id if request_id else ""))
        self.operation = operation
        self.kind = kind
        self.code = code
        self.status = status
        self.request_id = request_id

    @property
    def outcome(self) -> str:
        """The label of ``sls_requests_total``: the class, with throttling told apart."""
        if self.code in _THROTTLED or self.status == 429:
            return "throttled"
        if self.kind == RETRYABLE:
            return "network_error" if self.code == "LogRequestError" and self.status in (
                0, 200) else "server_error"
        return self.kind


def classify(code: str, status: int) -> str:
    if code in _AUTH:
        return AUTH
    if code in _THROTTLED or code in _SERVER or status >= 500 or status == 429:
        return RETRYABLE
    if code in _TOO_LARGE or status == 413:
        return TOO_LARGE
    if code in _INVALID:
        return INVALID
    if code in _MISSING:
        return MISSING
    if code in ("LogRequestError", "BadResponse") and status in (0, 200):
        return RETRYABLE  # the connection failed, or a proxy answered garbage
    return FATAL


class _Attempt(Exception):
    """Carries a LogException out of the SDK's retry loop, which catches only LogException."""

    def __init__(self, error: LogException) -> None:
        super().__init__()
        self.error = error


class _OneAttemptLogClient(LogClient):
    def _sendRequest(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 - the SDK's name
        try:
            return super()._sendRequest(*args, **kwargs)
        except LogException as exc:
            raise _Attempt(exc) from None


class Credentials:
    """The access key; ``repr`` and ``str`` never show the secret or the token."""

    __slots__ = ("access_key_id", "_secret", "_token")

    def __init__(self, access_key_id: str, secret: str, token: str = "") -> None:
        self.access_key_id = access_key_id
        self._secret = secret
        self._token = token

    def __repr__(self) -> str:
        return "Credentials(access_key_id=%r, secret=***)" % self.access_key_id

    __str__ = __repr__

    def redact(self, text: str) -> str:
        """``text`` with the secret and the token masked (belt and braces: neither the SDK
        nor the server should ever echo them)."""
        for value in (self._secret, self._token):
            if value and value in text:
                text = text.replace(value, "***")
        return text


class SlsClient:
    """Calls the SDK, one ``LogClient`` per thread (``requests.Session`` is not thread-safe),
    one HTTP attempt per call; ``on_result(operation, outcome)`` sees every call."""

    def __init__(self, endpoint: Endpoint, credentials: Credentials, timeout: float,
                 on_result: Optional[Callable[[str, str], None]] = None) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.timeout = timeout
        self.on_result = on_result or (lambda operation, outcome: None)
        self._local = threading.local()

    def __repr__(self) -> str:
        return "SlsClient(%s, %r)" % (self.endpoint.url, self.credentials)

    def _client(self) -> LogClient:
        client = getattr(self._local, "client", None)
        if client is None:
            creds = self.credentials
            # source= avoids the SDK's UDP-connect lookup of a local address on first use.
            client = _OneAttemptLogClient(self.endpoint.url, creds.access_key_id,
                                          creds._secret, creds._token or None,
                                          source="0.0.0.0")
            client.timeout = self.timeout
            if self.endpoint.direct:
                client._isRowIp = True  # see Endpoint.direct
            self._local.client = client
        return client

    def call(self, operation: str, fn: Callable[[LogClient], T]) -> T:
        try:
            result = fn(self._client())
        except _Attempt as attempt:
            error = self._error(operation, attempt.error)
        except LogException as exc:  # raised by the SDK before sending (size guards)
            error = self._error(operation, exc)
        else:
            self.on_result(operation, "ok")
            return result
        self.on_result(operation, error.outcome)
        raise error

    def _error(self, operation: str, exc: LogException) -> SlsError:
        code = str(exc.get_error_code() or "")
        status = int(getattr(exc, "resp_status", 0) or 0)
        message = self.credentials.redact(str(exc.get_error_message() or ""))
        if len(message) > 300:
            message = message[:300] + "..."
        return SlsError(operation, classify(code, status), code, message, status,
                        str(exc.get_request_id() or ""))


def headers_of(response: Any) -> Dict[str, str]:
    """Response headers of an SDK response object, for diagnostics."""
    getter = getattr(response, "get_all_headers", None)
    return dict(getter()) if getter else {}
