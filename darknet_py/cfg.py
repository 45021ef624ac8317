"""Darknet .cfg text -> sections with typed, usage-tracked options (no torch here).

Darknet's reading rules (``option_list.c``/``utils.c``): spaces and tabs are removed from every
line; lines starting with ``#`` or ``;`` are comments; ``[name]`` starts a section; ``key=value``
adds an option and the first occurrence of a key wins. Darknet reads numbers with ``atoi``/
``atof`` and so ignores a trailing ``#comment``; we accept exactly that and refuse any other
trailing text (``filters=abc`` is 0 to Darknet, an error here).
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CfgError
from .files import read_regular

log = logging.getLogger(__name__)

_REQUIRED = object()
_INT = re.compile(r"[+-]?[0-9]+")  # ASCII digits only, as atoi (Python's \d takes any script's)
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
INT_RANGE = (-2**31, 2**31 - 1)  # Darknet's options are C ints
MAX_TEXT_BYTES = 64 << 20  # a cfg, .data or list file beyond this is not one (the largest official cfg: 20 KB)


@dataclass
class Option:
    value: str
    line: int


@dataclass
class Section:
    """One ``[kind]`` block; getters convert values and remember which keys were read."""

    kind: str
    file: str
    line: int
    options: dict[str, Option] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def error(self, message, option=None) -> CfgError:
        line = self.options[option].line if option in self.options else self.line
        return CfgError(message, file=self.file, line=line, section=self.kind, option=option)

    def has(self, key: str) -> bool:
        return key in self.options

    def _raw(self, key, default):
        self.used.add(key)
        if key not in self.options:
            if default is _REQUIRED:
                raise self.error("required option is missing", key)
            return None
        # atoi/atof stop at the first non-numeric character; a comment is the only tail we allow.
        return re.split(r"[#;]", self.options[key].value, maxsplit=1)[0]

    def _number(self, key, text, pattern, convert, kind):
        if not pattern.fullmatch(text):
            raise self.error(f"expected {kind}, got '{self.options[key].value}'", key)
        if convert is int and len(text.lstrip("+-0")) > 10:  # before int(): no 5000-digit numbers
            raise self.error(f"{text[:20]}... is outside a C int's range {INT_RANGE}", key)
        value = convert(text)
        if convert is int and not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise self.error(f"{value} is outside a C int's range {INT_RANGE}", key)
        if not math.isfinite(value):
            raise self.error(f"expected {kind}, got '{text}', which is not finite", key)
        return value

    def int(self, key: str, default=_REQUIRED, minimum: int | None = None) -> int:
        text = self._raw(key, default)
        value = default if text is None else self._number(key, text, _INT, int, "an integer")
        if minimum is not None and value < minimum:
            raise self.error(f"must be >= {minimum}, got {value}", key)
        return value

    def float(self, key: str, default=_REQUIRED) -> float:
        text = self._raw(key, default)
        return default if text is None else self._number(key, text, _FLOAT, float, "a number")

    def str(self, key: str, default=_REQUIRED) -> str:
        text = self._raw(key, default)
        if text is None:
            return default
        if not text:
            raise self.error("expected a non-empty value", key)
        return text

    def _list(self, key, default, pattern, convert, kind):
        text = self._raw(key, default)
        if text is None:
            return default
        items = text.split(",")
        if items and items[-1] == "" and len(items) > 1:
            items.pop()  # "1,2,3," reads as three values in Darknet
        return [self._number(key, item, pattern, convert, kind) for item in items]

    def ints(self, key: str, default=_REQUIRED) -> list[int]:
        return self._list(key, default, _INT, int, "a comma-separated list of integers")

    def floats(self, key: str, default=_REQUIRED) -> list[float]:
        return self._list(key, default, _FLOAT, float, "a comma-separated list of numbers")

    def ignore(self, *keys: str) -> None:
        """Mark options Darknet reads that have no effect here (e.g. GPU stream hints)."""
        self.used.update(keys)

    def check_unused(self, allowed=()) -> None:
        """Refuse options no builder read: Darknet only warns "Unused field", we stop."""
        for key, opt in self.options.items():
            if key not in self.used and key not in allowed:
                raise CfgError(
                    f"unknown option (this section reads: {', '.join(sorted(self.used)) or 'nothing'})",
                    file=self.file, line=opt.line, section=self.kind, option=key,
                )


def set_options(section: Section, assignments) -> None:
    """``--set key=value``: add or replace options of a section without editing the file (the
    values are checked by the same getters, errors name the section's line)."""
    for item in assignments:
        key, eq, value = item.replace(" ", "").partition("=")
        if not (eq and key and value):
            raise CfgError(f"--set '{item}': expected key=value", file=section.file, line=section.line,
                           section=section.kind)
        section.options[key] = Option(value, section.line)


def parse_cfg_text(text: str, file: str = "<cfg>", implicit: str | None = None) -> list[Section]:
    """Split cfg text into sections; every option keeps its line number. ``implicit`` names a
    section that options before any header belong to (for .data files)."""
    sections: list[Section] = [Section(implicit, file, 0)] if implicit else []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.replace(" ", "").replace("\t", "").replace("\r", "")
        if not line or line[0] in "#;":
            continue
        if "\x00" in line:
            raise CfgError("NUL byte in a text file", file=file, line=number)
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"malformed section header '{raw.strip()}', expected [name]",
                               file=file, line=number)
            sections.append(Section(line[1:-1], file, number))
            continue
        key, eq, value = line.partition("=")
        if not eq or not key:
            raise CfgError(f"expected 'key=value', a [section] or a comment, got '{raw.strip()}'",
                           file=file, line=number)
        if not sections:
            raise CfgError(f"option '{key}' before the first [section]", file=file, line=number)
        section = sections[-1]
        if key in section.options:
            log.warning("%s:%d: duplicate option '%s' in [%s]; the first (line %d) wins, as in Darknet",
                        file, number, key, section.kind, section.options[key].line)
            continue
        section.options[key] = Option(value, number)
    return sections


def read_text(path, what: str = "file") -> str:
    """Read a text file (a regular one: a FIFO or /dev/zero is refused at once), naming the line
    of any byte that is not UTF-8."""
    data = read_regular(path, lambda m: CfgError(m, file=str(path)), what, MAX_TEXT_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise CfgError(f"byte {e.start} is not text (UTF-8 expected)", file=str(path), line=line) from None


def parse_cfg(path) -> list[Section]:
    path = Path(path)
    try:
        text = read_text(path)
    except OSError as e:
        raise CfgError(f"cannot read: {e.strerror}", file=str(path)) from None
    sections = parse_cfg_text(text, str(path))
    if not sections:
        raise CfgError("no sections; a Darknet cfg starts with [net]", file=str(path))
    return sections


def read_data_file(path) -> dict[str, str]:
    """A Darknet ``.data`` file (``classes=80``, ``names=data/coco.names``, ...) as a dict;
    the same line rules as a cfg, without sections."""
    path = Path(path)
    try:
        text = read_text(path)
    except OSError as e:
        raise CfgError(f"cannot read: {e.strerror}", file=str(path)) from None
    sections = parse_cfg_text(text, str(path), implicit="data")
    if len(sections) != 1:
        raise CfgError("a .data file has no [sections]", file=str(path), line=sections[1].line)
    return {key: opt.value for key, opt in sections[0].options.items()}
