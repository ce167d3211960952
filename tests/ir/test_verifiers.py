"""Every verifier rule of the tilegrid, block and tile dialects rejects a minimal bad op with its message."""

import re

import pytest
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

from tilegrid import ir
from tilegrid.ir.core import BlockType


def thread(body: str, kind: str = "compute") -> str:
    return (
        '"builtin.module"() ({\n'
        f'  "tilegrid.thread"() <{{kind = "{kind}", name = "t"}}> ({{\n{body}\n  }}) : () -> ()\n'
        "}) : () -> ()\n"
    )


def wait(name: str, t: str, cb: int = 0) -> str:
    return f'    %{name} = "tilegrid.cb_wait"() <{{cb = #builtin.int<{cb}>}}> : () -> !tilegrid.block<{t}>'


def idx(name: str) -> str:
    return f'    %{name} = "tilegrid.core_index"() <{{dim = #builtin.int<0>}}> : () -> index'


def assert_rejected(text: str, message: str) -> None:
    module = ir.parse(text)
    with pytest.raises(VerifyException, match=re.escape(message)):
        module.verify()


BAD_OPS = {
    "binary shapes do not broadcast": (
        [wait("a", "32x64xf32"), wait("b", "64x32xf32", 1),
         '    %y = "block.add"(%a, %b) : (!tilegrid.block<32x64xf32>, !tilegrid.block<64x32xf32>) '
         "-> !tilegrid.block<32x64xf32>"],
        "block.add: shapes !tilegrid.block<32x64xf32> and !tilegrid.block<64x32xf32> do not broadcast",
    ),
    "binary of two scalars": (
        ['    %s = "arith.constant"() <{value = 2.000000e+00 : f32}> : () -> f32',
         '    %y = "block.mul"(%s, %s) : (f32, f32) -> !tilegrid.block<32x32xf32>'],
        "block.mul: at least one operand must be a block",
    ),
    "power without its exponent": (
        [wait("a", "32x32xf32"),
         '    %y = "block.pow"(%a) : (!tilegrid.block<32x32xf32>) -> !tilegrid.block<32x32xf32>'],
        "property 'n' expected in operation 'block.pow'",
    ),
    "clamp with an integer bound": (
        [wait("a", "32x32xf32"),
         '    %y = "block.clamp"(%a) <{lo = #builtin.int<0>, hi = 1.0 : f32}> : (!tilegrid.block<32x32xf32>) '
         "-> !tilegrid.block<32x32xf32>"],
        "#builtin.int<0> should be of base attribute float",
    ),
    "unary result type": (
        [wait("a", "32x32xf32"),
         '    %y = "block.exp"(%a) : (!tilegrid.block<32x32xf32>) -> !tilegrid.block<32x32xbf16>'],
        "block.exp: result type !tilegrid.block<32x32xbf16> does not match inferred !tilegrid.block<32x32xf32>",
    ),
    "tile op parameter": (
        ['    %l = "tile.fill"() <{value = 1.0 : f32}> : () -> !tile.dst',
         '    %y = "tile.pow"(%l) <{n = 2.0 : f32}> : (!tile.dst) -> !tile.dst'],
        "2.000000e+00 : f32 should be of base attribute builtin.int",
    ),
    "broadcast not a row or column": (
        [wait("a", "32x64xf32"),
         '    %y = "block.broadcast"(%a) : (!tilegrid.block<32x64xf32>) -> !tilegrid.block<64x64xf32>'],
        "cannot broadcast !tilegrid.block<32x64xf32> to !tilegrid.block<64x64xf32>",
    ),
    "reduce unknown kind": (
        [wait("a", "32x32xf32"),
         '    %y = "block.reduce"(%a) <{kind = "min", dim = #builtin.int<1>}> : (!tilegrid.block<32x32xf32>) '
         "-> !tilegrid.block<32x1xf32>"],
        "block.reduce: kind must be one of ('max', 'sum'), got 'min'",
    ),
    "matmul inner dimensions": (
        [wait("a", "32x64xbf16"), wait("b", "32x32xbf16", 1),
         '    %y = "block.matmul"(%a, %b) : (!tilegrid.block<32x64xbf16>, !tilegrid.block<32x32xbf16>) '
         "-> !tilegrid.block<32x32xbf16>"],
        "block.matmul: inner dimensions of !tilegrid.block<32x64xbf16> and !tilegrid.block<32x32xbf16> differ",
    ),
    "store shape": (
        [wait("v", "32x64xf32"),
         '    %o = "tilegrid.cb_reserve"() <{cb = #builtin.int<1>}> : () -> !tilegrid.block<32x32xbf16>',
         '    "block.store"(%o, %v) : (!tilegrid.block<32x32xbf16>, !tilegrid.block<32x64xf32>) -> ()'],
        "block.store: storing !tilegrid.block<32x64xf32> into a slot of !tilegrid.block<32x32xbf16>",
    ),
    "compute outputs of different shapes": (
        [wait("x", "32x32xf32"),
         '    %o1 = "tilegrid.alloc"() : () -> !tilegrid.block<32x32xf32>',
         '    %o2 = "tilegrid.alloc"() : () -> !tilegrid.block<32x64xf32>',
         '    "tile.compute"(%x, %o1, %o2) <{operandSegmentSizes = array<i32: 1, 0, 2>}> ({',
         '      %l = "tile.load"() <{input = #builtin.int<0>, bcast = "none"}> : () -> !tile.dst',
         '      "tile.pack"(%l) <{output = #builtin.int<0>}> : (!tile.dst) -> ()',
         '      "tile.pack"(%l) <{output = #builtin.int<1>}> : (!tile.dst) -> ()',
         "    }) : (!tilegrid.block<32x32xf32>, !tilegrid.block<32x32xf32>, !tilegrid.block<32x64xf32>) -> ()"],
        "tile.compute outputs must share one shape, got [(32, 32), (32, 64)]",
    ),
    "mcast target of 3 indices": (
        [wait("x", "32x32xf32"), idx("i"),
         '    %h = "tilegrid.dma_mcast"(%x, %i, %i, %i) <{cb = #builtin.int<0>}> : '
         "(!tilegrid.block<32x32xf32>, index, index, index) -> !tilegrid.dma"],
        "tilegrid.dma_mcast: target is (y, x) or (y, x, h, w); got 3 indices",
    ),
    "sem_set target of 1 index": (
        [idx("i"), '    "tilegrid.sem_set"(%i, %i) <{sem = #builtin.int<0>}> : (index, index) -> ()'],
        "tilegrid.sem_set: target is (), (y, x) or (y, x, h, w); got 1 indices",
    ),
    "sem_inc target of 3 indices": (
        [idx("i"), '    "tilegrid.sem_inc"(%i, %i, %i, %i) <{sem = #builtin.int<0>}> : (index, index, index, index) -> ()'],
        "tilegrid.sem_inc: target is (), (y, x) or (y, x, h, w); got 3 indices",
    ),
}


