"""The timing model: an observer of the functional simulation that keeps a clock per (core, thread).

- Compute ops advance the compute thread's clock by their cost (tilegrid/perf/costs.py).
- CB events order clocks: a `wait` cannot finish before the matching `push`; a `reserve` cannot
  finish before the `pop` that freed the slot. The simulator reports them in the order they
  happen, so the producer's time is always known when the consumer needs it.
- Semaphores: a `sem_wait` cannot finish before the updates that satisfied it arrived (issue time
  plus NoC latency to the target core).
- DMA: issuing costs the data-movement thread `dma_issue_cycles`; the transfer then occupies shared
  resources (bandwidth calendars): the DRAM channels its tiles are interleaved over, the NoC ports
  of the cores it leaves and enters, and every NoC link on its routes (one NoC per data-movement
  thread, as tt-metal's reader on NoC0 and writer on NoC1; each NoC a unidirectional torus with
  dimension-ordered routes, `params.noc_route`). It completes when the slowest resource is done
  plus the latency of its route (NIU + hops x 9 cycles, + DRAM latency for reads). `dma_wait`
  moves the thread's clock to that completion. A multicast occupies the sender's port once, each
  link of its tree once and each receiver's port once: one transfer per destination rectangle,
  not one per core.

Bandwidth calendars are fluid: time is cut into windows, each with `rate x window` bytes of
capacity; a transfer fills windows from its start time on. Reservations can arrive out of time
order (the simulation interleaves cores), and no resource ever carries more than its bandwidth.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tilegrid.perf.activity import Activity
from tilegrid.perf.costs import CostContext, op_cost, op_label
from tilegrid.perf.params import TILE_BYTES, DeviceParams, Link

WINDOW = 1024  # cycles per calendar window


class Calendar:
    """A shared resource of fixed bandwidth (bytes per cycle) with time-ordered fluid reservations."""

    __slots__ = ("rate", "cap", "used", "bytes", "name")

    def __init__(self, rate: float, name: str = "") -> None:
        self.rate, self.cap, self.used, self.bytes, self.name = rate, rate * WINDOW, {}, 0.0, name

    def reserve(self, start: float, nbytes: float) -> float:
        """Carry `nbytes` from `start` on; returns when the last byte has passed."""
        self.bytes += nbytes
        rate, cap, used = self.rate, self.cap, self.used
        i = int(start // WINDOW)
        u = used.get(i, 0.0)
        if cap - u >= nbytes and (WINDOW * (i + 1) - start) * rate >= nbytes:  # fits this window
            used[i] = u + nbytes
            return max(start + nbytes / rate, WINDOW * i + (u + nbytes) / rate)
        remaining = float(nbytes)
        t = start
        while True:
            u = used.get(i, 0.0)
            avail = min(cap - u, (WINDOW * (i + 1) - t) * rate)
            if avail >= remaining:
                used[i] = u + remaining
                return max(t + remaining / rate, WINDOW * i + (u + remaining) / rate)
            if avail > 0:
                used[i] = u + avail
                remaining -= avail
            i += 1
            t = WINDOW * i


def reserve_all(uses: list[tuple[Calendar, float]], start: float, scale: float) -> float:
    """`Calendar.reserve(start, n * scale)` on each (calendar, n); the latest end. The common case
    (the bytes fit the start's window) is inlined: this is the timing model's hottest loop."""
    i = int(start // WINDOW)
    base, room = WINDOW * i, WINDOW * (i + 1) - start
    end = 0.0
    for cal, n in uses:
        nbytes = n * scale
        used = cal.used
        u = used.get(i, 0.0)
        rate = cal.rate
        if cal.cap - u >= nbytes and room * rate >= nbytes:
            cal.bytes += nbytes
            u += nbytes
            used[i] = u
            e = start + nbytes / rate
            e2 = base + u / rate
            e = e if e > e2 else e2
        else:
            e = cal.reserve(start, nbytes)
        if e > end:
            end = e
    return end


def dram_spread(nch: int, info: dict | None, idx: tuple | None, ntiles: int) -> tuple[tuple[int, ...], float]:
    """The DRAM channels a block's `ntiles` tiles are interleaved over (tile pages round-robin, as
    tt-metal's interleaved buffers) and each channel's share of the tiles. `info`: the argument
    (shape, block) the block `idx` is of; without it, the tiles spread from channel 0."""
    if ntiles >= nch:
        return _spread(nch, 0, ntiles)
    first = 0
    if info is not None and idx is not None:
        shape, (bh, bw) = info["shape"], info["block"]
        lead = 0
        for d, i in zip(shape[:-2], idx[:-2]):
            lead = lead * d + i
        # a column vector's rows are padded to whole tiles
        first = (lead * -(-shape[-2] // 32) + idx[-2] * bh) * -(-shape[-1] // 32) + idx[-1] * bw
    return _spread(nch, first % nch, ntiles)


@lru_cache(maxsize=4096)
def _spread(nch: int, first: int, ntiles: int) -> tuple[tuple[int, ...], float]:
    if ntiles >= nch:
        return tuple(range(nch)), ntiles / nch
    return tuple((first + j) % nch for j in range(ntiles)), 1.0


@dataclass
class ThreadState:
    core: tuple[int, int]
    name: str
    kind: str  # "compute" | "dm0" | "dm1" ...
    clock: float = 0.0
    busy: float = 0.0  # cycles doing work (ops, issuing, CB calls)
    stall: float = 0.0  # cycles waiting on CBs, semaphores, DMAs
    dma_busy: float = 0.0  # cycles with one of its transfers in flight (sum)
    fpu: float = 0.0
    sfpu: float = 0.0
    unpack: float = 0.0
    pack: float = 0.0
    events: int = 0


@dataclass
class Options:
    """Run options of the timing model."""

    fidelity: str = "HiFi4"
    exp: str = "accurate"
    data_format: str | None = None  # e.g. "bfp8_b": input tensors in DRAM / CBs in this format
    trace: bool = True
    trace_events: int = 300_000  # cap on the trace size (events beyond it are dropped per track)
    trace_cores: int | None = None  # trace only the first N cores (row-major); None = all
    stop_after: float | None = None  # cycles: a thread's clock passing it ends the run (Overrun), for searches
    # per core, cycles its compute thread's ops and CB calls cost at least in all: with stop_after, the
    # run also ends once clock + (floor - busy so far) passes it (the rest cannot cost less)
    floors: dict[tuple[int, int], float] | None = None


class Overrun(Exception):
    """A run passed `Options.stop_after`: it cannot beat what a search already has."""

    def __init__(self, cycles: float) -> None:
        super().__init__(f"the run passed {cycles:,.0f} cycles")
        self.cycles = cycles


@dataclass
class PerfModel:
    """Observer implementing the timing model (see the module docstring)."""

    params: DeviceParams
    options: Options = field(default_factory=Options)
    kernel: str = ""
    grid: tuple[int, int] = (1, 1)
    infos: list[dict] = field(default_factory=list)
    thread_kinds: dict[str, str] = field(default_factory=dict)
    formats: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        p = self.params
        self.threads: dict[tuple[tuple[int, int], str], ThreadState] = {}
        self.push_t: dict[tuple, float] = {}
        self.pop_t: dict[tuple, float] = {}
        self.sem_t: dict[tuple, float] = defaultdict(float)
        self.dram = [Calendar(p.dram_bytes_per_cycle_per_channel, f"dram{ch}") for ch in range(p.dram_channels)]
        self.ports: dict[tuple, Calendar] = {}
        self.links: dict[Link, Calendar] = {}
        self._paths: dict[tuple, tuple[list[tuple[Calendar, float]], float]] = {}
        self._op_costs: dict[tuple[int, int], tuple[Any, list[float]]] = {}
        self.handles: list[float] = []
        self.trace_ev: list[tuple] = []
        self.activity = Activity()  # busy time per thread over the whole run (plots), when tracing
        self.per_track: dict[tuple, int] = defaultdict(int)
        self.flops = 0.0
        self.op_totals: dict[str, list[float]] = defaultdict(lambda: [0.0] * 5)  # label -> fpu, sfpu, unpack, pack, total
        self.bytes = defaultdict(float)
        self.transfers = 0
        self.ctx = CostContext(p, self.options.fidelity, self.options.exp, tuple(self.formats))
        gr, gc = self.grid
        n = self.options.trace_cores
        self.traced = {(r, c) for r in range(gr) for c in range(gc) if n is None or r * gc + c < n}
        self.stop = self.options.stop_after if self.options.stop_after is not None else float("inf")
        self.floors = self.options.floors or {}
        self.track_cap = max(100, self.options.trace_events // max(1, len(self.traced) * max(1, len(self.thread_kinds))))

    # ---- helpers ------------------------------------------------------------------------------

    def th(self, core: tuple[int, int], name: str) -> ThreadState:
        key = (core, name)
        t = self.threads.get(key)
        if t is None:
            t = self.threads[key] = ThreadState(core, name, self.thread_kinds.get(name, "compute"))
        return t

    def slice(self, t: ThreadState, name: str, start: float, end: float, cat: str) -> None:
        if not self.options.trace or t.core not in self.traced or end <= start:
            return
        key = (t.core, t.name)
        if self.per_track[key] >= self.track_cap:
            return
        self.per_track[key] += 1
        self.trace_ev.append((t.core, t.name, name, start, end - start, cat))

    def port(self, core: tuple[int, int], noc: int, direction: str) -> Calendar:
        key = (core, noc, direction)
        cal = self.ports.get(key)
        if cal is None:
            cal = self.ports[key] = Calendar(self.params.noc_bytes_per_cycle, f"core{core} noc{noc} {direction}")
        return cal

    def link(self, key: Link) -> Calendar:
        cal = self.links.get(key)
        if cal is None:
            noc, x, y, d = key
            cal = self.links[key] = Calendar(self.params.noc_bytes_per_cycle, f"noc{noc} link ({x},{y}) {d}")
        return cal

    def noc_of(self, t: ThreadState) -> int:
        return int(t.kind[2:]) % 2 if t.kind.startswith("dm") else 0

    def latency(self, a: tuple[int, int], b: tuple[int, int], noc: int) -> float:
        p = self.params
        return 2 * p.noc_niu_cycles + p.noc_hop_cycles * len(p.route(a, b, noc))

    def _dram_paths(self, here: tuple[int, int], noc: int, kind: str, chans: tuple[int, ...]
                    ) -> tuple[list[tuple[Calendar, float]], float]:
        """The calendars a DRAM transfer occupies (its channels, and the NoC links of
        `DeviceParams.dram_legs`, each with its number of channel routes) and its latency. Cached
        per pattern."""
        key = (here, noc, kind, chans)
        hit = self._paths.get(key)
        if hit is not None:
            return hit
        links, lat = self.params.dram_legs(here, noc, kind, chans)
        uses = [(self.dram[ch], 1.0) for ch in chans] + [(self.link(lk), float(n)) for lk, n in links]
        self._paths[key] = (uses, lat)
        return uses, lat

    # ---- Observer protocol ----------------------------------------------------------------------

    def on_op(self, core: tuple[int, int], thread: str, op: Any, tiles: int, loc: str) -> None:
        t = self.th(core, thread)
        hit = self._op_costs.get((id(op), tiles))  # the run's ops are few and alive: keyed by identity
        if hit is None:
            hit = self._op_costs[(id(op), tiles)] = (op_cost(self.ctx, op, tiles), self.op_totals[op_label(op)])
        c, tot = hit
        start = t.clock
        t.clock += c.total
        t.busy += c.total
        t.fpu += c.fpu
        t.sfpu += c.sfpu
        t.unpack += c.unpack
        t.pack += c.pack
        self.flops += c.flops
        t.events += 1
        tot[0] += c.fpu
        tot[1] += c.sfpu
        tot[2] += c.unpack
        tot[3] += c.pack
        tot[4] += c.total
        if self.options.trace:
            self.activity.add((core, thread), start, t.clock)
            if core in self.traced:
                self.slice(t, op_label(op, tiles), start, t.clock, "compute")
        if t.clock + max(0.0, self.floors.get(core, 0.0) - t.busy) > self.stop:
            raise Overrun(t.clock)

    def on_sync(self, core: tuple[int, int], thread: str, event: str, obj: int, where: Any) -> None:
        t = self.th(core, thread)
        p = self.params
        if event == "push":
            t.clock += p.cb_sync_cycles
            t.busy += p.cb_sync_cycles
            self.push_t[(core, obj, where)] = t.clock
        elif event == "pop":
            t.clock += p.cb_sync_cycles
            t.busy += p.cb_sync_cycles
            self.pop_t[(core, obj, where)] = t.clock
        elif event in ("wait", "reserve"):
            ready = (self.push_t if event == "wait" else self.pop_t).get((core, obj, where), 0.0)
            self._stall_until(t, ready, f"{'wait' if event == 'wait' else 'reserve'} CB {self._cb_name(obj)}")
            t.clock += p.cb_sync_cycles
            t.busy += p.cb_sync_cycles
        elif event == "sem_update":
            target = tuple(where)
            remote = target != core
            cost = p.dma_issue_cycles if remote else p.cb_sync_cycles
            t.clock += cost
            t.busy += cost
            arrive = t.clock + (self.latency(p.noc_xy(*core), p.noc_xy(*target), self.noc_of(t)) if remote else 0.0)
            key = (target, obj)
            self.sem_t[key] = max(self.sem_t[key], arrive)
        elif event == "sem_wait":
            key = (core, obj)
            self._stall_until(t, self.sem_t.get(key, 0.0), f"semaphore {obj}")
            self.sem_t[key] = 0.0
            t.clock += p.cb_sync_cycles
            t.busy += p.cb_sync_cycles

    def on_transfer(self, core: tuple[int, int], thread: str, kind: str, nbytes: int, loc: str, *,
                    arg: int | None = None, idx: tuple | None = None,
                    receivers: list[tuple[int, int]] | None = None) -> int:
        """A DMA issued: its bytes in the run's data format; returns the handle `on_dma_wait` waits on.
        Without a block index the tiles spread over all DRAM channels; a multicast without receivers
        is modelled as going to this core."""
        if arg is not None and arg < len(self.infos):
            tiles = nbytes // TILE_BYTES[self.infos[arg]["dtype"]]
            nbytes = tiles * TILE_BYTES[self.formats[arg]]
        if kind == "mcast":
            return self.handle_mcast(core, thread, nbytes, receivers or [core])
        return self.handle_dram(core, thread, kind, nbytes, arg, idx)

    def on_dma_wait(self, core: tuple[int, int], thread: str, handle: int) -> None:
        self.dma_wait(core, thread, handle)

    # ---- richer hooks used by tilegrid.perf.run's runtime -------------------------------------

    def _cb_name(self, i: int) -> str:
        return f"'{self.infos[i]['name']}'" if i < len(self.infos) else str(i)

    def _stall_until(self, t: ThreadState, ready: float, what: str) -> None:
        if ready > t.clock:
            self.slice(t, f"wait {what}", t.clock, ready, "wait")
            t.stall += ready - t.clock
            t.clock = ready

    def _issue(self, t: ThreadState) -> float:
        t.clock += self.params.dma_issue_cycles
        t.busy += self.params.dma_issue_cycles
        return t.clock

    def handle_dram(self, core: tuple[int, int], thread: str, kind: str, nbytes: int, arg: int | None,
                    idx: tuple | None = None) -> int:
        t = self.th(core, thread)
        p = self.params
        start = self._issue(t)
        tile_bytes = TILE_BYTES.get(self.formats[arg], 2048) if arg is not None and arg < len(self.formats) else 2048
        ntiles = max(1, round(nbytes / tile_bytes))
        info = self.infos[arg] if arg is not None and arg < len(self.infos) else None
        chans, share = dram_spread(p.dram_channels, info, idx, ntiles)
        per_tile = nbytes / ntiles
        here = p.noc_xy(*core)
        direction = "in" if kind == "dram_read" else "out"
        noc = self.noc_of(t)
        end = self.port(core, noc, direction).reserve(start, nbytes)
        uses, lat = self._dram_paths(here, noc, kind, chans)
        end = max(end, reserve_all(uses, start, share * per_tile))  # every channel's share is equal
        done = end + lat + (p.dram_latency_cycles if kind == "dram_read" else 0)
        self.bytes[kind] += nbytes
        self.transfers += 1
        t.dma_busy += done - start
        self.slice(t, f"{kind} {nbytes // 1024} KiB", start, done, "dma")
        if self.options.trace:
            self.activity.add((core, thread), start, done)
        self.handles.append(done)
        return len(self.handles) - 1

    def handle_mcast(self, core: tuple[int, int], thread: str, nbytes: int, receivers: list[tuple[int, int]]) -> int:
        t = self.th(core, thread)
        p = self.params
        start = self._issue(t)
        noc = self.noc_of(t)
        key = (core, noc, tuple(receivers))
        hit = self._paths.get(key)
        if hit is None:  # receivers' ports and the tree's links: each carries the block once
            here = p.noc_xy(*core)
            tree: set[Link] = set()
            for rc in receivers:
                tree.update(p.route(here, p.noc_xy(*rc), noc))
            pairs = [(self.port(core, noc, "out"), 1.0)] + [(self.port(rc, noc, "in"), 1.0) for rc in receivers]
            uses = pairs + [(self.link(lk), 1.0) for lk in tree]
            lat = max(self.latency(here, p.noc_xy(*rc), noc) for rc in receivers)
            hit = self._paths[key] = (uses, lat)
        uses, lat = hit
        done = reserve_all(uses, start, nbytes) + lat
        self.bytes["mcast"] += nbytes
        self.bytes["mcast_delivered"] += nbytes * len(receivers)
        self.transfers += 1
        t.dma_busy += done - start
        self.slice(t, f"mcast {nbytes // 1024} KiB -> {len(receivers)} cores", start, done, "dma")
        if self.options.trace:
            self.activity.add((core, thread), start, done)
        self.handles.append(done)
        return len(self.handles) - 1

    def dma_wait(self, core: tuple[int, int], thread: str, handle: int | None) -> None:
        if handle is None:
            return
        t = self.th(core, thread)
        ready = self.handles[handle]
        if ready > t.clock:
            t.stall += ready - t.clock
            t.clock = ready
            if ready > self.stop:
                raise Overrun(ready)

    # ---- results --------------------------------------------------------------------------------

    def finish(self) -> Any:
        from tilegrid.perf.report import Summary

        return Summary.build(self)
