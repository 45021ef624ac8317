"""The command line never prints a traceback: numbers and devices are checked by the parser
(exit 2 and a usage message), hostile files end as one ``darknet-py: error:`` line (exit 1),
an unexpected failure as one ``internal error`` line (exit 3), Ctrl-C as exit 130."""
from __future__ import annotations

import subprocess
import sys

import pytest

from darknet_py import cli
from darknet_py.cli import main

from conftest import CFG, ROOT
from hostile import count, make_fifo, no_hang

DATA = str(ROOT / "cfg" / "coco.data")
TINY_CFG = str(CFG / "yolov3-tiny.cfg")
BAD_NUMBERS = [  # (arguments, what the parser's message says)
    (["detector", "train", DATA, TINY_CFG, "--seed", "-1"], "must be in [0, 2**64 - 1], got -1"),
    (["detector", "train", DATA, TINY_CFG, "--seed", str(2**64)], "must be in [0, 2**64 - 1]"),
    (["detector", "train", DATA, TINY_CFG, "--seed", "1.5"], "expected an integer, got '1.5'"),
    (["detector", "train", DATA, TINY_CFG, "--last-every", "0"], "must be 1 or more, got 0"),
    (["detector", "train", DATA, TINY_CFG, "--workers", "-1"], "must be 0 or more, got -1"),
    (["detector", "train", DATA, TINY_CFG, "--valid-every", "-5"], "must be 0 or more"),
    (["detector", "train", DATA, TINY_CFG, "--mixup", "1.5"], "must be in [0, 1], got 1.5"),
    (["detector", "train", DATA, TINY_CFG, "--label-smoothing", "nan"], "expected a finite number"),
    (["detector", "train", DATA, TINY_CFG, "--device", "potato"], "unknown device 'potato'"),
    (["detector", "train", DATA, TINY_CFG, "--device", "meta"], "unsupported device 'meta'"),
    (["detector", "map", DATA, TINY_CFG, "w.weights", "--batch", "0"], "must be 1 or more, got 0"),
    (["detector", "map", DATA, TINY_CFG, "w.weights", "--batch", "-1"], "must be 1 or more, got -1"),
    (["detector", "map", DATA, TINY_CFG, "w.weights", "-iou_thresh", "2"], "must be in [0, 1], got 2"),
    (["detector", "valid", DATA, TINY_CFG, "w.weights", "--low-thresh", "-0.1"], "must be in [0, 1]"),
    (["detector", "test", DATA, TINY_CFG, "w.weights", "x.jpg", "-thresh", "inf"], "expected a finite number"),
    (["detector", "test", DATA, TINY_CFG, "w.weights", "x.jpg", "-nms", "abc"], "expected a number, got 'abc'"),
    (["detect", "--cfg", TINY_CFG, "--weights", "w", "--names", "n", "x.jpg", "--thresh", "-1"], "must be in [0, 1]"),
    (["summary", TINY_CFG, "--width", "0"], "must be 1 or more, got 0"),
    (["summary", TINY_CFG, "--height", "-416"], "must be 1 or more"),
    (["calc_anchors", DATA, "-width", "416", "-height", "416", "-num_of_clusters", "0"], "must be 1 or more"),
    (["data", "shapes", "out", "--n", "0"], "must be 1 or more, got 0"),
    (["data", "shapes", "out", "--size", "-3"], "must be 1 or more"),
    (["partial", TINY_CFG, "w", "out", "-1"], "must be 0 or more, got -1"),
    (["demo", "--n-valid", "0"], "must be 1 or more, got 0"),
    (["plot-lr", TINY_CFG, "--out", "lr.png", "--seed", "-3"], "must be in [0, 2**64 - 1]"),
]


