"""Statistics over a run's trials: race rates with Wilson intervals, timing precision and guard cost.

Rates count judged trials only (kinds "race" and "no_race", `harness.core.names.outcome_kind`):
not-judged (indeterminate, late) and failed (no_invoice, guard_timeout) trials are counted in
their own columns. Intervals come from `harness.analysis.sequential` (closed forms, checked
against statsmodels in the tests).

Pure pandas/numpy: the only I/O is `load_trials`; the race model lives in
`harness.analysis.model`, summary.json in `harness.analysis.summary`, plotting
and file output in `harness.report`. Functions that have no data to work on
return NaN (floats) so callers can tell "no data" from 0; `json_safe` turns
those into JSON `null`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from harness.analysis.sequential import wilson_interval
from harness.core.names import GUARD_NAMES, outcome_kind
from harness.core.results import ADDED_COLUMNS, TRIALS_SCHEMA_VERSION, TrialResult
from harness.errors import ReportError

log = logging.getLogger(__name__)

# Many distinct offsets with few trials each means the plan drew offsets
# continuously (per-offset bins would hold ~1 trial): bin them instead.
_MAX_EXACT_OFFSETS = 60
_MIN_TRIALS_PER_OFFSET = 3
_TARGET_BINS = 40

RaceModel = Callable[[float, str], float]
"""(offset_ms, guard) -> expected race probability."""

RATE_COLUMNS = ["guard", "offset_ms", "trials", "races", "rate", "ci_low", "ci_high", "not_judged", "failed"]


# --------------------------------------------------------------------------- loading


def _to_int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        f = float(s)
        if not f.is_integer():
            raise
        return int(f)


def _to_float(s: str) -> float:
    return math.nan if s.strip() == "" else float(s)


_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _to_bool(s: str) -> bool:
    return _BOOLS[s.strip().lower()]


_PARSERS: dict[str, Callable[[str], Any]] = {"int": _to_int, "float": _to_float, "bool": _to_bool, "str": str}
_BUILTIN_PARSERS: dict[str, Callable[[str], Any]] = {"int": int, "float": float}
_DTYPES: dict[str, Any] = {"int": "int64", "float": "float64", "bool": "bool", "str": str}


def _column_types() -> dict[str, str]:
    # Derived from TrialResult so a column change there needs no edit here.
    return {f.name: (f.type if isinstance(f.type, str) else f.type.__name__) for f in fields(TrialResult)}


def _decode_cut(data: bytes) -> str:
    """UTF-8, where a file cut mid-write may end inside a multi-byte character: that incomplete
    character is dropped (its row lacks its newline, so it is skipped as cut); elsewhere, invalid
    UTF-8 is corruption and raises UnicodeDecodeError."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.reason != "unexpected end of data":
            raise
        return data[:err.start].decode("utf-8")


def _parse_columns(rows: list[list[str]], width: int, index: Mapping[str, int], types: Mapping[str, str],
                   defaults: Mapping[str, Any]) -> dict[str, list[Any]] | None:
    """Every row parsed column by column (the common case, ~2x faster than row by row), or None
    when a row is unparsable: the caller then goes row by row to tell a cut tail from corruption."""
    if any(len(rec) != width for rec in rows):
        return None
    by_column = list(zip(*rows)) or [()] * width
    try:
        return {name: _parse_column(by_column[index[name]], t) if name in index else [defaults[name]] * len(rows)
                for name, t in types.items()}
    except (ValueError, KeyError):
        return None


def _parse_column(values: Sequence[str], kind: str) -> list[Any]:
    # int() / float() give what _to_int / _to_float give wherever they accept the text, at C speed;
    # a column with an empty float or an int written as 3.0 takes the full parser.
    builtin = _BUILTIN_PARSERS.get(kind)
    if builtin is not None:
        try:
            return list(map(builtin, values))
        except ValueError:
            pass
    return list(map(_PARSERS.get(kind, str), values))


