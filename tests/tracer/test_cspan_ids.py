"""The C tracer core's own parts: its id generator, the tracer attributes it keeps as
member slots, and the lookups it skips while the classes involved are unchanged
(opentracing_sls/csrc/cspan_ids.h, TracerCore in cspan_common.h and cspan_tracer.h)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from opentracing_sls.constants import SAMPLED_FLAG
from opentracing_sls.sampling import ConstSampler
from opentracing_sls.testing import make_test_tracer

cspan = pytest.importorskip("opentracing_sls._cspan", reason="C span cores not built")
pytestmark = pytest.mark.skipif(
    os.environ.get("OPENTRACING_SLS_PURE_PYTHON", "") not in ("", "0"),
    reason="tests the C cores; they are switched off")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_span_ids_are_nonzero_64_bit_and_do_not_repeat() -> None:
    tracer = make_test_tracer(sampler=ConstSampler(False))
    ids = set()
    for _ in range(50000):
        span = tracer.start_span("op", ignore_active_span=True)
        context = span.context
        assert 0 < context.span_id < 1 << 64
        assert 0 < context.trace_id < 1 << 64
        ids.add(context.span_id)
    assert len(ids) == 50000
    # 64 random bits: about half the ids have the top bit set, which a generator that
    # produced 63-bit or signed values would never show.
    high = sum(1 for i in ids if i >> 63)
    assert 23000 < high < 27000


def test_128_bit_trace_ids_have_both_halves_nonzero() -> None:
    tracer = make_test_tracer(sampler=ConstSampler(True), generate_128bit_trace_id=True)
    seen = set()
    for _ in range(2000):
        trace_id = tracer.start_span("op", ignore_active_span=True).context.trace_id
        assert trace_id >> 64 and trace_id & ((1 << 64) - 1)
        assert trace_id < 1 << 128
        seen.add(trace_id >> 64)
    assert len(seen) == 2000


FORK_SCRIPT = textwrap.dedent("""
    import ctypes, os, sys
    from opentracing_sls.sampling import ConstSampler
    from opentracing_sls.testing import make_test_tracer
    tracer = make_test_tracer(sampler=ConstSampler(False))
    tracer.start_span("warm").finish()
    # libc's fork() through ctypes, as uWSGI forks without --py-call-osafterfork: Python's
    # os.register_at_fork hooks do not run, only pthread_atfork handlers. PyDLL keeps the
    # GIL across the call, so the child resumes holding it.
    read, write = os.pipe()
    pid = ctypes.PyDLL(None).fork()
    ids = [tracer.start_span("op", ignore_active_span=True).context.span_id for _ in range(4)]
    if pid == 0:
        os.write(write, (" ".join(map(str, ids)) + "\\n").encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode().split()
    os.waitpid(pid, 0)
    print(" ".join(map(str, ids)))
    print(" ".join(child))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_c_level_fork_gives_the_child_its_own_id_sequence() -> None:
    out = subprocess.run([sys.executable, "-c", FORK_SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    parent, child = (line.split() for line in out.stdout.splitlines())
    assert len(parent) == len(child) == 4
    assert not set(parent) & set(child)


def test_member_slots_read_and_assign_like_attributes() -> None:
    tracer = make_test_tracer(sampler=ConstSampler(True))
    assert isinstance(tracer.sampler, ConstSampler)
    assert tracer.scope_manager is tracer._scope_manager
    # Replaced after construction: the C path must see the new objects, not a copy.
    tracer.sampler = ConstSampler(False)
    assert not tracer.start_span("root", ignore_active_span=True).context.flags & SAMPLED_FLAG
    tracer.sampler = ConstSampler(True)
    seen = []
    tracer._report = seen.append
    tracer.max_tag_value_length = 3
    span = tracer.start_span("root", ignore_active_span=True)
    span.set_tag("k", "abcdef")
    span.finish()
    assert [r.tags for r in seen] == [{"k": "abc", "sampler.type": "const", "sampler.param": True}]
    assert tracer.reporter.get_spans() == []
    del tracer._report
    with pytest.raises(AttributeError):
        tracer._report  # noqa: B018 - an unset slot reads like a missing attribute


def test_tracer_with_reporter_cycle_is_collected() -> None:
    import gc
    import weakref

    tracer = make_test_tracer()
    tracer.cycle = tracer  # a reference cycle through the instance dict
    tracer._report = lambda record, t=tracer: None  # and through a member slot
    ref = weakref.ref(tracer)
    del tracer
    gc.collect()
    assert ref() is None


def test_counters_count_through_the_slots_whatever_they_hold() -> None:
    tracer = make_test_tracer(sampler=ConstSampler(True))
    metrics = tracer.metrics
    with tracer.start_active_span("a"):
        tracer.start_span("b").finish()
    snapshot = metrics.snapshot()
    assert snapshot["tracer.spans.started.sampled"] == 2
    assert snapshot["tracer.spans.finished"] == 2
    assert snapshot["tracer.traces.started.sampled"] == 1
    # Any zero-argument callable can replace a counter, and is then called.
    calls = []
    tracer._finished_count = lambda: calls.append(1)
    tracer.start_span("c").finish()
    assert calls == [1]
    assert metrics.snapshot()["tracer.spans.finished"] == 2
    del tracer._finished_count
    with pytest.raises(AttributeError):
        tracer._finished_count  # noqa: B018


def test_start_span_replaced_on_the_instance_or_the_class_is_used() -> None:
    from opentracing_sls.tracer import Tracer

    tracer = make_test_tracer()
    with tracer.start_active_span("warm"):  # caches "start_span is ours" for Tracer
        pass
    seen = []
    original = Tracer.start_span

    def patched(self, operation_name=None, *args, **kwargs):
        seen.append(operation_name)
        return original(self, operation_name, *args, **kwargs)

    Tracer.start_span = patched
    try:
        with tracer.start_active_span("by-class") as scope:
            assert scope.span.operation_name == "by-class"
    finally:
        Tracer.start_span = original
    assert seen == ["by-class"]
    with tracer.start_active_span("restored"):
        pass
    assert seen == ["by-class"]

    other = make_test_tracer()
    other.start_span = lambda *args, **kwargs: seen.append("instance") or original(
        other, *args, **kwargs)
    with other.start_active_span("by-instance"):
        pass
    assert seen == ["by-class", "instance"]


def test_a_scope_manager_subclass_overriding_active_is_asked() -> None:
    from opentracing_sls.scope_managers import ContextVarsScopeManager

    tracer = make_test_tracer()
    with tracer.start_active_span("outer"):
        assert tracer.start_span("child").context.parent_id  # the cached fast path

    class Forgetful(ContextVarsScopeManager):
        @property
        def active(self):
            return None

    forgetful = make_test_tracer(scope_manager=Forgetful())
    with forgetful.start_active_span("outer"):
        assert forgetful.start_span("child").context.parent_id == 0
