"""allocate-l1: CBs, then each thread's buffers placed by lifetime; the kernel must fit the L1 budget."""

import pytest
from irtext import apply_pass, arg, filecheck, program, run_pass

from tilegrid.errors import CompileError
from tilegrid.passes.allocate_l1 import AllocateL1

F = "!tilegrid.block<32x32xf32>"

# CBs: x holds 2 slots of one f32 tile (2 x 4096 B), out 1 slot of one bf16 tile (2048 B): the
# CB area is the first 10240 B, buffers start after it.
ARGS = [arg("x", depth=2), arg("out", dtype="bf16", output=True)]
CB_BYTES = 10240


# The thread pops both CBs (a CB no thread uses takes no L1).
USE_CBS = ('      "tilegrid.cb_pop"() <{cb = #builtin.int<0>}> : () -> ()\n'
           '      "tilegrid.cb_pop"() <{cb = #builtin.int<1>}> : () -> ()\n')


def thread(body: str, name: str = "comp", kind: str = "compute") -> str:
    return f'    "tilegrid.thread"() <{{kind = "{kind}", name = "{name}"}}> ({{\n{USE_CBS}{body}\n    }}) : () -> ()'


def use(v: str) -> str:
    return f'      "tilegrid.print"(%{v}) <{{label = "{v}"}}> : ({F}) -> ()'


def alloc(v: str, line: int, t: str = F) -> str:
    return f'      %{v} = "tilegrid.alloc"() {{loc = "k.py:{line}:13"}} : () -> {t}'


LOOP_BOUNDS = """
      %lb = "arith.constant"() <{value = 0 : index}> : () -> index
      %ub = "arith.constant"() <{value = 2 : index}> : () -> index
      %st = "arith.constant"() <{value = 1 : index}> : () -> index"""


# Buffers whose lifetimes do not overlap share bytes: `b` is allocated after `a`'s last use and
# takes its place; `c`, allocated while `b` is alive, goes after it. All after the CB area.
def test_disjoint_lifetimes_share_bytes():
    body = "\n".join([alloc("a", 5), use("a"), alloc("b", 7), alloc("c", 8), use("b"), use("c")])
    out = run_pass(AllocateL1(), program(thread(body), ARGS))
    filecheck(out, f"""
    CHECK: %a = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES}>}}> {{loc = "k.py:5:13"}}
    CHECK: %b = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES}>}}> {{loc = "k.py:7:13"}}
    CHECK: %c = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES + 4096}>}}> {{loc = "k.py:8:13"}}
    """)


# A buffer defined before a loop and used inside it lives through the whole loop (a later
# iteration reads it again): `t`, allocated in the loop after the last use of `x`, may not take
# its place.
def test_buffer_used_in_loop_lives_through_loop():
    body = "\n".join([alloc("x", 5), LOOP_BOUNDS,
                      '      "scf.for"(%lb, %ub, %st) ({', "      ^bb0(%i: index):",
                      use("x"), alloc("t", 8), use("t"),
                      '        "scf.yield"() : () -> ()', "      }) : (index, index, index) -> ()"])
    out = run_pass(AllocateL1(), program(thread(body), ARGS))
    filecheck(out, f"""
    CHECK: %x = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES}>}}>
    CHECK: %t = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES + 4096}>}}>
    """)


# A loop-carried buffer takes two places (old and new value coexist: ping-pong, 2 x 4096 B; the
# second place is `pingpong`) and may not overlap the loop's initial value, which is read in the
# first iteration. Larger buffers are placed first (greedy by size): `new` (8192 B) at the base,
# then `init`; `after`, made once the loop's result is dead, reuses the base.
def test_carried_buffer_takes_two_places():
    body = "\n".join([alloc("init", 5), LOOP_BOUNDS,
                      '      %r = "scf.for"(%lb, %ub, %st, %init) ({', f"      ^bb0(%i: index, %acc: {F}):",
                      use("acc"), alloc("new", 9),
                      f'        "scf.yield"(%new) : ({F}) -> ()', f"      }}) : (index, index, index, {F}) -> {F}",
                      use("r"), alloc("after", 12), use("after")])
    out = run_pass(AllocateL1(), program(thread(body), ARGS))
    filecheck(out, f"""
    CHECK: %init = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES + 8192}>}}>
    CHECK: %new = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES}>, pingpong = #builtin.int<{CB_BYTES + 4096}>}}>
    CHECK: %after = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES}>}}>
    """)


