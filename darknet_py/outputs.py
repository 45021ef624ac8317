"""Files the command line writes: each output path is checked before a pass starts (its folder
exists and is writable, it is not a folder), and images are written whole or not at all."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DarknetError


def check_output(path, what: str = "output") -> Path:
    """``path`` when a file can be written there; else a DarknetError naming what is wrong."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DarknetError(f"{path}: the {what} is a folder, expected a file name")
    if not folder.is_dir():
        raise DarknetError(f"{path}: cannot write the {what}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DarknetError(f"{path}: cannot write the {what}: the folder {folder} is not writable")
    return path


def check_folder(path, what: str = "output folder", create: bool = True) -> Path:
    """A folder to write into: created (with its parents) when ``create``, else it must exist."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DarknetError(f"{path}: the {what} is a file, expected a folder")
    if not path.exists():
        if not create:
            raise DarknetError(f"{path}: the {what} does not exist")
        try:
            path.mkdir(parents=True)
        except OSError as e:
            raise DarknetError(f"{path}: cannot create the {what}: {e.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DarknetError(f"{path}: the {what} is not writable")
    return path


def write_image(path, bgr) -> Path:
    """Encode ``bgr`` by the path's extension and write it atomically; an extension OpenCV
    cannot encode is an error, never a silently missing file."""
    import cv2

    from .atomic import atomic_write
    path = Path(path)
    try:
        ok, data = cv2.imencode(path.suffix or ".jpg", bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise DarknetError(f"{path}: OpenCV cannot write an image with the extension '{path.suffix}'")
    try:
        atomic_write(path, lambda f: f.write(data.tobytes()))
    except OSError as e:
        raise DarknetError(f"{path}: cannot write the image: {e.strerror}") from None
    return path
