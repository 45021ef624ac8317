"""Every official cfg and every registered section type builds, loads weights and runs forward."""
from pathlib import Path

import pytest
import torch

import darknet_py
from darknet_py.registry import CANONICAL
from darknet_py.synthetic import write_random_weights

from conftest import SHARED

OFFICIAL = sorted(p.name for p in (SHARED / "cfg").glob("*.cfg")) if (SHARED / "cfg").is_dir() else []

# The smallest input each cfg accepts: fixed-size layers ([connected], [local]) need the cfg's own.
FIXED_SIZE = {"yolov1.cfg"}


@pytest.mark.shared
def test_cfg_folder_is_an_unchanged_copy():
    ours = Path(__file__).resolve().parents[1] / "cfg"
    for name in OFFICIAL:
        assert (ours / name).read_bytes() == (SHARED / "cfg" / name).read_bytes(), name


@pytest.mark.shared
@pytest.mark.parametrize("name", OFFICIAL)
def test_official_cfg_builds_loads_and_runs(name, tmp_path):
    cfg = SHARED / "cfg" / name
    size = {} if name in FIXED_SIZE else {"width": 64, "height": 64}
    planned = darknet_py.Darknet(cfg, init=False, **size)
    path = tmp_path / "w.weights"
    write_random_weights(cfg, path, seed=3)
    net = darknet_py.load(cfg, path, **size)
    x = torch.rand(1, planned.net.channels, planned.net.height, planned.net.width)
    with torch.no_grad():
        outs = net(x)
    assert len(outs) == max(1, len(net.heads))
    for i, out in zip(net.outputs, outs):
        spec = net.specs[i]
        assert out.numel() == spec.out.numel  # what ran has the shape the planner inferred
        assert torch.isfinite(out).all()


# One minimal cfg body per registered section type; a new type without an entry fails below.
SNIPPETS = {
    "convolutional": "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=leaky\n",
    "connected": "[connected]\noutput=7\nbatch_normalize=1\nactivation=relu\n",
    "local": "[local]\nfilters=2\nsize=3\nstride=1\npad=1\nactivation=leaky\n",
    "batchnorm": "[batchnorm]\n",
    "maxpool": "[maxpool]\nsize=2\nstride=2\n",
    "avgpool": "[avgpool]\n",
    "route": "[convolutional]\nfilters=2\n[maxpool]\nsize=1\n[route]\nlayers=-1,-2\n",
    "shortcut": "[convolutional]\nfilters=3\n[convolutional]\nfilters=3\n[shortcut]\nfrom=-2\nactivation=leaky\n",
    "upsample": "[upsample]\nstride=2\n",
    "reorg": "[convolutional]\nfilters=4\n[reorg]\nstride=2\n",
    "dropout": "[dropout]\nprobability=.5\n",
    "softmax": "[softmax]\ngroups=3\n",
    "cost": "[cost]\ntype=sse\n",
    "yolo": "[convolutional]\nfilters=14\nactivation=linear\n[yolo]\nmask=0,1\nanchors=1,2,3,4,5,6\n"
            "classes=2\nnum=3\n",
    "Gaussian_yolo": "[convolutional]\nfilters=24\nactivation=linear\n[Gaussian_yolo]\nmask=0,1\n"
                     "anchors=1,2,3,4,5,6\nclasses=3\nnum=3\nscale_x_y=1.05\n",
    "region": "[convolutional]\nfilters=16\nactivation=linear\n[region]\nanchors=1,1,2,2\nclasses=3\n"
              "coords=4\nnum=2\nsoftmax=1\n",
    "asff": "[convolutional]\nfilters=3\n[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\n"
            "[convolutional]\nfilters=6\nsize=3\nstride=2\npad=1\n[asff]\nfrom=-1,-2,-3\nlevel=1\nfilters=5\n"
            "compress=2\n",
    "detection": "[connected]\noutput=28\nactivation=linear\n[detection]\nclasses=2\ncoords=4\nrescore=1\n"
                 "side=2\nnum=1\nsoftmax=1\n",
    # AlexeyAB's sections (darknet_py/layers/alexeyab.py, pool.py, resample.py)
    "scale_channels": "[convolutional]\nfilters=3\n[avgpool]\n[scale_channels]\nfrom=-2\n",
    "sam": "[convolutional]\nfilters=3\n[convolutional]\nfilters=3\nactivation=logistic\n[sam]\nfrom=-2\n",
    "local_avgpool": "[local_avgpool]\nsize=3\nstride_x=2\nstride_y=1\n",
    "reorg3d": "[reorg3d]\nstride=2\n",
    "implicit": "[convolutional]\nfilters=2\n[implicit]\nfilters=3\natoms=2\n",
    "empty": "[convolutional]\nfilters=2\n[silence]\n",
    # YOLOR's sections in converted cfgs (alexeyab.py)
    "implicit_add": "[convolutional]\nfilters=2\n[implicit_add]\nfilters=2\n",
    "implicit_mul": "[convolutional]\nfilters=2\n[implicit_mul]\nfilters=2\n",
    "shift_channels": "[implicit_add]\nfilters=2\n[convolutional]\nfilters=2\n[shift_channels]\nfrom=0\n",
    "control_channels": "[implicit_mul]\nfilters=2\n[convolutional]\nfilters=2\n[control_channels]\nfrom=-2\n",
}


def test_snippets_cover_the_registry():
    assert set(SNIPPETS) == set(CANONICAL.values())


@pytest.mark.parametrize("kind", sorted(SNIPPETS))
def test_registered_section_builds_round_trips_and_runs(kind, tmp_path):
    cfg = tmp_path / f"{kind}.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n" + SNIPPETS[kind])
    path = tmp_path / "a.weights"
    write_random_weights(cfg, path, seed=5)
    net = darknet_py.load(cfg, path)
    assert net.specs[-1].kind == kind
    with torch.no_grad():
        out = net(torch.rand(2, 3, 8, 8))
    assert all(o.shape[0] == 2 and torch.isfinite(o).all() for o in out)
    net.save_weights(tmp_path / "b.weights")
    assert (tmp_path / "b.weights").read_bytes() == path.read_bytes()
