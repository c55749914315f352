"""The opentracing 2.x harness, run unmodified against a fresh tracer per test.

No harness test is overridden or skipped. ``test_broken_*`` show that the suites can fail:
each runs the same harness against a deliberately broken tracer and expects failures.
"""

from __future__ import annotations

import asyncio
import unittest
from typing import Type

import opentracing
from opentracing.harness.api_check import APICompatibilityCheckMixin
from opentracing.harness.scope_check import ScopeCompatibilityCheckMixin

from opentracing_sls import ContextVarsScopeManager, ThreadLocalScopeManager
from opentracing_sls.testing import make_test_tracer


class _TracerHooks:
    tracer_factory = staticmethod(make_test_tracer)

    def setUp(self) -> None:
        self._tracer = self.tracer_factory()

    def tracer(self):
        return self._tracer

    def is_parent(self, parent, span) -> bool:
        if parent is None:
            return span.context.parent_id == 0
        return (span.context.trace_id == parent.context.trace_id
                and span.context.parent_id == parent.context.span_id)


class TestApiContextVars(_TracerHooks, APICompatibilityCheckMixin, unittest.TestCase):
    pass


class TestApiThreadLocal(_TracerHooks, APICompatibilityCheckMixin, unittest.TestCase):
    tracer_factory = staticmethod(
        lambda: make_test_tracer(scope_manager=ThreadLocalScopeManager()))


class TestScopeThreadLocal(ScopeCompatibilityCheckMixin, unittest.TestCase):
    def scope_manager(self):
        return ThreadLocalScopeManager()


class TestScopeContextVarsThreads(ScopeCompatibilityCheckMixin, unittest.TestCase):
    def scope_manager(self):
        return ContextVarsScopeManager()


class TestScopeContextVarsAsyncio(ScopeCompatibilityCheckMixin, unittest.TestCase):
    def scope_manager(self):
        return ContextVarsScopeManager()

    def run_test(self, test_fn):
        async def in_task():
            test_fn()

        asyncio.run(in_task())


# -- the suites can fail ------------------------------------------------------------------------

def _run_suite(case: Type[unittest.TestCase]) -> unittest.TestResult:
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
    result = unittest.TestResult()
    suite.run(result)
    return result


def _failed_names(result: unittest.TestResult):
    return sorted(test.id().rsplit(".", 1)[-1] for test, _ in result.failures + result.errors)


class _NeverRestoringScopeManager(ContextVarsScopeManager):
    """Broken: closing a scope leaves it active."""

    def activate(self, span, finish_on_close):
        scope = super().activate(span, finish_on_close)
        self._stuck = scope
        return scope

    @property
    def active(self):
        return getattr(self, "_stuck", None)


def test_broken_scope_manager_fails_scope_suite():
    class Broken(ScopeCompatibilityCheckMixin, unittest.TestCase):
        def scope_manager(self):
            return _NeverRestoringScopeManager()

    failed = _failed_names(_run_suite(Broken))
    assert "test_activate" in failed
    assert "test_activate_nested" in failed


def test_broken_binary_codec_fails_api_suite():
    class NoBinary:
        def inject(self, span_context, carrier):
            pass

        def extract(self, carrier):
            return None

    def factory():
        tracer = make_test_tracer()
        tracer.codecs[opentracing.Format.BINARY] = NoBinary()
        return tracer

    class Broken(_TracerHooks, APICompatibilityCheckMixin, unittest.TestCase):
        tracer_factory = staticmethod(factory)

    failed = _failed_names(_run_suite(Broken))
    assert failed == ["test_binary_propagation"]


def test_broken_parenting_fails_api_suite():
    def factory():
        tracer = make_test_tracer()
        original = tracer.start_span

        def start_span(operation_name=None, child_of=None, references=None, tags=None,
                       start_time=None, ignore_active_span=False):
            # Broken: never looks at the active span.
            return original(operation_name, child_of, references, tags, start_time, True)

        tracer.start_span = start_span
        return tracer

    class Broken(_TracerHooks, APICompatibilityCheckMixin, unittest.TestCase):
        tracer_factory = staticmethod(factory)

    failed = _failed_names(_run_suite(Broken))
    assert "test_start_active_span_parent" in failed
    assert "test_start_span_propagation" in failed


def test_the_real_tracer_passes_the_same_runner():
    # The runner used by the meta-tests reports no failure for the real tracer.
    for case in (TestApiContextVars, TestScopeContextVarsAsyncio):
        result = _run_suite(case)
        assert result.testsRun > 5
        assert _failed_names(result) == []
