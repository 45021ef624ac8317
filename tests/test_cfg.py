"""The cfg parser: Darknet's reading rules, and clear refusals naming file, line and option."""
import textwrap

import pytest

import darknet_py
from darknet_py.cfg import parse_cfg_text
from darknet_py.errors import CfgError
from darknet_py.registry import BUILDERS, CANONICAL

NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"


def write(tmp_path, text, name="t.cfg"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def build(tmp_path, body, **kw):
    return darknet_py.Darknet(write(tmp_path, NET + textwrap.dedent(body)), **kw)


def test_whitespace_comments_and_first_occurrence_wins():
    sections = parse_cfg_text(
        "# comment\n[net]\n  width = 4 16\n\twidth=99\n; other comment\n[conv]\nfilters=21#note\n", "x.cfg")
    assert [s.kind for s in sections] == ["net", "conv"]
    net, conv = sections
    assert net.int("width") == 416  # Darknet strips every space and tab, even inside values
    assert net.options["width"].line == 3
    assert conv.int("filters") == 21  # atoi stops at the comment
    assert conv.line == 6


def test_defaults_and_types(tmp_path):
    net = build(tmp_path, "[convolutional]\nfilters=8\n", init=False)
    conv = net.layers[0]
    assert conv.activation.name == "logistic"  # Darknet's default, not linear
    assert tuple(conv.weights.shape) == (8, 3, 1, 1)
    assert not conv.batch_normalize


def test_pad_overrides_padding(tmp_path):
    net = build(tmp_path, "[convolutional]\nfilters=4\nsize=5\npad=1\npadding=0\nstride=1\n", init=False)
    assert net.specs[0].out.h == 64 and net.layers[0].padding == 2


def test_negative_route_indices(tmp_path):
    net = build(tmp_path, """
        [convolutional]
        filters=4
        [convolutional]
        filters=6
        [route]
        layers=-1,-2
        [route]
        layers=0
        """, init=False)
    assert net.sources[2] == (1, 0) and net.specs[2].out.c == 10
    assert net.sources[3] == (0,)


@pytest.mark.parametrize("body, line, needle", [
    ("[convolutional]\nfilters=abc\n", 6, "option 'filters': expected an integer, got 'abc'"),
    ("[convolutional]\nfilters=8\nsize=3x\n", 7, "option 'size': expected an integer"),
    ("[convolutional]\nfilters=8\nfliters=3\n", 7, "option 'fliters': unknown option"),
    ("[convolutionall]\nfilters=8\n", 5, "unknown section type [convolutionall]"),
    ("[convolutional]\nactivation=leakyy\n", 6, "unknown activation 'leakyy'"),
    ("[route]\nlayers=-3\n", 6, "layer index -3 resolves to -3"),
    ("[convolutional]\n[shortcut]\nfrom=5\n", 7, "resolves to 5"),
    ("[convolutional]\nfilters=4\nsize=99\n", 7, "kernel 99 does not fit an input of 64"),
    ("[convolutional]\nfilters=0\n", 6, "option 'filters': must be >= 1"),
    ("[convolutional]\nfilters=4\ngroups=3\n", 7, "must both divide by groups=3"),
    ("[maxpool]\nsize=2\nstride=-1\n", 7, "option 'stride': must be >= 1"),
    ("[convolutional]\nfilters=8\n[yolo]\nclasses=1\nmask=0,1\nnum=2\nanchors=1,2,3\n", 11,
     "expected 4 numbers (2 per anchor), got 3"),
    ("[convolutional]\nfilters=8\n[yolo]\nclasses=2\nmask=0\nnum=1\n", 8, "needs 1 anchors x 7 = 7"),
    ("[convolutional]\nfilters=8\nstride=2.5\n", 7, "expected an integer, got '2.5'"),
    ("[upsample]\nscale=nan\n", 6, "expected a number, got 'nan'"),
    ("[convolutional]\nfilters=8\nbinary=1\n", 7, "option 'binary': is not supported"),
    ("[convolutional]\nfilters\n", 6, "expected 'key=value'"),
    ("[convolutional\n", 5, "malformed section header"),
])
def test_errors_name_file_line_and_option(tmp_path, body, line, needle):
    with pytest.raises(CfgError) as e:
        build(tmp_path, body, init=False)
    message = str(e.value)
    assert needle in message
    assert f"t.cfg:{line}:" in message
    assert e.value.line == line


def test_first_section_must_be_net(tmp_path):
    with pytest.raises(CfgError, match=r"t.cfg:1: \[convolutional\]: the first section must be \[net\]"):
        darknet_py.Darknet(write(tmp_path, "[convolutional]\nfilters=2\n"))


def test_option_before_any_section(tmp_path):
    with pytest.raises(CfgError, match=r"t.cfg:1: option 'width' before the first \[section\]"):
        darknet_py.Darknet(write(tmp_path, "width=3\n[net]\n"))


def test_binary_junk_names_the_line(tmp_path):
    path = tmp_path / "t.cfg"
    path.write_bytes(NET.encode() + b"[convolutional]\nfilters=\xff\xfe\n")
    with pytest.raises(CfgError, match=r"t.cfg:6: byte \d+ is not text"):
        darknet_py.Darknet(path)


def test_missing_file_is_a_cfg_error(tmp_path):
    with pytest.raises(CfgError, match="nope.cfg: cannot read"):
        darknet_py.Darknet(tmp_path / "nope.cfg")


def test_budget_refuses_before_allocating(tmp_path):
    # 2**20 filters of 3x3x2**20 would be 36 TB; the plan is refused from arithmetic alone.
    with pytest.raises(CfgError, match="over the budget"):
        build(tmp_path, "[convolutional]\nfilters=1048576\nsize=3\npad=1\n"
                        "[convolutional]\nfilters=1048576\nsize=3\npad=1\n")
    with pytest.raises(CfgError, match="over the budget of 1 MiB"):
        build(tmp_path, "[convolutional]\nfilters=64\nsize=3\npad=1\n", max_bytes=1 << 20)


def test_every_registered_section_has_an_alias_table_entry():
    # Darknet's alternative names resolve to the same builder.
    for alias, canonical in {"conv": "convolutional", "max": "maxpool", "avg": "avgpool",
                             "conn": "connected", "soft": "softmax"}.items():
        assert BUILDERS[alias] is BUILDERS[canonical] and CANONICAL[alias] == canonical
