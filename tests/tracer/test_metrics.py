"""Counters: the C Tally behind them when _cspan is built, itertools.count otherwise."""

from __future__ import annotations

import threading

import pytest

from opentracing_sls import _accel, metrics
from opentracing_sls.metrics import Counter, Metrics
from opentracing_sls.sampling import ConstSampler
from opentracing_sls.testing import make_test_tracer


@pytest.fixture(params=["c", "python"])
def counter_kind(request, monkeypatch):
    if request.param == "c":
        if metrics._Tally is None:
            pytest.skip("_cspan not built or switched off")
    else:
        monkeypatch.setattr(metrics, "_Tally", None)
    return request.param


def test_counter_counts_steps_and_bulk(counter_kind):
    counter = Counter("c")
    assert counter.value == 0
    step = counter.hot()
    for _ in range(300):  # past the small-int cache of a count
        step()
    counter.inc()
    counter.inc(5)
    counter.inc(0)
    counter.inc(-3)  # a counter only grows
    assert counter.value == 306
    assert counter.name == "c"


def test_counter_steps_from_threads_add_up(counter_kind):
    counter = Counter("threads")
    step = counter.hot()

    def work() -> None:
        for _ in range(20_000):
            step()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.value == 80_000


def test_metrics_snapshot_reads_the_tracer_counters(counter_kind):
    tracer = make_test_tracer(sampler=ConstSampler(False), metrics=Metrics())
    for _ in range(3):
        with tracer.start_active_span("a"):
            tracer.start_span("b").finish()
    snapshot = tracer.metrics.snapshot()
    assert snapshot["tracer.spans.started.unsampled"] == 6
    assert snapshot["tracer.spans.finished"] == 6
    assert snapshot["tracer.traces.started.unsampled"] == 3
    assert snapshot.get("tracer.spans.started.sampled", 0) == 0


def test_tally_is_a_plain_callable():
    cspan = _accel.load("_cspan")
    if cspan is None:
        pytest.skip("_cspan not built or switched off")
    tally = cspan.Tally()
    assert tally() is None and tally() is None
    assert tally.value == 2 and repr(tally) == "Tally(2)"
    with pytest.raises(TypeError, match="takes no arguments"):
        tally(1)
    with pytest.raises(TypeError, match="takes no arguments"):
        tally(x=1)
    with pytest.raises(TypeError, match="takes no arguments"):
        cspan.Tally(0)
    with pytest.raises(AttributeError):
        tally.value = 5
    assert tally.value == 2


def test_a_tally_assigned_to_a_tracer_counter_is_stepped():
    cspan = _accel.load("_cspan")
    if cspan is None:
        pytest.skip("_cspan not built or switched off")
    tracer = make_test_tracer(sampler=ConstSampler(True))
    tally = cspan.Tally()
    tracer._finished_count = tally
    for _ in range(3):
        tracer.start_span("x").finish()
    assert tally.value == 3
    assert tracer._finished_count is tally
