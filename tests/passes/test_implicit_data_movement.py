"""implicit-data-movement: reader / writer threads for the CBs no data-movement thread touches."""

import pytest
from irtext import apply_pass, arg, filecheck, program, run_pass

from tilegrid.errors import CompileError
from tilegrid.passes.implicit_data_movement import ImplicitDataMovement

# x -> out through one block, written by the compute thread as the frontend emits it: the
# `out_cb.pop()` that marks the block done is a cb_wait + cb_pop of the output CB.
COPY_COMPUTE = """
    "tilegrid.thread"() <{kind = "compute", name = "comp"}> ({
      %x = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}> {loc = "k.py:5:13"} : () -> !tilegrid.block<32x32xf32>
      %o = "tilegrid.cb_reserve"() <{cb = #builtin.int<1>}> {loc = "k.py:6:13"} : () -> !tilegrid.block<32x32xf32>
      "block.store"(%o, %x) {loc = "k.py:7:9"} : (!tilegrid.block<32x32xf32>, !tilegrid.block<32x32xf32>) -> ()
      "tilegrid.cb_push"() <{cb = #builtin.int<1>}> {loc = "k.py:7:9"} : () -> ()
      %done = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}> {loc = "k.py:8:9"} : () -> !tilegrid.block<32x32xf32>
      "tilegrid.cb_pop"() <{cb = #builtin.int<1>}> {loc = "k.py:8:9"} : () -> ()
      "tilegrid.cb_pop"() <{cb = #builtin.int<0>}> {loc = "k.py:4:5"} : () -> ()
    }) : () -> ()"""

# A user reader for x (CB 0), one block per core.
USER_READER = """
    "tilegrid.thread"() <{kind = "datamovement", name = "reader"}> ({
      %r = "tilegrid.core_index"() <{dim = #builtin.int<0>}> : () -> index
      %s = "tilegrid.cb_reserve"() <{cb = #builtin.int<0>}> : () -> !tilegrid.block<32x32xf32>
      %h = "tilegrid.dma_read"(%r, %r, %s) <{arg = #builtin.int<0>}> : (index, index, !tilegrid.block<32x32xf32>) -> !tilegrid.dma
      "tilegrid.dma_wait"(%h) : (!tilegrid.dma) -> ()
      "tilegrid.cb_push"() <{cb = #builtin.int<0>}> : () -> ()
    }) : () -> ()"""

# A user writer for out (CB 1), one block per core.
USER_WRITER = """
    "tilegrid.thread"() <{kind = "datamovement", name = "writer"}> ({
      %r = "tilegrid.core_index"() <{dim = #builtin.int<0>}> : () -> index
      %b = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}> {loc = "k.py:20:13"} : () -> !tilegrid.block<32x32xf32>
      %h = "tilegrid.dma_write"(%b, %r, %r) <{arg = #builtin.int<1>}> : (!tilegrid.block<32x32xf32>, index, index) -> !tilegrid.dma
      "tilegrid.dma_wait"(%h) : (!tilegrid.dma) -> ()
      "tilegrid.cb_pop"() <{cb = #builtin.int<1>}> : () -> ()
    }) : () -> ()"""


