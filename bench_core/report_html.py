"""The leaderboard as one self-contained static HTML page.

Everything is inline: CSS, a few lines of plain JavaScript that sort a table when a
header is clicked, and every image as a base64 PNG (plots drawn with matplotlib's
object API on the Agg canvas, classification maps taken from the runs' artifacts). The
page makes no network request, so it can be mailed, committed or served from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench_core.leaderboard import (
    PER_CLASS_PREFIX,
    ArtifactSource,
    Board,
    BoardSet,
    format_p,
    method_label,
    pareto_front,
    per_class_rows,
    reported_rows,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;max-width:1400px;
color:#1d2530;padding:0 1rem;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.5rem;border-bottom:2px solid #2f6db5;padding-bottom:.2rem}
h3{margin-top:1.6rem;font-size:1.05rem}.meta,.legend,.note{color:#4a5562;font-size:.9rem}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;font-size:.86rem;margin:.5rem 0;white-space:nowrap}
th,td{border:1px solid #d5dbe3;padding:.25rem .5rem;text-align:right}
td.text,th.text{text-align:left}
thead th{background:#eef2f7}
table.sortable thead tr:last-child th{cursor:pointer;user-select:none}
table.sortable thead tr:last-child th::after{content:" \\2195";color:#9aa5b1;font-size:.75em}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2";color:#2f6db5}
table.sortable th[aria-sort=descending]::after{content:" \\25BC";color:#2f6db5}
th.group{text-align:center;background:#dde5ef}
th.group.reported,td.reported{background:#fbf6e9}
th.group.reported{background:#f3e6c3}
tr.best td{font-weight:600}
.sig-ns{color:#8a5a00}.sig-s{color:#2d6a2d}
code{background:#f1f3f6;padding:.05rem .25rem;border-radius:3px;font-size:.85em}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0}
figure img{max-width:100%;border:1px solid #e1e5ea;background:#fff}
figcaption{font-size:.82rem;color:#4a5562;max-width:640px}
.maps{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1rem}
"""

# Sort on data-v (raw value) when present; numbers numerically, text case-insensitively,
# missing values always last. Plain JS, no library.
_JS = """
(function(){
  function key(cell){
    var v = cell.hasAttribute('data-v') ? cell.getAttribute('data-v') : cell.textContent;
    v = v.trim();
    if (v === '') return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function compare(a, b, asc){
    if (a === null && b === null) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    var r;
    if (typeof a === typeof b) r = a < b ? -1 : a > b ? 1 : 0;
    else r = typeof a === 'number' ? -1 : 1;
    return asc ? r : -r;
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    var head = table.tHead.rows[table.tHead.rows.length - 1];
    Array.prototype.forEach.call(head.cells, function(th, col){
      th.setAttribute('title', 'click to sort');
      th.addEventListener('click', function(){
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(head.cells, function(h){ h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function(ra, rb){
          return compare(key(ra.cells[col]), key(rb.cells[col]), asc) ||
                 (Number(ra.getAttribute('data-order')) - Number(rb.getAttribute('data-order')));
        });
        rows.forEach(function(r){ body.appendChild(r); });
      });
    });
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _raw(value: Any) -> str:
    """Sort key for ``data-v``: finite numbers as repr, missing as empty, text as is."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(float(value)) else repr(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(float(value))):
        return "-"
    return f"{float(value):.{digits}f}"