@pytest.mark.parametrize("case", BAD_OPS)
def test_bad_op_is_rejected(case):
    lines, message = BAD_OPS[case]
    assert_rejected(thread("\n".join(lines)), message)


def test_thread_kind_is_compute_or_datamovement():
    assert_rejected(thread('    "tilegrid.cb_pop"() <{cb = #builtin.int<0>}> : () -> ()', kind="foo"), "thread kind must be compute or datamovement, got foo")


BAD_TYPES = {
    "48x32xf32": "block dimension 48 is neither 1 nor a multiple of 32",
    "32x0xbf16": "block dimension 0 is neither 1 nor a multiple of 32",
    "32x32x32xf32": "a block has 2 dimensions, got 3",
    "32x32xi32": "unsupported element type i32: expected bf16 or f32",
}


# A bad block type is rejected when it is parsed, inside an op or alone, and when it is built.
@pytest.mark.parametrize("shape", BAD_TYPES)
def test_bad_block_type_is_rejected(shape):
    message = re.escape(BAD_TYPES[shape])
    with pytest.raises(VerifyException, match=message):
        ir.parse(thread(wait("a", shape)))
    with pytest.raises(VerifyException, match=message):
        Parser(ir.context(), f"!tilegrid.block<{shape}>").parse_type()


def test_block_type_constructor_checks():
    with pytest.raises(VerifyException, match="block dimension 48 is neither 1 nor a multiple of 32"):
        BlockType((48, 32), "f32")


# block.where's operands (after infer-shapes: of its result's shape) must broadcast to one shape.
def test_where_operands_must_broadcast():
    module = ir.parse(thread("\n".join([
        wait("c", "32x64xf32"), wait("a", "64x32xf32", 1),
        '    %y = "block.where"(%c, %a, %a) : (!tilegrid.block<32x64xf32>, !tilegrid.block<64x32xf32>, '
        "!tilegrid.block<64x32xf32>) -> !tilegrid.block<32x32xf32>",
    ])))
    with pytest.raises(VerifyException, match="block.where: shapes"):
        module.verify()


# Elementwise ops are the op table's entries: a name that is not one is not an op of the dialect.
def test_an_op_not_in_the_table_does_not_parse():
    with pytest.raises(Exception, match="block.frobnicate"):
        ir.parse(thread("\n".join([
            wait("a", "32x32xf32"),
            '    %y = "block.frobnicate"(%a) : (!tilegrid.block<32x32xf32>) -> !tilegrid.block<32x32xf32>',
        ])))
