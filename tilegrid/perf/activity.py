"""Busy time per (core, thread) over the whole run, for plots: a few hundred bins whatever its length.

The Perfetto trace keeps individual events (capped, so a long run's trace covers its start); this
keeps, per thread, the cycles it was busy in each time bin. Bins start narrow and double in width
(merging pairs) whenever the run outgrows them, so memory stays bounded and every cycle is counted.
"""

from __future__ import annotations

MAX_BINS = 400


class Activity:
    def __init__(self, width: float = 256.0) -> None:
        self.width = width  # cycles per bin
        self.tracks: dict[tuple, list[float]] = {}

    def add(self, key: tuple, start: float, end: float) -> None:
        """Count [start, end) as busy for `key` (intervals of one key may overlap: DMAs in flight)."""
        if end <= start:
            return
        while end > self.width * MAX_BINS:
            self._coarsen()
        w = self.width
        bins = self.tracks.get(key)
        if bins is None:
            bins = self.tracks[key] = []
        i, j = int(start // w), min(int(end // w), MAX_BINS - 1)
        if len(bins) <= j:
            bins.extend([0.0] * (j + 1 - len(bins)))
        if i == j:
            bins[i] += end - start
            return
        bins[i] += (i + 1) * w - start
        for k in range(i + 1, j):
            bins[k] += w
        bins[j] += end - j * w

    def _coarsen(self) -> None:
        self.width *= 2
        for key, bins in self.tracks.items():
            self.tracks[key] = [sum(bins[k:k + 2]) for k in range(0, len(bins), 2)]

    def fractions(self, key: tuple, nbins: int) -> list[float]:
        """Busy fraction of each of the first `nbins` bins (0 where the thread did nothing; at most 1)."""
        bins = self.tracks.get(key, [])
        return [min(1.0, (bins[k] if k < len(bins) else 0.0) / self.width) for k in range(nbins)]
