"""docs/integrations.md stays honest: its variable table is the code's, it names every
forwarded header, counter and public function, and its code examples run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opentracing_sls import integrations
from opentracing_sls.integrations import forwarding, settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "integrations.md"
START, END = "<!-- integrations-env-table:start -->", "<!-- integrations-env-table:end -->"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_env_table_is_generated_from_the_code(doc):
    assert doc.count(START) == 1 and doc.count(END) == 1
    embedded = doc.split(START, 1)[1].split(END, 1)[0].strip("\n")
    assert embedded == settings.env_table_markdown(), (
        "regenerate with: python -c 'from opentracing_sls.integrations import settings; "
        "print(settings.env_table_markdown())'")


def test_every_forwarded_header_is_listed(doc):
    section = doc.split("## Istio header forwarding", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in forwarding.ISTIO_HEADERS if "`%s`" % name not in section]
    assert not missing


def test_every_counter_and_public_name_is_documented(doc):
    for counter in ("integrations.flask.errors", "integrations.flask.hook_errors",
                    "integrations.requests.errors", "integrations.requests.hook_errors",
                    "integrations.logging.errors"):
        assert counter in doc
    for name in integrations.__all__:
        if not name.isupper():
            assert name in doc, name


def test_the_counters_named_in_the_doc_exist_in_the_code():
    sources = "".join(p.read_text() for p in (ROOT / "integrations").glob("*.py"))
    counters = re.findall(r"`(integrations\.[a-z]+\.(?:hook_)?errors)`", DOC.read_text())
    assert len(counters) >= 5
    for counter in counters:
        assert '"%s"' % counter in sources, counter


def test_python_examples_compile(doc):
    for block in re.findall(r"```python\n(.*?)```", doc, flags=re.S):
        compile(block, "docs/integrations.md", "exec")


def test_relative_links_resolve(doc):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/integrations.md)" in readme
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc):
        if "://" not in target:
            assert (DOC.parent / target).exists(), target
