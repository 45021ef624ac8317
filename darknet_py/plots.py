"""Charts drawn with matplotlib (its object API and the Agg canvas: no pyplot state, no display):
the training chart (average loss and mAP, as AlexeyAB's chart.png), the precision-recall chart
and the learning-rate schedule. Ticks come from matplotlib's locators, so they fall on round
numbers; each function returns the Figure, and ``save_png`` writes one atomically."""
from __future__ import annotations

import io

import numpy as np

LOSS_COLOUR = "#1f5fbf"  # blue
MAP_COLOUR = "#c0302b"   # red
RATE_COLOUR = "#1f5fbf"
SIZE = (8.0, 6.0)        # inches at 100 dpi: 800 x 600 pixels


def _figure(size=SIZE):
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator
    axis.set_major_locator(MaxNLocator(nbins="auto", integer=True, steps=[1, 2, 2.5, 5, 10]))


def training_chart(iterations, avg_loss, maps, max_batches: int, title: str = ""):
    """Average loss per iteration (blue, left axis) and mAP@0.5 in % at the iterations it was
    measured (red, right axis, 0..100), over iterations 0..max_batches."""
    fig, ax = _figure()
    iterations, avg_loss = np.asarray(iterations, np.float64), np.asarray(avg_loss, np.float64)
    finite = np.isfinite(avg_loss)
    ax.plot(iterations[finite], avg_loss[finite], color=LOSS_COLOUR, linewidth=1.2, label="avg loss")
    ax.set_xlim(0, max(max_batches, int(iterations.max()) if len(iterations) else 1, 1))
    top = float(avg_loss[finite].max()) if finite.any() else 1.0
    ax.set_ylim(0, top * 1.05 if top > 0 else 1.0)
    _integer_ticks(ax.xaxis)
    ax.set_xlabel("iteration")
    ax.set_ylabel("avg loss", color=LOSS_COLOUR)
    ax.tick_params(axis="y", colors=LOSS_COLOUR)
    ax.grid(True, color="#dddddd", linewidth=0.8)
    right = ax.twinx()
    right.set_ylim(0, 100)
    right.set_ylabel("mAP@0.5 %", color=MAP_COLOUR)
    right.tick_params(axis="y", colors=MAP_COLOUR)
    if len(maps):
        xs, ys = zip(*maps)
        percent = np.asarray(ys, np.float64) * 100
        right.plot(xs, percent, color=MAP_COLOUR, marker="o", markersize=4, linewidth=1.2, label="mAP@0.5")
        for x, y in zip(xs, percent):
            right.annotate(f"{y:.1f}%", (x, y), textcoords="offset points", xytext=(0, 6), ha="center",
                           fontsize=8, color=MAP_COLOUR)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def pr_chart(result, size=(8.0, 6.0)):
    """Precision over recall of every class (``evaluate.MapResult``), its AP in the legend."""
    from matplotlib import colormaps
    fig, ax = _figure(size)
    colours = colormaps["tab10" if len(result.classes) <= 10 else "tab20"]
    for k, c in enumerate(result.classes):
        ax.plot(c.recall, c.precision, color=colours(k % colours.N), linewidth=1.2,
                label=f"{c.name[:20]} {c.ap * 100:.1f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(True, color="#dddddd", linewidth=0.8)
    if 0 < len(result.classes) <= 30:
        ax.legend(loc="lower left", fontsize=8, title="AP %", title_fontsize=8)
    ax.set_title(f"mAP@{result.iou_thresh:.2f} = {result.map * 100:.2f} %", fontsize=10)
    return fig


def lr_chart(rates, title: str = "", log: bool = False):
    """The rate of updates 1..len(rates); ``log``: a logarithmic rate axis (rates of 0, which a
    log axis cannot show, are left out)."""
    fig, ax = _figure((8.0, 4.8))
    rates = np.asarray(rates, np.float64)
    x = np.arange(1, len(rates) + 1)
    if log:
        keep = rates > 0
        x, rates = x[keep], rates[keep]
        ax.set_yscale("log")
    ax.plot(x, rates, color=RATE_COLOUR, linewidth=1.2)
    ax.set_xlim(0, max(len(x) and int(x[-1]), 1))
    _integer_ticks(ax.xaxis)
    if not log:
        ax.set_ylim(0, float(rates.max()) * 1.05 if len(rates) and rates.max() > 0 else 1.0)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    ax.set_xlabel("iteration")
    ax.set_ylabel("learning rate")
    ax.grid(True, which="major", color="#dddddd", linewidth=0.8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def png_bytes(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def save_png(fig, path) -> None:
    """The figure as a PNG at ``path``, written atomically (a chart being redrawn is never half a file)."""
    from .atomic import atomic_write
    data = png_bytes(fig)
    atomic_write(path, lambda f: f.write(data))

