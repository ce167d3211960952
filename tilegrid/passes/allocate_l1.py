"""allocate-l1: place every CB and intermediate buffer in each core's L1 against the budget.

CBs take depth x block bytes; each `tilegrid.alloc` takes its block's tiles x tile bytes,
twice if its value is carried by a loop (the old and the new value coexist: ping-pong).
Offsets are assigned in order; the kernel is rejected, with the bytes needed and available
and the largest buffers, if they do not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import scf
from xdsl.dialects.builtin import IntAttr, ModuleOp
from xdsl.passes import ModulePass

from tilegrid.errors import CompileError
from tilegrid.ir import core as C
from tilegrid.passes.common import loc_of, program_of

TILE_BYTES = {"bf16": 2048, "f32": 4096}


def block_bytes(t: C.BlockType) -> int:
    r, c = t.tiles
    return r * c * TILE_BYTES[t.dtype]


@dataclass
class L1Plan:
    """Per-core L1 use: (name, bytes) for each CB and buffer, and the budget."""

    entries: list[tuple[str, int]]
    budget: int

    @property
    def used(self) -> int:
        return sum(b for _, b in self.entries)

    def report(self) -> str:
        lines = [f"L1 per core: {self.used} of {self.budget} bytes ({100 * self.used / self.budget:.1f}%)"]
        for name, b in self.entries:
            lines.append(f"  {b:>9}  {name}")
        return "\n".join(lines)


def plan_l1(module: ModuleOp) -> L1Plan:
    prog = program_of(module)
    entries: list[tuple[str, int]] = []
    for info in prog.arg_infos():
        t = C.BlockType((32 * info["block"][0], 32 * info["block"][1]), info["dtype"])
        entries.append((f"CB {info['name']} ({info['depth']} x {block_bytes(t)} B)", info["depth"] * block_bytes(t)))
    for th in prog.threads:
        for o in th.walk():
            if isinstance(o, C.AllocOp):
                carried = any(isinstance(u.operation, scf.YieldOp) for u in o.results[0].uses)
                n = 2 if carried else 1
                r, c = o.results[0].type.dims
                where = loc_of(o) or "?"
                line = where.rsplit(":", 2)[-2] if ":" in where else where
                entries.append((f"buffer {r}x{c} {o.results[0].type.dtype} (line {line}){' x2 carried' if carried else ''}",
                                n * block_bytes(o.results[0].type)))
    return L1Plan(entries, prog.l1_budget.data)


@dataclass(frozen=True)
class AllocateL1(ModulePass):
    name = "allocate-l1"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        plan = plan_l1(op)
        prog = program_of(op)
        if plan.used > plan.budget:
            top = sorted(plan.entries, key=lambda e: -e[1])[:4]
            raise CompileError(
                f"the kernel needs {plan.used} bytes of L1 per core but {plan.budget} are available; "
                "largest: " + "; ".join(f"{n}: {b} B" for n, b in top),
                note="use smaller block_factors or a shallower CB depth, or spread the work over more cores",
            )
        offset = 0
        for th in prog.threads:
            for o in th.walk():
                if isinstance(o, C.AllocOp):
                    o.properties["offset"] = IntAttr(offset)
                    offset += block_bytes(o.results[0].type)
