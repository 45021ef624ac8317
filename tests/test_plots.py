"""Charts (matplotlib): what they plot, round ticks, log scale, written only where asked."""
from __future__ import annotations

import math

import cv2
import numpy as np

from darknet_py.cli import main
from darknet_py.evaluate import mean_average_precision
from darknet_py.model import Darknet
from darknet_py.plots import lr_chart, pr_chart, training_chart
from darknet_py.train.log import TrainLog
from darknet_py.train.schedule import rate_curve

from conftest import CFG

SHAPES_CFG = str(CFG / "yolov3-tiny-shapes.cfg")


def round_step(ticks) -> bool:
    """Evenly spaced ticks whose step is 1, 2, 2.5 or 5 times a power of ten, each a multiple of it."""
    ticks = np.asarray(ticks, np.float64)
    steps = np.diff(ticks)
    if len(ticks) < 3 or not np.allclose(steps, steps[0]):
        return False
    step = steps[0]
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-12)
    return (any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))
            and np.allclose(ticks / step, np.round(ticks / step)))


def visible_ticks(axis):
    lo, hi = sorted(axis.get_view_interval())
    return [t for t in axis.get_majorticklocs() if lo - 1e-9 <= t <= hi + 1e-9]


def test_plot_lr_draws_the_schedule_with_round_ticks(tmp_path):
    overrides = ["max_batches=300", "burn_in=50", "policy=steps", "steps=150,250", "scales=.1,.1"]
    out = tmp_path / "charts" / "lr.png"
    out.parent.mkdir()
    assert main(["plot-lr", SHAPES_CFG, "--out", str(out), *(a for o in overrides for a in ("--set", o))]) == 0
    assert cv2.imread(str(out)).shape == (480, 800, 3)
    rates = rate_curve(Darknet(SHAPES_CFG, overrides=overrides, init=False).net)
    assert len(rates) == 300 and np.allclose(rates[[99, 199, 259]], [0.004, 0.0004, 0.00004])
    fig = lr_chart(rates)
    ax = fig.axes[0]
    x, y = ax.lines[0].get_data()
    np.testing.assert_array_equal(x, np.arange(1, 301))
    np.testing.assert_array_equal(y, rates.astype(np.float64))
    assert round_step(visible_ticks(ax.xaxis)), visible_ticks(ax.xaxis)
    assert round_step(visible_ticks(ax.yaxis)), visible_ticks(ax.yaxis)
    assert ax.get_yscale() == "linear"


def test_plot_lr_log_scale_and_errors(tmp_path, capsys):
    out = tmp_path / "lr.png"
    sets = ["--set", "policy=steps", "--set", "steps=100,150", "--set", "scales=.1,.1", "--set", "max_batches=200",
            "--set", "burn_in=0"]
    assert main(["plot-lr", SHAPES_CFG, "--out", str(out), "--log", *sets]) == 0
    assert out.stat().st_size > 1000
    rates = rate_curve(Darknet(SHAPES_CFG, overrides=[s for s in sets if s != "--set"], init=False).net)
    ax = lr_chart(rates, log=True).axes[0]
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    assert lo <= rates.min() and hi >= rates.max()  # three decades visible
    assert main(["plot-lr", SHAPES_CFG, "--out", str(out), "--set", "max_batches=0"]) == 1
    assert "max_batches must be set" in capsys.readouterr().err


def test_training_chart_plots_avg_loss_and_map_percent(tmp_path):
    log = TrainLog(tmp_path, "net")
    for i in range(1, 121):
        log.append({"iteration": i, "seen": 8 * i, "loss": f"{10 / i:.6f}", "avg_loss": f"{12 / i:.6f}",
                    "map": f"{i / 200:.6f}" if i % 40 == 0 else ""})
    log.chart(1000)
    assert cv2.imread(str(tmp_path / "net_chart.png")).shape == (600, 800, 3)
    rows = TrainLog(tmp_path, "net").rows
    fig = training_chart([int(r["iteration"]) for r in rows], [float(r["avg_loss"]) for r in rows],
                         [(int(r["iteration"]), float(r["map"])) for r in rows if r["map"]], 1000)
    loss_axes, map_axes = fig.axes
    x, y = loss_axes.lines[0].get_data()
    assert list(x) == list(range(1, 121)) and np.allclose(y, [12 / i for i in range(1, 121)], atol=1e-6)
    mx, my = map_axes.lines[0].get_data()
    assert list(mx) == [40, 80, 120] and np.allclose(my, [20, 40, 60])
    assert map_axes.get_ylim() == (0, 100) and loss_axes.get_xlim() == (0, 1000)
    assert round_step(visible_ticks(loss_axes.xaxis)) and round_step(visible_ticks(loss_axes.yaxis))
    assert round_step(visible_ticks(map_axes.yaxis))


def test_pr_chart_draws_each_class_with_its_ap():
    truths = [np.array([[0, .3, .3, .2, .2], [1, .7, .7, .2, .2]], np.float32)]
    dets = [np.array([[0, .9, .3, .3, .2, .2], [1, .8, .1, .1, .1, .1], [1, .6, .7, .7, .2, .2]], np.float32)]
    result = mean_average_precision(dets, truths, ["a", "b"])
    ax = pr_chart(result).axes[0]
    assert [line.get_label() for line in ax.lines] == [f"a {result.classes[0].ap * 100:.1f}",
                                                       f"b {result.classes[1].ap * 100:.1f}"]
    for line, c in zip(ax.lines, result.classes):
        np.testing.assert_array_equal(line.get_xdata(), c.recall)
        np.testing.assert_array_equal(line.get_ydata(), c.precision)
