"""fuse-elementwise: elementwise block ops of one shape grouped into `block.fused`, within DST capacity."""

from irtext import filecheck, program, run_pass

from tilegrid.passes.fuse_elementwise import FuseElementwise

F = "!tilegrid.block<32x32xf32>"
COL = "!tilegrid.block<32x1xf32>"


def compute(body: str, dst_capacity: int = 4) -> str:
    thread = '    "tilegrid.thread"() <{kind = "compute", name = "comp"}> ({\n' + body + "\n    }) : () -> ()"
    return program(thread, dst_capacity=dst_capacity)


# A chain of elementwise ops becomes one block.fused, placed at (and located at) its last member:
# block inputs first, then f32 scalars, as region arguments; the chain's result is yielded.
def test_chain_fuses():
    out = run_pass(FuseElementwise(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %y = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {F}
      %s = "arith.constant"() <{{value = 2.000000e+00 : f32}}> : () -> f32
      %a = "block.mul"(%x, %s) {{loc = "k.py:6:13"}} : ({F}, f32) -> {F}
      %b = "block.add"(%a, %y) {{loc = "k.py:7:13"}} : ({F}, {F}) -> {F}
      %c = "block.exp"(%b) {{loc = "k.py:8:13"}} : ({F}) -> {F}
      "tilegrid.print"(%c) <{{label = "c"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[X:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[Y:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[S:.*]] = "arith.constant"()
    CHECK-NEXT: %[[F:.*]] = "block.fused"(%[[X]], %[[Y]], %[[S]]) ({
    CHECK-NEXT: ^bb{{[0-9]+}}(%[[BX:.*]]: !tilegrid.block<32x32xf32>, %[[BY:.*]]: !tilegrid.block<32x32xf32>, %[[BS:.*]]: f32):
    CHECK-NEXT: %[[A:.*]] = "block.mul"(%[[BX]], %[[BS]])
    CHECK-NEXT: %[[B:.*]] = "block.add"(%[[A]], %[[BY]])
    CHECK-NEXT: %[[C:.*]] = "block.exp"(%[[B]])
    CHECK-NEXT: "block.yield"(%[[C]])
    CHECK-NEXT: }) {loc = "k.py:8:13"} : (!tilegrid.block<32x32xf32>, !tilegrid.block<32x32xf32>, f32) -> !tilegrid.block<32x32xf32>
    CHECK-NEXT: "tilegrid.print"(%[[F]])
    """)


# Every member used outside the group is a result of the fused op (here both `a` and `b`).
def test_values_used_outside_are_yielded():
    out = run_pass(FuseElementwise(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %a = "block.exp"(%x) : ({F}) -> {F}
      %b = "block.neg"(%a) : ({F}) -> {F}
      "tilegrid.print"(%a) <{{label = "a"}}> : ({F}) -> ()
      "tilegrid.print"(%b) <{{label = "b"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[FA:.*]], %[[FB:.*]] = "block.fused"(%[[X:.*]]) ({
    CHECK:      "block.yield"(%[[A:.*]], %[[B:.*]])
    CHECK-NEXT: })
    CHECK-NEXT: "tilegrid.print"(%[[FA]]) <{label = "a"}>
    CHECK-NEXT: "tilegrid.print"(%[[FB]]) <{label = "b"}>
    """)


# An op that touches a CB (here cb_pop) closes the open group: the ops after it form a new group,
# which takes the first group's result as an input.
def test_cb_op_closes_group():
    out = run_pass(FuseElementwise(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %a = "block.exp"(%x) : ({F}) -> {F}
      "tilegrid.cb_pop"() <{{cb = #builtin.int<0>}}> : () -> ()
      %b = "block.neg"(%a) : ({F}) -> {F}
      "tilegrid.print"(%b) <{{label = "b"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[FA:.*]] = "block.fused"(%[[X:.*]]) ({
    CHECK:      "block.exp"({{.*}})
    CHECK-NEXT: "block.yield"
    CHECK-NEXT: })
    CHECK-NEXT: "tilegrid.cb_pop"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[FB:.*]] = "block.fused"(%[[FA]]) ({
    CHECK:      "block.neg"({{.*}})
    CHECK:      "tilegrid.print"(%[[FB]])
    """)


# Ops of different shapes go to separate groups, even interleaved: the [32,1] ops `c1`, `c2` fuse
# together, the [32,32] op `x1` alone. A [32,32] op using a [32,1] member (via its broadcast)
# closes the [32,1] group, so the broadcasting op starts a group of its own shape.
def test_different_shapes_make_separate_groups():
    out = run_pass(FuseElementwise(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %c = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {COL}
      %c1 = "block.exp"(%c) : ({COL}) -> {COL}
      %x1 = "block.neg"(%x) : ({F}) -> {F}
      %c2 = "block.recip"(%c1) : ({COL}) -> {COL}
      %bc = "block.broadcast"(%c2) : ({COL}) -> {F}
      %y = "block.mul"(%x1, %bc) : ({F}, {F}) -> {F}
      "tilegrid.print"(%y) <{{label = "y"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[X:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[C:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[COL:.*]] = "block.fused"(%[[C]]) ({
    CHECK:      "block.exp"({{.*}})
    CHECK-NEXT: "block.recip"({{.*}})
    CHECK-NEXT: "block.yield"
    CHECK-NEXT: }) : (!tilegrid.block<32x1xf32>) -> !tilegrid.block<32x1xf32>
    CHECK-NEXT: %[[Y:.*]] = "block.fused"(%[[X]], %[[COL]]) ({
    CHECK:      "block.neg"({{.*}})
    CHECK-NEXT: "block.broadcast"
    CHECK-NEXT: "block.mul"({{.*}})
    CHECK-NEXT: "block.yield"
    CHECK-NEXT: })
    CHECK-NEXT: "tilegrid.print"(%[[Y]])
    """)


# Side-effect-free ops (matmul) do not close unrelated groups: `a` and `b` fuse around it and the
# group is placed after the matmul; a matmul that uses a member closes its group.
def test_matmul_closes_only_groups_it_uses():
    out = run_pass(FuseElementwise(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %a = "block.exp"(%x) : ({F}) -> {F}
      %m = "block.matmul"(%x, %x) : ({F}, {F}) -> {F}
      %b = "block.neg"(%a) : ({F}) -> {F}
      %m2 = "block.matmul"(%b, %m) : ({F}, {F}) -> {F}
      %c = "block.exp"(%m2) : ({F}) -> {F}
      "tilegrid.print"(%c) <{{label = "c"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[M:.*]] = "block.matmul"
    CHECK-NEXT: %[[AB:.*]] = "block.fused"(%[[X:.*]]) ({
    CHECK:      "block.exp"({{.*}})
    CHECK-NEXT: "block.neg"({{.*}})
    CHECK-NEXT: "block.yield"
    CHECK-NEXT: })
    CHECK-NEXT: %[[M2:.*]] = "block.matmul"(%[[AB]], %[[M]])
    CHECK-NEXT: %[[C:.*]] = "block.fused"(%[[M2]])
    """)


# Loops have regions: an scf.for closes the open groups, and the loop body is fused on its own.
def test_loop_closes_groups_and_body_fuses_separately():
    out = run_pass(FuseElementwise(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %a = "block.exp"(%x) : ({F}) -> {F}
      %lb = "arith.constant"() <{{value = 0 : index}}> : () -> index
      %ub = "arith.constant"() <{{value = 2 : index}}> : () -> index
      %st = "arith.constant"() <{{value = 1 : index}}> : () -> index
      %r = "scf.for"(%lb, %ub, %st, %x) ({{
      ^bb0(%i: index, %acc: {F}):
        %n = "block.neg"(%acc) : ({F}) -> {F}
        %e = "block.exp"(%n) : ({F}) -> {F}
        "scf.yield"(%e) : ({F}) -> ()
      }}) : (index, index, index, {F}) -> {F}
      %b = "block.add"(%a, %r) : ({F}, {F}) -> {F}
      "tilegrid.print"(%b) <{{label = "b"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[A:.*]] = "block.fused"(%[[X:.*]]) ({
    CHECK:      "block.exp"({{.*}})
    CHECK:      %[[R:.*]] = "scf.for"
    CHECK-NEXT: ^bb{{[0-9]+}}(%{{.*}}: index, %[[ACC:.*]]: !tilegrid.block<32x32xf32>):
    CHECK-NEXT: %[[E:.*]] = "block.fused"(%[[ACC]]) ({
    CHECK:      "block.neg"({{.*}})
    CHECK-NEXT: "block.exp"({{.*}})
    CHECK-NEXT: "block.yield"
    CHECK-NEXT: })
    CHECK-NEXT: "scf.yield"(%[[E]])
    CHECK:      "block.fused"(%[[A]], %[[R]]) ({
    CHECK-NEXT: ^bb
    CHECK-NEXT: "block.add"
    CHECK-NEXT: "block.yield"
    """)


# a = x + y; b = x * y; c = a + b. Kept whole, x and y stay live in DST while `a` is computed: the
# group needs 3 DST tiles per output tile. With capacity 4 it is one group.
_NEEDS_3 = f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %y = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {F}
      %a = "block.add"(%x, %y) : ({F}, {F}) -> {F}
      %b = "block.mul"(%x, %y) : ({F}, {F}) -> {F}
      %c = "block.add"(%a, %b) : ({F}, {F}) -> {F}
      "tilegrid.print"(%c) <{{label = "c"}}> : ({F}) -> ()
    """


def test_group_within_capacity_stays_whole():
    out = run_pass(FuseElementwise(), compute(_NEEDS_3, dst_capacity=4))
    filecheck(out, """
    CHECK:      "block.fused"(%[[X:.*]], %[[Y:.*]]) ({
    CHECK-NEXT: ^bb
    CHECK-NEXT: "block.add"({{.*}})
    CHECK-NEXT: "block.mul"({{.*}})
    CHECK-NEXT: "block.add"({{.*}})
    CHECK-NEXT: "block.yield"
    CHECK-NOT:  "block.fused"
    """)


# With capacity 2 the group splits before `b` (adding it would need 3): {a} needs 2, {b, c} needs 2.
def test_group_splits_at_dst_capacity():
    out = run_pass(FuseElementwise(), compute(_NEEDS_3, dst_capacity=2))
    filecheck(out, """
    CHECK:      %[[X:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[Y:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[A:.*]] = "block.fused"(%[[X]], %[[Y]]) ({
    CHECK-NEXT: ^bb
    CHECK-NEXT: "block.add"({{.*}})
    CHECK-NEXT: "block.yield"
    CHECK-NEXT: })
    CHECK-NEXT: %[[C:.*]] = "block.fused"(%[[X]], %[[Y]], %[[A]]) ({
    CHECK-NEXT: ^bb
    CHECK-NEXT: "block.mul"({{.*}})
    CHECK-NEXT: "block.add"({{.*}})
    CHECK-NEXT: "block.yield"
    CHECK-NEXT: })
    CHECK-NEXT: "tilegrid.print"(%[[C]])
    """)


# With capacity 1 a unary chain still fits (each result reuses its operand's slot), but a binary op
# needs 2: exp(x) is one group, the add another (allocate-dst later rejects the latter).
def test_capacity_one_splits_before_binary():
    out = run_pass(FuseElementwise(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %y = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {F}
      %e = "block.exp"(%x) : ({F}) -> {F}
      %n = "block.neg"(%e) : ({F}) -> {F}
      %s = "block.add"(%n, %y) : ({F}, {F}) -> {F}
      "tilegrid.print"(%s) <{{label = "s"}}> : ({F}) -> ()
    """, dst_capacity=1))
    filecheck(out, """
    CHECK:      %[[N:.*]] = "block.fused"(%[[X:.*]]) ({
    CHECK-NEXT: ^bb
    CHECK-NEXT: "block.exp"({{.*}})
    CHECK-NEXT: "block.neg"({{.*}})
    CHECK-NEXT: "block.yield"
    CHECK-NEXT: })
    CHECK-NEXT: "block.fused"(%[[N]], %[[Y:.*]]) ({
    CHECK-NEXT: ^bb
    CHECK-NEXT: "block.add"({{.*}})
    CHECK-NEXT: "block.yield"
    """)


# Values computed and never used are dropped first, whole chains of them, matmuls included: no
# result-less block.fused is made.
def test_unused_values_are_dropped():
    out = run_pass(FuseElementwise(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %a = "block.exp"(%x) : ({F}) -> {F}
      %b = "block.neg"(%a) : ({F}) -> {F}
      %m = "block.matmul"(%x, %x) : ({F}, {F}) -> {F}
      "tilegrid.print"(%x) <{{label = "x"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      "tilegrid.cb_wait"
    CHECK-NEXT: "tilegrid.print"
    CHECK-NOT:  block.
    """)
