"""Installing and removing our wrapt proxies on library methods, safely and reversibly.

Rules (user-pain-points.md #22): patch the method on the class, never swap the class, so
objects created before instrumenting are traced too; ``instrument()`` and
``uninstrument()`` are idempotent; ``uninstrument()`` removes only our own proxy. When
someone wrapped the method again on top of ours, removing ours would throw their wrapper
away too, so ours stays in their chain as a pass-through and is re-enabled, not stacked, by
the next ``instrument()``.

A library that is installed but not imported yet is patched by a post-import hook the
moment the application imports it, so ``opentracing-sls run`` adds no import time.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import wrapt

logger = logging.getLogger("opentracing_sls.integrations")

Wrapper = Callable[[Any, Any, Tuple[Any, ...], Dict[str, Any]], Any]


class Instrumentor:
    """Base of the per-library instrumentors: ``library`` is the module to wait for, and
    :meth:`patches` lists ``(module, "Class.method", wrapper)``.

    Wrappers must start with ``if not self.active: return wrapped(*args, **kwargs)``: that
    flag is what turns a proxy buried under someone else's into a pass-through.
    """

    library = ""

    def __init__(self) -> None:
        self.active = False
        self._wanted = False
        self._hook_registered = False
        self._proxies: Dict[Tuple[str, str], Any] = {}
        self._lock = threading.RLock()

    def patches(self) -> List[Tuple[str, str, Wrapper]]:
        raise NotImplementedError

    def configure(self, **options: Any) -> None:
        """Validates and stores options; raises ValueError before anything is patched."""

    # -- public ---------------------------------------------------------------------------

    def instrument(self, **options: Any) -> bool:
        """Patches the library now, or when it is imported. False if it is not installed."""
        with self._lock:
            self.configure(**options)
            if self._wanted:
                return True
            # sys.modules may hold None for a module whose import is blocked on purpose.
            if sys.modules.get(self.library) is None and not _installed(self.library):
                logger.debug("opentracing_sls.integrations: %s is not installed; not "
                             "instrumented", self.library)
                return False
            self._wanted = True
            if not self._hook_registered:
                # Runs at once when the module is already imported.
                self._hook_registered = True
                wrapt.register_post_import_hook(self._on_import, self.library)
            elif self.library in sys.modules:
                self._apply()
            return True

    def uninstrument(self) -> bool:
        """Removes our proxies (or disables those others have wrapped). False if there was
        nothing to undo."""
        with self._lock:
            was = self._wanted or self.active
            self._wanted = False
            self.active = False
            for (module_name, attribute), proxy in list(self._proxies.items()):
                owner, name = _owner(module_name, attribute)
                if owner is not None and _is_ours(owner.__dict__.get(name), proxy):
                    setattr(owner, name, proxy.__wrapped__)
                    del self._proxies[(module_name, attribute)]
                else:
                    logger.debug("opentracing_sls.integrations: %s.%s was wrapped again by "
                                 "someone else; our proxy stays as a pass-through",
                                 module_name, attribute)
            return was

    def is_instrumented(self) -> bool:
        """True once :meth:`instrument` succeeded (even if the library is not imported yet)."""
        return self._wanted

    # -- internals ------------------------------------------------------------------------

    def _on_import(self, _module: Any) -> None:
        with self._lock:
            if self._wanted:
                self._apply()

    def _apply(self) -> None:
        for module_name, attribute, wrapper in self.patches():
            key = (module_name, attribute)
            proxy = self._proxies.get(key)
            owner, name = _owner(module_name, attribute)
            if owner is None:
                logger.debug("opentracing_sls.integrations: %s.%s not found; not patched",
                             module_name, attribute)
                continue
            if proxy is not None and _in_chain(owner.__dict__.get(name), proxy):
                continue  # still there (maybe under another wrapper): re-enabled below
            self._proxies[key] = wrapt.wrap_function_wrapper(module_name, attribute, wrapper)
        self.active = True


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _owner(module_name: str, attribute: str) -> Tuple[Optional[Any], str]:
    module = sys.modules.get(module_name)
    path = attribute.split(".")
    owner: Any = module
    for part in path[:-1]:
        owner = getattr(owner, part, None)
        if owner is None:
            return None, path[-1]
    return owner, path[-1]


def _is_ours(current: Any, proxy: Any) -> bool:
    # A patcher that saved ``Class.method`` (not ``Class.__dict__[...]``) and later restored
    # it puts back wrapt's bound form of our proxy, whose parent is our proxy.
    return current is proxy or getattr(current, "_self_parent", None) is proxy


def _in_chain(current: Any, proxy: Any) -> bool:
    """Whether ``proxy`` is ``current`` or reachable through its ``__wrapped__`` links."""
    seen = 0
    while current is not None and seen < 32:
        if _is_ours(current, proxy):
            return True
        current = getattr(current, "__wrapped__", None)
        seen += 1
    return False