def load_trials(run_dir: Path | str) -> pd.DataFrame:
    """Read `run_dir/trials.csv` into a typed DataFrame (one row per finished trial).

    The runner appends rows as trials finish, so a crash can leave a partial
    last line: unparsable *trailing* records are skipped and counted in
    `df.attrs["skipped_lines"]` (and logged). An unparsable record followed by
    good ones is corruption, not truncation, and raises ReportError, as do a
    missing file and a header lacking TrialResult's columns.
    """
    path = Path(run_dir) / "trials.csv"
    try:
        text = _decode_cut(path.read_bytes())  # not universal newlines: the csv module handles line ends
    except FileNotFoundError:
        raise ReportError(f"{path}: missing (the run recorded no trials file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read: {exc}") from None

    records: list[tuple[int, list[str]]] = []  # (line number, fields)
    reader = csv.reader(io.StringIO(text))
    truncated_tail = False
    try:
        for rec in reader:
            records.append((reader.line_num, rec))
    except csv.Error:
        truncated_tail = True  # e.g. EOF inside a quoted field
    if records and not text.endswith(("\n", "\r")) and not truncated_tail:
        # The writer ends every row with a newline; without one the last row was cut.
        records.pop()
        truncated_tail = True
    if not records:
        raise ReportError(f"{path}: empty (expected a header row {TrialResult.columns()[:3]}...)")

    header = [h.strip() for h in records[0][1]]
    types = _column_types()
    # Columns added by a later trials.csv schema are optional: an older file means their old value.
    defaults = {name: value for name, value in ADDED_COLUMNS.items() if name not in header}
    missing = [c for c in types if c not in header and c not in defaults]
    if missing:
        raise ReportError(
            f"{path}: malformed header: missing column(s) {missing} "
            f"(trials.csv schema_version {TRIALS_SCHEMA_VERSION} expects {list(types)})"
        )
    index = {name: header.index(name) for name in types if name not in defaults}

    columns = _parse_columns([rec for _, rec in records[1:] if rec], len(header), index, types, defaults)
    bad: list[int] = []  # line numbers of unparsable records
    if columns is None:  # some row is unparsable: row by row, to tell a cut tail from corruption
        columns = {name: [] for name in types}
        for line_no, rec in records[1:]:
            if not rec:
                continue  # blank line
            try:
                if len(rec) != len(header):
                    raise ValueError("wrong field count")
                parsed = {name: _PARSERS.get(t, str)(rec[index[name]]) if name in index else defaults[name]
                          for name, t in types.items()}
            except (ValueError, KeyError):
                bad.append(line_no)
                continue
            if bad:
                raise ReportError(f"{path}: line {bad[0]}: unparsable row followed by valid rows (file corrupted)")
            for name, value in parsed.items():
                columns[name].append(value)

    skipped = len(bad) + (1 if truncated_tail else 0)
    if skipped:
        log.warning("%s: skipped %d unparsable trailing line(s) (run interrupted?)", path, skipped)
    df = pd.DataFrame({name: pd.Series(vals, dtype=_DTYPES.get(types[name], object)) for name, vals in columns.items()})
    df.attrs["skipped_lines"] = skipped
    df.attrs["source"] = str(path)
    return df


# --------------------------------------------------------------------------- rates


def _guard_key(guard: str) -> tuple[int, str]:
    return (GUARD_NAMES.index(guard) if guard in GUARD_NAMES else len(GUARD_NAMES), guard)


def ordered_guards(guards: Any) -> list[str]:
    """Distinct guard names, known guards first in docs/model.md order (stable output order)."""
    return sorted({str(g) for g in guards}, key=_guard_key)


def choose_bin_ms(df: pd.DataFrame) -> float | None:
    """Offset bin width for `rate_table`, or None when planned offsets form a grid
    (at most 60 distinct offsets per guard, or at least 3 trials per offset).

    Width comes from the 1-2-5 series so bin edges are round numbers and one bin
    edge sits at 0 (where the race model jumps).
    """
    if df.empty:
        return None
    distinct = df.groupby("guard")["offset_ms"].nunique()
    per_offset = len(df) / distinct.sum()
    if distinct.max() <= _MAX_EXACT_OFFSETS or per_offset >= _MIN_TRIALS_PER_OFFSET:
        return None  # a grid: keep exact offsets
    span = float(df["offset_ms"].max() - df["offset_ms"].min())
    raw = max(span / _TARGET_BINS, 1e-9)
    exp = math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        width = mult * 10.0**exp
        if width >= raw:
            return width
    return 10.0 ** (exp + 1)


