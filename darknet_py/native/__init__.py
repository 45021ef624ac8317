"""C kernels compiled on first use with the system C compiler, for the host CPU.

Each kernel is optional: where no compiler is found or the build fails, ``load`` returns None
(once per process, with a warning naming the reason) and callers use PyTorch's own operators.
The shared object is cached under ``$DARKNET_PY_CACHE`` (default ``~/.cache/darknet_py``; the
system's temporary directory where that cannot be written), keyed by the source, the flags
and the CPU's feature flags, and written atomically so that concurrent first uses do not see
a half-written file. ``DARKNET_PY_NATIVE=0`` turns them off.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno", "-fopenmp"]
_loaded: dict[str, ctypes.CDLL | None] = {}


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _cache_dirs() -> list[Path]:
    first = Path(os.environ.get("DARKNET_PY_CACHE") or Path.home() / ".cache" / "darknet_py")
    return [first, Path(tempfile.gettempdir()) / f"darknet_py-{os.getuid()}"]


def _check_private(folder: Path) -> None:
    """Code is loaded from here: refuse a folder another user owns or may write to."""
    status = folder.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o022:
        raise OSError(f"{folder} is not private to this user (owner {status.st_uid}, mode {status.st_mode & 0o777:o})")


def _build(name: str) -> Path:
    source = HERE / f"{name}.c"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    key = hashlib.sha256(source.read_bytes() + " ".join([compiler, *FLAGS, platform.machine(),
                                                          _cpu_flags()]).encode()).hexdigest()[:16]
    for folder in _cache_dirs():
        target = folder / f"{name}-{key}.so"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_private(folder)
            if target.exists():
                return target
            fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=folder)
            break
        except OSError as e:
            failure = e
    else:
        raise OSError(f"no writable cache folder for the compiled kernel: {failure}")
    os.close(fd)
    try:
        result = subprocess.run([compiler, *FLAGS, "-o", tmp, str(source)], capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"{compiler} failed on {source}: {result.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load(name: str) -> ctypes.CDLL | None:
    """The compiled kernel library ``name`` (``native/<name>.c``), or None where it cannot be had."""
    if name not in _loaded:
        library = None
        if os.environ.get("DARKNET_PY_NATIVE", "1") != "0":
            try:
                library = ctypes.CDLL(str(_build(name)))
            except OSError as e:
                warnings.warn(f"darknet_py: native kernel '{name}' unavailable ({e}); using PyTorch's operators",
                              RuntimeWarning, stacklevel=2)
        _loaded[name] = library
    return _loaded[name]
