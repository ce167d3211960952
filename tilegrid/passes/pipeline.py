"""The compiler pipeline: one ordered list of passes, with the IR form between stages.

Targets start from one of two levels (each target declares which):
  "block": after fuse-elementwise, value-semantics block ops (the GPU backend lowers this);
  "tile":  after allocate-l1, tile ops on explicit buffers with DST slots and L1 offsets (the
           functional simulator, the performance model and the tt-metal target lower this).
Every pass runs here and only here; a target never re-runs one.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import VerifyException

from tilegrid import ir
from tilegrid.errors import CompileError
from tilegrid.passes.allocate_dst import AllocateDst
from tilegrid.passes.allocate_l1 import AllocateL1
from tilegrid.passes.fold_exp_scale import FoldExpScale
from tilegrid.passes.fuse_accumulate import FuseAccumulate
from tilegrid.passes.fuse_elementwise import FuseElementwise
from tilegrid.passes.implicit_data_movement import ImplicitDataMovement
from tilegrid.passes.infer_shapes import InferShapes
from tilegrid.passes.lower_to_tile import LowerToTile
from tilegrid.passes.update_in_place import UpdateInPlace

LEVELS = ("block", "tile")

PIPELINE: list[tuple[ModulePass, str | None]] = [
    # block IR from the frontend: value-semantics block ops, CB / DMA ops, scf loops
    (InferShapes(), None),
    # broadcasts explicit; every block op's type checked
    (ImplicitDataMovement(), None),
    # every CB the compute thread uses has a producer / consumer thread
    (FoldExpScale(), None),
    # exp(x * s) is one exp with a scale operand
    (FuseAccumulate(), None),
    # acc + a @ b and acc + rowsum(x) are one matmul / reduce with an `acc` operand
    (FuseElementwise(), "block"),
    # LEVEL "block": elementwise chains are block.fused groups, each within DST capacity
    (LowerToTile(), None),
    # tile IR: buffers explicit (tilegrid.alloc), math is tile.compute / matmul / reduce / transpose
    (AllocateDst(), None),
    # every DST value has a slot, every tile op a subblock that fits DST
    (UpdateInPlace(), None),
    # an op whose output may overwrite an input it reads last writes there (accumulators in place)
    (AllocateL1(), "tile"),
    # LEVEL "tile": every buffer has an L1 offset; the kernel fits the core's L1
]


def verify(module: ModuleOp, after: str) -> None:
    try:
        module.verify()
    except VerifyException as e:
        raise CompileError(f"internal compiler error: IR does not verify after {after}: {e}") from e


def verify_each_pass() -> bool:
    """TILEGRID_VERIFY=each (the test suite sets it): verify the IR after the frontend and every
    pass. Otherwise only the level's final IR is verified (xDSL's verifier is a fifth of a compile)."""
    return os.environ.get("TILEGRID_VERIFY", "") == "each"


def run_pipeline(module: ModuleOp, level: str = "tile", dump: Callable[[str, str], None] | None = None,
                 verify_level: bool = True) -> ModuleOp:
    """Run the passes in order up to `level`, verifying (see `verify_each_pass`; `verify_level=False`
    leaves the level's IR to the caller, who verifies it before lowering it); `dump(stage, text)` sees
    the IR after each."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    ctx = ir.context()
    each = verify_each_pass() or dump is not None
    if each:
        verify(module, "the frontend")
    if dump:
        dump("frontend", ir.to_text(module))
    for p, reached in PIPELINE:
        p.apply(ctx, module)
        if each or (reached == level and verify_level):
            verify(module, p.name)
        if dump:
            dump(p.name, ir.to_text(module))
        if reached == level:
            break
    return module
