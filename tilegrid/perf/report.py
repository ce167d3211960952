"""What the timing model reports: the summary, the bound with its evidence, a Perfetto trace, plots."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from tilegrid.perf import plots

UNITS = plots.UNITS


@dataclass
class Summary:
    kernel: str
    device: str
    grid: tuple[int, int]
    fidelity: str
    data_format: str | None
    exp: str
    clock_ghz: float
    cycles: float
    flops: float
    peak_tflops: float  # the kernel's grid at this fidelity
    device_peak_tflops: float  # the whole device grid
    dram_bytes: float
    dram_peak_gbps: float
    mcast_bytes: float
    transfers: int
    busy: dict[tuple[int, int], dict[str, float]]  # per core, fraction of the total per unit
    compute_wait: dict[tuple[int, int], float]  # per core, fraction the compute thread waited
    port_util_max: float
    port_util_name: str
    bound: str
    evidence: list[str]
    op_totals: dict[str, list[float]] = field(default_factory=dict)  # label -> fpu, sfpu, unpack, pack, total
    trace_events: list[tuple] = field(default_factory=list, repr=False)
    thread_kinds: dict[str, str] = field(default_factory=dict)
    activity: Any = field(default=None, repr=False)  # tilegrid/perf/activity.py, the whole run (None: not traced)
    ends: dict[tuple, float] = field(default_factory=dict, repr=False)  # (core, thread) -> its last cycle

    # ---- derived --------------------------------------------------------------------------------

    @property
    def seconds(self) -> float:
        return self.cycles / (self.clock_ghz * 1e9)

    @property
    def tflops(self) -> float:
        return self.flops / self.seconds / 1e12 if self.cycles else 0.0

    @property
    def fraction_of_peak(self) -> float:
        return self.tflops / self.peak_tflops if self.peak_tflops else 0.0

    @property
    def dram_gbps(self) -> float:
        return self.dram_bytes / self.seconds / 1e9 if self.cycles else 0.0

    def mean_busy(self, unit: str) -> float:
        vals = [b[unit] for b in self.busy.values()]
        return sum(vals) / len(vals) if vals else 0.0

    def max_busy(self, unit: str) -> float:
        return max((b[unit] for b in self.busy.values()), default=0.0)

    # ---- construction ---------------------------------------------------------------------------

    @classmethod
    def build(cls, m: Any) -> Summary:
        p = m.params
        threads = list(m.threads.values())
        total = max([t.clock for t in threads] + list(m.handles) + [1.0])
        busy: dict[tuple[int, int], dict[str, float]] = {}
        wait: dict[tuple[int, int], float] = {}
        gr, gc = m.grid
        for r in range(gr):
            for c in range(gc):
                busy[(r, c)] = dict.fromkeys(UNITS, 0.0)
                wait[(r, c)] = 0.0
        for t in threads:
            b = busy.setdefault(t.core, dict.fromkeys(UNITS, 0.0))
            if t.kind == "compute":
                b["fpu"] += t.fpu / total
                b["sfpu"] += t.sfpu / total
                b["unpack"] += t.unpack / total
                b["pack"] += t.pack / total
                wait[t.core] = wait.get(t.core, 0.0) + t.stall / total
            else:
                unit = "dm0" if t.kind == "dm0" else "dm1"
                b[unit] = min(1.0, b[unit] + max(t.busy, t.dma_busy) / total)
        dram_bytes = m.bytes["dram_read"] + m.bytes["dram_write"]
        port_name, port_util = "", 0.0
        for cal in [*m.ports.values(), *m.links.values()]:  # core NoC ports and mesh links
            u = cal.bytes / (cal.rate * total)
            if u > port_util:
                port_name, port_util = cal.name, u
        s = cls(
            kernel=m.kernel, device=p.name, grid=m.grid, fidelity=m.options.fidelity,
            data_format=m.options.data_format, exp=m.options.exp, clock_ghz=p.clock_ghz, cycles=total,
            flops=m.flops, peak_tflops=p.peak_tflops(m.options.fidelity, gr * gc),
            device_peak_tflops=p.peak_tflops(m.options.fidelity), dram_bytes=dram_bytes,
            dram_peak_gbps=p.dram_gbps, mcast_bytes=m.bytes["mcast"], transfers=m.transfers, busy=busy,
            compute_wait=wait, port_util_max=port_util, port_util_name=port_name, bound="", evidence=[],
            op_totals=dict(m.op_totals), trace_events=m.trace_ev, thread_kinds=dict(m.thread_kinds),
            activity=m.activity if m.options.trace else None, ends={(t.core, t.name): t.clock for t in threads},
        )
        s.bound, s.evidence = s._bound()
        return s

    def _bound(self) -> tuple[str, list[str]]:
        dram_util = self.dram_gbps / self.dram_peak_gbps if self.dram_peak_gbps else 0.0
        cands = {
            "compute (FPU)": self.max_busy("fpu"),
            "SFPU": self.max_busy("sfpu"),
            "unpack": self.max_busy("unpack"),
            "pack": self.max_busy("pack"),
            "DRAM": dram_util,
            "NoC": self.port_util_max,
        }
        fpu_sfpu = max(b["fpu"] + b["sfpu"] for b in self.busy.values()) if self.busy else 0.0
        evidence = [
            f"FPU busy: mean {self.mean_busy('fpu'):.1%}, max {self.max_busy('fpu'):.1%} of the run",
            f"SFPU busy: mean {self.mean_busy('sfpu'):.1%}, max {self.max_busy('sfpu'):.1%}"
            f" (math thread FPU+SFPU, max {fpu_sfpu:.1%})",
            f"unpack busy max {self.max_busy('unpack'):.1%}, pack busy max {self.max_busy('pack'):.1%}",
            f"DRAM: {self.dram_bytes / 1e6:.1f} MB at {self.dram_gbps:.1f} GB/s = {dram_util:.1%} of "
            f"{self.dram_peak_gbps:.0f} GB/s",
            f"busiest NoC port or link: {self.port_util_name or '-'} at {self.port_util_max:.1%}",
            f"compute thread waiting on CBs/semaphores: mean {_mean(self.compute_wait.values()):.1%}",
        ]
        name, util = max(cands.items(), key=lambda kv: kv[1])
        if fpu_sfpu > util and fpu_sfpu > 0.5:
            fpu, sfpu = self.max_busy("fpu"), self.max_busy("sfpu")
            name, util = ("compute (FPU)" if fpu >= sfpu else "SFPU"), fpu_sfpu
            if min(fpu, sfpu) > 0.1:
                name = f"math thread (FPU {fpu:.0%} + SFPU {sfpu:.0%}, serialised)"
        if util < 0.5:
            return "waiting (latency; no resource above 50%)", evidence
        return name, evidence

    # ---- output ---------------------------------------------------------------------------------

    def text(self) -> str:
        gr, gc = self.grid
        fmt = f", data {self.data_format}" if self.data_format else ""
        lines = [
            f"perf model: kernel '{self.kernel}' on {self.device}, grid {gr}x{gc}, {self.fidelity}, exp {self.exp}{fmt}",
            f"  {self.cycles:,.0f} cycles = {self.seconds * 1e3:.4f} ms at {self.clock_ghz} GHz",
        ]
        if self.flops:
            lines.append(f"  {self.tflops:.2f} TFLOP/s (matmul FLOPs) = {self.fraction_of_peak:.1%} of the {gr * gc}-core "
                         f"peak {self.peak_tflops:.1f} at {self.fidelity} (device peak {self.device_peak_tflops:.1f})")
        lines.append("  mean busy: " + ", ".join(f"{u} {self.mean_busy(u):.1%}" for u in UNITS))
        lines.append(f"  bound: {self.bound}")
        lines += ["    " + e for e in self.evidence]
        if self.op_totals:
            ncores = max(1, len(self.busy))
            lines.append("  compute ops by time (cycles per core: total / FPU / SFPU / unpack / pack):")
            top = sorted(self.op_totals.items(), key=lambda kv: -kv[1][4])[:6]
            for label, (f, sf, up, pk, tot) in top:
                lines.append(f"    {tot / ncores:12,.0f} {f / ncores:12,.0f} {sf / ncores:12,.0f} {up / ncores:10,.0f} "
                             f"{pk / ncores:10,.0f}  {label}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "kernel": self.kernel, "device": self.device, "grid": list(self.grid), "fidelity": self.fidelity,
            "data_format": self.data_format, "exp": self.exp, "cycles": self.cycles, "seconds": self.seconds,
            "tflops": self.tflops, "fraction_of_peak": self.fraction_of_peak, "peak_tflops": self.peak_tflops,
            "dram_bytes": self.dram_bytes, "dram_gbps": self.dram_gbps, "bound": self.bound, "evidence": self.evidence,
            "mean_busy": {u: self.mean_busy(u) for u in UNITS},
        }

    def write_trace(self, path: str) -> str:
        """Chrome/Perfetto trace JSON: one process per core, one track per thread; CB and semaphore
        waits are slices named 'wait ...' (category 'wait'), DMAs category 'dma'."""
        us_per_cycle = 1.0 / (self.clock_ghz * 1e3)
        gr, gc = self.grid
        ev: list[dict] = []
        tids: dict[str, int] = {}
        seen_pid = set()
        for core, thread, name, start, dur, cat in self.trace_events:
            pid = core[0] * gc + core[1]
            if pid not in seen_pid:
                seen_pid.add(pid)
                ev.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": f"core ({core[0]}, {core[1]})"}})
                ev.append({"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}})
            tid = tids.setdefault(thread, len(tids))
            ev.append({"ph": "X", "name": name, "cat": cat, "pid": pid, "tid": tid, "ts": start * us_per_cycle,
                       "dur": dur * us_per_cycle})
        for pid in seen_pid:
            for thread, tid in tids.items():
                kind = self.thread_kinds.get(thread, "")
                ev.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                           "args": {"name": f"{thread} ({kind})" if kind else thread}})
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump({"traceEvents": ev, "displayTimeUnit": "ns",
                       "otherData": {"kernel": self.kernel, "device": self.device, "cycles": self.cycles}}, f)
        return path

    def write_plots(self, directory: str, prefix: str = "") -> list[str]:
        """PNG plots (needs matplotlib): per-core utilisation heat maps and the whole run's timeline
        (tilegrid/perf/plots.py). Returns the files written ([] when matplotlib is not installed)."""
        return plots.write(self, directory, prefix)


def _mean(vals) -> float:
    vals = list(vals)
    return sum(vals) / len(vals) if vals else 0.0
