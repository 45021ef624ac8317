"""The pieces of the training console: Darknet's average loss and line, the banner, the clean
interrupt's signal handling, the --amp plan, TensorBoard's writer."""
from __future__ import annotations

import io
import os
import signal

import numpy as np
import pytest
import torch

from darknet_py.train.amp import amp_plan
from darknet_py.train.console import AverageLoss, Banner, Console, TimeLeft, iteration_line, start_line
from darknet_py.train.interrupt import Interrupted, StopOnSignal


def test_average_loss_is_darknets_float_recurrence():
    avg = AverageLoss()
    losses = [5.0, 4.0, float("nan"), 3.5, 2.0]
    c = -1.0  # float avg_loss = -1 before the first update; C evaluates avg_loss*.9 + loss*.1 in double
    expected = []
    for loss in losses:
        if not np.isfinite(loss):
            expected.append(expected[-1])
            continue
        if c < 0:  # "if (avg_loss < 0 || avg_loss != avg_loss) avg_loss = loss;"
            c = loss
        c = float(np.float32(c * .9 + loss * .1))
        expected.append(c)
    assert [avg.update(v) for v in losses] == expected
    assert expected[0] == 5.0  # starts at the first loss
    resumed = AverageLoss(expected[-1])  # from the sidecar: continues, no restart at the next loss
    assert resumed.update(1.0) == float(np.float32(expected[-1] * .9 + 1.0 * .1))


def test_iteration_line_is_alexeyabs_printf():
    line = iteration_line(12, 3.2418723, 3.9015512, 0.001, 0.9123456, 768, -1.0)
    assert line == " 12: 3.241872, 3.901551 avg loss, 0.001000 rate, 0.912346 seconds, 768 images, -1.000000 hours left"


def test_time_left_is_alexeyabs_moving_average():
    t = TimeLeft()
    assert t.update(10, 110, 36.0) == pytest.approx(1.0)  # first estimate: 100 updates of 36 s
    assert t.update(11, 110, 72.0) == pytest.approx(0.01 * 1.98 + 0.99 * 1.0)
    assert TimeLeft().update(10, 110, 36.0, processes=2) == pytest.approx(0.5)


def test_banner_says_where_the_run_starts(tmp_path):
    assert start_line(0, None, False, None) == "starting from scratch"
    assert start_line(300, "b/x_last.weights", False, None) == "resuming at iteration 300 from b/x_last.weights"
    assert "layers 0..73" in start_line(0, "darknet53.conv.74", False, 74)
    assert "(-clear)" in start_line(0, "x.weights", True, None)
    out = io.StringIO()
    Console(stream=out).banner(Banner("tiny", "pjreddie", "auto: nothing only AlexeyAB reads", 0.001, 0.9, 0.0005,
                                      24, "shapes/train.txt", "", "valid: 4 images from shapes/valid.txt",
                                      "starting from scratch", str(tmp_path), ("tensorboard: x",)))
    lines = out.getvalue().splitlines()
    assert lines[0] == "tiny" and lines[2] == "Learning Rate: 0.001, Momentum: 0.9, Decay: 0.0005"
    assert "starting from scratch" in lines and f"backup folder: {tmp_path}" in lines and lines[-1] == "tensorboard: x"


def test_console_prints_lines_off_a_terminal_and_nothing_on_other_ranks():
    out = io.StringIO()  # not a terminal: lines, even with progress wanted
    console = Console(stream=out, progress=True)
    console.open_bar(10, 0)
    assert console.bar is None
    console.iteration(1, 2.0, 2.0, 0.001, 0.5, 8, -1.0)
    assert out.getvalue().startswith(" 1: 2.000000, 2.000000 avg loss")
    quiet = io.StringIO()
    Console(stream=quiet, speaks=False).iteration(1, 2.0, 2.0, 0.001, 0.5, 8, -1.0)
    assert quiet.getvalue() == ""


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_console_on_a_terminal_shows_the_bar_unless_verbose():
    console = Console(stream=Terminal(), progress=True)
    console.open_bar(10, 3)
    assert console.bar is not None and console.bar.n == 3
    console.iteration(4, 2.0, 2.0, 0.001, 0.5, 32, -1.0)
    assert console.bar.n == 4
    console.close()
    verbose = Terminal()
    console = Console(stream=verbose, progress=True, verbose=True)
    console.open_bar(10, 0)
    console.iteration(1, 2.0, 2.0, 0.001, 0.5, 8, -1.0)
    assert console.bar is None and " 1: 2.000000" in verbose.getvalue()