@pytest.mark.parametrize("argv,message", BAD_NUMBERS, ids=[" ".join(a[-2:]) for a, _ in BAD_NUMBERS])
def test_bad_numbers_are_refused_by_the_parser(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "usage:" in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []  # nothing ran
    count("cli numbers", "refused")


def test_hostile_paths_end_as_one_error_line(tmp_path, capfd, monkeypatch, weights_for):
    """FIFOs, devices, folders and symlink loops as cfg, weights and data: exit 1 at once."""
    monkeypatch.chdir(tmp_path)
    fifo = make_fifo(tmp_path / "fifo")
    loop = tmp_path / "loop.cfg"
    loop.symlink_to(loop)
    weights = str(weights_for("yolov3-tiny.cfg", seed=7))
    cases = [
        ["summary", fifo], ["summary", "/dev/zero"], ["summary", str(tmp_path)], ["summary", str(loop)],
        ["detector", "test", DATA, TINY_CFG, fifo, str(ROOT / "data" / "images" / "dog.jpg")],
        ["detector", "test", DATA, TINY_CFG, "/dev/zero", str(ROOT / "data" / "images" / "dog.jpg")],
        ["detector", "test", DATA, TINY_CFG, weights, fifo],
        ["detector", "train", fifo, TINY_CFG],
        ["detector", "map", fifo, TINY_CFG, weights],
        ["convert", TINY_CFG, fifo, str(tmp_path / "out.pt")],
        ["convert", TINY_CFG, str(tmp_path / "in.pt"), str(tmp_path / "out.weights")],
    ]
    (tmp_path / "in.pt").write_bytes(b"PK\x03\x04 not really")
    with no_hang(60):
        for argv in cases:
            code = main(argv)
            err = capfd.readouterr().err
            lines = [line for line in err.splitlines() if line.startswith("darknet-py:")]
            assert code == 1 and len(lines) == 1 and "Traceback" not in err, (argv, err)
            count("cli hostile paths", "refused")
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "out.weights").exists()
    assert not (tmp_path / "predictions.jpg").exists()


def test_an_unexpected_failure_is_one_line_and_exit_3(monkeypatch, capsys):
    def boom(args):
        raise ValueError("something we did not foresee")
    monkeypatch.setattr(cli, "cmd_summary", boom)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), boom))
    assert main(["summary", TINY_CFG]) == 3
    err = capsys.readouterr().err
    assert err.strip() == ("darknet-py: internal error: ValueError: something we did not foresee "
                           "(please report it; -v shows the traceback)")


def _with_func(parser, func):
    parser.set_defaults(func=func)
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(func=func)
    return parser


@pytest.mark.parametrize("error,code,text", [
    (OSError(28, "No space left on device", "/mnt/full/x.weights"), 1,
     "darknet-py: error: No space left on device (/mnt/full/x.weights)"),
    (MemoryError(), 1, "darknet-py: error: out of memory"),
    (KeyboardInterrupt(), 130, "darknet-py: interrupted"),
])
def test_system_failures_are_one_line(monkeypatch, capsys, error, code, text):
    def fail(args):
        raise error
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), fail))
    assert main(["summary", TINY_CFG]) == code
    err = capsys.readouterr().err
    assert err.startswith(text) and "Traceback" not in err


def test_no_traceback_from_the_console_script_on_a_hostile_battery(tmp_path):
    """The same as a user types it, in a fresh process: stderr never holds a traceback."""
    fifo = make_fifo(tmp_path / "fifo.cfg")
    bad_pt = tmp_path / "x.pt"
    bad_pt.write_bytes(b"\0" * 64)
    battery = [
        ["summary", fifo], ["summary", "/dev/null"], ["detector", "train", DATA, TINY_CFG, "--seed", "-1"],
        ["convert", TINY_CFG, str(bad_pt), str(tmp_path / "y.weights")],
        ["detect", "--cfg", TINY_CFG, "--weights", str(bad_pt), "--names", "x", str(tmp_path / "nothing.jpg")],
    ]
    for argv in battery:
        r = subprocess.run([sys.executable, "-m", "darknet_py.cli", *argv], capture_output=True, text=True,
                           cwd=tmp_path, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr and r.stderr.startswith(
            ("darknet-py: ", "usage: ")), (argv, r.stderr)
        count("cli subprocess battery", "refused")


@pytest.mark.parametrize("argv, message", [
    (["--size", "200000"], r"200000x200000 images are over the memory budget of \d+ pixels"),
    (["--n", "200000000"], r"220000000 images of 256x256 need about \d+ MiB with their labels; \d+ MiB are free"),
])
def test_data_shapes_refuses_what_would_not_fit_before_writing(tmp_path, capsys, argv, message):
    """An image side over the memory budget (it was an internal error: OpenCV failed to allocate
    120 GB) or more images than the disk holds are refused before anything is written."""
    import re
    out = tmp_path / "shapes"
    assert main(["data", "shapes", str(out), *argv]) == cli.EXIT_ERROR
    assert re.search(message, capsys.readouterr().err) and not out.exists()