def _pm(mean: Any, std: Any) -> str:
    if mean is None or not math.isfinite(float(mean)):
        return "-"
    if std is None or not math.isfinite(float(std)):
        return f"{float(mean):.2f}"
    return f"{float(mean):.2f} ± {float(std):.2f}"


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an inline ``<img>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_accuracy_vs_cost(
    labels: Sequence[str],
    cost: Sequence[float],
    oa_mean: Sequence[float],
    oa_std: Sequence[float],
    xlabel: str,
    title: str,
    pareto: bool = True,
) -> bytes:
    """Scatter of test OA against a cost (error bars = std over seeds), Pareto front marked."""
    c = np.asarray(cost, dtype=float)
    a = np.asarray(oa_mean, dtype=float)
    s = np.nan_to_num(np.asarray(oa_std, dtype=float), nan=0.0)
    ok = np.isfinite(c) & np.isfinite(a) & (c > 0)
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    if ok.any():
        ax.errorbar(c[ok], a[ok], yerr=s[ok], fmt="o", color="#2f6db5", ecolor="#9bb7dc", capsize=3,
                    label="method (mean ± std over seeds)")
        for i in np.flatnonzero(ok):
            ax.annotate(labels[i], (c[i], a[i]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if pareto:
            front = pareto_front(np.where(ok, c, np.nan), np.where(ok, a, np.nan))
            order = np.flatnonzero(front)[np.argsort(c[front])]
            ax.step(c[order], a[order], where="post", color="#d9822b", lw=1.5, zorder=1)
            ax.scatter(c[order], a[order], s=140, facecolors="none", edgecolors="#d9822b", lw=2,
                       label="Pareto front (nothing cheaper is more accurate)", zorder=3)
        if c[ok].max() / c[ok].min() > 20:
            ax.set_xscale("log")
        ax.margins(x=0.2, y=0.12)  # room for the method labels beside the points
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no finite values to plot", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test OA (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def plot_per_class(board: Board) -> bytes:
    """Grouped bars: per-class test accuracy (mean over seeds, std as error bars) for each method."""
    rows = board.rows
    k = len(board.class_keys)
    m = max(len(rows), 1)
    fig = _figure(min(16.0, max(6.4, 0.5 * k * (1 + 0.3 * m) + 2)), 4.6)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / m
    x = np.arange(k)
    for j, (_, r) in enumerate(rows.iterrows()):
        means = [float(r.get(f"{PER_CLASS_PREFIX}{key}_mean", math.nan)) for key in board.class_keys]
        stds = np.nan_to_num([float(r.get(f"{PER_CLASS_PREFIX}{key}_std", math.nan)) for key in board.class_keys])
        ax.bar(x - 0.4 + width * (j + 0.5), np.nan_to_num(means), width, yerr=stds, capsize=2,
               label=method_label(r), error_kw={"elinewidth": 0.8})
    ax.set_xticks(x, labels=board.class_names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"Per-class accuracy, {board.key.title}", fontsize=10)
    ax.legend(fontsize=8, ncol=min(m, 4), loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _img(png: bytes, alt: str, caption: str, cls: str) -> str:
    return (f'<figure class="{cls}"><img src="{png_data_uri(png)}" alt="{_e(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _table(
    headers: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[tuple[str, str, str]]],
    table_id: str,
    groups: Sequence[tuple[str, int, str]] = (),
    row_classes: Sequence[str] = (),
) -> str:
    """A sortable table. ``headers``: (label, css class); cells: (display, raw sort value, css class)."""
    out = [f'<div class="table-wrap"><table class="sortable" id="{_e(table_id)}"><thead>']
    if groups:
        out.append("<tr>" + "".join(
            f'<th class="group {_e(cls)}" colspan="{span}">{_e(label)}</th>' for label, span, cls in groups
        ) + "</tr>")
    out.append("<tr>" + "".join(f'<th class="{_e(cls)}" scope="col">{_e(h)}</th>' for h, cls in headers) + "</tr>")
    out.append("</thead><tbody>")
    for i, cells in enumerate(rows):
        cls = row_classes[i] if i < len(row_classes) else ""
        out.append(f'<tr data-order="{i}" class="{_e(cls)}">' + "".join(
            f'<td data-v="{_e(raw)}" class="{_e(c)}">{_e(text)}</td>' for text, raw, c in cells
        ) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _main_table(board: Board) -> str:
    headers = [
        ("rank", ""), ("method", "text"), ("n", ""),
        ("OA (%)", ""), ("AA (%)", ""), ("kappa (%)", ""), ("vs best", "text"), ("p (Holm)", ""), ("test", "text"),
        ("p Wilcoxon (Holm)", ""),
        ("params", ""), ("FLOPs/sample", ""), ("train (s)", ""), ("infer (s)", ""), ("px/s", ""),
        ("peak mem (MB)", ""), ("device", "text"),
        ("paper OA", "reported"), ("paper AA", "reported"), ("paper kappa", "reported"),
        ("source", "text reported"), ("protocol", "text reported"),
    ]
    groups = [("", 3, ""), ("reproduced here: test pixels, mean ± std over seeds", 7, ""),
              ("cost (mean over the same runs)", 7, ""),
              ("reported by the papers (not ranked; see protocol)", 5, "reported")]
    rows, classes = [], []
    for _, r in board.rows.iterrows():
        vs = str(r.get("vs_best", "") or "")
        sig_cls = "text sig-ns" if vs == "≈" else "text sig-s" if vs == "<" else "text"
        mem = r.get("mem_peak_bytes", math.nan)
        rows.append([
            (str(r["rank"]), _raw(r["rank"]), ""),
            (method_label(r), method_label(r), "text"),
            (str(r["n"]), _raw(r["n"]), ""),
            (_pm(r["test_oa_mean"], r["test_oa_std"]), _raw(r["test_oa_mean"]), ""),
            (_pm(r["test_aa_mean"], r["test_aa_std"]), _raw(r["test_aa_mean"]), ""),
            (_pm(r["test_kappa_mean"], r["test_kappa_std"]), _raw(r["test_kappa_mean"]), ""),
            (vs or "-", vs, sig_cls),
            (format_p(r.get("p_holm")), _raw(r.get("p_holm")), ""),
            (str(r.get("test", "") or "-"), str(r.get("test", "") or ""), "text"),
            (format_p(r.get("p_wilcoxon_holm")), _raw(r.get("p_wilcoxon_holm")), ""),
            (_count(r.get("params_total")), _raw(r.get("params_total")), ""),
            (_sci(r.get("flops_per_sample")), _raw(r.get("flops_per_sample")), ""),
            (_fmt(r.get("time_train_s"), 1), _raw(r.get("time_train_s")), ""),
            (_fmt(r.get("time_infer_s"), 2), _raw(r.get("time_infer_s")), ""),
            (_count(r.get("throughput_infer")), _raw(r.get("throughput_infer")), ""),
            (_fmt(mem / 2**20 if mem == mem else mem, 0), _raw(mem), ""),
            (str(r.get("device", "")), str(r.get("device", "")), "text"),
            (_fmt(r.get("reported_oa")), _raw(r.get("reported_oa")), "reported"),
            (_fmt(r.get("reported_aa")), _raw(r.get("reported_aa")), "reported"),
            (_fmt(r.get("reported_kappa")), _raw(r.get("reported_kappa")), "reported"),
            (str(r.get("reported_source", "") or "-"), str(r.get("reported_source", "")), "text reported"),
            (str(r.get("reported_protocol", "") or "-"), str(r.get("reported_protocol", "")), "text reported"),
        ])
        classes.append("best" if r["rank"] == 1 else "")
    return _table(headers, rows, f"board-{board.key.slug}", groups, classes)


def _count(v: Any) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{int(round(float(v))):,}"


def _sci(v: Any) -> str:
    return "-" if v is None or not math.isfinite(float(v)) else f"{float(v):.3g}"


def _simple_table(rows: Sequence[Mapping[str, str]], table_id: str, text_cols: Sequence[str] = ()) -> str:
    if not rows:
        return '<p class="note">(none)</p>'
    cols = list(rows[0])
    headers = [(c, "text" if c in text_cols else "") for c in cols]
    cells = [[(r[c], r[c].split(" ± ")[0] if c not in text_cols else r[c], "text" if c in text_cols else "")
              for c in cols] for r in rows]
    return _table(headers, cells, table_id)


def _board_section(board: Board, artifacts: ArtifactSource | None) -> str:
    k = board.key
    rows = board.rows
    parts = [f'<section class="board" id="{_e(k.slug)}"><h2>{_e(k.title)}</h2>']
    seeds = sorted({s for ss in rows.get("seeds", []) for s in ss}) if not rows.empty else []
    parts.append(
        f'<p class="meta">Ranked by test OA (mean ± std over seeds; seeds {_e(seeds or "-")}). Click a column '
        f"header to sort. Runs in the MLflow UI: filter <code>{_e(k.mlflow_filter)}</code></p>"
    )
    if rows.empty:
        parts.append('<p class="note">No FINISHED run matches this board.</p></section>')
        return "".join(parts)
    parts.append(_main_table(board))
    if board.significance:
        parts.append(f'<p class="legend">{_e(board.significance)}</p>')
    parts.extend(f'<p class="note">Note: {_e(n)}</p>' for n in board.notes)

    parts.append("<h3>Plots</h3><div class=\"plots\">")
    labels = [method_label(r) for _, r in rows.iterrows()]
    parts.append(_img(
        plot_accuracy_vs_cost(labels, rows["time_train_s"], rows["test_oa_mean"], rows["test_oa_std"],
                              "training time (s, mean over seeds)", f"Accuracy vs training time, {k.title}"),
        "accuracy vs training time", "Test OA against training time. Circled points form the Pareto front: "
        "no other method is both faster to train and more accurate.", "plot accuracy-vs-time",
    ))
    parts.append(_img(
        plot_accuracy_vs_cost(labels, rows["params_total"], rows["test_oa_mean"], rows["test_oa_std"],
                              "parameters", f"Accuracy vs parameters, {k.title}"),
        "accuracy vs parameters", "Test OA against the number of parameters (Pareto front circled).",
        "plot accuracy-vs-params",
    ))
    if board.class_keys:
        parts.append(_img(plot_per_class(board), "per-class accuracy",
                          "Per-class test accuracy per method (mean over seeds, std as error bars).",
                          "plot per-class"))
    parts.append("</div>")

    if board.class_names:
        parts.append("<h3>Per-class accuracy (%), mean ± std over seeds</h3>")
        parts.append(_simple_table(per_class_rows(board), f"perclass-{k.slug}", ("method",)))

    parts.append("<h3>Reported by the papers (not ranked)</h3>")
    if board.reported:
        parts.append('<p class="legend">What the papers report for these methods on this dataset, with the protocol '
                     "they used. Protocols differ (split, pixels counted, model selection), so these numbers are "
                     "shown beside ours, never ranked with them.</p>")
        parts.append(_simple_table(reported_rows(board), f"reported-{k.slug}",
                                   ("method", "source", "modalities", "split", "protocol", "differs from this board")))
    else:
        parts.append('<p class="note">No paper reports numbers for these methods on this dataset.</p>')

    parts.append("<h3>Classification maps (best seed of each method, beside the ground truth)</h3><div class=\"maps\">")
    for _, r in rows.iterrows():
        path = artifacts.fetch(str(r["best_run_id"]), "classification_map.png") if artifacts is not None else None
        caption = (f"{_e(method_label(r))}: run <code>{_e(r['best_run_name'])}</code> "
                   f"(seed {_e(r['best_seed'])}, the best of {_e(r['n'])} by test OA)")
        if path is None:
            parts.append(f'<p class="note">{caption}: no classification_map.png artifact.</p>')
        else:
            parts.append(_img(path.read_bytes(), f"classification map of {method_label(r)}", caption, "map"))
    parts.append("</div></section>")
    return "".join(parts)


def render_html(board_set: BoardSet, artifacts: ArtifactSource | None = None) -> str:
    """One self-contained page for every board of ``board_set`` (no external resources)."""
    title = board_set.title
    meta = []
    if board_set.store:
        meta.append(f"store <code>{_e(board_set.store)}</code>, experiment <code>{_e(board_set.experiment)}</code>")
    if board_set.generated:
        meta.append(f"generated {_e(board_set.generated)}")
    body = [f"<h1>{_e(title)}</h1>"]
    if meta:
        body.append(f'<p class="meta">{"; ".join(meta)}</p>')
    if board_set.description:
        body.append(f"<p>{_e(board_set.description)}</p>")
    body.append(
        '<p class="legend">Protocol: every labelled test pixel is scored exactly once; the test split is read '
        "only by the final evaluation; validation pixels come from the training pixels. A board ranks one "
        "dataset, one split protocol and one profile; numbers from different boards are not ranked together.</p>"
    )
    if board_set.boards:
        body.append("<nav><ul>" + "".join(
            f'<li><a href="#{_e(b.key.slug)}">{_e(b.key.title)}</a> ({len(b.rows)} methods)</li>'
            for b in board_set.boards) + "</ul></nav>")
    else:
        body.append('<p class="note">No FINISHED runs match; run <code>bench run</code> first.</p>')
    body.extend(_board_section(b, artifacts) for b in board_set.boards)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        # The page may load nothing from anywhere: inline style/script, data: images only.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + f"<script>{_JS}</script></body></html>\n"
    )
