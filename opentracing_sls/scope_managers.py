"""Scope managers: which span is active, per thread or per asyncio task.

Both keep their state per manager *instance*. opentracing's own ``ContextVarsScopeManager``
uses one module-global ContextVar, so a scope leaked by one tracer is seen by every other one
(and by the next test): see ``user-pain-points.md`` #10 and #23.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from typing import Any, Callable, Optional

from opentracing import Scope, ScopeManager, Span

from ._accel import cspan

_instance_numbers = itertools.count(1)


class _PyScopeCore(Scope):
    """A scope that, when closed, reinstates the one active before it: the pure-Python twin
    of ``_cspan.ScopeCore``."""

    __slots__ = ("_finish_on_close", "_previous", "_closed", "_get", "_set")

    def __init__(self, manager: ScopeManager, span: Span, finish_on_close: bool,
                 previous: Optional[Scope], get: Callable[[], Optional[Scope]],
                 set_: Callable[[Optional[Scope]], Any]) -> None:
        # Scope.__init__ only stores these two; setting them here saves a call per scope.
        self._manager = manager
        self._span = span
        self._finish_on_close = finish_on_close
        self._previous = previous
        self._closed = False
        self._get = get
        self._set = set_

    def close(self) -> None:
        # Only the active scope can be closed (OpenTracing 2.x): closing out of order must
        # neither clobber the scope activated after this one nor finish this span early.
        if self._closed or self._get() is not self:
            return
        self._closed = True
        self._set(self._previous)
        if self._finish_on_close:
            self._span.finish()

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_val is not None:
            Span._on_error(self._span, exc_type, exc_val, exc_tb)
        self.close()


class _PyVarManagerCore:
    """``activate``/``active`` over the manager's ContextVar: the twin of
    ``_cspan.VarManagerCore``."""

    _var: contextvars.ContextVar[Optional[Scope]]

    def activate(self, span: Span, finish_on_close: bool) -> Scope:
        var = self._var
        scope = _RestoringScope(self, span, finish_on_close, var.get(), var.get, var.set)
        var.set(scope)
        return scope

    @property
    def active(self) -> Optional[Scope]:
        return self._var.get()


_cspan = cspan()
if _cspan is not None:
    _ScopeCore: Any = _cspan.ScopeCore
    _VarManagerCore: Any = _cspan.VarManagerCore
else:
    _ScopeCore = _PyScopeCore
    _VarManagerCore = _PyVarManagerCore


class _RestoringScope(_ScopeCore, Scope):
    """A scope that, when closed, reinstates the scope that was active before it.

    ``_RestoringScope(manager, span, finish_on_close, previous, get, set_)``: ``get``/``set_``
    read and write the manager's active scope.
    """

    __slots__ = ()


if _cspan is not None:
    _cspan.set_scope_type(_RestoringScope)


class ContextVarsScopeManager(_VarManagerCore, ScopeManager):
    """Active scope in a :class:`contextvars.ContextVar` owned by this instance.

    Works for threads (each thread has its own context) and for asyncio (a task inherits the
    context of the code that created it, so ``asyncio.gather`` children see their parent).
    The default scope manager.
    """

    def __init__(self) -> None:
        # Not super(): the C core's __init__ is object's and would skip ScopeManager's.
        ScopeManager.__init__(self)
        self._var = contextvars.ContextVar(
            "opentracing_sls_scope_%d" % next(_instance_numbers), default=None)


class ThreadLocalScopeManager(ScopeManager):
    """Active scope in a :class:`threading.local` owned by this instance (no asyncio support)."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def activate(self, span: Span, finish_on_close: bool) -> Scope:
        scope = _RestoringScope(self, span, finish_on_close, getattr(self._local, "scope", None),
                                self._get_active, self._set_active)
        self._local.scope = scope
        return scope

    def _get_active(self) -> Optional[Scope]:
        return getattr(self._local, "scope", None)

    @property
    def active(self) -> Optional[Scope]:
        return getattr(self._local, "scope", None)

    def _set_active(self, scope: Optional[Scope]) -> None:
        self._local.scope = scope
