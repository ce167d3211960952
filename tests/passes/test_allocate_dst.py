"""allocate-dst: a DST slot for every tile value, a subblock per tile op that fits the DST capacity."""

import pytest
from irtext import apply_pass, filecheck, program, run_pass

from tilegrid.errors import CompileError
from tilegrid.passes.allocate_dst import AllocateDst


def block(rows: int, cols: int) -> str:
    return f"!tilegrid.block<{rows}x{cols}xf32>"


def compute(body: str, dst_capacity: int = 4) -> str:
    thread = '    "tilegrid.thread"() <{kind = "compute", name = "comp"}> ({\n' + body + "\n    }) : () -> ()"
    return program(thread, dst_capacity=dst_capacity)


def unary_compute(t: str) -> str:
    """out = exp(x) over blocks of type `t`: 1 DST slot per tile."""
    return f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {t}
      %o = "tilegrid.alloc"() : () -> {t}
      "tile.compute"(%x, %o) <{{operandSegmentSizes = array<i32: 1, 0, 1>}}> ({{
        %l = "tile.load"() <{{input = #builtin.int<0>, bcast = "none"}}> : () -> !tile.dst
        %e = "tile.exp"(%l) : (!tile.dst) -> !tile.dst
        "tile.pack"(%e) <{{output = #builtin.int<0>}}> : (!tile.dst) -> ()
      }}) {{loc = "k.py:9:13"}} : ({t}, {t}) -> ()"""


def binary_compute(t: str) -> str:
    """out = x + y over blocks of type `t`: both operands live at once, 2 DST slots per tile."""
    return f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {t}
      %o = "tilegrid.alloc"() : () -> {t}
      "tile.compute"(%x, %x, %o) <{{operandSegmentSizes = array<i32: 2, 0, 1>}}> ({{
        %a = "tile.load"() <{{input = #builtin.int<0>, bcast = "none"}}> : () -> !tile.dst
        %b = "tile.load"() <{{input = #builtin.int<1>, bcast = "none"}}> : () -> !tile.dst
        %s = "tile.add"(%a, %b) : (!tile.dst, !tile.dst) -> !tile.dst
        "tile.pack"(%s) <{{output = #builtin.int<0>}}> : (!tile.dst) -> ()
      }}) {{loc = "k.py:9:13"}} : ({t}, {t}, {t}) -> ()"""


# Linear scan: a result takes the lowest slot freed by an operand dying at that op; a value still
# used later keeps its slot (x stays in slot 0 while exp(x) takes slot 1). Two slots per tile.
def test_slot_assignment_reuses_dying_operands():
    out = run_pass(AllocateDst(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {block(32, 32)}
      %y = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {block(32, 32)}
      %o = "tilegrid.alloc"() : () -> {block(32, 32)}
      "tile.compute"(%x, %y, %o) <{{operandSegmentSizes = array<i32: 2, 0, 1>}}> ({{
        %lx = "tile.load"() <{{input = #builtin.int<0>, bcast = "none"}}> : () -> !tile.dst
        %e = "tile.exp"(%lx) : (!tile.dst) -> !tile.dst
        %m = "tile.mul"(%e, %lx) : (!tile.dst, !tile.dst) -> !tile.dst
        %ly = "tile.load"() <{{input = #builtin.int<1>, bcast = "none"}}> : () -> !tile.dst
        %s = "tile.add"(%m, %ly) : (!tile.dst, !tile.dst) -> !tile.dst
        "tile.pack"(%s) <{{output = #builtin.int<0>}}> : (!tile.dst) -> ()
      }}) : ({block(32, 32)}, {block(32, 32)}, {block(32, 32)}) -> ()
    """))
    filecheck(out, """
    CHECK:      "tile.compute"{{.*}}subblock = [#builtin.int<1>, #builtin.int<1>]
    CHECK-NEXT: %[[LX:.*]] = "tile.load"() <{input = #builtin.int<0>, bcast = "none", dst = #builtin.int<0>}>
    CHECK-NEXT: %[[E:.*]] = "tile.exp"(%[[LX]]) <{dst = #builtin.int<1>}>
    CHECK-NEXT: %[[M:.*]] = "tile.mul"(%[[E]], %[[LX]]) <{dst = #builtin.int<0>}>
    CHECK-NEXT: %[[LY:.*]] = "tile.load"() <{input = #builtin.int<1>, bcast = "none", dst = #builtin.int<1>}>
    CHECK-NEXT: %[[S:.*]] = "tile.add"(%[[M]], %[[LY]]) <{dst = #builtin.int<0>}>
    CHECK-NEXT: "tile.pack"(%[[S]]) <{output = #builtin.int<0>}>
    """)


# A 4x4-tile block needing 1 slot per tile in a DST of 4: the largest subblock is 4 tiles, and of
# [1,4], [2,2], [4,1] the widest wins.
def test_subblock_one_slot_per_tile():
    out = run_pass(AllocateDst(), compute(unary_compute(block(128, 128)), dst_capacity=4))
    filecheck(out, """
    CHECK: "tile.compute"(%{{.*}}) <{operandSegmentSizes = array<i32: 1, 0, 1>, subblock = [#builtin.int<1>, #builtin.int<4>]}>
    """)


# The same block needing 2 slots per tile: subblocks of 2 tiles, [1,2].
def test_subblock_two_slots_per_tile():
    out = run_pass(AllocateDst(), compute(binary_compute(block(128, 128)), dst_capacity=4))
    filecheck(out, """
    CHECK: "tile.compute"(%{{.*}}) <{operandSegmentSizes = array<i32: 2, 0, 1>, subblock = [#builtin.int<1>, #builtin.int<2>]}>
    """)


# A 2x2-tile block with 1 slot per tile fits whole in a DST of 4: [2,2].
def test_subblock_whole_block_when_it_fits():
    out = run_pass(AllocateDst(), compute(unary_compute(block(64, 64)), dst_capacity=4))
    filecheck(out, """
    CHECK: "tile.compute"(%{{.*}}) <{operandSegmentSizes = array<i32: 1, 0, 1>, subblock = [#builtin.int<2>, #builtin.int<2>]}>
    """)


# matmul, transpose and reduce hold one DST tile per output tile of a subblock: a 4x4-tile matmul
# output in a DST of 4 -> [1,4]; a 2x1-tile row reduction -> [2,1]; a 1x2-tile transpose -> [1,2].
def test_matmul_reduce_transpose_subblocks():
    out = run_pass(AllocateDst(), compute(f"""
      %a = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {block(128, 128)}
      %m = "tilegrid.alloc"() : () -> {block(128, 128)}
      "tile.matmul"(%a, %a, %m) <{{operandSegmentSizes = array<i32: 1, 1, 0, 1>}}> : ({block(128, 128)}, {block(128, 128)}, {block(128, 128)}) -> ()
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {block(64, 32)}
      %r = "tilegrid.alloc"() : () -> {block(64, 1)}
      "tile.reduce"(%x, %r) <{{kind = "sum", dim = #builtin.int<1>}}> : ({block(64, 32)}, {block(64, 1)}) -> ()
      %t = "tilegrid.alloc"() : () -> {block(32, 64)}
      "tile.transpose"(%x, %t) : ({block(64, 32)}, {block(32, 64)}) -> ()
    """))
    filecheck(out, """
    CHECK: "tile.matmul"{{.*}}subblock = [#builtin.int<1>, #builtin.int<4>]
    CHECK: "tile.reduce"{{.*}} <{kind = "sum", dim = #builtin.int<1>, subblock = [#builtin.int<2>, #builtin.int<1>]}>
    CHECK: "tile.transpose"{{.*}} <{subblock = [#builtin.int<1>, #builtin.int<2>]}>
    """)


# A body needing 2 slots per tile cannot run in a DST of 0 or 1 tiles: the error gives both numbers.
@pytest.mark.parametrize("capacity", [0, 1])
def test_insufficient_dst_capacity_for_compute(capacity):
    with pytest.raises(CompileError) as e:
        apply_pass(AllocateDst(), compute(binary_compute(block(32, 32)), dst_capacity=capacity))
    assert e.value.message == (
        f"Insufficient DST capacity: tile.compute needs 2 DST tiles per output tile, the DST holds {capacity}"
    )
    assert str(e.value.loc) == "k.py:9:13"
    assert e.value.note == "split the expression into smaller statements"


# A DST of 0 tiles cannot hold even one accumulator tile of a matmul.
def test_insufficient_dst_capacity_for_matmul():
    with pytest.raises(CompileError) as e:
        apply_pass(AllocateDst(), compute(f"""
      %a = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {block(32, 32)}
      %m = "tilegrid.alloc"() : () -> {block(32, 32)}
      "tile.matmul"(%a, %a, %m) <{{operandSegmentSizes = array<i32: 1, 1, 0, 1>}}> {{loc = "k.py:4:9"}} : ({block(32, 32)}, {block(32, 32)}, {block(32, 32)}) -> ()
    """, dst_capacity=0))
    assert e.value.message == (
        "Insufficient DST capacity: tile.matmul needs 1 DST tiles per output tile, the DST holds 0"
    )
    assert str(e.value.loc) == "k.py:4:9"
