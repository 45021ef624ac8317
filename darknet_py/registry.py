"""Section name -> builder: the one place a new cfg section type is added.

A builder reads its :class:`~darknet_py.cfg.Section` with the shapes built so far and returns a
:class:`LayerSpec`: absolute ``sources``, the output shape, the parameter count and a factory for
the module. Nothing is allocated until every section has been planned and the memory budget
checked, so a hostile cfg is refused before it costs memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .cfg import Section


@dataclass(frozen=True)
class Shape:
    c: int
    h: int
    w: int

    @property
    def numel(self) -> int:
        return self.c * self.h * self.w

    def __str__(self):
        return f"{self.w:4d} x{self.h:4d} x{self.c:4d}"


@dataclass
class LayerSpec:
    """A planned layer: what it reads, what it yields, what it will cost."""

    kind: str                      # canonical section name, e.g. "convolutional"
    sources: tuple[int, ...]       # absolute layer indices; -1 is the network input
    out: Shape
    make: Callable[[], nn.Module]
    n_params: int = 0
    flops: float = 0.0             # Darknet's count: 2 * multiply-adds
    workspace: int = 0             # float values the forward pass needs beyond its output (padding)
    label: str = ""                # Darknet's short name in the layer table ("conv", "max", ...)
    detail: str = ""               # Darknet's filters / size / stride column
    is_head: bool = False
    where: str = ""                # file:line of the section, filled in by the planner


@dataclass
class BuildContext:
    """What a builder may know: this layer's index, earlier shapes, the [net] settings."""

    index: int
    shapes: list[Shape]            # output shape of every earlier layer
    input_shape: Shape             # the network input
    net: object                    # darknet_py.netcfg.NetConfig

    @property
    def prev(self) -> Shape:
        """The implicit input of a layer: the previous layer's output (or the image)."""
        return self.shapes[-1] if self.shapes else self.input_shape

    @property
    def prev_index(self) -> int:
        return self.index - 1

    def resolve(self, section: Section, key: str, value: int) -> int:
        """Darknet's rule: negative indices count back from this layer; must point backwards."""
        absolute = self.index + value if value < 0 else value
        if not 0 <= absolute < self.index:
            raise section.error(
                f"layer index {value} resolves to {absolute}; layer {self.index} can only use "
                f"layers 0..{self.index - 1}", key)
        return absolute

    def shape_of(self, index: int) -> Shape:
        return self.shapes[index] if index >= 0 else self.input_shape


Builder = Callable[[Section, BuildContext], LayerSpec]
BUILDERS: dict[str, Builder] = {}
CANONICAL: dict[str, str] = {}


def register(*names: str):
    """Register a builder under a section name and its Darknet aliases (first is canonical)."""
    def wrap(fn: Builder) -> Builder:
        for name in names:
            if name in BUILDERS:
                raise ValueError(f"section [{name}] registered twice")
            BUILDERS[name] = fn
            CANONICAL[name] = names[0]
        return fn
    return wrap


def builder_for(section: Section) -> Builder:
    try:
        return BUILDERS[section.kind]
    except KeyError:
        known = ", ".join(sorted(set(CANONICAL.values())))
        raise section.error(f"unknown section type [{section.kind}] (known: {known})") from None