def kinds(df: pd.DataFrame) -> pd.Series:
    """Each trial's outcome kind (race / no_race / not_judged / failed), aligned with `df`.

    A trials.csv without the `late` column (written before it existed) counts no trial as late."""
    late = df["late"].astype(bool) if "late" in df else pd.Series(False, index=df.index)
    return pd.Series([outcome_kind(str(o), bool(x)) for o, x in zip(df["outcome"], late)], index=df.index,
                     dtype=object)


def bin_offsets(offsets: pd.Series, bin_ms: float | None) -> pd.Series:
    """Planned offsets as rate bins: unchanged for a grid, else the centre of [k*bin_ms, (k+1)*bin_ms)."""
    offsets = offsets.astype("float64")
    return offsets if bin_ms is None else np.floor(offsets / bin_ms) * bin_ms + bin_ms / 2


def actual_offsets(df: pd.DataFrame) -> pd.Series:
    """Each trial's offset as the mock lived it: invoice acted − Change acted (its audit), else
    the planned offset (no audit, or a request that never reached the mock).

    The race model jumps at offsets on the plan's grid (0, -settle): a trial planned exactly
    there races or not by the sign of its few-microsecond timing error (measured: 7 of 8
    unguarded trials at -150 ms raced, each acted a few µs late, the eighth a few µs early
    did not), and a guard's own requests move its invoice (finished-check's check: ~2 ms).
    """
    planned = df["offset_ms"].astype("float64")
    if "invoice_acted_ms" not in df or "change_acted_ms" not in df:
        return planned
    acted = pd.to_numeric(df["invoice_acted_ms"], errors="coerce") - pd.to_numeric(df["change_acted_ms"],
                                                                                  errors="coerce")
    return acted.fillna(planned)


def rate_table(df: pd.DataFrame, bin_ms: float | None = None, model: RaceModel | None = None,
               per_trial: Mapping[str, Sequence[float]] | None = None) -> pd.DataFrame:
    """Race rate per guard x planned offset, with 95% Wilson intervals.

    Columns: guard, offset_ms, trials, races, rate, ci_low, ci_high,
    not_judged, failed (+ model when `model` is given).

    `trials` counts judged trials only. Not-judged trials (a timeout or 5xx: the
    request may or may not have been applied; a late trial: it ran at another
    offset) and failed ones (no invoice, guard timeout: nothing to judge) are
    counted in their own columns and left out of trials/races/rate: counting them
    as either outcome would bias the rate. `rate` is NaN for a bin with no judged trial.

    With `bin_ms`, offsets are grouped into [k*bin_ms, (k+1)*bin_ms) and
    `offset_ms` is the bin centre. `model` is averaged over the bin's
    determinate trials, each at its own actual offset (`actual_offsets`), which
    is the expected rate of that bin. `per_trial` adds columns the same way from
    values given per trial (row order of `df`); a bin with a NaN among its
    determinate trials' values gets NaN (not evaluated).
    """
    extra: dict[str, Sequence[float]] = dict(per_trial or {})
    if model is not None:
        extra["model"] = [model(float(o), str(g)) for o, g in zip(actual_offsets(df), df["guard"])]
    cols = RATE_COLUMNS + list(extra)
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=str if c == "guard" else "float64") for c in cols})
    kind = kinds(df)
    work = pd.DataFrame(
        {
            "guard": df["guard"].astype(str).to_numpy(),
            "offset_ms": bin_offsets(df["offset_ms"], bin_ms).to_numpy(),
            "det": kind.isin(["race", "no_race"]).to_numpy(),
            "race": (kind == "race").to_numpy(),
            "failed": (kind == "failed").to_numpy(),
        }
    )
    for name, values in extra.items():
        work[name] = np.asarray(values, dtype="float64")
    # Per bin on plain arrays (a DataFrame per bin costs ~0.2 ms each, most of a report's analysis).
    det_all, race_all, failed_all = (work[c].to_numpy() for c in ("det", "race", "failed"))
    extra_all = {name: work[name].to_numpy() for name in extra}
    rows: list[dict[str, Any]] = []
    for (guard, offset), idx in work.groupby(["guard", "offset_ms"], sort=False).indices.items():
        det = idx[det_all[idx]]
        n = len(det)
        k = int(race_all[det].sum())
        failed = int(failed_all[idx].sum())
        low, high = wilson_interval(k, n)
        row: dict[str, Any] = {
            "guard": guard,
            "offset_ms": float(offset),
            "trials": n,
            "races": k,
            "rate": k / n if n else math.nan,
            "ci_low": low,
            "ci_high": high,
            "not_judged": len(idx) - n - failed,
            "failed": failed,
        }
        for name, values in extra_all.items():
            v = values[det]
            row[name] = float(v.mean()) if n and not np.isnan(v).any() else math.nan
        rows.append(row)
    rows.sort(key=lambda r: (_guard_key(r["guard"]), r["offset_ms"]))
    out = pd.DataFrame(rows, columns=cols)
    return out.astype({"trials": "int64", "races": "int64", "not_judged": "int64", "failed": "int64"})


