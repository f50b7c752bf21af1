"""Adaptive rounds, the pure part: which (guard, offset) cells the next round runs, and where each
guard's race window ends. No I/O, no randomness (the seeded trials are built by `harness.core.plan`).

Contract:
* A *cell* is (guard, offset_ms); `counts` maps each measured cell to (races, judged trials).
* The scenario's grid runs first, in batches of `batch_reps(reps)` repetitions (~4 batches).
* After the grid, `next_cells` gives one round: `per_cell` trials for every cell the decision left
  undecided, and `per_cell` trials at each NEW offset halfway between two neighbouring offsets of a
  guard where one raced and the other did not (bisection), as long as the two are more than
  `resolution_ms` apart. The result is capped at `budget` trials and ordered deterministically,
  so the same counts give the same round.
* `window_edges` states a guard's race window: the outermost offsets with races and, on each side,
  the distance to the nearest raceless neighbour (the uncertainty of that edge; None when nothing
  was measured beyond it).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

Cell = tuple[str, float]
Counts = Mapping[Cell, tuple[int, int]]

CHECK_BUDGET_GRIDS = 3  # `check`'s default budget (--max-trials): this many times the grid's trials
GRID_BATCHES = 4  # the grid is split into about this many batches, each followed by a look
MIN_RESOLUTION_MS = 1.0  # bisection stops when neighbours are this close (offset timing is ~1 ms good)


def batch_reps(reps: int, batches: int = GRID_BATCHES) -> int:
    """Repetitions (trials per cell) in one grid batch: the grid is ~`batches` batches."""
    return max(1, math.ceil(reps / batches))


def resolution_ms(offsets: Sequence[float]) -> float:
    """Bisection resolution: a sixteenth of the smallest grid gap (4 halvings), at least 1 ms."""
    gaps = [b - a for a, b in zip(sorted(offsets), sorted(offsets)[1:]) if b > a]
    return max(MIN_RESOLUTION_MS, min(gaps) / 16) if gaps else MIN_RESOLUTION_MS


def _by_guard(counts: Counts) -> dict[str, list[tuple[float, int, int]]]:
    out: dict[str, list[tuple[float, int, int]]] = {}
    for (guard, offset), (races, trials) in counts.items():
        if trials > 0:
            out.setdefault(guard, []).append((offset, races, trials))
    for rows in out.values():
        rows.sort()
    return out


def bisection_offsets(counts: Counts, resolution: float) -> list[Cell]:
    """New cells halfway between neighbours (per guard) where one raced and the other did not.

    The midpoint is rounded to a multiple of `resolution` and must differ from both neighbours,
    so repeated bisection converges on an edge and stops at the resolution."""
    out: list[Cell] = []
    for guard, rows in sorted(_by_guard(counts).items()):
        for (a, ra, _), (b, rb, _) in itertools.pairwise(rows):
            if (ra > 0) == (rb > 0) or b - a <= resolution:
                continue
            mid = round((a + b) / 2 / resolution) * resolution
            if a < mid < b:
                out.append((guard, float(mid)))
    return out


def next_cells(counts: Counts, undecided: Sequence[Cell], *, per_cell: int, budget: int,
               resolution: float, bisect: bool = True) -> list[Cell]:
    """The next round's trials, one entry per trial (a cell repeated `per_cell` times).

    Undecided cells first (they decide the verdict), then bisection cells (they sharpen the
    window edges); sorted within each part and cut at `budget` whole trials."""
    if per_cell < 1:
        raise ValueError(f"per_cell must be >= 1; got {per_cell}")
    cells = sorted(set(undecided))
    if bisect:
        cells += [c for c in bisection_offsets(counts, resolution) if c not in set(cells)]
    trials = [c for c in cells for _ in range(per_cell)]
    return trials[:max(0, budget)]


def window_edges(counts: Counts) -> dict[str, dict[str, Any] | None]:
    """Per guard: {"low", "high": outermost offsets with races; "low_gap", "high_gap": distance to
    the nearest raceless offset outside them (None: none measured there, the edge is open);
    "edge_ms": the larger gap (None when an edge is open)}, or None for a guard without races."""
    out: dict[str, dict[str, Any] | None] = {}
    for guard, rows in sorted(_by_guard(counts).items()):
        racing = [o for o, r, _ in rows if r > 0]
        if not racing:
            out[guard] = None
            continue
        lo, hi = min(racing), max(racing)
        below = [o for o, r, _ in rows if r == 0 and o < lo]
        above = [o for o, r, _ in rows if r == 0 and o > hi]
        low_gap = lo - max(below) if below else None
        high_gap = min(above) - hi if above else None
        edge = None if low_gap is None or high_gap is None else max(low_gap, high_gap)
        out[guard] = {"low": lo, "high": hi, "low_gap": low_gap, "high_gap": high_gap, "edge_ms": edge}
    return out


def describe_edges(guard: str, edges: Mapping[str, Any] | None) -> str:
    """One line, e.g. "finished-check race window -151 ... -1 ms, edges +-3 ms"."""
    if edges is None:
        return f"{guard}: no races"
    if edges["edge_ms"] is not None:
        edge = f"edges +-{edges['edge_ms']:g} ms"
    else:
        def side(gap: float | None) -> str:
            return "open (no raceless offset beyond)" if gap is None else f"+-{gap:g} ms"
        edge = f"low edge {side(edges['low_gap'])}, high edge {side(edges['high_gap'])}"
    return f"{guard} race window {edges['low']:g} ... {edges['high']:g} ms, {edge}"


__all__ = [
    "CHECK_BUDGET_GRIDS",
    "GRID_BATCHES",
    "Cell",
    "Counts",
    "batch_reps",
    "bisection_offsets",
    "describe_edges",
    "next_cells",
    "resolution_ms",
    "window_edges",
]
