"""Lower bounds on what the timing model would predict, without simulating: for pruning a search.

A run cannot end before any resource has done its work: a core's compute thread its ops (a lower
bound on their cost, from the same parameters), a data-movement thread the issue cost of its DMAs,
and every DRAM channel, NoC link and NoC port the bytes the model would reserve on it, at its
bandwidth (the model's calendars never carry more). The transfers are costed with the model's own
channel interleaving and routes (`dram_spread`, `DeviceParams.dram_legs`), so the bound is the
model's, not a second model; it ignores latency, contention order and everything the workload does
not list, so the simulated time is never below it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tilegrid.perf.model import dram_spread
from tilegrid.perf.params import TILE_BYTES, DeviceParams

# (core, noc, kind, arg, idx, nbytes, count): `count` DMAs like this one to ("dram_read") or from
# ("dram_write") DRAM, issued by the data-movement thread on NoC `noc`; nbytes in the argument's own
# dtype, as the simulator reports them
Transfer = tuple[tuple[int, int], int, str, int, tuple[int, ...], int, int]


@dataclass(frozen=True)
class Bound:
    cycles: float
    resource: str  # what binds: "compute", "DMA issue", "DRAM channel", "NoC link", "NoC port"

    def seconds(self, params: DeviceParams) -> float:
        return self.cycles / (params.clock_ghz * 1e9)


def lower_bound(params: DeviceParams, grid: tuple[int, int], infos: list[dict], formats: list[str],
                compute: dict[tuple[int, int], float], transfers: Iterable[Transfer]) -> Bound:
    """The largest of the per-resource lower bounds (see the module docstring). `compute`: cycles
    each core's compute thread must at least spend; `infos` / `formats`: the kernel's arguments."""
    issues: dict[tuple, int] = defaultdict(int)
    shares: dict[tuple, float] = defaultdict(float)  # (core, noc, kind, channels) -> bytes per channel route
    ports: dict[tuple, float] = defaultdict(float)
    nch = params.dram_channels
    sizes = [(TILE_BYTES[a["dtype"]], TILE_BYTES[f]) for a, f in zip(infos, formats)]
    for core, noc, kind, arg, idx, nbytes, count in transfers:
        issues[(core, noc)] += count
        ntiles = max(1, nbytes // sizes[arg][0])
        chans, share = dram_spread(nch, infos[arg], idx, ntiles)
        shares[(core, noc, kind, chans)] += count * share * sizes[arg][1]
        ports[(core, noc, "in" if kind == "dram_read" else "out")] += count * ntiles * sizes[arg][1]
    channel: dict[int, float] = defaultdict(float)  # bytes per DRAM channel
    link: dict[Any, float] = defaultdict(float)  # bytes per NoC link
    for (core, noc, kind, chans), scale in shares.items():
        for ch in chans:
            channel[ch] += scale
        for lk, n in params.dram_legs(params.noc_xy(*core), noc, kind, chans)[0]:
            link[lk] += n * scale
    found = [Bound(max(compute.values(), default=0.0), "compute"),
             Bound(max(issues.values(), default=0) * params.dma_issue_cycles, "DMA issue"),
             Bound(max(ports.values(), default=0.0) / params.noc_bytes_per_cycle, "NoC port"),
             Bound(max(channel.values(), default=0.0) / params.dram_bytes_per_cycle_per_channel, "DRAM channel"),
             Bound(max(link.values(), default=0.0) / params.noc_bytes_per_cycle, "NoC link")]
    return max(found, key=lambda b: b.cycles)