def _window_mask(df: pd.DataFrame, guard: str, min_abs_offset_ms: float, offset_range_ms: tuple[float, float] | None) -> pd.Series:
    off = df["offset_ms"]
    mask = (df["guard"] == guard) & (off.abs() >= min_abs_offset_ms)
    if offset_range_ms is not None:
        lo, hi = offset_range_ms
        mask &= (off >= lo) & (off <= hi)
    return mask


def window_rate(
    df: pd.DataFrame,
    guard: str,
    min_abs_offset_ms: float = 0.0,
    offset_range_ms: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Pooled race rate of one guard over an offset window (bounds inclusive).

    Returns trials, races, rate (NaN when no judged trial), ci_low, ci_high,
    not_judged and failed (excluded from trials, as in `rate_table`).
    """
    if df.empty:
        sub = df
    else:
        sub = df[_window_mask(df, guard, min_abs_offset_ms, offset_range_ms)]
    kind = kinds(sub)
    k = int((kind == "race").sum())
    n = k + int((kind == "no_race").sum())
    low, high = wilson_interval(k, n)
    return {
        "trials": n,
        "races": k,
        "rate": k / n if n else math.nan,
        "ci_low": low,
        "ci_high": high,
        "not_judged": int((kind == "not_judged").sum()),
        "failed": int((kind == "failed").sum()),
    }


# --------------------------------------------------------------------------- timing and cost


def quantiles(values: pd.Series) -> dict[str, Any]:
    v = values.dropna().to_numpy(dtype="float64")
    if v.size == 0:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "n": 0}
    return {
        "p50": float(np.quantile(v, 0.5)),
        "p99": float(np.quantile(v, 0.99)),
        "max": float(v.max()),
        "n": int(v.size),
    }


def offset_error_stats(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """p50/p99/max/n of |offset error|, client side (send times) and server side
    (the mock's act times). Only unguarded trials carry these (NaN elsewhere)."""
    if df.empty:
        empty = pd.Series(dtype="float64")
        return {"client": quantiles(empty), "server": quantiles(empty)}
    return {
        "client": quantiles(df["client_offset_error_ms"].abs()),
        "server": quantiles(df["server_offset_error_ms"].abs()),
    }


def guard_cost(df: pd.DataFrame) -> pd.DataFrame:
    """Per guard: n, p50, p99, mean of guard_cost_ms (how long the guard held the invoice)."""
    rows = []
    for guard in ordered_guards(df["guard"]) if not df.empty else []:
        v = df.loc[df["guard"] == guard, "guard_cost_ms"].dropna().to_numpy(dtype="float64")
        rows.append(
            {
                "guard": guard,
                "n": int(v.size),
                "p50": float(np.quantile(v, 0.5)) if v.size else math.nan,
                "p99": float(np.quantile(v, 0.99)) if v.size else math.nan,
                "mean": float(v.mean()) if v.size else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=["guard", "n", "p50", "p99", "mean"])


# --------------------------------------------------------------------------- JSON


def json_safe(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


