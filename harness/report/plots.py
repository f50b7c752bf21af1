"""Report figures (matplotlib, Agg canvas, no display needed).

Each function writes one PNG and returns its path. Figures are built with the
object API (`Figure` + `FigureCanvasAgg`), not pyplot, so nothing touches
global backend state and plots can be made from any thread. Empty inputs give
a figure that says "no data" rather than an exception: a report of an
interrupted run must still render.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.analysis.stats import ordered_guards

ModelSpec = Callable[[float], float] | Sequence[tuple[float, float]] | None

# Okabe-Ito: told apart under the common colour-vision deficiencies.
_COLORS = {"none": "#D55E00", "finished-check": "#0072B2", "serialized": "#009E73"}
_OTHER_COLORS = ["#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
_MARKERS = {"none": "o", "finished-check": "s", "serialized": "^"}
_DPI = 100


def guard_color(guard: str) -> str:
    """The guard's colour in every figure (built-in guards fixed; others from the same palette)."""
    return _color(guard, [])


def _color(guard: str, others: list[str]) -> str:
    if guard in _COLORS:
        return _COLORS[guard]
    if guard not in others:
        others.append(guard)
    return _OTHER_COLORS[others.index(guard) % len(_OTHER_COLORS)]


def _new(figsize: tuple[float, float] = (9.0, 5.0)) -> tuple[Figure, Any]:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def save_figure(fig: Figure, out: Path | str) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # No "Software" stamp: identical inputs then give byte-identical files. NAME@2x.png: for slides.
    fig.savefig(path, dpi=_DPI, format="png", metadata={"Software": None})
    fig.savefig(hidpi_path(path), dpi=2 * _DPI, format="png", metadata={"Software": None})
    return path


def hidpi_path(path: Path) -> Path:
    """The 2x copy every figure is also written as: race_rate.png -> race_rate@2x.png."""
    return path.with_name(f"{path.stem}@2x{path.suffix}")


