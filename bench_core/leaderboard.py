"""Leaderboards read from the tracking store (never from logs).

First version: one row per (method, profile, dataset, split) with mean, std and n over
seeds of test OA/AA/kappa (percent), and the cost columns beside them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from bench_core.tracking import MLflowTracker

GROUP = ["dataset", "split", "method", "profile"]
ACCURACY = ["test_oa", "test_aa", "test_kappa"]
COST = ["params_total", "flops_per_sample", "time_train_s", "time_infer_s", "throughput_infer"]


def finished_runs(tracker: MLflowTracker) -> pd.DataFrame:
    """One row per FINISHED run: the contract params, metrics and device."""
    import pandas as pd

    rows = []
    for r in tracker.runs("attributes.status = 'FINISHED'"):
        p, m, t = r.data.params, r.data.metrics, r.data.tags
        if "method" not in p:
            continue
        row = {k: p.get(k) for k in GROUP}
        row["seed"] = int(p.get("seed", 0))
        row["device"] = t.get("bench.device", "")
        row.update({k: m.get(k) for k in ACCURACY + COST})
        rows.append(row)
    return pd.DataFrame(rows, columns=GROUP + ["seed", "device"] + ACCURACY + COST)


def build_board(runs: pd.DataFrame) -> pd.DataFrame:
    """Aggregate over seeds: ``<metric>_mean``, ``<metric>_std``, ``n``; cost as means."""
    import pandas as pd

    if runs.empty:
        return pd.DataFrame(columns=GROUP + ["n"])
    grouped = runs.groupby(GROUP, sort=True, dropna=False)
    out = grouped.size().rename("n").to_frame()
    for col in ACCURACY:
        out[f"{col}_mean"] = grouped[col].mean()
        out[f"{col}_std"] = grouped[col].std(ddof=1)  # NaN for n = 1: no spread from one seed
    for col in COST:
        out[col] = grouped[col].mean()
    out["device"] = grouped["device"].agg(lambda s: ",".join(sorted(set(map(str, s)))))
    out = out.reset_index()
    return out.sort_values(["dataset", "split", "test_oa_mean"], ascending=[True, True, False]).reset_index(drop=True)


def format_board(board: pd.DataFrame, fmt: str) -> str:
    """Render as ``table`` (plain text), ``md``, ``csv`` or ``json``."""
    if fmt == "csv":
        return board.to_csv(index=False)
    if fmt == "json":
        return board.to_json(orient="records", indent=2)
    view = _display(board)
    if fmt == "md":
        return _markdown(view)
    return view.to_string(index=False)


def _display(board: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    view = pd.DataFrame()
    for col in GROUP + ["n"]:
        view[col] = board[col]
    for col in ACCURACY:
        view[col.replace("test_", "") + " (%)"] = [
            _pm(m, s) for m, s in zip(board[f"{col}_mean"], board[f"{col}_std"])
        ]
    view["params"] = [_int(v) for v in board["params_total"]]
    view["FLOPs/sample"] = [_sci(v) for v in board["flops_per_sample"]]
    view["train (s)"] = [_num(v, 1) for v in board["time_train_s"]]
    view["infer (s)"] = [_num(v, 2) for v in board["time_infer_s"]]
    view["device"] = board["device"]
    return view


def _pm(mean: float, std: float) -> str:
    if mean != mean:  # NaN
        return "-"
    return f"{mean:.2f}" if std != std else f"{mean:.2f} ± {std:.2f}"


def _int(v: float) -> str:
    return "-" if v != v or v is None else f"{int(round(v)):,}"


def _sci(v: float) -> str:
    return "-" if v != v or v is None else f"{v:.3g}"


def _num(v: float, digits: int) -> str:
    return "-" if v != v or v is None else f"{v:.{digits}f}"


def _markdown(view: pd.DataFrame) -> str:
    cols = list(view.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in view.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"
