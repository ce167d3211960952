"""allocate-l1: place every CB and intermediate buffer in each core's L1 against the budget.

CBs take depth x block bytes each, for the whole kernel, one after another from offset 0 (a CB no
thread uses takes none); their offsets are the program's `cb_offsets`. Intermediate buffers
(`tilegrid.alloc`) are placed by lifetime: two buffers whose live ranges do not overlap
share bytes (greedy by size over the buffers' live ranges in program order). A buffer used inside a loop
it was defined outside of lives through the whole loop; a buffer carried by a loop takes
two places (the old and the new value coexist: ping-pong; `pingpong` is the second place's
offset). Threads run concurrently, so
each thread gets its own buffer area. The kernel is rejected, with the bytes needed and
available and the largest buffers, if it does not fit. Afterwards every alloc has `offset`.

The values an `scf.if` yields at one result are coalesced into one buffer, as a register
allocator coalesces a phi: buffers made in the two branches never live at once; and a value
from before the `if` that one branch only updates elementwise (`S = S + mask` in a branch)
shares its buffer with the update, which is written in place: when the compute op that reads it
loads each of its tiles before it packs that tile of the update (`update_in_place.candidates`;
a compute that packs another output into the update's buffer first, as a mask's index block
before the scores it masks, would overwrite the value it has yet to read).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import scf
from xdsl.dialects.builtin import ArrayAttr, IntAttr, ModuleOp
from xdsl.ir import BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass

from tilegrid.errors import CompileError
from tilegrid.ir import core as C
from tilegrid.ir import tile as T
from tilegrid.passes.common import loc_of, program_of
from tilegrid.passes.update_in_place import candidates

TILE_BYTES = {"bf16": 2048, "f32": 4096}


def block_bytes(t: C.BlockType) -> int:
    r, c = t.tiles
    return r * c * TILE_BYTES[t.dtype]


@dataclass
class Buffer:
    op: C.AllocOp
    start: int
    end: int
    size: int
    carried: bool
    offset: int = 0
    shared: list[C.AllocOp] = field(default_factory=list)  # coalesced allocs at the same offset

    @property
    def align(self) -> int:
        """A buffer starts on a whole tile of its format (a target addresses it in tile-sized pages)."""
        return TILE_BYTES[self.op.results[0].type.dtype]

    @property
    def label(self) -> str:
        t = self.op.results[0].type
        where = loc_of(self.op) or "?"
        line = where.rsplit(":", 2)[-2] if ":" in where else where
        r, c = t.dims
        more = f" (+{len(self.shared)} coalesced)" if self.shared else ""
        return f"buffer {r}x{c} {t.dtype} (line {line}){' x2 carried' if self.carried else ''}{more}"


@dataclass
class L1Plan:
    """Per-core L1 use: CBs, then each thread's buffer area (peak of its overlapping buffers)."""

    cbs: list[tuple[str, int]]
    buffers: list[Buffer]
    areas: list[tuple[str, int]]  # (thread, peak bytes)
    budget: int

    @property
    def entries(self) -> list[tuple[str, int]]:
        return self.cbs + [(f"buffers of thread '{t}' (peak, reused by lifetime)", b) for t, b in self.areas]

    @property
    def used(self) -> int:
        return sum(b for _, b in self.cbs) + sum(b for _, b in self.areas)

    def report(self) -> str:
        lines = [f"L1 per core: {self.used} of {self.budget} bytes ({100 * self.used / self.budget:.1f}%)"]
        for name, b in self.cbs:
            lines.append(f"  {b:>9}  {name}")
        for thread, peak in self.areas:
            lines.append(f"  {peak:>9}  buffers of thread '{thread}' (peak; {len(self.buffers)} buffers, reused by lifetime)")
        for buf in sorted(self.buffers, key=lambda b: -b.size)[:8]:
            lines.append(f"             {buf.size:>9} at +{buf.offset:<8} {buf.label}")
        return "\n".join(lines)


def _positions(thread: C.ThreadOp) -> tuple[dict[Operation, int], dict[Operation, int]]:
    """Pre-order position of every op, and the last position inside each op's subtree."""
    pos: dict[Operation, int] = {}
    last: dict[Operation, int] = {}
    order = list(thread.walk())
    for i, o in enumerate(order):
        pos[o] = i
    for o in reversed(order):
        last[o] = max([pos[o]] + [last[c] for r in o.regions for b in r.blocks for c in b.ops])
    return pos, last