# A compute-only kernel on a 2x1 grid with x of 4x1 tiles: the implicit reader walks the core's
# 2x1-block shard row-major, block (row * 2 + i, col * 1 + j), reserving, reading and pushing CB 0.
# Its ops carry the location of the compute thread's first wait on x, so reports point there.
def test_implicit_reader_walks_the_core_shard():
    out = run_pass(ImplicitDataMovement(), program(COPY_COMPUTE, [arg("x", (128, 32)), arg("out", (128, 32), output=True)],
                                                   grid=(2, 1)))
    filecheck(out, """
    CHECK-LABEL: "tilegrid.thread"() <{kind = "datamovement", name = "implicit_reader_x", implicit = "reader"}>
    CHECK-NEXT:  %[[ROW:.*]] = "tilegrid.core_index"() <{dim = #builtin.int<0>}> {loc = "k.py:5:13"}
    CHECK-NEXT:  %[[COL:.*]] = "tilegrid.core_index"() <{dim = #builtin.int<1>}> {loc = "k.py:5:13"}
    CHECK-NEXT:  %[[LB:.*]] = "arith.constant"() <{value = 0 : index}>
    CHECK-NEXT:  %[[UB:.*]] = "arith.constant"() <{value = 2 : index}>
    CHECK-NEXT:  %[[ST:.*]] = "arith.constant"() <{value = 1 : index}>
    CHECK-NEXT:  "scf.for"(%[[LB]], %[[UB]], %[[ST]]) ({
    CHECK-NEXT:  ^bb{{[0-9]+}}(%[[I:.*]]: index):
    CHECK-NEXT:  %[[LB2:.*]] = "arith.constant"() <{value = 0 : index}>
    CHECK-NEXT:  %[[UB2:.*]] = "arith.constant"() <{value = 1 : index}>
    CHECK-NEXT:  %[[ST2:.*]] = "arith.constant"() <{value = 1 : index}>
    CHECK-NEXT:  "scf.for"(%[[LB2]], %[[UB2]], %[[ST2]]) ({
    CHECK-NEXT:  ^bb{{[0-9]+}}(%[[J:.*]]: index):
    CHECK-NEXT:  %[[NR:.*]] = "arith.constant"() <{value = 2 : index}>
    CHECK-NEXT:  %[[R0:.*]] = "arith.muli"(%[[ROW]], %[[NR]])
    CHECK-NEXT:  %[[R:.*]] = "arith.addi"(%[[R0]], %[[I]])
    CHECK-NEXT:  %[[NC:.*]] = "arith.constant"() <{value = 1 : index}>
    CHECK-NEXT:  %[[C0:.*]] = "arith.muli"(%[[COL]], %[[NC]])
    CHECK-NEXT:  %[[C:.*]] = "arith.addi"(%[[C0]], %[[J]])
    CHECK-NEXT:  %[[SLOT:.*]] = "tilegrid.cb_reserve"() <{cb = #builtin.int<0>}> {loc = "k.py:5:13"} : () -> !tilegrid.block<32x32xf32>
    CHECK-NEXT:  %[[H:.*]] = "tilegrid.dma_read"(%[[R]], %[[C]], %[[SLOT]]) <{arg = #builtin.int<0>}>
    CHECK-NEXT:  "tilegrid.dma_wait"(%[[H]])
    CHECK-NEXT:  "tilegrid.cb_push"() <{cb = #builtin.int<0>}>
    CHECK-NEXT:  "scf.yield"() {loc = "k.py:5:13"} : () -> ()
    """)


# The output drains implicitly: the compute thread's own wait + pop of it are removed (the block is
# only "done"), and a writer waits, writes block (row, col) of out, and pops. Leading dimensions get
# a loop each and index the DRAM tensor first; the CB slot has the argument's block shape (2x1 tiles).
# The writer's ops carry the location of the compute thread's first reserve of out.
def test_implicit_writer_replaces_compute_output_pop():
    compute = COPY_COMPUTE.replace("32x32xf32", "64x32xf32")
    out = run_pass(ImplicitDataMovement(), program(compute, [arg("x", (64, 32), block=(2, 1)),
                                                             arg("out", (3, 64, 32), block=(2, 1), output=True)]))
    filecheck(out, """
    CHECK-LABEL: "tilegrid.thread"() <{kind = "compute", name = "comp"}>
    CHECK-NEXT:  "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT:  "tilegrid.cb_reserve"() <{cb = #builtin.int<1>}>
    CHECK-NEXT:  "block.store"
    CHECK-NEXT:  "tilegrid.cb_push"() <{cb = #builtin.int<1>}>
    CHECK-NEXT:  "tilegrid.cb_pop"() <{cb = #builtin.int<0>}>
    CHECK-NEXT:  }) : () -> ()
    CHECK-NEXT:  "tilegrid.thread"() <{kind = "datamovement", name = "implicit_reader_x", implicit = "reader"}>
    CHECK:       "tilegrid.thread"() <{kind = "datamovement", name = "implicit_writer_out", implicit = "writer"}>
    CHECK:       %[[UB:.*]] = "arith.constant"() <{value = 3 : index}>
    CHECK-NEXT:  %[[ST:.*]] = "arith.constant"() <{value = 1 : index}>
    CHECK-NEXT:  "scf.for"(%{{.*}}, %[[UB]], %[[ST]]) ({
    CHECK-NEXT:  ^bb{{[0-9]+}}(%[[LEAD:.*]]: index):
    CHECK:       %[[R:.*]] = "arith.addi"
    CHECK:       %[[C:.*]] = "arith.addi"
    CHECK-NEXT:  %[[B:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}> {loc = "k.py:6:13"} : () -> !tilegrid.block<64x32xf32>
    CHECK-NEXT:  %[[H:.*]] = "tilegrid.dma_write"(%[[B]], %[[LEAD]], %[[R]], %[[C]]) <{arg = #builtin.int<1>}>
    CHECK-NEXT:  "tilegrid.dma_wait"(%[[H]])
    CHECK-NEXT:  "tilegrid.cb_pop"() <{cb = #builtin.int<1>}>
    """)


