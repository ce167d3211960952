"""How the kernels launched now are compiled and run: one context object for a `with` block.

Every option that is not an argument of a kernel call travels here, never in another module's
globals: the target that overrides each kernel's `backend` (`perf.session` selects the performance
model), compile-only mode with the list that collects what was compiled (`tilegrid compile`),
the IR dump, and the performance session. `use(...)` sets it for a block and restores the outer
one after, so uses nest (an autotuner's perf session inside a planner inside another session).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class RunContext:
    """target: run every kernel on this target instead of its `backend` ("sim", "perf", "gpu",
    "tt-metal"); None keeps each kernel's own. mode: "run", "compile" (compile, append the
    target's program to `log`, do not run) or "ir" (compile, append the compiled IR: no lowering). dump: called with (stage, IR text) after every pass.
    perf: the performance session collecting results (target "perf")."""

    target: str | None = None
    mode: str = "run"
    log: list | None = None
    dump: Callable[[str, str], None] | None = None
    perf: Any = None


_current: ContextVar[RunContext] = ContextVar("tilegrid_run_context", default=RunContext())  # noqa: B039 (frozen)


def current() -> RunContext:
    return _current.get()


@contextlib.contextmanager
def use(**changes: Any) -> Iterator[RunContext]:
    """Run the block with these fields of the context changed; the outer context is restored after."""
    ctx = replace(current(), **changes)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
