"""The files the package carries: the cfg library (pjreddie's, AlexeyAB's, the shapes and ASFF
cfgs), the ``.data`` and ``.names`` files, the shipped shapes model and the sample images.

In a wheel they lie in ``darknet_py/share/{cfg,data}`` (``setup.py`` copies the repository's
``cfg/`` and ``data/`` folders there at build time) and are found through
``importlib.resources``; in a source checkout (or an editable install) they are the
repository's own ``cfg/`` and ``data/``.

One rule lets the command line use them from any folder: a cfg, ``.data``, names or image
argument that is not an existing path names a packaged file, by its path inside the package
(``cfg/coco.data``) or by its file name (``coco.data``, ``yolov3-tiny.cfg``, ``dog.jpg``); a
line on stderr says so when it applies.
"""
from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

# Where a bare file name is looked for, in this order.
FOLDERS = ("cfg", "cfg/alexeyab", "data", "data/images", "data/shapes")


def share_root() -> Path:
    """The folder holding ``cfg/`` and ``data/``: the installed package's ``share`` or, in a
    source checkout, the repository root."""
    installed = Path(str(resources.files("darknet_py") / "share"))
    if (installed / "cfg").is_dir():
        return installed
    return Path(__file__).resolve().parents[1]


def packaged(relative: str) -> Path:
    """A packaged file by its path inside the package, e.g. ``packaged("cfg/yolov3.cfg")``."""
    return share_root() / relative


def find_packaged(name) -> Path | None:
    """The packaged file ``name`` stands for (a relative path inside the package, or a file name
    in one of :data:`FOLDERS`), or None."""
    name = Path(name)
    if name.is_absolute() or ".." in name.parts:
        return None
    root = share_root()
    for candidate in (root / name, *(root / folder / name for folder in FOLDERS)):
        if candidate.is_file():
            return candidate
    return None


def is_packaged(path) -> bool:
    """Whether ``path`` is one of the packaged files (which nothing should write beside)."""
    resolved = Path(path).resolve()
    root = share_root().resolve()
    return any(resolved.is_relative_to(root / folder) for folder in ("cfg", "data"))


def input_path(value, what: str = "file") -> str:
    """``value`` itself when it exists; else the packaged file of that name (announced on
    stderr); else ``value`` unchanged, so that the reader reports it missing."""
    if value is None or Path(value).exists():
        return value
    found = find_packaged(value)
    if found is None:
        return value
    print(f"darknet-py: {what} {value} not found here; using the packaged {found}", file=sys.stderr)
    return str(found)
