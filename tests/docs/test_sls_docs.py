"""docs/sls.md stays honest: its key table is the code's keys and defaults, its links resolve,
and its metrics exist."""

from __future__ import annotations

import re
from pathlib import Path

from opentracing_sls.shim.config import KEYS
from opentracing_sls.shim.metrics import ShimMetrics

ROOT = Path(__file__).resolve().parents[2]
SLS_MD = ROOT / "docs" / "sls.md"


def sls_keys():
    return [key for key in KEYS
            if key.name.startswith("storage.aliyun_sls.") or key.name.startswith("spool.")]


def test_configuration_table_lists_every_key_with_its_default():
    text = SLS_MD.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(
        r"^\| `([^`]+)` \|([^|]*)\|", section, flags=re.MULTILINE)}
    names = [key.name for key in sls_keys()]
    assert list(rows) == names, "the table lists the keys in the code's order"
    assert names[:5] == ["storage.aliyun_sls.endpoint", "storage.aliyun_sls.project",
                         "storage.aliyun_sls.logstore", "storage.aliyun_sls.accesskey.id",
                         "storage.aliyun_sls.accesskey.secret"], "the seed's keys first"
    for key in sls_keys():
        shown = rows[key.name].strip()
        if key.default in ("", None):
            assert shown in ("", "(required)"), key.name
        else:
            expected = str(key.default).lower() if isinstance(key.default, bool) else str(
                key.default)
            assert shown == "`%s`" % expected, (key.name, shown)


def test_metrics_named_in_the_doc_exist():
    text = SLS_MD.read_text(encoding="utf-8")
    names = {family.name for family in ShimMetrics().registry.collect()}
    for name in re.findall(r"`(opentracing_sls_shim_[a-z_]+?)(?:_total)?`", text):
        assert name in names, "docs/sls.md names %s, which the shim does not export" % name


def test_links_resolve_and_the_readme_and_shim_doc_link_here():
    text = SLS_MD.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (SLS_MD.parent / target).exists(), target
    assert "](docs/sls.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](sls.md)" in (ROOT / "docs" / "shim.md").read_text(encoding="utf-8")
