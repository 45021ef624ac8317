"""The package works installed: a wheel built from this tree, installed into a fresh venv and run
from an empty folder, finds its cfg library, names, model and sample images inside itself.

The fresh venv gets the wheel with ``--no-deps``; torch, numpy, OpenCV, ... are made visible to
it by a ``.pth`` line naming the running interpreter's site-packages (no download). A ``.pth``
line only adds a folder to ``sys.path``: an editable install of this tree there is not
activated, and the test checks that ``darknet_py`` is imported from the venv."""
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from darknet_py.resources import FOLDERS, find_packaged, input_path, share_root

from conftest import ROOT, SHARED

WEIGHTS = SHARED / "weights" / "yolov3-tiny.weights"


def _isolation() -> list[str]:
    """Build with the installed setuptools when it is new enough (the test extra asks for it),
    else let pip fetch pyproject.toml's build requirements."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        major = int(version("setuptools").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return []
    return ["--no-build-isolation"] if major >= 77 else []


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv folder, wheel path) of this tree's wheel in a fresh venv."""
    base = tmp_path_factory.mktemp("package")
    wheels = base / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *_isolation(), "-q",
                    "-w", str(wheels), str(ROOT)], check=True, cwd=base)
    wheel, = wheels.glob("darknet_torch-*.whl")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the venv has no pip of its own: the running interpreter's pip installs into it (without
    # PYTHONPATH, where this tree's egg-info would read as "already installed")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-compile", str(wheel)], check=True, env=_clean_env())
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    Path(site, "_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return env_dir, wheel


def _clean_env():
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _run(args, cwd):
    return subprocess.run(args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_wheel_carries_the_cfg_library_names_model_and_samples(installed):
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ROOT.joinpath("cfg").rglob("*"):
        if path.is_file():
            assert f"darknet_py/share/{path.relative_to(ROOT).as_posix()}" in names
    for path in ROOT.joinpath("data").rglob("*"):
        if path.is_file():
            assert f"darknet_py/share/{path.relative_to(ROOT).as_posix()}" in names
    assert "darknet_py/py.typed" in names
    assert any(".dist-info/" in n and n.endswith("LICENSE") for n in names)
    metadata = next(zipfile.ZipFile(wheel).read(n) for n in names if n.endswith(".dist-info/METADATA")).decode()
    assert "Name: darknet-torch" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: opencv")]
    assert "Requires-Dist: opencv-python-headless" in requires  # unpinned at run time
    assert any("<5" in line and 'extra == "test"' in line for line in requires), requires


@pytest.mark.slow
def test_installed_demo_runs_from_an_empty_folder(installed, tmp_path):
    env_dir, _ = installed
    where = _run([str(env_dir / "bin" / "python"), "-c", "import darknet_py; print(darknet_py.__file__)"],
                 tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout + where.stderr
    result = _run([str(env_dir / "bin" / "darknet-py"), "demo", "--out", "out", "--n-valid", "20",
                            "--no-progress"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mAP@0.5 = " in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == [f"00000{i}.jpg" for i in range(1, 7)]


@pytest.mark.slow
@pytest.mark.shared
def test_installed_detector_test_with_packaged_names_from_an_empty_folder(installed, tmp_path):
    env_dir, _ = installed
    args = ["detector", "test", "coco.data", "yolov3-tiny.cfg", str(WEIGHTS), "dog.jpg"]
    result = _run([str(env_dir / "bin" / "darknet-py"), *args], tmp_path)
    assert result.returncode == 0, result.stderr
    assert {"dog: 56%", "bicycle: 59%", "car: 62%"} <= set(result.stdout.splitlines())
    for name in ("coco.data", "yolov3-tiny.cfg", "dog.jpg"):
        assert f"{name} not found here; using the packaged " in result.stderr
    assert (tmp_path / "predictions.jpg").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jpg"]
    # python -m darknet_py is the same command
    again = _run([str(env_dir / "bin" / "python"), "-m", "darknet_py", *args, "-out", "again"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:-1] == result.stdout.splitlines()[1:-1]


def test_packaged_lookup_by_name_and_by_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert find_packaged("coco.data") == share_root() / "cfg" / "coco.data"
    assert find_packaged("cfg/alexeyab/yolov4.cfg") == find_packaged("yolov4.cfg")
    assert find_packaged("dog.jpg") == share_root() / "data" / "images" / "dog.jpg"
    assert find_packaged("nothing.cfg") is None and find_packaged("../cfg/yolov3.cfg") is None
    # an existing path always wins, and is not announced
    (tmp_path / "coco.data").write_text("classes=1\n")
    assert input_path("coco.data", "data") == "coco.data"
    assert input_path("missing.cfg", "cfg") == "missing.cfg"
    assert capsys.readouterr().err == ""
    assert input_path("yolov3.cfg", "cfg") == str(share_root() / "cfg" / "yolov3.cfg")
    assert "yolov3.cfg not found here; using the packaged" in capsys.readouterr().err
    # no file name appears in two searched folders, so a bare name is never ambiguous
    seen = {}
    for folder in FOLDERS:
        for path in (share_root() / folder).glob("*.*"):
            assert path.name not in seen, (path, seen.get(path.name))
            seen[path.name] = path


def test_python_dash_m_is_the_command():
    result = subprocess.run([sys.executable, "-m", "darknet_py", "--help"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.startswith("usage: darknet-py ")