# A carried value crosses the loop's back edge: it is live through the whole body, so a buffer
# the body makes before the carried one's new value (`tmp`, used and dead before `new` is made)
# may not take its places, although in program order its lifetime ends before `new` begins.
def test_carried_buffer_is_live_through_the_whole_loop():
    body = "\n".join([alloc("init", 5), LOOP_BOUNDS,
                      '      %r = "scf.for"(%lb, %ub, %st, %init) ({', f"      ^bb0(%i: index, %acc: {F}):",
                      alloc("tmp", 7), use("tmp"), use("acc"), alloc("new", 9),
                      f'        "scf.yield"(%new) : ({F}) -> ()', f"      }}) : (index, index, index, {F}) -> {F}",
                      use("r")])
    out = run_pass(AllocateL1(), program(thread(body), ARGS))
    filecheck(out, f"""
    CHECK: %init = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES + 8192}>}}>
    CHECK: %tmp = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES + 12288}>}}>
    CHECK: %new = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES}>, pingpong = #builtin.int<{CB_BYTES + 4096}>}}>
    """)


# Threads run concurrently: each has its own buffer area, the second after the first one's peak.
def test_each_thread_has_its_own_area():
    comp = thread("\n".join([alloc("a", 5), alloc("b", 6), use("a"), use("b")]))
    dm = thread("\n".join([alloc("d", 20, "!tilegrid.block<32x1xbf16>")]), name="dm", kind="datamovement")
    out = run_pass(AllocateL1(), program(comp + "\n" + dm, ARGS))
    filecheck(out, f"""
    CHECK: %a = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES}>}}>
    CHECK: %b = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES + 4096}>}}>
    CHECK: %d = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES + 8192}>}}> {{loc = "k.py:20:13"}} : () -> !tilegrid.block<32x1xbf16>
    """)


# Two 64x64 f32 buffers alive together (2 x 16384 B) after the 10240 B of CBs: 43008 B.
BIG_PAIR = thread("\n".join([alloc("p", 5, "!tilegrid.block<64x64xf32>"), alloc("q", 6, "!tilegrid.block<64x64xf32>"),
                             '      "tilegrid.print"(%p) <{label = "p"}> : (!tilegrid.block<64x64xf32>) -> ()',
                             '      "tilegrid.print"(%q) <{label = "q"}> : (!tilegrid.block<64x64xf32>) -> ()']))
NEEDED = CB_BYTES + 2 * 16384


# Exactly the budget fits.
def test_exact_budget_fits():
    run_pass(AllocateL1(), program(BIG_PAIR, ARGS, l1_budget=NEEDED))


# One byte less does not: the error gives the bytes needed and available and the largest users.
def test_l1_overflow_is_an_error():
    with pytest.raises(CompileError) as e:
        apply_pass(AllocateL1(), program(BIG_PAIR, ARGS, l1_budget=NEEDED - 1))
    assert e.value.message == (
        f"the kernel needs {NEEDED} bytes of L1 per core but {NEEDED - 1} are available; largest: "
        "buffer 64x64 f32 (line 5): 16384 B; buffer 64x64 f32 (line 6): 16384 B; "
        "CB x (2 x 4096 B): 8192 B; CB out (1 x 2048 B): 2048 B"
    )
    assert e.value.note == "use smaller block_factors or a shallower CB depth, or spread the work over more cores"


def add_into(dst: str, a: str, b: str) -> str:
    """`dst = a + b` as a tile.compute (one 32x32 f32 tile each)."""
    return (f'      "tile.compute"(%{a}, %{b}, %{dst}) <{{operandSegmentSizes = array<i32: 2, 0, 1>, '
            'subblock = [#builtin.int<1>, #builtin.int<1>]}> ({\n'
            f'        %{dst}_l0 = "tile.load"() <{{input = #builtin.int<0>, bcast = "none", dst = #builtin.int<0>}}> : () -> !tile.dst\n'
            f'        %{dst}_l1 = "tile.load"() <{{input = #builtin.int<1>, bcast = "none", dst = #builtin.int<1>}}> : () -> !tile.dst\n'
            f'        %{dst}_s = "tile.add"(%{dst}_l0, %{dst}_l1) <{{dst = #builtin.int<0>}}> : (!tile.dst, !tile.dst) -> !tile.dst\n'
            f'        "tile.pack"(%{dst}_s) <{{output = #builtin.int<0>}}> : (!tile.dst) -> ()\n'
            f'      }}) : ({F}, {F}, {F}) -> ()')


def if_else(result: str, then: list[str], then_yield: str, other: list[str], other_yield: str) -> list[str]:
    return ['      %c = "arith.constant"() <{value = true}> : () -> i1',
            f'      %{result} = "scf.if"(%c) ({{', *then, f'        "scf.yield"(%{then_yield}) : ({F}) -> ()',
            '      }, {', *other, f'        "scf.yield"(%{other_yield}) : ({F}) -> ()', f'      }}) : (i1) -> {F}']


