"""Darknet's learning-rate curve (``get_current_rate``) at chosen update numbers."""
from __future__ import annotations

import math

import pytest

from darknet_py.cfg import parse_cfg, parse_cfg_text, set_options
from darknet_py.errors import CfgError
from darknet_py.netcfg import NetConfig
from darknet_py.train.schedule import learning_rate, rate_curve

from conftest import CFG
from reference import rate as rate_ref


def net_of(text: str) -> NetConfig:
    return NetConfig.from_section(parse_cfg_text("[net]\nwidth=32\nheight=32\nchannels=3\n" + text)[0])


def test_yolov3_burn_in_then_steps():
    net = NetConfig.from_section(parse_cfg(CFG / "yolov3.cfg")[0])
    # burn_in=1000, power=4 (default): 0.001 * (b/1000)^4; steps 400000, 450000 scale by .1
    expected = {1: 1e-15, 500: 0.001 * 0.5 ** 4, 999: 0.001 * 0.999 ** 4, 1000: 0.001,
                399_999: 0.001, 400_000: 0.0001, 449_999: 0.0001, 450_000: 0.00001, 500_200: 0.00001}
    for batch_num, rate in expected.items():
        assert learning_rate(net, batch_num) == pytest.approx(rate, rel=1e-6), batch_num


def test_darknet53_poly():
    net = NetConfig.from_section(parse_cfg(CFG / "darknet53.cfg")[0])
    # learning_rate=0.1, burn_in=1000, policy=poly, power=4, max_batches=800000
    assert learning_rate(net, 1000) == pytest.approx(0.1 * (1 - 1000 / 800000) ** 4, rel=1e-6)
    assert learning_rate(net, 400_000) == pytest.approx(0.1 * 0.5 ** 4, rel=1e-6)
    assert learning_rate(net, 100) == pytest.approx(0.1 * 0.1 ** 4, rel=1e-6)  # still burning in


@pytest.mark.parametrize("text, batch_num, rate", [
    ("learning_rate=0.01\npolicy=constant", 12345, 0.01),
    ("learning_rate=0.01\npolicy=step\nstep=100\nscale=0.5", 250, 0.01 * 0.5 ** 2),  # integer 250/100
    ("learning_rate=0.01\npolicy=exp\ngamma=0.99", 10, 0.01 * 0.99 ** 10),
    ("learning_rate=0.01\npolicy=sigmoid\ngamma=0.1\nstep=50", 60, 0.01 / (1 + math.exp(0.1 * 10))),
    ("learning_rate=0.01\npolicy=steps\nsteps=10,20,30\nscales=.5,.5,10", 30, 0.01 * 0.5 * 0.5 * 10),
    ("learning_rate=0.01\npolicy=steps\nsteps=10,20,30\nscales=.5,.5,10", 29, 0.01 * 0.5 * 0.5),
    # sgdr: cycles of 100 then 200 (sgdr_mult 2); batch 150 is 50 into the 200-long second cycle
    ("learning_rate=0.01\nlearning_rate_min=0.001\npolicy=sgdr\nsgdr_cycle=100\nmax_batches=1000", 150,
     0.001 + 0.5 * 0.009 * (1 + math.cos(50 * math.pi / 200))),
    ("learning_rate=0.01\nlearning_rate_min=0.001\npolicy=sgdr\nsgdr_cycle=100\nmax_batches=1000", 100,
     0.001),  # the end of the first cycle: cos(pi)
    # cosine (extension): after a 100-batch burn-in, half way to max_batches=1100 is the mean
    ("learning_rate=0.01\nlearning_rate_min=0\npolicy=cosine\nburn_in=100\nmax_batches=1100", 600, 0.005),
    ("learning_rate=0.01\nlearning_rate_min=0\npolicy=cosine\nburn_in=100\nmax_batches=1100", 50,
     0.01 * 0.5 ** 4),
])
def test_policies(text, batch_num, rate):
    assert learning_rate(net_of(text), batch_num) == pytest.approx(rate, rel=1e-5, abs=1e-9)


def test_random_policy_needs_and_uses_a_draw():
    net = net_of("learning_rate=0.01\npolicy=random\npower=2")
    assert learning_rate(net, 5, uniform=0.5) == pytest.approx(0.01 * 0.25)
    with pytest.raises(ValueError):
        learning_rate(net, 5)


def test_curve_is_monotone_for_steps_after_burn_in():
    net = net_of("learning_rate=0.01\nburn_in=10\npolicy=steps\nsteps=20,30\nscales=.1,.1\nmax_batches=40")
    curve = rate_curve(net)
    assert len(curve) == 40
    assert all(a <= b for a, b in zip(curve[:9], curve[1:10]))  # burn-in rises
    assert curve[10] == pytest.approx(0.01) and curve[39] == pytest.approx(0.0001)


def test_set_overrides_and_checks_values():
    sections = parse_cfg(CFG / "yolov3.cfg")
    set_options(sections[0], ["max_batches=6", "width=128", "policy=poly"])
    net = NetConfig.from_section(sections[0])
    assert (net.max_batches, net.width, net.policy) == (6, 128, "poly")  # steps= left over: harmless
    sections = parse_cfg(CFG / "yolov3.cfg")
    set_options(sections[0], ["width=abc"])
    with pytest.raises(CfgError, match="width"):
        NetConfig.from_section(sections[0])
    with pytest.raises(CfgError, match="key=value"):
        set_options(sections[0], ["width"])


RATE_CASES = {
    "steps": "policy=steps\nsteps=400,800,1200,1600\nscales=.1,3.3,.7,.01",
    "poly": "policy=poly\npower=2.7",
    "exp": "policy=exp\ngamma=0.9987",
    "sigmoid": "policy=sigmoid\ngamma=0.013\nstep=900",
    "sgdr": "policy=sgdr\nlearning_rate_min=0.00037\nsgdr_cycle=150\nsgdr_mult=3",
    "step": "policy=step\nstep=300\nscale=0.77",
    "constant": "policy=constant",
}


@pytest.mark.parametrize("fork", ["pjreddie", "alexeyab"])
@pytest.mark.parametrize("burn_in", [0, 700])
@pytest.mark.parametrize("policy", sorted(RATE_CASES))
def test_rate_is_get_current_rate_bit_for_bit(policy, burn_in, fork):
    """Every iteration 0..2000 against the C of get_current_rate compiled here (pjreddie's
    size_t batch_num, AlexeyAB's int; sgdr is AlexeyAB's only)."""
    lib = rate_ref.load()
    if lib is None:
        pytest.skip("no C compiler")
    if policy == "sgdr" and fork == "pjreddie":
        pytest.skip("sgdr is AlexeyAB's policy")
    net = net_of(f"fork={fork}\nlearning_rate=0.00261\nburn_in={burn_in}\npower=3.1\nmax_batches=2000\n"
                 + RATE_CASES[policy])
    got = [learning_rate(net, b) for b in range(2001)]
    want = [rate_ref.get_current_rate(net, b) for b in range(2001)]
    bad = [(b, g, w) for b, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, f"{len(bad)} iterations differ, first {bad[:3]}"


def test_random_rate_is_get_current_rate_bit_for_bit():
    if rate_ref.load() is None:
        pytest.skip("no C compiler")
    net = net_of("learning_rate=0.00261\npolicy=random\npower=1.7")
    draws = [i / 997 for i in range(1, 998)]
    assert [learning_rate(net, 5, u) for u in draws] == [rate_ref.get_current_rate(net, 5, u) for u in draws]