def _aliases(v: SSAValue) -> list[SSAValue]:
    """The value and every value its buffer may be reached as: what it flows into through
    `scf.yield` (loop body arguments, loop and `if` results) and, as a loop's initial value, the
    loop's body argument (a loop that updates its carried value in place keeps it in this buffer)."""
    out, todo = [v], [v]
    while todo:
        x = todo.pop()
        for u in list(x.uses):
            y = u.operation
            if isinstance(y, scf.YieldOp):
                parent = y.parent_op()
                nxt = [parent.results[u.index]]
                if isinstance(parent, scf.ForOp):
                    nxt.append(parent.body.block.args[u.index + 1])
            elif isinstance(y, scf.ForOp) and u.index >= 3:  # an iter_arg: lb, ub, step come first
                nxt = [y.body.block.args[u.index - 3 + 1]]
            else:
                continue
            for n in nxt:
                if n not in out:
                    out.append(n)
                    todo.append(n)
    return out


def _ancestor_in(op: Operation, block) -> Operation | None:
    """`op` or the op around it that sits in `block` (None if `op` is not inside it)."""
    while op is not None and op.parent_block() is not block:
        op = op.parent_op()
    return op


def _buffers(thread: C.ThreadOp) -> list[Buffer]:
    pos, last = _positions(thread)
    bufs = []
    for o in thread.walk():
        if not isinstance(o, C.AllocOp):
            continue
        start = end = pos[o]
        carried = False
        for v in _aliases(o.results[0]):
            if isinstance(v, BlockArgument) and isinstance(v.block.parent_op(), scf.ForOp):
                # a value the loop carries crosses its back edge: it is live through the whole loop
                loop = v.block.parent_op()
                start, end = min(start, pos[loop]), max(end, last[loop])
            vhome = v.block if isinstance(v, BlockArgument) else v.owner.parent_block()
            for u in v.uses:
                user = u.operation
                if isinstance(user, scf.YieldOp) and not isinstance(v, BlockArgument):
                    # a new value each iteration while the old one is read: two places
                    carried = carried or isinstance(user.parent_op(), scf.ForOp)
                anc = _ancestor_in(user, vhome) or thread  # the use as seen from where the value is defined
                end = max(end, last.get(anc, pos.get(user, end)))
        bufs.append(Buffer(o, start, end, block_bytes(o.results[0].type) * (2 if carried else 1), carried))
    return _merge(bufs, _coalesce(thread, pos))


class _Groups:
    """Union-find over allocs."""

    def __init__(self) -> None:
        self.parent: dict[C.AllocOp, C.AllocOp] = {}

    def find(self, a: C.AllocOp) -> C.AllocOp:
        while a in self.parent:
            a = self.parent[a]
        return a

    def union(self, a: C.AllocOp, b: C.AllocOp) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra is not rb:
            self.parent[rb] = ra


def _inside(op: Operation, region) -> bool:
    while op is not None:
        if op.parent_region() is region:
            return True
        op = op.parent_op()
    return False


def _coalesce(thread: C.ThreadOp, pos: dict[Operation, int]) -> _Groups:
    """Groups of allocs that share one buffer (see the module docstring)."""
    groups = _Groups()
    holder: dict[SSAValue, C.AllocOp] = {}  # an scf.if result -> the alloc that holds it on every path

    def alloc_of(v: SSAValue) -> C.AllocOp | None:
        return v.owner if isinstance(v.owner, C.AllocOp) else holder.get(v)

    def updated_in_place(outer: C.AllocOp, inner: C.AllocOp, branch, other_yield: Operation, ifop) -> bool:
        v = outer.results[0]
        if outer.parent_block() is not ifop.parent_block():
            return False
        for u in v.uses:
            user = u.operation
            if user is other_yield:
                continue
            if _inside(user, branch):
                if not isinstance(user, T.ComputeOp) or v not in user.ins:
                    return False
                # in place only where the compute loads v's tile before it packs the update's tile
                if not any(alloc_of(o) is not None and groups.find(alloc_of(o)) is groups.find(inner)
                           for i, o in candidates(user) if i is v):
                    return False
                continue
            anc = _ancestor_in(user, ifop.parent_block())
            if anc is None or pos[anc] >= pos[ifop]:
                return False
        return True

    for op in sorted(thread.walk(), key=lambda o: -pos[o]):  # nested ifs before the ifs around them
        if not isinstance(op, scf.IfOp) or not op.results or not op.false_region.blocks:
            continue
        yt, ye = op.true_region.block.last_op, op.false_region.block.last_op
        for k, res in enumerate(op.results):
            if not isinstance(res.type, C.BlockType):
                continue
            a, b = alloc_of(yt.operands[k]), alloc_of(ye.operands[k])
            if a is None or b is None or a.results[0].type != b.results[0].type:
                continue
            in_a, in_b = _inside(a, op.true_region), _inside(b, op.false_region)
            ok = in_a and in_b
            if in_a and not in_b:
                ok = updated_in_place(b, a, op.true_region, ye, op)
            elif in_b and not in_a:
                ok = updated_in_place(a, b, op.false_region, yt, op)
            if ok:
                groups.union(a, b)
                holder[res] = groups.find(a)
    return groups


