"""Performance model of Wormhole and Blackhole chips driven by the functional simulation.

    from tilegrid import perf
    with perf.session("HiFi2", timing_only=True) as s:
        flash_attention(q, k, v, causal=True)
    print(s.last.text()); s.last.write_trace("trace.json"); s.last.write_plots("plots/")

See docs/perf.md; parameters and their sources in tilegrid/perf/params.py.
"""

from tilegrid.perf.bounds import Bound, lower_bound
from tilegrid.perf.model import Calendar, Options, Overrun, PerfModel
from tilegrid.perf.params import PARAMS, DeviceParams, params_for
from tilegrid.perf.report import Summary
from tilegrid.perf.run import Session, placeholder, session

__all__ = ["Bound", "Calendar", "DeviceParams", "Options", "Overrun", "PARAMS", "PerfModel", "Session", "Summary",
           "lower_bound", "params_for", "placeholder", "session"]
