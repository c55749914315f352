"""Request signatures of the SLS REST API, verified as the service does.

V1 (the SDK's default, ``shared/reference/sls.md`` §2)::

    base64(HMAC-SHA1(secret, VERB \\n Content-MD5 \\n Content-Type \\n Date \\n
                             x-log-*/x-acs-* headers sorted, "name:value\\n" each
                             (not x-log-meta-*, not x-log-date, which is added after signing)
                             path ["?" k=v&... sorted, raw values]))
    Authorization: LOG <AccessKeyId>:<signature>

V4 (``auth_version='v4'``, §3): HMAC-SHA256 over a canonical request, with a key derived from
``"aliyun_v4" + secret``, the date, the region, ``sls`` and ``aliyun_v4_request``.

A verifier lower-cases header names and trims values (the Go SDK sends them that way).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from email.utils import parsedate_to_datetime
from typing import Dict, Mapping, NamedTuple, Optional
from urllib.parse import quote

#: ``Date`` further than this from the server's clock: 400 RequestTimeExpired.
MAX_SKEW = 15 * 60
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class AuthFailure(NamedTuple):
    status: int
    code: str
    message: str


def _signed_extras(headers: Mapping[str, str], exclude_date: bool) -> Dict[str, str]:
    out = {}
    for name, value in headers.items():
        lower = name.lower()
        if (lower.startswith("x-acs-") or lower.startswith("x-log-")) and \
                not lower.startswith("x-log-meta-") and not (exclude_date and
                                                             lower == "x-log-date"):
            out[lower] = value.strip()
    return out


def v1_string_to_sign(method: str, path: str, params: Mapping[str, str],
                      headers: Mapping[str, str]) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    text = "%s\n%s\n%s\n%s\n" % (method, lower.get("content-md5", ""),
                                 lower.get("content-type", ""), lower.get("date", ""))
    extras = _signed_extras(headers, exclude_date=True)
    text += "".join("%s:%s\n" % (k, extras[k]) for k in sorted(extras))
    text += path
    if params:
        text += "?" + "&".join("%s=%s" % (k, params[k]) for k in sorted(params))
    return text


def v1_signature(secret: str, string_to_sign: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"),
                      hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def v4_signature(secret: str, method: str, path: str, params: Mapping[str, str],
                 headers: Mapping[str, str], date_time: str, region: str) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    canonical = {k: v.strip() for k, v in lower.items()
                 if k in ("content-type", "host") or k.startswith("x-acs-")
                 or (k.startswith("x-log-") and not k.startswith("x-log-meta-"))}
    names = sorted(canonical)
    query = "&".join(k + ("=" + quote(params[k], safe="~") if params[k] else "")
                     for k in sorted(params))
    request = "\n".join((method, path, query,
                         "".join("%s:%s\n" % (k, canonical[k]) for k in names),
                         ";".join(names), lower.get("x-log-content-sha256", EMPTY_SHA256)))
    date = date_time[:8]
    scope = "%s/%s/sls/aliyun_v4_request" % (date, region)
    to_sign = "SLS4-HMAC-SHA256\n%s\n%s\n%s" % (
        date_time, scope, hashlib.sha256(request.encode("utf-8")).hexdigest())
    key = ("aliyun_v4" + secret).encode("utf-8")
    for part in (date, region, "sls", "aliyun_v4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def verify(accounts: Mapping[str, str], method: str, path: str, params: Mapping[str, str],
           headers: Mapping[str, str], body: bytes, now: float,
           check_date: bool = True) -> Optional[AuthFailure]:
    """None when the request is signed by a known key; else the error to answer. Messages
    name the AccessKeyId at most, never a secret."""
    lower = {k.lower(): v for k, v in headers.items()}
    authorization = lower.get("authorization", "")
    if authorization.startswith("LOG "):
        return _verify_v1(accounts, method, path, params, headers, lower, body, now,
                          authorization[4:], check_date)
    if authorization.startswith("SLS4-HMAC-SHA256 "):
        return _verify_v4(accounts, method, path, params, headers, lower, body,
                          authorization[len("SLS4-HMAC-SHA256 "):])
    return AuthFailure(401, "Unauthorized", "the request has no Authorization header")


def _verify_v1(accounts: Mapping[str, str], method: str, path: str,
               params: Mapping[str, str], headers: Mapping[str, str],
               lower: Mapping[str, str], body: bytes, now: float, credential: str,
               check_date: bool) -> Optional[AuthFailure]:
    access_key_id, _, signature = credential.partition(":")
    secret = accounts.get(access_key_id)
    if secret is None:
        return AuthFailure(401, "Unauthorized", "AccessKeyId not found: %s" % access_key_id)
    if check_date:
        try:
            sent = parsedate_to_datetime(lower.get("date", "")).timestamp()
        except (TypeError, ValueError):
            return AuthFailure(400, "InvalidDateFormat", "the Date header is not RFC 1123")
        if abs(sent - now) > MAX_SKEW:
            return AuthFailure(400, "RequestTimeExpired",
                               "Request time %s has been expired" % lower.get("date"))
    md5 = lower.get("content-md5")
    if md5 and md5.upper() != hashlib.md5(body).hexdigest().upper():
        return AuthFailure(401, "SignatureNotMatch", "Content-MD5 does not match the body")
    expected = v1_signature(secret, v1_string_to_sign(method, path, params, headers))
    if not hmac.compare_digest(expected, signature.strip()):
        return AuthFailure(401, "SignatureNotMatch",
                           "signature %s not match" % signature.strip())
    return None


def _verify_v4(accounts: Mapping[str, str], method: str, path: str,
               params: Mapping[str, str], headers: Mapping[str, str],
               lower: Mapping[str, str], body: bytes, credential: str
               ) -> Optional[AuthFailure]:
    fields = dict(part.strip().split("=", 1) for part in credential.split(",") if "=" in part)
    scope = fields.get("Credential", "").split("/")
    if len(scope) != 5:
        return AuthFailure(401, "Unauthorized", "malformed V4 Credential")
    access_key_id, _, region = scope[0], scope[1], scope[2]
    secret = accounts.get(access_key_id)
    if secret is None:
        return AuthFailure(401, "Unauthorized", "AccessKeyId not found: %s" % access_key_id)
    sent_hash = lower.get("x-log-content-sha256", EMPTY_SHA256)
    if body and sent_hash != hashlib.sha256(body).hexdigest():
        return AuthFailure(401, "SignatureNotMatch", "x-log-content-sha256 does not match")
    expected = v4_signature(secret, method, path, params, headers,
                            lower.get("x-log-date", ""), region)
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return AuthFailure(401, "SignatureNotMatch", "signature not match")
    return None