def _no_data(ax: Any, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=14, color="#666666", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _money(cents: Any) -> str:
    try:
        return f"{int(cents) / 100:,.2f}"
    except (TypeError, ValueError):
        return "?"


def _num(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f


# --------------------------------------------------------------------------- race rate


def _model_points(model: ModelSpec, x_min: float, x_max: float, knots: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    if model is None:
        return np.array([]), np.array([])
    if callable(model):
        # Dense grid plus points hugging the measured offsets and 0, where the model jumps.
        grid = set(np.linspace(x_min, x_max, 400).tolist())
        for k in list(knots) + [0.0]:
            if x_min <= k <= x_max:
                grid.update({k, k - 1e-6, k + 1e-6})
        xs = np.array(sorted(grid))
        ys = np.array([model(float(x)) for x in xs])
        return xs, ys
    pts = sorted((float(x), float(y)) for x, y in model)
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def plot_race_rate(rate_table: pd.DataFrame, models: Mapping[str, ModelSpec], out: Path | str, *,
                   window_edges: Mapping[str, Mapping[str, Any] | None] | None = None,
                   offset_label: str = "planned offset t_invoice − t_change (ms)") -> Path:
    """Race rate vs offset as small multiples: one panel per guard, shared axes, so intervals of
    different guards can never merge. Each point is a measured rate with its 95% Wilson interval
    as an error bar, its marker area growing with the judged trials behind it (the count is
    written when points differ); `models[guard]` (a function offset_ms -> probability, or
    (offset_ms, probability) points, or None) is drawn dashed; a guard's measured race window
    (`window_edges`, summary.json `rounds.window_edges`) is shaded and labelled.
    """
    data = rate_table[rate_table["trials"] > 0] if not rate_table.empty else rate_table
    guards = ordered_guards(data["guard"]) if not data.empty else []
    fig = Figure(figsize=(9.0, 1.0 + 2.1 * max(len(guards), 1)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(len(guards), 1), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    if data.empty:
        _no_data(axes[0], "no determinate trials")
        axes[0].set_title("Race rate vs offset")
        return save_figure(fig, out)
    x_min, x_max = float(data["offset_ms"].min()), float(data["offset_ms"].max())
    n_max = float(data["trials"].max())
    uniform = data["trials"].nunique() == 1
    others: list[str] = []
    for ax, guard in zip(axes, guards):
        sub = data[data["guard"] == guard].sort_values("offset_ms")
        color = _color(guard, others)
        x = sub["offset_ms"].to_numpy(dtype=float)
        y = sub["rate"].to_numpy(dtype=float)
        n = sub["trials"].to_numpy(dtype=float)
        err = [y - sub["ci_low"].to_numpy(dtype=float), sub["ci_high"].to_numpy(dtype=float) - y]
        edges = (window_edges or {}).get(guard)
        if edges:
            ax.axvspan(edges["low"], edges["high"], color=color, alpha=0.10, linewidth=0)
            ax.text((edges["low"] + edges["high"]) / 2, 1.2, f"measured race window {edges['low']:g} … {edges['high']:g} ms",
                    ha="center", va="top", fontsize=8, color="#333333",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
        ax.errorbar(x, y, yerr=err, fmt="none", ecolor=color, elinewidth=0.9, capsize=2, alpha=0.8)
        ax.scatter(x, y, s=8 + 40 * n / n_max, color=color, marker=_MARKERS.get(guard, "D"), zorder=3,
                   label="measured (95% Wilson interval)")
        if not uniform:
            for xi, yi, ni in zip(x, y, n):
                ax.annotate(f"{int(ni)}", (xi, yi), xytext=(0, 5), textcoords="offset points", fontsize=6,
                            ha="center", color="#555555")
        mx, my = _model_points(models.get(guard), x_min, x_max, data["offset_ms"].tolist())
        if mx.size and np.isfinite(my).any():
            ax.plot(mx, my, linestyle="--", color="#333333", linewidth=1.1, label="race model")
        ax.axvline(0.0, color="#999999", linewidth=0.8)
        ax.set_ylim(-0.05, 1.25)
        ax.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
        ax.set_ylabel("race rate")
        per_point = f"{int(n[0])} trials per point" if uniform else "point size and label: trials per point"
        ax.set_title(f"{guard}: {int(sub['races'].sum())}/{int(n.sum())} judged trials raced ({per_point})",
                     fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
    axes[-1].set_xlabel(offset_label)
    fig.suptitle("Race rate (accepted invoice > final value) vs offset, one panel per guard", fontsize=10)
    return save_figure(fig, out)


def plot_calibration(live: pd.DataFrame, sim: pd.DataFrame | None, model: Callable[[float, str], float] | None,
                     out: Path | str) -> Path:
    """`race-harness calibrate`: one panel per guard with the race model (line), the live rates
    with their 95% Wilson intervals and the simulated rates (rate tables as `rate_table` makes)."""
    guards = ordered_guards(list(live["guard"]) + (list(sim["guard"]) if sim is not None else [])) or ["none"]
    fig = Figure(figsize=(9.0, 3.2 * len(guards)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(guards), 1, sharex=True, squeeze=False)[:, 0]
    offsets = pd.concat([live["offset_ms"]] + ([sim["offset_ms"]] if sim is not None else []))
    x_min, x_max = (float(offsets.min()), float(offsets.max())) if len(offsets) else (-1.0, 1.0)
    others: list[str] = []
    for ax, guard in zip(axes, guards):
        color = _color(guard, others)
        if model is not None:
            mx, my = _model_points(lambda x, g=guard: model(x, g), x_min, x_max, offsets.tolist())
            if np.isfinite(my).any():
                ax.plot(mx, my, color="#333333", linewidth=1.2, label="model")
        lv = live[(live["guard"] == guard) & (live["trials"] > 0)].sort_values("offset_ms")
        if not lv.empty:
            y = lv["rate"].to_numpy(dtype=float)
            err = [y - lv["ci_low"].to_numpy(dtype=float), lv["ci_high"].to_numpy(dtype=float) - y]
            ax.errorbar(lv["offset_ms"], y, yerr=err, fmt="o", color=color, markersize=4, capsize=2,
                        elinewidth=0.8, label=f"live (95% CI, n={int(lv['trials'].sum())})")
        sv = sim[(sim["guard"] == guard) & (sim["trials"] > 0)].sort_values("offset_ms") if sim is not None else None
        if sv is not None and not sv.empty:
            ax.plot(sv["offset_ms"], sv["rate"], "x", color="#000000", markersize=5,
                    label=f"simulated (n={int(sv['trials'].sum())})")
        ax.axvline(0.0, color="#999999", linewidth=0.8)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("race rate")
        ax.set_title(f"{guard}: measured vs model", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("planned offset t_invoice − t_change (ms)")
    return save_figure(fig, out)


# --------------------------------------------------------------------------- timeline

# Lanes of the timeline, top to bottom; setup requests (create/start-handling/audit)
# happen long before t0 and would squash the interesting part, so they are table-only.
_LANES = [("change", "Change"), ("invoice", "Invoice"), ("reads", "Guard reads")]
_READ_KINDS = {"get_order", "get_changes"}


def plot_timeline(
    trial_row: Mapping[str, Any] | pd.Series | None,
    history_events: Sequence[Mapping[str, Any]],
    audit: Mapping[str, Any] | None,
    out: Path | str,
) -> Path:
    """Timeline of one trial: the Change request (sent → response, server act
    marked), its processing window (acted → finished, shaded), the invoice
    request and any guard reads, annotated with the invoice value vs the
    order's final value (currency units). Times are ms since the trial's t0.
    """
    fig, ax = _new((10.0, 4.6))
    if trial_row is None:
        _no_data(ax, "no race observed: nothing to show")
        ax.set_title("Timeline of a raced trial")
        return save_figure(fig, out)
    row = dict(trial_row)
    audit = audit or {}

    def lane_of(kind: str) -> str | None:
        if kind in ("change", "invoice"):
            return kind
        return "reads" if kind in _READ_KINDS else None

    has_reads = any(lane_of(str(ev.get("kind", ""))) == "reads" for ev in history_events)
    lanes = [lane for lane in _LANES if lane[0] != "reads" or has_reads]
    lane_y = {key: len(lanes) - i for i, (key, _) in enumerate(lanes)}
    xs: list[float] = []

    colors = {"change": "#ff7f0e", "invoice": "#d62728", "reads": "#7f7f7f"}
    for ev in history_events:
        lane = lane_of(str(ev.get("kind", "")))
        sent = _num(ev.get("sent_ms"))
        if lane is None or math.isnan(sent):
            continue
        resp = _num(ev.get("response_ms"))
        end = resp if not math.isnan(resp) else sent
        y = lane_y[lane]
        height = 0.18 if lane == "reads" else 0.28
        ax.broken_barh([(sent, max(end - sent, 0.0))], (y - height / 2, height), facecolors=colors[lane], alpha=0.85)
        ax.plot([sent], [y], marker="|", color="black", markersize=12)
        xs += [sent, end]
        if lane != "reads":
            status = ev.get("status")
            label = f"HTTP {status}" if status else f"error: {ev.get('error') or 'no response'}"
            ax.annotate(label, (end, y), xytext=(4, 8), textcoords="offset points", fontsize=8)

    # Server-side instants come from the trial row (already relative to t0).
    c_acted, c_fin = _num(row.get("change_acted_ms")), _num(row.get("change_finished_ms"))
    i_acted = _num(row.get("invoice_acted_ms"))
    if not math.isnan(c_acted):
        xs.append(c_acted)
        end = c_fin if not math.isnan(c_fin) else max(xs + [c_acted]) + 1.0
        y = lane_y["change"]
        ax.broken_barh([(c_acted, end - c_acted)], (y - 0.36, 0.72), facecolors="#ff7f0e", alpha=0.22,
                       hatch=None if not math.isnan(c_fin) else "//", edgecolor="#ff7f0e")
        ax.plot([c_acted], [y], marker="v", color="black", markersize=7)
        msg = "Change processing" + ("" if not math.isnan(c_fin) else " (never finished)")
        ax.text((c_acted + end) / 2, y - 0.42, msg, ha="center", va="top", fontsize=8, color="#a04000")
        if not math.isnan(c_fin):
            xs.append(c_fin)
            ax.plot([c_fin], [y], marker="D", color="#a04000", markersize=5)
            ax.annotate(f"finished: value {_money(row.get('initial_value'))} → {_money(row.get('final_value'))}",
                        (c_fin, y), xytext=(4, -16), textcoords="offset points", fontsize=8, color="#a04000")
    if not math.isnan(i_acted):
        xs.append(i_acted)
        y = lane_y["invoice"]
        ax.plot([i_acted], [y], marker="v", color="black", markersize=7)
        ax.axvline(i_acted, color="#d62728", linestyle=":", linewidth=1)
        st = _num(row.get("invoice_status"))
        status = 0 if math.isnan(st) else int(st)
        verb = "accepted" if 200 <= status < 300 else "refused" if status else "sent"
        ax.annotate(f"invoice {_money(row.get('invoice_value'))} {verb}", (i_acted, y), xytext=(4, -18),
                    textcoords="offset points", fontsize=8, color="#d62728")

    final = audit.get("finalValue", row.get("final_value"))
    total = audit.get("invoicedTotal", row.get("invoiced_total"))
    verdict = f"accepted invoice total {_money(total)}  vs  final order value {_money(final)}"
    try:
        if int(total) > int(final):  # type: ignore[arg-type]
            verdict += f"  (over by {_money(int(total) - int(final))})"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        pass
    ax.text(0.01, 0.98, verdict, transform=ax.transAxes, ha="left", va="top", fontsize=9, color="#d62728",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#d62728", "alpha": 0.9})

    if xs:
        lo, hi = min(xs), max(xs)
        pad = max((hi - lo) * 0.08, 2.0)
        ax.set_xlim(lo - pad, hi + pad * 2.5)
    ax.set_ylim(0.3, len(lanes) + 0.9)
    ax.set_yticks([lane_y[k] for k, _ in lanes], [name for _, name in lanes])
    ax.set_xlabel("time since trial t0 (ms)   | client send   ▼ mock acts   ◆ Change finished")
    ax.set_title(
        f"Trial {row.get('trial_id')} — guard {row.get('guard')}, planned offset {_num(row.get('offset_ms')):g} ms: "
        f"{row.get('outcome')}"
    )
    ax.grid(True, axis="x", alpha=0.3)
    return save_figure(fig, out)


# --------------------------------------------------------------------------- timing / cost


def plot_offset_error(df: pd.DataFrame, out: Path | str) -> Path:
    """Histogram of |offset error| (ms): client send times vs the mock's act times."""
    fig, ax = _new()
    series = {}
    if not df.empty:
        series = {
            "client (send times)": df["client_offset_error_ms"].abs().dropna().to_numpy(dtype=float),
            "server (mock act times)": df["server_offset_error_ms"].abs().dropna().to_numpy(dtype=float),
        }
    values = [v for v in series.values() if v.size]
    ax.set_title("Offset error: |actual − planned offset| (unguarded trials)")
    if not values:
        _no_data(ax)
        return save_figure(fig, out)
    combined = np.concatenate(values)
    hi = float(combined.max())
    edges = np.linspace(0.0, hi if hi > 0 else 1.0, 41)
    for (label, v), color in zip(series.items(), ("#1f77b4", "#ff7f0e")):
        if v.size:
            ax.hist(v, bins=edges, alpha=0.55, color=color,
                    label=f"{label}: p50 {np.quantile(v, 0.5):.2f}, p99 {np.quantile(v, 0.99):.2f} ms (n={v.size})")
    ax.set_xlabel("|offset error| (ms)")
    ax.set_ylabel("trials")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out)


def plot_guard_cost(df: pd.DataFrame, out: Path | str) -> Path:
    """Box plot per guard of guard_cost_ms (how long the guard held the invoice)."""
    fig, ax = _new()
    ax.set_title("Guard cost: invoice sent − invoice planned")
    data, labels = [], []
    if not df.empty:
        for guard in ordered_guards(df["guard"]):
            v = df.loc[df["guard"] == guard, "guard_cost_ms"].dropna().to_numpy(dtype=float)
            if v.size:
                data.append(v)
                labels.append(f"{guard}\n(n={v.size})")
    if not data:
        _no_data(ax)
        return save_figure(fig, out)
    ax.boxplot(data, showfliers=True)
    # Labels set on the axis: boxplot's own keyword was renamed in matplotlib 3.9 (labels -> tick_labels).
    ax.set_xticks(range(1, len(data) + 1), labels)
    ax.set_xlabel("guard")
    ax.set_ylabel("guard cost (ms)")
    ax.grid(True, axis="y", alpha=0.3)
    return save_figure(fig, out)


def plot_change_delay(points: list[tuple[float, float, float]], out: Path | str) -> Path:
    """Effective Change delay (queue wait + processing) against time in the run.

    `points` = (seconds since the first Change, processing ms, queue wait ms):
    under load with bounded Change workers the queue wait grows, widening the
    race window.
    """
    fig, ax = _new()
    ax.set_title("Effective Change delay over the run (processing + queue wait)")
    if not points:
        _no_data(ax)
        return save_figure(fig, out)
    t = [p[0] for p in points]
    processing = [p[1] for p in points]
    effective = [p[1] + p[2] for p in points]
    ax.scatter(t, effective, s=8, alpha=0.6, color="#0072B2", label="effective = processing + queue wait")
    ax.scatter(t, processing, s=10, alpha=0.8, marker="x", color="#D55E00", label="processing (drawn delay)")
    ax.set_xlabel("time since the run's first Change (s)")
    ax.set_ylabel("delay (ms)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, out)
