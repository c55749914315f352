"""docs/shim.md stays honest: every config key, metric, port and the store's DDL are the code's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict

import pytest

from opentracing_sls.shim.config import KEYS
from opentracing_sls.shim.metrics import ShimMetrics
from opentracing_sls.shim.store_schema import SCHEMA

ROOT = Path(__file__).resolve().parents[2]
SHIM_MD = ROOT / "docs" / "shim.md"
README = ROOT / "README.md"

START_MARKER = "<!-- shim-keys:start -->"
END_MARKER = "<!-- shim-keys:end -->"


@pytest.fixture(scope="module")
def shim_md() -> str:
    return SHIM_MD.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def key_rows(shim_md: str) -> Dict[str, str]:
    """The rows of the keys table, by the key in their first column."""
    assert shim_md.count(START_MARKER) == 1 and shim_md.count(END_MARKER) == 1
    table = shim_md.split(START_MARKER, 1)[1].split(END_MARKER, 1)[0]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match:
            assert match.group(1) not in rows, "key %s is listed twice" % match.group(1)
            rows[match.group(1)] = line
    return rows


def _shown_default(default: Any) -> str:
    """How the table spells a default: lists comma-joined, an empty string as (unset)."""
    if isinstance(default, tuple):
        return "`%s`" % ",".join(default)
    if default == "":
        return "(unset)"
    return "`%s`" % (default,)


def _cells(row: str) -> list:
    return [cell.strip() for cell in row.strip().strip("|").split(" | ")]


def test_every_config_key_is_in_the_keys_table(key_rows: Dict[str, str]) -> None:
    missing = [key.name for key in KEYS if key.name not in key_rows]
    assert not missing, "docs/shim.md's keys table lacks %s" % missing
    unknown = sorted(set(key_rows) - {key.name for key in KEYS})
    assert not unknown, "docs/shim.md's keys table documents keys the code lacks: %s" % unknown


@pytest.mark.parametrize("key", KEYS, ids=[key.name for key in KEYS])
def test_key_row_has_flag_env_var_and_default(key: Any, key_rows: Dict[str, str]) -> None:
    cells = _cells(key_rows[key.name])
    assert len(cells) == 5, "expected key | flag | env var | default | meaning: %r" % cells
    assert cells[1] == "`--%s`" % key.name
    assert cells[2] == "`%s`" % key.env_name
    assert cells[3] == _shown_default(key.default), (
        "%s: the code's default is %r, the table says %s" % (key.name, key.default, cells[3]))
    assert cells[4], "%s has no meaning" % key.name


def test_every_metric_is_documented(shim_md: str) -> None:
    metrics = ShimMetrics()
    families = list(metrics.registry.collect())
    assert families, "ShimMetrics registered no metrics"
    for family in families:
        # prometheus_client names a counter family without the _total its samples carry.
        exposed = family.name + "_total" if family.type == "counter" else family.name
        assert "`%s`" % exposed in shim_md, "docs/shim.md does not list %s" % exposed


def test_every_metric_label_is_documented(shim_md: str) -> None:
    section = shim_md.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    for metric in vars(ShimMetrics()).values():
        name = getattr(metric, "_name", None)
        if name is None:
            continue
        rows = [line for line in section.splitlines() if line.startswith("| `%s" % name)]
        assert len(rows) == 1, "the metrics table needs one row for %s" % name
        for label in getattr(metric, "_labelnames", ()):
            assert "`%s`" % label in _cells(rows[0])[1], "%s: label %s" % (name, label)


def test_every_port_default_is_in_the_ports_table(shim_md: str) -> None:
    section = shim_md.split("\n## Ports\n", 1)[1].split("\n## ", 1)[0]
    for key in KEYS:
        if not (key.name.startswith("listen.") and key.name.endswith("_port")):
            continue
        rows = [line for line in section.splitlines()
                if line.startswith("| %d |" % key.default) and "`%s`" % key.name in line]
        assert rows, "the ports table lacks %s (default %d)" % (key.name, key.default)
        assert _cells(rows[0])[4] == str(key.default)


def test_store_ddl_is_the_code(shim_md: str) -> None:
    blocks = re.findall(r"```sql\n(.*?)```", shim_md, flags=re.DOTALL)
    assert blocks, "docs/shim.md has no sql block with the store's DDL"
    assert blocks[0].strip() == SCHEMA.strip(), (
        "the DDL in docs/shim.md differs from shim/store_schema.py SCHEMA; paste it again")


def test_readme_links_the_shim_doc() -> None:
    text = README.read_text(encoding="utf-8")
    assert "](docs/shim.md)" in text


def test_shim_doc_relative_links_resolve(shim_md: str) -> None:
    anchors = {_anchor(title) for title in re.findall(r"^#+ (.+)$", shim_md, flags=re.MULTILINE)}
    for target in re.findall(r"\]\(([^)]+)\)", shim_md):
        if "://" in target:
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (SHIM_MD.parent / path).exists(), "docs/shim.md links to missing %s" % path
        elif anchor:
            assert anchor in anchors, "docs/shim.md links to missing section #%s" % anchor


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", title.strip().lower().replace("`", ""))
    return text.replace(" ", "-")
