"""The command line: Darknet's layer table and BFLOPs."""
import subprocess
import sys

from darknet_py.cli import main

from conftest import CFG, ROOT


def test_summary_matches_darknets_bflops(capsys):
    assert main(["summary", str(CFG / "yolov3.cfg"), "--width", "416", "--height", "416"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["layer", "filters", "size", "input", "output"]
    assert out[1].split() == ["0", "conv", "32", "3", "x", "3", "/", "1", "416", "x", "416", "x", "3",
                              "->", "416", "x", "416", "x", "32", "0.299", "BFLOPs"]
    assert out[-1] == "Total BFLOPs 65.862"
    assert len(out) == 1 + 107 + 1


def test_summary_of_a_bad_cfg_is_an_error_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=x\n")
    assert main(["summary", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.cfg:6: [convolutional] option 'filters': expected an integer, got 'x'" in err


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "darknet_py.cli", "summary", str(CFG / "yolov3-tiny.cfg")],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    assert "Total BFLOPs" in result.stdout
