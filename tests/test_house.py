"""The package's own structure: no import circles, and no cfg option copied onto a module by name."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import darknet_py
from darknet_py.model import Darknet

from conftest import CFG

PACKAGE = Path(darknet_py.__file__).parent


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module in darknet_py (packages as their __init__)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("darknet_py",) + path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set) -> set:
    """The darknet_py modules ``name`` imports anywhere in its file (inside functions too: a lazy
    import is still an edge). Importing a package's own ancestors is not counted: Python runs a
    package's __init__ before any of its modules anyway."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                edges.add(target)
    return edges


def test_no_import_circles():
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    state, stack, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert len(graph) > 40  # the walk saw the package
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_no_setattr_in_the_package():
    """Options reach modules as typed fields (dataclasses), never ``setattr`` by name; the one
    setattr left rewrites parsed command-line arguments (argparse's namespace) in cli.py."""
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
                target = node.args[0]
                calls.append((path.relative_to(PACKAGE).as_posix(), getattr(target, "id", ast.dump(target))))
    assert calls == [("cli.py", "args")]


@pytest.mark.parametrize("cfg", ["yolov3-tiny.cfg", "yolov2-tiny-voc.cfg", "yolov1.cfg",
                                 "alexeyab/yolov4-tiny.cfg", "alexeyab/Gaussian_yolov3_BDD.cfg"])
def test_head_options_are_typed_settings(cfg):
    if not (CFG / cfg).is_file():
        pytest.skip(f"{cfg} not in cfg/")
    net = Darknet(CFG / cfg, width=64, height=64, init=False)
    for index in net.heads:
        layer = net.layers[index]
        settings = layer.settings
        assert dataclasses.is_dataclass(settings) and dataclasses.fields(settings)
        own = set(vars(layer)) - {"training"}
        assert not own & {f.name for f in dataclasses.fields(settings)}, (index, own)
