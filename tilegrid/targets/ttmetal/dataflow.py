"""Data-movement threads -> tt-metal reader / writer kernels (BRISC and NCRISC).

A block in a data-movement kernel is an L1 address: the CB's write (reserve) or read (wait)
pointer, plus the blocks this thread already holds of that CB (wrapping at the CB's end). A DRAM
block is `bh x bw` tiles of a tile-interleaved tensor (one page a tile, through a `TensorAccessor`):
`noc_async_read_page` / `noc_async_write_page` per tile, one barrier where the thread waits.
Multicasts and remote semaphore writes use the NoC coordinates of the target cores (a table in the
kernel's common runtime arguments); a remote `set` writes from a staging semaphore of the kernel's
own, so that the core's own semaphores keep their values.

A core has two data-movement RISC-Vs. When a kernel has more data-movement threads than that, the
compiler's implicit readers and writers (plain loops, one block per iteration) become *services*:
a step function that moves the next block when its CB is ready, which a user thread calls while it
waits (every blocking wait polls) and which drains after the thread's body.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import IntegerAttr
from xdsl.ir import Operation, SSAValue

from tilegrid.errors import CompileError
from tilegrid.ir import core as C
from tilegrid.passes.allocate_l1 import TILE_BYTES
from tilegrid.passes.common import loc_of
from tilegrid.targets.ttmetal.cpp import ScalarWriter, collect_rules, rule, unsupported
from tilegrid.targets.ttmetal.layout import Layout

# GCC (-Os) keeps a lambda called from several places out of line, and every variable it captures by reference
# is then a load from memory: on wolfpine the services of a two-input reader ran 3% slower (a 4-block add)
INLINE = "__attribute__((always_inline))"
MCAST = """inline uint64_t tg_mcast_addr(uint32_t x0, uint32_t y0, uint32_t x1, uint32_t y1, uint32_t addr) {
    // NoC 1 runs the other way: its multicast rectangle starts at the far corner
    return noc_index == 0 ? get_noc_multicast_addr(x0, y0, x1, y1, addr) : get_noc_multicast_addr(x1, y1, x0, y0, addr);
}"""
SLOT = """inline uint32_t tg_slot(uint32_t cb, uint32_t ptr, uint32_t offset) {
    // the block `offset` bytes after a CB pointer, wrapping at the CB's end
    const uint32_t a = ptr + offset;
    return a >= get_local_cb_interface(cb).fifo_limit ? a - get_local_cb_interface(cb).fifo_size : a;
}"""
INDEX = """    // row_index / col_index: {rows} fp32 tiles of each element's row index, then {cols} of its column index
    cb_reserve_back({cb}, {pages});
    {{
        volatile tt_l1_ptr uint32_t* t = reinterpret_cast<volatile tt_l1_ptr uint32_t*>(get_write_ptr({cb}));
        for (uint32_t k = 0; k < {pages}; ++k)
            for (uint32_t i = 0; i < 32; ++i) {{  // row (or column) i of tile k holds one value
                const bool by_row = k < {rows};
                const uint32_t bits = tg_float_bits(32 * (by_row ? k : k - {rows}) + i);
                for (uint32_t j = 0; j < 32; ++j) {{  // the tile's 16x16 faces, each row-major
                    const uint32_t r = by_row ? i : j, c = by_row ? j : i;
                    t[k * 1024 + (r >> 4) * 512 + (c >> 4) * 256 + (r & 15) * 16 + (c & 15)] = bits;
                }}
            }}
    }}
    cb_push_back({cb}, {pages});"""
FLOAT_BITS = """inline uint32_t tg_float_bits(uint32_t n) {
    // the fp32 bits of a small integer (no floating point on the data-movement RISC-Vs)
    if (n == 0) return 0;
    uint32_t e = 0;
    while ((n >> e) > 1) ++e;
    return ((127 + e) << 23) | ((n << (23 - e)) & 0x7FFFFF);
}"""
SCALER = """    // reduce_tile's scaler: 1.0 (bf16) in the first row of each 16x16 face, zero elsewhere. Word stores, not NoC
    // reads of the core's zero region as tt-metal's reduce scaler does: on wolfpine a kernel that read its own L1
    // over the NoC first later got wrong data from DRAM reads (docs/ttmetal.md, "what was met")
    cb_reserve_back({cb}, 1);
    {{
        volatile tt_l1_ptr uint32_t* s = reinterpret_cast<volatile tt_l1_ptr uint32_t*>(get_write_ptr({cb}));
        for (uint32_t k = 0; k < 512; ++k) s[k] = 0;
        for (uint32_t f = 0; f < 4; ++f) for (uint32_t k = 0; k < 8; ++k) s[f * 128 + k] = 0x3F803F80u;
    }}
    cb_push_back({cb}, 1);"""


def scaled_sum(terms: list[tuple[str, int]]) -> str:
    """sum(value * k) as C++, folding literal values and factors of one."""
    const, parts = 0, []
    for value, k in terms:
        v = value[1:-1] if value.startswith("(") and value.endswith(")") else value
        if v.lstrip("-").isdigit():
            const += int(v) * k
        else:
            parts.append(value if k == 1 else f"{value} * {k}")
    if const or not parts:
        parts.append(str(const))
    return " + ".join(parts)


@dataclass
class Args:
    """A data-movement kernel's arguments: tensors it addresses (compile-time accessor args and an
    address among the common runtime args), then the NoC coordinate tables."""

    tensors: list[int] = field(default_factory=list)  # tensor argument indices, in accessor order
    noc_tables: bool = False

    def tensor(self, arg: int) -> int:
        if arg not in self.tensors:
            self.tensors.append(arg)
        return self.tensors.index(arg)


@collect_rules
class DataflowWriter(ScalarWriter):
    kind = "data-movement"

    def __init__(self, layout: Layout, infos: list[dict], grid: tuple[int, int], args: Args, sems: int,
                 staging: int) -> None:
        super().__init__()
        self.layout = layout
        self.infos = infos
        self.grid = grid
        self.args = args
        self.nsems = sems
        self.staging = staging
        self.blocks: dict[SSAValue, str] = {}
        self.held: dict[tuple[int, str], int] = {}
        self.handles: dict[SSAValue, str] = {}
        self.outstanding = {"read": True, "write": True}
        self.poll: str | None = None  # the service to call while blocked (None: block)
        self.implicit = False  # emitting an implicit writer: its writes only need to have left L1
        self.atomics = False
        self.writes = False
        self.staged = False  # the staging semaphore is used
        self.tensor_names: dict[int, str] = {}

    # ---- helpers ---------------------------------------------------------------------------------

    def cb(self, arg: int) -> str:
        return self.layout.arg_cb[arg]

    def block_tiles(self, arg: int) -> int:
        r, c = self.infos[arg]["block"]
        return r * c

    def block_bytes(self, arg: int) -> int:
        return self.block_tiles(arg) * TILE_BYTES[self.infos[arg]["dtype"]]

    def tensor(self, arg: int) -> str:
        self.args.tensor(arg)
        name = f"t{arg}_" + "".join(ch if ch.isalnum() else "_" for ch in self.infos[arg]["name"])
        self.tensor_names[arg] = name
        return name

    def noc_xy(self, row: str, col: str) -> tuple[str, str]:
        self.args.noc_tables = True
        return f"tg_noc_x({col})", f"tg_noc_y({row})"

    def sem_addr(self, k: int) -> str:
        return f"get_semaphore({k})"

    def wait_until(self, ready: str, then: str) -> None:
        """A blocking call; with a service, poll it while not ready."""
        if self.poll:
            self.line(f"while (!({ready})) {{ {self.poll}(); }}")
        self.line(then)

    # ---- CBs -------------------------------------------------------------------------------------

    def _take(self, op: Operation, side: str) -> None:
        self.comment_for(op)
        arg = op.cb.data
        cb, n = self.cb(arg), self.block_tiles(arg)
        k = self.held.get((arg, side), 0)
        self.held[(arg, side)] = k + 1
        pages = (k + 1) * n
        if side == "out":
            self.wait_until(f"cb_pages_reservable_at_back({cb}, {pages})", f"cb_reserve_back({cb}, {pages});")
            ptr = f"get_write_ptr({cb})"
        else:
            self.wait_until(f"cb_pages_available_at_front({cb}, {pages})", f"cb_wait_front({cb}, {pages});")
            ptr = f"get_read_ptr({cb})"
        addr = f"{self.name(op.results[0])}_l1"
        if k:
            self.helper(SLOT)
            ptr = f"tg_slot({cb}, {ptr}, {k * self.block_bytes(arg)})"
        self.line(f"const uint32_t {addr} = {ptr};")
        self.blocks[op.results[0]] = addr

    def _give(self, op: Operation, side: str) -> None:
        self.comment_for(op)
        arg = op.cb.data
        self.held[(arg, side)] = self.held.get((arg, side), 0) - 1
        fn = "cb_push_back" if side == "out" else "cb_pop_front"
        self.line(f"{fn}({self.cb(arg)}, {self.block_tiles(arg)});")

    def block(self, v: SSAValue, op: Operation) -> str:
        if v not in self.blocks:
            raise unsupported(op, "a transfer of a block this data-movement thread did not take from a CB")
        return self.blocks[v]

    # ---- DMA -------------------------------------------------------------------------------------

    def _pages(self, op: Operation, arg: int, indices: list[SSAValue], l1: str, fn: str) -> None:
        info = self.infos[arg]
        *lead_dims, rows, cols = info["shape"]
        bh, bw = info["block"]
        ht, wt = rows // 32, cols // 32
        *lead, i, j = [self.name(v) for v in indices]
        if len(lead) != len(lead_dims):
            raise unsupported(op, f"a stream index with {len(indices)} indices for a {len(info['shape'])}-d tensor")
        stride, terms = ht * wt, []
        for idx, dim in zip(reversed(lead), reversed(lead_dims)):
            terms.append((idx, stride))
            stride *= dim
        terms += [(i, bh * wt), (j, bw)]
        acc = f"{self.tensor(arg)}()"  # the accessor built where it is used (see dataflow_kernel)
        tile = TILE_BYTES[info["dtype"]]
        page = scaled_sum(terms)
        if bh * bw == 1:
            self.line(f"{fn}({page}, {acc}, {l1});")
            return
        with self.scope(""):
            self.line(f"const uint32_t page = {page};")
            self.line(f"for (uint32_t r = 0; r < {bh}; ++r)")
            self.line(f"    for (uint32_t c = 0; c < {bw}; ++c)")
            self.line(f"        {fn}(page + r * {wt} + c, {acc}, {l1} + (r * {bw} + c) * {tile});")

    def _check_block(self, op: Operation, arg: int, block: SSAValue) -> None:
        t = block.type
        if t.tiles != tuple(self.infos[arg]["block"]):
            raise unsupported(op, f"a transfer between a {t.dims} block and a block of "
                                  f"'{self.infos[arg]['name']}' of another shape")

    @rule(C.DMAReadOp)
    def _dma_read(self, op: C.DMAReadOp) -> None:
        self.comment_for(op)
        self._check_block(op, op.arg.data, op.dst)
        self._pages(op, op.arg.data, list(op.indices), self.block(op.dst, op), "noc_async_read_page")
        self.handles[op.result] = "read"
        self.outstanding["read"] = True

    @rule(C.DMAWriteOp)
    def _dma_write(self, op: C.DMAWriteOp) -> None:
        self.comment_for(op)
        self._check_block(op, op.arg.data, op.src)
        self._pages(op, op.arg.data, list(op.indices), self.block(op.src, op), "noc_async_write_page")
        self.handles[op.result] = "write"
        self.outstanding["write"] = True
        self.writes = True

    @rule(C.DMAWaitOp)
    def _dma_wait(self, op: C.DMAWaitOp) -> None:
        kind = self.handles.get(op.handle, "write")
        if not self.outstanding[kind]:
            return  # an earlier barrier already covered it
        if kind == "write" and self.implicit:  # the CB slot may be reused once the data left L1; the
            self.line("noc_async_writes_flushed();")  # kernel's last barrier waits for the DRAM writes
            return
        self.line(f"noc_async_{kind}_barrier();")
        self.outstanding[kind] = False

    def _rect(self, target: list[SSAValue]) -> tuple[str, str, str, str]:
        """The target rectangle as named C++ values (ty, tx, th, tw): distinct names keep GCC from
        warning (an error under -Werror) about comparisons like `core_r == core_r`."""
        names = [self.name(v) for v in target] + (["1", "1"] if len(target) == 2 else [])
        for var, value in zip(("ty", "tx", "th", "tw"), names):
            self.line(f"const int32_t {var} = {value};")
        return "ty", "tx", "th", "tw"

    def _rect_setup(self, target: list[SSAValue]) -> tuple[str, str]:
        """Declares the rectangle's NoC corners (x0, y0, x1, y1) and receiver count; returns
        (mcast address function call prefix, number of other cores)."""
        y, x, h, w = self._rect(target)
        x0, y0 = self.noc_xy(y, x)
        x1, y1 = self.noc_xy(f"{y} + {h} - 1", f"{x} + {w} - 1")
        self.helper(MCAST)
        self.line(f"const bool self_in = core_r >= {y} && core_r < {y} + {h} && core_c >= {x} && core_c < {x} + {w};")
        self.line(f"const uint32_t others = uint32_t({h} * {w}) - (self_in ? 1 : 0);")
        return f"tg_mcast_addr({x0}, {y0}, {x1}, {y1}, ", "others"

    @rule(C.DMAMcastOp)
    def _dma_mcast(self, op: C.DMAMcastOp) -> None:
        self.comment_for(op)
        src = self.block(op.src, op)
        nbytes = self.block_bytes(op.cb.data)
        self.writes = True
        self.handles[op.result] = "write"
        self.outstanding["write"] = True
        with self.scope(""):
            if len(op.target) == 2:
                y, x, _, _ = self._rect(list(op.target))
                nx, ny = self.noc_xy(y, x)
                self.line(f"if (!({y} == core_r && {x} == core_c)) "
                          f"noc_async_write({src}, get_noc_addr({nx}, {ny}, {src}), {nbytes});")
                return
            addr, others = self._rect_setup(list(op.target))
            # the block lands at the same L1 address on every receiver (their CB is in step with ours)
            self.line(f"if ({others} > 0) noc_async_write_multicast({src}, {addr}{src}), {nbytes}, {others});")

    # ---- semaphores ------------------------------------------------------------------------------

    def _sem(self, k: int) -> str:
        return f"reinterpret_cast<volatile tt_l1_ptr uint32_t*>({self.sem_addr(k)})"

    @rule(C.SemSetOp)
    def _sem_set(self, op: C.SemSetOp) -> None:
        self.comment_for(op)
        k, value = op.sem.data, self.name(op.value)
        target = list(op.target)
        if not target:
            self.line(f"noc_semaphore_set({self._sem(k)}, {value});")
            return
        self.writes = self.staged = True
        with self.scope(""):
            staging = self.sem_addr(self.staging)
            self.line(f"*{self._sem(self.staging)} = {value};  // staging word of this kernel")
            if len(target) == 2:
                y, x, _, _ = self._rect(target)
                nx, ny = self.noc_xy(y, x)
                self.line(f"if ({y} == core_r && {x} == core_c) noc_semaphore_set({self._sem(k)}, {value});")
                self.line(f"else noc_semaphore_set_remote({staging}, get_noc_addr({nx}, {ny}, {self.sem_addr(k)}));")
            else:
                addr, others = self._rect_setup(target)
                self.line(f"if (self_in) noc_semaphore_set({self._sem(k)}, {value});")
                self.line(f"if ({others} > 0) noc_semaphore_set_multicast({staging}, {addr}{self.sem_addr(k)}), "
                          f"{others});")
            self.line("noc_async_write_barrier();  // the staging word is free again")
        self.outstanding["write"] = False

    @rule(C.SemIncOp)
    def _sem_inc(self, op: C.SemIncOp) -> None:
        self.comment_for(op)
        k, value = op.sem.data, self.name(op.value)
        target = list(op.target)
        self.atomics = True
        if not target:
            nx, ny = self.noc_xy("core_r", "core_c")
            self.line(f"noc_semaphore_inc(get_noc_addr({nx}, {ny}, {self.sem_addr(k)}), {value});")
            return
        with self.scope(""):
            y, x, h, w = self._rect(target)
            nx, ny = self.noc_xy("ry", "rx")
            self.line(f"for (int32_t ry = {y}; ry < {y} + {h}; ++ry)")
            self.line(f"    for (int32_t rx = {x}; rx < {x} + {w}; ++rx)")
            self.line(f"        noc_semaphore_inc(get_noc_addr({nx}, {ny}, {self.sem_addr(k)}), {value});")

    @rule(C.SemWaitOp)
    def _sem_wait(self, op: C.SemWaitOp) -> None:
        self.comment_for(op)
        k, value = op.sem.data, self.name(op.value)
        if self.poll:
            self.line(f"while (*{self._sem(k)} != uint32_t({value})) {{ {self.poll}(); invalidate_l1_cache(); }}")
        else:
            self.line(f"noc_semaphore_wait({self._sem(k)}, {value});")
        if op.reset is not None:
            self.line(f"noc_semaphore_set({self._sem(k)}, {self.name(op.reset)});")

    # ---- consecutive reads share one barrier ---------------------------------------------------------

    def body(self, ops) -> None:
        ops = list(ops)
        k = 0
        while k < len(ops):
            groups, end = read_groups(ops, k)
            if len(groups) >= 2 and self.poll is None:
                self.batched_reads(ops[k:end], groups)
                k = end
                continue
            self.op(ops[k])
            k += 1

    def batched_reads(self, ops: list[Operation], groups: list[list[Operation]]) -> None:
        """`reserve, read, wait, push` of several CBs in a row: the first block is taken as written; the
        others too if their CBs have room right now, and then one barrier serves every read. Otherwise
        (never blocking while holding a block the consumer may be waiting for) the code as written."""
        first, rest = groups[0], groups[1:]
        members = {o for g in groups for o in g}
        for o in ops:  # the index arithmetic between the groups
            if o not in members:
                self.op(o)
        self.body(first[:-2])  # reserve and read the first block
        ready = " && ".join(f"cb_pages_reservable_at_back({self.cb(g[0].cb.data)}, {self.block_tiles(g[0].cb.data)})"
                            for g in rest)
        held = dict(self.held)
        self.line(f"if ({ready}) {{  // every block has room: one barrier for all the reads")
        self.indent += 1
        for g in rest:
            self.body(g[:-2])
        self.line("noc_async_read_barrier();")
        for g in [first, *rest]:
            self.op(g[-1])
        self.indent -= 1
        self.line("} else {")
        self.indent += 1
        self.held = dict(held)
        self.outstanding["read"] = True
        self.body(first[-2:])
        for g in rest:
            self.body(g)
        self.indent -= 1
        self.line("}")
        self.outstanding["read"] = False

    # ---- control flow joins: transfers may be in flight ------------------------------------------

    def loop_body(self, op) -> None:
        self.outstanding = {"read": True, "write": True}
        super().loop_body(op)
        self.outstanding = {"read": True, "write": True}

    def _if(self, op) -> None:
        super()._if(op)
        self.outstanding = {"read": True, "write": True}


@dataclass
class Service:
    """An implicit reader / writer as a step function: its loop nest flattened to a counter."""

    thread: C.ThreadOp
    levels: list[tuple[list[Operation], scf.ForOp]]
    inner: list[Operation]
    trips: list[int]

    @property
    def total(self) -> int:
        n = 1
        for t in self.trips:
            n *= t
        return n


def _const(v: SSAValue) -> int | None:
    o = v.owner
    if isinstance(o, arith.ConstantOp) and isinstance(o.value, IntegerAttr):
        return o.value.value.data
    return None


def service(thread: C.ThreadOp) -> Service:
    """Read an implicit thread's loop nest (constant bounds, straight-line innermost body)."""
    ops = [o for o in thread.body.block.ops]
    levels: list[tuple[list[Operation], scf.ForOp]] = []
    trips: list[int] = []
    while True:
        loops = [o for o in ops if isinstance(o, scf.ForOp)]
        if len(loops) != 1:
            break
        loop = loops[0]
        pre = [o for o in ops if o is not loop and not isinstance(o, scf.YieldOp)]
        if ops.index(loop) != len(pre) or any(not isinstance(o, (arith.ConstantOp, arith.AddiOp, arith.MuliOp,
                                                                   C.CoreIndexOp)) for o in pre):
            break
        lb, ub, step = _const(loop.lb), _const(loop.ub), _const(loop.step)
        if None in (lb, ub, step) or step <= 0 or loop.iter_args:
            raise CompileError("internal: an implicit data-movement loop without constant bounds", loc_of(loop))
        levels.append((pre, loop))
        trips.append(max(0, -(-(ub - lb) // step)))
        ops = list(loop.body.block.ops)
    return Service(thread, levels, [o for o in ops if not isinstance(o, scf.YieldOp)], trips)


def emit_service(w: DataflowWriter, s: Service, k: int) -> str:
    """Declare service k: its counter, `s{k}_issue` (when its CB is ready: take the block, issue its
    transfer; returns whether it did) and `s{k}_complete` (after the barrier: hand the block on).
    Returns the transfer kind ("read" / "write") its barrier waits for."""
    counter = f"s{k}_done"
    first = next((o for o in s.inner if isinstance(o, C.CBReserveOp | C.CBWaitOp)), None)
    waits = [n for n, o in enumerate(s.inner) if isinstance(o, C.DMAWaitOp)]
    if first is None or len(waits) != 1:
        raise CompileError("internal: an implicit data-movement thread is not one CB transfer per iteration")
    issue, complete = s.inner[:waits[0]], s.inner[waits[0] + 1:]
    kind = "read" if isinstance(first, C.CBReserveOp) else "write"
    cb, n = w.cb(first.cb.data), w.block_tiles(first.cb.data)
    ready = (f"cb_pages_reservable_at_back({cb}, {n})" if kind == "read" else f"cb_pages_available_at_front({cb}, {n})")
    w.line(f"// {s.thread.thread_name.data}: one block per call, when its CB is ready")
    w.line(f"uint32_t {counter} = 0;")
    w.line(f"auto s{k}_issue = [&]() {INLINE} -> bool {{")
    w.indent += 1
    w.line(f"if ({counter} >= {s.total} || !{ready}) return false;")
    below = s.total
    for (pre, loop), trips in zip(s.levels, s.trips):
        below //= max(trips, 1)
        w.body(pre)
        lb, step = _const(loop.lb), _const(loop.step)
        index = str(lb) if trips <= 1 else f"int32_t({lb} + ({counter} / {below}) % {trips} * {step})"
        w.define(loop.body.block.args[0], index.replace(" / 1)", ")").replace("(" + counter + ")", counter))
    w.body(issue)
    w.line("return true;")
    w.indent -= 1
    w.line("};")
    w.line(f"auto s{k}_complete = [&]() {INLINE} {{")
    w.indent += 1
    w.body(complete)
    w.line(f"++{counter};")
    w.indent -= 1
    w.line("};")
    return kind


def emit_round(w: DataflowWriter, kinds: list[str], inline: bool) -> None:
    """`service()`: every ready implicit transfer issued, one barrier, every block handed on (`inline`:
    called from one place, the kernel's drain loop; a user thread polls it from each of its waits)."""
    w.line(f"auto service = [&]() {INLINE if inline else ''}{' ' if inline else ''}{{")
    w.indent += 1
    for k in range(len(kinds)):
        w.line(f"const bool go{k} = s{k}_issue();")
    for kind in sorted(set(kinds)):
        any_go = " || ".join(f"go{k}" for k, x in enumerate(kinds) if x == kind)
        wait = "noc_async_read_barrier()" if kind == "read" else "noc_async_writes_flushed()"
        w.line(f"if ({any_go}) {wait};")
    for k in range(len(kinds)):
        w.line(f"if (go{k}) s{k}_complete();")
    w.indent -= 1
    w.line("};")


def dataflow_kernel(w: DataflowWriter, kernel_name: str, user: C.ThreadOp | None, services: list[C.ThreadOp],
                    processor: int, scaler: bool, noc: int | None = None) -> str:
    """The C++ of one data-movement kernel: a user thread, implicit services, or both (on `noc`, by
    default the processor's own)."""
    noc = processor if noc is None else noc
    names = ([user.thread_name.data] if user else []) + [t.thread_name.data for t in services]
    if scaler and w.layout.scaler:
        w.lines.append(SCALER.format(cb=w.layout.scaler))
    if scaler and w.layout.index:
        w.helper(FLOAT_BITS)
        lay = w.layout
        w.lines.append(INDEX.format(cb=lay.index, rows=lay.index_rows, cols=lay.index_cols,
                                    pages=lay.index_rows + lay.index_cols))
    if user is None and len(services) == 1:
        w.implicit = True
        w.body(services[0].body.block.ops)  # a single implicit thread: its loop as written
        w.implicit = False
    elif not services:
        w.body(user.body.block.ops)
    else:
        flat = [service(t) for t in services]
        emit_round(w, [emit_service(w, s, k) for k, s in enumerate(flat)], inline=user is None)
        if user is not None:
            w.poll = "service"
            w.body(user.body.block.ops)
            w.poll = None
        done = " || ".join(f"s{k}_done < {s.total}" for k, s in enumerate(flat))
        w.line(f"while ({done}) service();")
    if w.writes:
        w.line("noc_async_write_barrier();")
    if w.atomics:
        w.line("noc_async_atomic_barrier();")
    head = [f"// tilegrid kernel '{kernel_name}': data-movement kernel on RISC-V {processor} (NoC {noc}): "
            + ", ".join(f"thread '{n}'" for n in names), "#include <cstdint>", '#include "api/dataflow/dataflow_api.h"']
    cbs = []
    for cb in w.layout.cbs:
        idx = cb.formats[0][0]
        name = next(n for n, i in w.layout.constants.items() if i == idx)
        cbs.append(f"constexpr uint32_t {name} = {idx};  // {cb.purpose}")
    ntensors = len(w.args.tensors)
    gc = w.grid[1]
    if w.args.noc_tables:
        cbs += [f"constexpr uint32_t NOC_X = {ntensors};  // common runtime args: NoC x of each grid column",
                f"constexpr uint32_t NOC_Y = {ntensors + gc};  // ... then NoC y of each grid row",
                "inline uint32_t tg_noc_x(int32_t c) { return get_common_arg_val<uint32_t>(NOC_X + c); }",
                "inline uint32_t tg_noc_y(int32_t r) { return get_common_arg_val<uint32_t>(NOC_Y + r); }"]
    pre, prev = [], None
    for pos, arg in enumerate(w.args.tensors):
        name = w.tensor_names.get(arg) or w.tensor(arg)
        offset = "0" if prev is None else f"{prev}_args.next_compile_time_args_offset()"
        pre.append(f"    constexpr auto {name}_args = TensorAccessorArgs<{offset}>();")
        # built at each use: an accessor kept in a variable is reloaded from memory on every page (wolfpine:
        # 300 of 3900 cycles of a reader of 32 tiles); built in place its fields fold into the address arithmetic
        pre.append(f"    auto {name} = [&]() {INLINE} {{ return TensorAccessor({name}_args, get_common_arg_val<uint32_t>({pos}), "
                   f"{TILE_BYTES[w.infos[arg]['dtype']]}); }};  // '{w.infos[arg]['name']}' in DRAM, a page a tile")
        prev = name
    return w.source(head, cbs, pre)


PURE = (arith.ConstantOp, arith.AddiOp, arith.SubiOp, arith.MuliOp, arith.FloorDivSIOp, arith.DivSIOp,
        arith.RemSIOp, arith.MinSIOp, arith.MaxSIOp, arith.CmpiOp, arith.SelectOp, arith.IndexCastOp, C.CoreIndexOp)


def read_groups(ops: list[Operation], k: int) -> tuple[list[list[Operation]], int]:
    """From ops[k]: runs of `cb_reserve, dma_read into it, dma_wait, cb_push` of distinct CBs (pure index
    arithmetic between them), and the index after the last run."""
    groups: list[list[Operation]] = []
    cbs: set[int] = set()
    j, end = k, k
    while True:
        while j < len(ops) and isinstance(ops[j], PURE):
            j += 1
        g = ops[j:j + 4]
        if not (len(g) == 4 and isinstance(g[0], C.CBReserveOp) and isinstance(g[1], C.DMAReadOp)
                and g[1].dst is g[0].result and isinstance(g[2], C.DMAWaitOp) and g[2].handle is g[1].result
                and isinstance(g[3], C.CBPushOp) and g[3].cb.data == g[0].cb.data and g[0].cb.data not in cbs
                and len(list(g[0].result.uses)) == 1):
            return groups, end
        if any(not isinstance(ops[x], PURE) for x in range(end, j)):
            return groups, end
        groups.append(g)
        cbs.add(g[0].cb.data)
        j = end = j + 4
