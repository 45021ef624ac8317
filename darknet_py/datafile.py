"""Darknet's ``.data`` files and ``.names`` lists."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cfg import read_data_file, read_text
from .errors import CfgError


def resolve(value: str, data_file: Path) -> Path:
    """Darknet opens paths relative to the working directory; we also try the .data file's
    folder and its parent (cfg/coco.data names data/coco.names from the repository root), then
    the packaged file of that name (:func:`darknet_py.resources.input_path`)."""
    from .resources import input_path
    path = Path(value)
    for candidate in (path, data_file.parent / path, data_file.parent.parent / path):
        if candidate.exists():
            return candidate
    return Path(input_path(value, f"{data_file.name}'s file"))


def load_names(path) -> list[str]:
    """``get_labels``: one name per line, trailing whitespace removed."""
    path = Path(path)
    lines = read_text(path, "names file").splitlines()
    names = [line.rstrip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise CfgError("the names file is empty", file=str(path))
    return names


@dataclass
class DataConfig:
    path: Path
    classes: int
    names: list[str]
    train: str | None = None
    valid: str | None = None
    backup: str = "backup"
    eval: str | None = None
    names_file: Path | None = None  # where the names were read

    @classmethod
    def from_file(cls, path) -> "DataConfig":
        path = Path(path)
        options = read_data_file(path)
        classes = options.get("classes", "20")
        if not classes.isdigit() or int(classes) < 1:
            raise CfgError(f"classes must be a positive integer, got '{classes}'", file=str(path))
        names_file = resolve(options.get("names", "data/names.list"), path)
        names = load_names(names_file)
        if len(names) < int(classes):
            raise CfgError(f"{names_file} lists {len(names)} names, classes={classes}", file=str(path))
        return cls(path, int(classes), names, options.get("train"), options.get("valid"),
                   options.get("backup", "backup"), options.get("eval"), names_file)