# The values an scf.if yields at one result share a buffer. Made in the two branches (`t`, `e`):
# they never live at once. `m`, read in both branches, lives through the if, so they go after it;
# `x`, made after the last use of `m`, takes its place (not the if result's, still alive).
def test_buffers_yielded_by_the_two_branches_of_an_if_share_a_place():
    body = [alloc("m", 4), *if_else("r", [alloc("t", 6), add_into("t", "m", "m")], "t",
                                     [alloc("e", 9), add_into("e", "m", "m")], "e"),
            use("r"), use("m"), alloc("x", 14), use("x"), use("r")]
    out = run_pass(AllocateL1(), program(thread("\n".join(body)), ARGS))
    filecheck(out, f"""
    CHECK: %m = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES}>}}>
    CHECK: %t = "tilegrid.alloc"() <{{offset = #builtin.int<[[SHARED:[0-9]+]]>}}>
    CHECK: %e = "tilegrid.alloc"() <{{offset = #builtin.int<[[SHARED]]>}}>
    CHECK: %x = "tilegrid.alloc"() <{{offset = #builtin.int<{CB_BYTES}>}}>
    """)
    assert f"int<{CB_BYTES + 4096}>" in out


# `S = S + mask` in one branch only: the value from before the if (`s`) dies in that branch at
# the elementwise add, so the sum is written in place and the if's result has one buffer.
def test_a_branch_that_updates_a_value_elementwise_writes_it_in_place():
    body = [alloc("s", 4), use("s"), alloc("k", 5), use("k"),
            *if_else("r", [alloc("t", 7), add_into("t", "s", "k")], "t", [], "s"), use("r")]
    out = run_pass(AllocateL1(), program(thread("\n".join(body)), ARGS))
    filecheck(out, """
    CHECK: %s = "tilegrid.alloc"() <{offset = #builtin.int<[[S:[0-9]+]]>}>
    CHECK: %t = "tilegrid.alloc"() <{offset = #builtin.int<[[S]]>}>
    """)


# Not in place when the old value is still read after the if: `t` needs a place of its own.
def test_no_in_place_update_while_the_old_value_is_still_needed():
    body = [alloc("s", 4), use("s"), alloc("k", 5), use("k"),
            *if_else("r", [alloc("t", 7), add_into("t", "s", "k")], "t", [], "s"), use("r"), use("s")]
    out = run_pass(AllocateL1(), program(thread("\n".join(body)), ARGS))
    plan = [line for line in out.splitlines() if '"tilegrid.alloc"' in line]
    offsets = {line.split("%")[1].split(" ")[0]: line.split("#builtin.int<")[1].split(">")[0] for line in plan}
    assert offsets["t"] != offsets["s"]


def index_then_mask(iota: str, dst: str, s: str) -> str:
    """A tile.compute that packs a column-index block into %iota, then loads %s and packs
    where(col < 16, s, -inf) into %dst: its first output is written before its input is read."""
    return (f'      "tile.compute"(%{s}, %{iota}, %{dst}) <{{operandSegmentSizes = array<i32: 1, 0, 2>, '
            'subblock = [#builtin.int<1>, #builtin.int<1>]}> ({\n'
            f'        %{dst}_i = "tile.iota"() <{{dim = #builtin.int<1>, dst = #builtin.int<0>}}> : () -> !tile.dst\n'
            f'        "tile.pack"(%{dst}_i) <{{output = #builtin.int<0>}}> : (!tile.dst) -> ()\n'
            f'        %{dst}_c = "tile.lt"(%{dst}_i, %{dst}_i) <{{dst = #builtin.int<0>}}> : (!tile.dst, !tile.dst) -> !tile.dst\n'
            f'        %{dst}_f = "tile.fill"() <{{value = 0.0 : f32, dst = #builtin.int<1>}}> : () -> !tile.dst\n'
            f'        %{dst}_l = "tile.load"() <{{input = #builtin.int<0>, bcast = "none", dst = #builtin.int<2>}}> : () -> !tile.dst\n'
            f'        %{dst}_w = "tile.where"(%{dst}_c, %{dst}_l, %{dst}_f) <{{dst = #builtin.int<0>}}> : (!tile.dst, !tile.dst, !tile.dst) -> !tile.dst\n'
            f'        "tile.pack"(%{dst}_w) <{{output = #builtin.int<1>}}> : (!tile.dst) -> ()\n'
            f'      }}) : ({F}, {F}, {F}) -> ()')


# Not in place when the branch's compute packs into the update's buffer before it reads the old
# value: `t` first holds an index block (packed before `s` is loaded), then the masked scores
# (a later in-place update); sharing `s`'s place would overwrite `s` before it is read.
def test_no_in_place_update_when_the_buffer_is_written_before_the_old_value_is_read():
    body = [alloc("s", 4), use("s"),
            *if_else("r", [alloc("t", 7), alloc("u", 7), index_then_mask("t", "u", "s"), add_into("t", "t", "u")],
                     "t", [], "s"), use("r")]
    out = run_pass(AllocateL1(), program(thread("\n".join(body)), ARGS))
    plan = [line for line in out.splitlines() if '"tilegrid.alloc"' in line]
    offsets = {line.split("%")[1].split(" ")[0]: line.split("#builtin.int<")[1].split(">")[0] for line in plan}
    assert offsets["t"] != offsets["s"]
