"""tools/: the scripts that reproduce shipped artefacts run (a short run of the shapes model's
recipe; the benchmark driver's shell syntax)."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_make_shapes_model_runs_its_recipe_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "make_shapes_model.py"), "--workdir", "w",
                             "--out", "m.weights", "--n", "8", "--n-valid", "4", "--set", "max_batches=1",
                             "--set", "batch=2", "--set", "subdivisions=1"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    steps = [line for line in result.stdout.splitlines() if line.startswith("$ darknet-py ")]
    assert [s.split()[2] for s in steps] == ["data", "detector", "data", "detector"]
    assert "mean average precision (mAP@0.50)" in result.stdout
    weights = (tmp_path / "m.weights").read_bytes()
    assert len(weights) == (ROOT / "data" / "yolov3-tiny-shapes.weights").stat().st_size  # same layout


def test_benchmark_driver_is_valid_bash_and_names_every_benchmark():
    script = ROOT / "tools" / "readme_benchmarks.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for bench in sorted((ROOT / "benchmarks").glob("*.py")):
        assert f"benchmarks/{bench.name}" in text