# A CB the user's data-movement threads already fill or drain gets no implicit thread, and the
# compute thread's CB ops are left as they are.
def test_user_threads_suppress_implicit_ones():
    compute = COPY_COMPUTE.replace(
        '      %done = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}> {loc = "k.py:8:9"} : () -> !tilegrid.block<32x32xf32>\n'
        '      "tilegrid.cb_pop"() <{cb = #builtin.int<1>}> {loc = "k.py:8:9"} : () -> ()\n', "")
    out = run_pass(ImplicitDataMovement(), program(compute + USER_READER + USER_WRITER))
    filecheck(out, """
    CHECK-LABEL: name = "comp"
    CHECK:       "tilegrid.cb_push"() <{cb = #builtin.int<1>}>
    CHECK-NEXT:  "tilegrid.cb_pop"() <{cb = #builtin.int<0>}>
    CHECK:       name = "reader"
    CHECK:       name = "writer"
    CHECK-NOT:   implicit
    """)


# Only the missing side is added: a user reader for x, and an implicit writer for out.
def test_user_reader_with_implicit_writer():
    out = run_pass(ImplicitDataMovement(), program(COPY_COMPUTE + USER_READER))
    filecheck(out, """
    CHECK-LABEL: name = "comp"
    CHECK-NOT:   "tilegrid.cb_pop"() <{cb = #builtin.int<1>}>
    CHECK:       name = "reader"
    CHECK-NOT:   implicit_reader
    CHECK:       name = "implicit_writer_out", implicit = "writer"
    """)


# An output popped by the compute thread and by a user writer would be popped twice: an error
# naming both lines, pointing at the compute thread's.
def test_output_popped_by_compute_and_writer_is_an_error():
    with pytest.raises(CompileError) as e:
        apply_pass(ImplicitDataMovement(), program(COPY_COMPUTE + USER_WRITER))
    assert e.value.message == (
        "output CB 'out' is popped by both the compute thread (line 8) "
        "and a data-movement thread (line 20)"
    )
    assert str(e.value.loc) == "k.py:8:9"
    assert e.value.note == "remove the compute thread's pop: the writer thread pops and writes the block"


# An implicitly drained output cannot be read back by the compute thread.
def test_compute_reading_back_its_output_is_an_error():
    compute = COPY_COMPUTE.replace(
        '"tilegrid.cb_pop"() <{cb = #builtin.int<1>}> {loc = "k.py:8:9"} : () -> ()',
        '"tilegrid.print"(%done) <{label = "done"}> : (!tilegrid.block<32x32xf32>) -> ()')
    with pytest.raises(CompileError) as e:
        apply_pass(ImplicitDataMovement(), program(compute))
    assert e.value.message == "the compute thread reads back its own output 'out'"
    assert str(e.value.loc) == "k.py:8:9"


# Implicit movement splits each tensor's blocks evenly over the grid; 3 block rows over 2 core rows
# do not split.
def test_uneven_shard_is_an_error():
    with pytest.raises(CompileError) as e:
        apply_pass(ImplicitDataMovement(), program(COPY_COMPUTE, [arg("x", (96, 32)), arg("out", (96, 32), output=True)],
                                                   grid=(2, 1)))
    assert e.value.message == (
        "'x' has 3x1 blocks of 32x32, which do not split evenly over the 2x1 grid for implicit data movement"
    )


# An output that no thread reserves or writes would be left unwritten.
def test_output_never_written_is_an_error():
    compute = """
    "tilegrid.thread"() <{kind = "compute", name = "comp"}> ({
      %x = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}> {loc = "k.py:5:13"} : () -> !tilegrid.block<32x32xf32>
      "tilegrid.cb_pop"() <{cb = #builtin.int<0>}> {loc = "k.py:4:5"} : () -> ()
    }) : () -> ()"""
    with pytest.raises(CompileError) as e:
        apply_pass(ImplicitDataMovement(), program(compute))
    assert e.value.message == "output 'out' is never written: no thread reserves its CB or writes its stream"
