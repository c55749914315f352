"""Creates the Project, the Logstore and the index the trace queries need, when missing.

The seed documents promise that a Project that does not exist "is created and initialised
automatically"; the reference system does it at start (``span_writer_resource_init.go``,
``shared/reference/sls.md`` §9.3). Here every step first checks, then creates, and treats
"already exists" as success, so running it again (another shim, a restart) changes nothing.
An existing index is left as it is (it may hold the user's own keys); the keys of ours it
lacks are named in a warning.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, NamedTuple

from aliyun.log import IndexConfig, IndexKeyConfig, IndexLineConfig

from .sls_client import MISSING, SlsClient, SlsError

logger = logging.getLogger(__name__)

PROJECT_DESCRIPTION = "opentracing-sls spans (Jaeger on Aliyun Log Service layout)"

#: The reference's full-text tokens (§9.2).
LINE_TOKENS = [",", "'", '"', ";", "=", "(", ")", "[", "]", "{", "}", "?", "@", "&", "<", ">",
               "/", ":", "\n", "\t", "\r", " "]
#: Keys indexed as numbers, so ``duration >= 1000`` and SQL arithmetic work.
LONG_KEYS = ("duration", "startTime", "tags.request_size", "tags.response_size")
#: Keys indexed with the standard tokens (word search).
TOKENIZED_KEYS = ("operationName", "process.serviceName", "spanID")
#: Keys matched as a whole value (``token: []``): ids and tags queried with exact values.
WHOLE_VALUE_KEYS = ("traceID", "parentSpanID", "process.tags.ip", "tags.component",
                    "tags.downstream_cluster", "tags.guid:x-request-id", "tags.http.method",
                    "tags.http.protocol", "tags.http.status_code", "tags.http.url",
                    "tags.node_id", "tags.response_flags", "tags.span.kind",
                    "tags.upstream_cluster", "tags.user_agent", "tags.error")


class Settings(NamedTuple):
    project: str
    logstore: str
    auto_create: bool
    ttl_days: int
    shard_count: int


def index_config() -> IndexConfig:
    """The reference's index (§9.2), plus ``tags.error`` so error-rate queries can use it;
    every key has ``doc_value`` (analysis statements need it)."""
    keys: Dict[str, IndexKeyConfig] = {}
    for key in LONG_KEYS:
        keys[key] = IndexKeyConfig(index_type="long", doc_value=True)
    for key in TOKENIZED_KEYS:
        keys[key] = IndexKeyConfig(token_list=list(LINE_TOKENS), index_type="text",
                                   doc_value=True, chinese=False)
    for key in WHOLE_VALUE_KEYS:
        keys[key] = IndexKeyConfig(token_list=[], index_type="text", doc_value=True,
                                   chinese=False)
    return IndexConfig(line_config=IndexLineConfig(token_list=list(LINE_TOKENS),
                                                   chinese=False),
                       key_config_list=keys, log_reduce=False)


def provision(client: SlsClient, settings: Settings) -> List[str]:
    """Makes sure project, logstore and index exist (creating them when ``auto_create``);
    returns what it created. Raises :class:`SlsError` (``missing`` when something is absent
    and may not be created)."""
    created: List[str] = []
    project, logstore = settings.project, settings.logstore
    if not _exists(client, "get_project", lambda c: c.get_project(project)):
        _require(settings, "project %r does not exist" % project)
        _create(client, "create_project", ("ProjectAlreadyExist",),
                lambda c: c.create_project(project, PROJECT_DESCRIPTION))
        created.append("project " + project)
    if not _exists(client, "get_logstore", lambda c: c.get_logstore(project, logstore)):
        _require(settings, "logstore %r does not exist in project %r" % (logstore, project))
        _create(client, "create_logstore", ("LogStoreAlreadyExist",),
                lambda c: c.create_logstore(project, logstore, ttl=settings.ttl_days,
                                            shard_count=settings.shard_count,
                                            auto_split=True, max_split_shard=64))
        created.append("logstore " + logstore)
    try:
        existing = client.call("get_index", lambda c: c.get_index_config(project, logstore))
    except SlsError as exc:
        # "Log store index not created." is ParameterInvalid (or IndexConfigNotExist).
        if exc.code not in ("ParameterInvalid", "IndexConfigNotExist", "IndexNotExist"):
            raise
        existing = None
    if existing is None:
        if settings.auto_create:
            _create(client, "create_index", ("IndexAlreadyExist",),
                    lambda c: c.create_index(project, logstore, index_config()))
            created.append("index of " + logstore)
        else:
            logger.warning("logstore %s/%s has no index: trace queries will not work; create "
                           "one (docs/sls.md) or set storage.aliyun_sls.auto_create", project,
                           logstore)
    else:
        missing = missing_index_keys(existing.get_index_config().to_json())
        if missing:
            logger.warning("the index of logstore %s/%s lacks keys the trace queries use: %s "
                           "(it is left unchanged; see docs/sls.md)", project, logstore,
                           ", ".join(missing))
    if created:
        logger.info("created in SLS: %s", ", ".join(created))
    return created


def missing_index_keys(config: Dict[str, Any]) -> List[str]:
    keys = config.get("keys") or {}
    return [key for key in (*LONG_KEYS, *TOKENIZED_KEYS, *WHOLE_VALUE_KEYS) if key not in keys]


def _exists(client: SlsClient, operation: str, fn: Any) -> bool:
    try:
        client.call(operation, fn)
    except SlsError as exc:
        if exc.kind == MISSING or exc.code in ("ProjectNotExist", "LogStoreNotExist"):
            return False
        raise
    return True


def _require(settings: Settings, what: str) -> None:
    if not settings.auto_create:
        raise SlsError("provision", MISSING, "NotExist",
                       what + " and storage.aliyun_sls.auto_create is false", 404)


def _create(client: SlsClient, operation: str, exists_codes: tuple, fn: Any) -> None:
    try:
        client.call(operation, fn)
    except SlsError as exc:
        if exc.code not in exists_codes:  # created meanwhile by someone else: fine
            raise