def test_a_signal_interrupts_and_a_deferred_block_holds_it():
    for signum in (signal.SIGINT, signal.SIGTERM):
        with StopOnSignal() as stop:
            with pytest.raises(Interrupted) as caught:
                os.kill(os.getpid(), signum)
                for _ in range(1000):  # the handler runs between bytecodes
                    pass
            assert caught.value.signum == signum and stop.count == 1
            reached = False
            with pytest.raises(Interrupted):
                with stop.deferred():
                    os.kill(os.getpid(), signum)
                    for _ in range(1000):
                        pass
                    reached = True  # the block runs to its end
            assert reached and stop.count == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_amp_plan_refuses_bfloat16_without_hardware_and_scales_float16():
    cpu = torch.device("cpu")
    plan = amp_plan(True, cpu, cpu_bf16=False)
    assert not plan.enabled and "no bfloat16 instructions" in plan.note and "\n" not in plan.note
    assert amp_plan(True, cpu, cpu_bf16=True).dtype == torch.bfloat16
    cuda = torch.device("cuda")
    assert amp_plan(True, cuda, cuda_bf16=True).dtype == torch.bfloat16
    fp16 = amp_plan(True, cuda, cuda_bf16=False)
    assert fp16.dtype == torch.float16 and fp16.scaler
    assert not amp_plan(False, cpu).enabled and amp_plan(False, cpu).note == ""


def test_tensorboard_events_hold_the_scalars_and_the_image(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from darknet_py.evaluate import mean_average_precision
    from darknet_py.train.deltas import HeadStats
    from darknet_py.train.tensorboard import TrainBoard
    board = TrainBoard(tmp_path)
    from darknet_py.train.watch import head_summary
    stats = head_summary([(16, HeadStats(0.5, 0.4, 0.3, 0.01, 0.6, 0.2, 3, 3.0)),
                          (16, HeadStats(0.7, 0.4, 0.3, 0.01, 0.6, 0.2, 4, 3.0))])[16]
    assert stats["avg_iou"] == pytest.approx(0.6) and stats["count"] == 7
    for it in (1, 2):
        board.iteration(it, 2.0 / it, 1.5, 0.001 * it, {16: 1.0 / it, 23: 1.0 / it}, {16: stats, 23: stats})
    board.batch(0, np.full((20, 30, 3), (255, 0, 0), np.uint8))  # BGR blue
    result = mean_average_precision([np.array([[0, .9, .3, .3, .2, .2]], np.float32)],
                                    [np.array([[0, .3, .3, .2, .2]], np.float32)], ["a"])
    board.validation(2, result)
    board.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = events.Tags()
    assert {"loss/darknet", "loss/avg", "loss/head16", "loss/head23", "learning_rate", "mAP@0.5",
            "head16/avg_iou", "head23/.75R", "head16/count"} <= set(tags["scalars"])
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("loss/darknet")] == [(1, 2.0), (2, 1.0)]
    assert [e.value for e in events.Scalars("head16/count")] == [7, 7]
    assert events.Scalars("mAP@0.5")[0].value == pytest.approx(1.0)
    assert {"augmented_batch", "precision_recall"} <= set(tags["images"])
    image = events.Images("augmented_batch")[0]
    assert (image.width, image.height) == (30, 20)
    import cv2
    decoded = cv2.imdecode(np.frombuffer(image.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    assert tuple(decoded[5, 5]) == (255, 0, 0)  # BGR blue stays blue


def test_map_schedule_is_alexeyabs():
    from darknet_py.train.map_schedule import MapSchedule, spacing
    assert spacing(2000, 32) == 250 and spacing(160, 32) == 100
    s = MapSchedule(every=100, burn_in=1000, max_batches=2000, last=0)  # no check before burn_in
    assert [i for i in range(1, 2001) if s.due(i)] == [1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900,
                                                        2000]
    resumed = MapSchedule(every=100, burn_in=10, max_batches=420, last=250)  # counted from the resume
    assert [i for i in range(251, 421) if resumed.due(i)] == [350, 420]
    assert not any(MapSchedule(0, 0, 10, 0).due(i) for i in range(1, 11))


def test_without_tensorboard_the_banner_says_how_to_get_it(tmp_path, monkeypatch):
    from darknet_py.train import watch
    monkeypatch.setattr(watch, "available", lambda: False)
    out = io.StringIO()
    w = watch.Watch("tiny", tmp_path, 10, 8, 0, None, watch.WatchOptions(stream=out))
    w.start(Banner("tiny", "pjreddie", "", 0.001, 0.9, 0.0005, 8, "train.txt", "", "valid: no mAP during training",
                   "starting from scratch", str(tmp_path)), 0)
    w.close()
    lines = out.getvalue().splitlines()
    assert lines[-1] == "tensorboard: not installed; for TensorBoard events, pip install 'darknet-torch[tensorboard]'"
    assert sum(line.startswith("tensorboard") for line in lines) == 1 and not (tmp_path / "tensorboard").exists()