def _merge(bufs: list[Buffer], groups: _Groups) -> list[Buffer]:
    """One buffer per group: the union of the live ranges, the largest size."""
    by_root: dict[C.AllocOp, Buffer] = {}
    out = []
    for b in bufs:
        root = groups.find(b.op)
        m = by_root.get(root)
        if m is None:
            by_root[root] = b
            out.append(b)
            continue
        m.start, m.end = min(m.start, b.start), max(m.end, b.end)
        m.size, m.carried = max(m.size, b.size), m.carried or b.carried
        m.shared.append(b.op)
    return out


def _first_fit(bufs: list[Buffer]) -> int:
    """Offsets so that buffers alive at the same time never overlap; returns the peak.

    Greedy by size (largest first, each at the lowest offset that clears every placed buffer
    alive at the same time), so small buffers do not fragment the space the big ones need."""
    placed: list[Buffer] = []
    peak = 0
    for b in sorted(bufs, key=lambda b: (-b.size, b.start)):
        live = sorted((p for p in placed if p.start <= b.end and b.start <= p.end), key=lambda p: p.offset)
        offset = 0
        for p in live:
            if offset + b.size <= p.offset:
                break
            offset = max(offset, p.offset + p.size)
            offset += -offset % b.align
        b.offset = offset
        placed.append(b)
        peak = max(peak, offset + b.size)
    return peak


def used_cbs(prog: C.ProgramOp) -> set[int]:
    """The CBs some thread reserves, waits on, pushes, pops or multicasts into (the others take no L1)."""
    ops = (C.CBReserveOp, C.CBWaitOp, C.CBPushOp, C.CBPopOp, C.DMAMcastOp)
    return {o.cb.data for th in prog.threads for o in th.walk() if isinstance(o, ops)}


def plan_l1(module: ModuleOp) -> L1Plan:
    prog = program_of(module)
    cbs: list[tuple[str, int]] = []
    used = used_cbs(prog)
    for i, info in enumerate(prog.arg_infos()):
        t = C.BlockType(C.block_dims(info), info["dtype"])
        if i not in used:
            cbs.append((f"CB {info['name']} (unused: no L1)", 0))
            continue
        cbs.append((f"CB {info['name']} ({info['depth']} x {block_bytes(t)} B)", info["depth"] * block_bytes(t)))
    buffers: list[Buffer] = []
    areas: list[tuple[str, int]] = []
    for th in prog.threads:
        bufs = _buffers(th)
        if bufs:
            areas.append((th.thread_name.data, _first_fit(bufs)))
            buffers += bufs
    return L1Plan(cbs, buffers, areas, prog.l1_budget.data)


@dataclass(frozen=True)
class AllocateL1(ModulePass):
    name = "allocate-l1"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        plan = plan_l1(op)
        if plan.used > plan.budget:
            top = sorted(plan.cbs + [(b.label, b.size) for b in plan.buffers], key=lambda e: -e[1])[:4]
            raise CompileError(
                f"the kernel needs {plan.used} bytes of L1 per core but {plan.budget} are available; "
                "largest: " + "; ".join(f"{n}: {b} B" for n, b in top),
                note="use smaller block_factors or a shallower CB depth, or spread the work over more cores",
            )
        offsets, base = [], 0
        for _, b in plan.cbs:
            offsets.append(base)
            base += b
        program_of(op).cb_offsets = ArrayAttr([IntAttr(o) for o in offsets])
        area_start = {}
        for thread, peak in plan.areas:
            area_start[thread] = base
            base += peak
        for b in plan.buffers:
            thread = b.op
            while not isinstance(thread, C.ThreadOp):
                thread = thread.parent_op()
            at = area_start[thread.thread_name.data] + b.offset
            for a in [b.op, *b.shared]:
                a.properties["offset"] = IntAttr(at)
                if b.carried:  # the old and the new value of each iteration: two places, used in turn
                    a.properties["pingpong"] = IntAttr(at + b.size // 2)
