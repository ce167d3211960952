"""What a name in a thread body can stand for while the frontend builds IR."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xdsl.ir import SSAValue

from tilegrid.ir.core import BlockType


@dataclass
class Slot:
    """A CB slot this thread holds: reserved (to fill, then push) or popped (to read, then release)."""

    cb: int
    cb_name: str
    role: str  # "reserved" | "popped"
    loc: str
    filled: bool = False
    released_at: str | None = None
    pending_dma: Any = None  # the DMAHandle filling this reserved slot, until waited
    pending_writes: list[Any] = field(default_factory=list)  # DMAHandles writing this popped slot to DRAM


@dataclass
class Blk:
    value: SSAValue
    slot: Slot | None = None

    @property
    def type(self) -> BlockType:
        return self.value.type  # type: ignore[return-value]


@dataclass
class Idx:
    """A run-time integer (index)."""

    value: SSAValue


@dataclass
class Cond:
    """A run-time boolean (i1)."""

    value: SSAValue


@dataclass
class FScalar:
    """A run-time float (f32)."""

    value: SSAValue


@dataclass
class CBRef:
    index: int
    name: str


@dataclass
class StreamRef:
    arg: int
    name: str
    rank: int


@dataclass
class StreamView:
    stream: StreamRef
    indices: list[Any]


@dataclass
class DMAHandle:
    """A DMA issued in a thread: `slot` the reserved block it fills (a read), `loc` its line."""

    value: SSAValue
    slot: Slot | None
    waited: bool = False
    loc: str = ""


@dataclass
class SemRef:
    index: int
    name: str


@dataclass
class Method:
    obj: Any
    name: str


@dataclass
class ApiFunc:
    """A tilegrid function; `python`: the same-named function of a module (np.exp, math.exp), which
    computes numbers known at compile time."""

    name: str
    python: Any = None


@dataclass
class Poison:
    """A name that Python would bind but the compiled program cannot (say why on use)."""

    why: str
    note: str | None = None


@dataclass
class Scope:
    """A Python block (thread, loop body, if branch, with body): CB slots end with it."""

    slots: list[Slot] = field(default_factory=list)
