"""C kernels compiled on first use with the system C compiler, for the host CPU.

Each kernel is optional: where no compiler is found or the build fails, ``load`` returns None
(once per process, with a warning naming the reason) and callers use PyTorch's own operators.
The shared object is cached under ``$DARKNET_PY_CACHE`` (default ``~/.cache/darknet_py``; the
system's temporary directory where that cannot be written), keyed by the source, the flags
and the CPU's feature flags, and written atomically so that concurrent first uses do not see
a half-written file. ``DARKNET_PY_NATIVE=0`` turns them off; ``DARKNET_PY_NATIVE_ISA=avx2``
builds them without AVX-512 (to time an AVX2 machine's code on an AVX-512 one), ``=plain``
without AVX2 and FMA either (to test, on x86, the portable loops other CPUs run).
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
# DARKNET_PY_NATIVE_ISA: "avx2" as on an AVX2-only x86 CPU; "plain" (x86 compilers) the portable
# C loops that CPUs without AVX2 and FMA run (aarch64 and others take them with "native")
ISA_FLAGS = {"native": [], "avx2": ["-mno-avx512f"], "plain": ["-mno-avx512f", "-mno-avx2", "-mno-fma"]}
_loaded: dict[str, ctypes.CDLL | None] = {}


def flags() -> list[str]:
    """The compiler flags for this process's kernels (``DARKNET_PY_NATIVE_ISA`` included)."""
    isa = os.environ.get("DARKNET_PY_NATIVE_ISA", "native")
    if isa not in ISA_FLAGS:
        raise ValueError(f"DARKNET_PY_NATIVE_ISA must be one of {sorted(ISA_FLAGS)}, got {isa!r}")
    return FLAGS + ISA_FLAGS[isa]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what the platform module says."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("model name")), "")
            return line.partition(":")[2].strip() or platform.processor()
    except OSError:
        return platform.processor()


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def build_key(name: str) -> str:
    """What the compiled ``name`` depends on: its source, compiler, flags and the CPU's flags."""
    source = HERE / f"{name}.c"
    text = " ".join([str(_compiler()), *flags(), platform.machine(), cpu_flags()])
    return hashlib.sha256(source.read_bytes() + text.encode()).hexdigest()[:16]


def cache_folder() -> Path:
    """The first usable folder private to this user for compiled kernels and tuning results."""
    for folder in _cache_dirs():
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_private(folder)
            return folder
        except OSError as e:
            failure = e
    raise OSError(f"no writable cache folder: {failure}")


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
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    folder = cache_folder()
    target = folder / f"{name}-{build_key(name)}.so"
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=folder)
    os.close(fd)
    try:
        result = subprocess.run([compiler, *flags(), "-o", tmp, str(source)], capture_output=True, text=True)
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
