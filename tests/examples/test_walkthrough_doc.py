"""docs/istio-sls-walkthrough.md stays true: its links and anchors resolve, the files and
options it names exist, its commands match the Dockerfiles and the Makefile. (Its SLS
statements are run in test_bookinfo_sls.py, on a real BookInfo run's spans.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

from bookinfo import demo

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "istio-sls-walkthrough.md"
K8S = ROOT / "examples" / "bookinfo" / "kubernetes"


def text() -> str:
    return DOC.read_text(encoding="utf-8")


def slugs(path: Path) -> List[str]:
    """GitHub's heading anchors of a Markdown file."""
    out = []
    for heading in re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.append(slug)
    return out


def sls_blocks(doc: str) -> List[str]:
    return [block.strip() for block in re.findall(r"```sls\n(.*?)```", doc, re.S)]


def test_links_and_anchors_resolve():
    links = re.findall(r"\]\(([^)\s]+)\)", text())
    assert len(links) > 10
    for link in links:
        if "://" in link:
            continue
        target, _, anchor = link.partition("#")
        path = (DOC.parent / target).resolve() if target else DOC
        assert path.exists(), link
        if anchor:
            assert anchor in slugs(path), link


def test_named_files_exist():
    named = set(re.findall(r"examples/bookinfo/kubernetes/([\w./-]+\.(?:yaml|Dockerfile))",
                           text()))
    assert {"istio-operator.yaml", "services.Dockerfile", "shim.Dockerfile",
            "traffic/ratings-delay-for-jason.yaml"} <= named
    for name in named:
        assert (K8S / name).is_file(), name


def test_demo_options_exist():
    options = {action for group in demo.build_parser()._actions
               for action in group.option_strings}
    mentioned = set(re.findall(r"`(--[a-z][a-z-]+)", text()))
    assert {"--sls", "--requests", "--no-wait", "--jaeger-agent", "--sls-endpoint"} <= mentioned
    assert mentioned <= options, mentioned - options


def test_docker_commands_are_the_dockerfiles_own():
    for name in ("services.Dockerfile", "shim.Dockerfile"):
        own = re.search(r"#\s+(docker build .+)$", (K8S / name).read_text(), re.M).group(1)
        assert own in text(), name


def test_the_seeds_five_parameters_are_mapped():
    doc = text()
    for key in ("endpoint", "project", "logstore", "accesskey.id", "accesskey.secret"):
        assert "`storage.aliyun_sls.%s`" % key in doc
    config = (K8S / "opentracing-sls.yaml").read_text()
    assert "name: opentracing-sls-config" in config and "name: opentracing-sls-keys" in config
    assert "opentracing-sls-config" in doc and "opentracing-sls-keys" in doc


def test_make_demo_is_the_first_command_and_has_sls_statements():
    doc = text()
    assert doc.index("make demo") < doc.index("## Step 1")
    assert len(sls_blocks(doc)) >= 8
