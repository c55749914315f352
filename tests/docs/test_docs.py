"""The docs stay honest: they name every setting the code has, and the quick start runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from opentracing_sls.cli import env_table_markdown
from opentracing_sls.config import _LOCAL_AGENT_KEYS, VALID_KEYS
from opentracing_sls.env import ENV_VARS

ROOT = Path(__file__).resolve().parents[2]
TRACER_MD = ROOT / "docs" / "tracer.md"
MIGRATING_MD = ROOT / "docs" / "migrating-from-jaeger-client.md"
README = ROOT / "README.md"
QUICKSTART = ROOT / "examples" / "quickstart.py"

START_MARKER = "<!-- env-table:start -->"
END_MARKER = "<!-- env-table:end -->"


@pytest.fixture(scope="module")
def tracer_md() -> str:
    return TRACER_MD.read_text(encoding="utf-8")


def _config_table_keys(text: str) -> set:
    """The first-column keys of the '## Configuration' table."""
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


def test_every_env_var_is_documented(tracer_md: str) -> None:
    missing = [var.name for var in ENV_VARS if var.name not in tracer_md]
    assert not missing, f"docs/tracer.md does not mention {missing}"


def test_env_table_is_the_cli_output(tracer_md: str) -> None:
    assert tracer_md.count(START_MARKER) == 1 and tracer_md.count(END_MARKER) == 1
    embedded = tracer_md.split(START_MARKER, 1)[1].split(END_MARKER, 1)[0]
    assert embedded.strip("\n") == env_table_markdown(), (
        "regenerate the table with: .venv/bin/opentracing-sls env --markdown")


def test_cli_prints_the_same_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opentracing_sls.cli", "env", "--markdown"],
        capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip("\n") == env_table_markdown()


def test_every_config_key_is_in_the_configuration_table(tracer_md: str) -> None:
    documented = _config_table_keys(tracer_md)
    expected = set(VALID_KEYS) | {"local_agent." + key for key in _LOCAL_AGENT_KEYS} | {
        "sampler.type", "sampler.param"}
    missing = sorted(expected - documented)
    assert not missing, f"the configuration table in docs/tracer.md lacks {missing}"
    unknown = sorted(documented - expected)
    assert not unknown, f"the configuration table documents keys the code lacks: {unknown}"


def test_every_env_var_key_is_a_documented_key(tracer_md: str) -> None:
    documented = _config_table_keys(tracer_md)
    undocumented = [var.key for var in ENV_VARS if var.key not in documented]
    assert not undocumented


def test_relative_links_resolve() -> None:
    for doc in (README, TRACER_MD, MIGRATING_MD):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_readme_names_the_setup_commands_in_order() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    assert text.index("make demo") < text.index("make test")
    assert "docs/tracer.md" in text and "docs/migrating-from-jaeger-client.md" in text


def test_quickstart_runs_and_prints_the_trace_tree() -> None:
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("JAEGER_"):
            del env[name]
    result = subprocess.run([sys.executable, str(QUICKSTART)], cwd=str(ROOT), env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in ("x-b3-traceid:", "traceparent:", "uber-trace-id:", "uberctx-user:",
                     "== Trace tree", "GET /productpage", "GET /reviews/0", "reviews.handle",
                     "db.query", "ratings.fetch", "error.kind=TimeoutError", "seqNo=1",
                     "reporter.spans.reported                  5"):
        assert expected in out, f"{expected!r} missing from the quick start output:\n{out}"
    # The tree nests the backend's spans under the frontend's: the trace was joined.
    tree = out.split("== Trace tree", 1)[1].split("== ", 1)[0]
    assert tree.count("\ntrace ") == 1
    assert tree.index("GET /productpage") < tree.index("reviews.handle") < tree.index("db.query")


def test_quickstart_has_help() -> None:
    result = subprocess.run([sys.executable, str(QUICKSTART), "--help"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0
    assert "usage:" in result.stdout
