"""The tuner (darknet_py/tuner.py): a path is chosen by its measured time against direct
convolution, once per key, cached on disk and reused; never one slower than direct. The timing
is stubbed: these tests check the decisions, not this machine's speed."""
import json

import pytest
import torch

from darknet_py import native, tuner
from darknet_py.layers import winograd
from darknet_py.layers.conv import Convolutional
from darknet_py.registry import Shape


class StubTimer:
    """Times given per path name (seconds of each round, or one float: one round); records
    each call's candidates."""

    def __init__(self, others=0.0, **seconds):
        self.seconds, self.others, self.calls = seconds, others, []

    def __call__(self, paths):
        self.calls.append(sorted(paths))
        rounds = {name: self.seconds[name] for name in paths}
        return tuner.Timing({name: t if isinstance(t, list) else [t] for name, t in rounds.items()}, self.others)


def candidates():
    return {tuner.DIRECT: lambda: None, "winograd": lambda: None}


@pytest.mark.parametrize("winograd_s, expected", [
    (0.5, "winograd"),
    (1.2, "direct"),   # slower than direct: never chosen
    (0.99, "direct"),  # within the margin of noise: direct stays
    (1.0, "direct"),
])
def test_a_path_is_chosen_only_where_it_beats_direct(winograd_s, expected):
    timer = StubTimer(direct=1.0, winograd=winograd_s)
    assert tuner.Tuner(timer=timer).choose("k", candidates) == expected


def test_choice_is_cached_on_disk_and_reused(tmp_path):
    file = tmp_path / "tuning.json"
    timer = StubTimer(direct=1.0, winograd=0.4)
    first = tuner.Tuner(file, timer=timer)
    assert first.choose("a", candidates) == "winograd"
    assert first.choose("a", candidates) == "winograd"
    assert len(timer.calls) == 1 and first.timed == 1
    saved = json.loads(file.read_text())
    assert saved["choices"]["a"] == {"choice": "winograd", "direct": 1.0, "winograd": 0.4}

    # a new process (a new tuner on the same file) reuses it without timing, even where the
    # machine would now time differently; another key is timed
    slower = StubTimer(direct=1.0, winograd=2.0)
    second = tuner.Tuner(file, timer=slower)
    assert second.choose("a", candidates) == "winograd" and slower.calls == []
    assert second.choose("b", candidates) == "direct" and len(slower.calls) == 1
    assert set(json.loads(file.read_text())["choices"]) == {"a", "b"}

    # force: time again and overwrite; off: direct without timing
    forced = tuner.Tuner(file, timer=slower, mode="force")
    assert forced.choose("a", candidates) == "direct" and len(slower.calls) == 2
    assert json.loads(file.read_text())["choices"]["a"]["choice"] == "direct"
    off = tuner.Tuner(file, timer=slower, mode="off")
    assert off.choose("c", candidates) == "direct" and len(slower.calls) == 2


@pytest.mark.parametrize("direct, winograd, others, expected", [
    # fastest runs alike, but round by round Winograd was slower in most: direct
    ([1.00, 1.00, 1.00, 1.00, 1.00], [0.90, 1.10, 1.10, 1.10, 1.10], 0.0, "direct"),
    # faster in every round: Winograd
    ([1.00, 1.00, 1.01, 1.00, 1.00], [0.80, 0.81, 0.80, 0.82, 0.80], 0.0, "winograd"),
    # one lucky run of Winograd while direct's runs were slowed: the median ratio says no
    ([1.00, 1.30, 1.40, 1.02, 1.01], [0.50, 1.40, 1.50, 1.05, 1.04], 0.0, "direct"),
    # noisy (direct's median run 1.5x its fastest, or other processes took 15% of the CPUs):
    # 10% faster is not enough, 30% is
    ([1.00, 1.50, 1.50, 1.50, 1.00], [0.90, 1.35, 1.35, 1.35, 0.90], 0.0, "direct"),
    ([1.00, 1.50, 1.50, 1.50, 1.00], [0.70, 1.05, 1.05, 1.05, 0.70], 0.0, "winograd"),
    ([1.00, 1.00, 1.00, 1.00, 1.00], [0.90, 0.90, 0.90, 0.90, 0.90], 0.15, "direct"),
    ([1.00, 1.00, 1.00, 1.00, 1.00], [0.70, 0.70, 0.70, 0.70, 0.70], 0.15, "winograd"),
    # contended (other processes took half the CPUs): direct, however much faster the other looked
    ([1.00, 1.00, 1.00, 1.00, 1.00], [0.50, 0.50, 0.50, 0.50, 0.50], 0.5, "direct"),
])
def test_decision_needs_the_fastest_run_the_median_ratio_and_a_quiet_machine(direct, winograd, others, expected):
    decision = tuner.decide(tuner.Timing({"direct": direct, "winograd": winograd}, others))
    assert decision.choice == expected
    assert decision.provisional == (others > tuner.NOISY_OTHERS or sorted(direct)[2] > tuner.NOISY_SPREAD * min(direct))


def test_a_disturbed_timing_keeps_direct_provisionally_until_a_quiet_one(tmp_path):
    """The failure this guards against: choices made while other jobs loaded the machine kept
    Winograd where it is 1.3x slower than direct on the quiet machine. A disturbed timing keeps
    direct and is timed again by later processes (a new tuner each), at most RETRIES times,
    until a quiet timing settles it."""
    file = tmp_path / "tuning.json"
    busy = StubTimer(others=0.5, direct=[1.0, 1.0, 1.0], winograd=[0.5, 0.5, 0.5])
    assert tuner.Tuner(file, timer=busy).choose("a", candidates) == "direct"
    entry = json.loads(file.read_text())["choices"]["a"]
    assert entry["provisional"] and entry["tries"] == 1
    quiet = StubTimer(direct=[1.0, 1.0, 1.0], winograd=[0.6, 0.6, 0.6])
    second = tuner.Tuner(file, timer=quiet)
    assert second.choose("a", candidates) == "winograd" and len(quiet.calls) == 1
    assert second.choose("a", candidates) == "winograd" and len(quiet.calls) == 1  # once per process
    assert "provisional" not in json.loads(file.read_text())["choices"]["a"]
    third = tuner.Tuner(file, timer=quiet)
    assert third.choose("a", candidates) == "winograd" and len(quiet.calls) == 1  # settled

    # a machine that is always busy: timed again RETRIES - 1 more times, then direct is kept
    for _ in range(tuner.RETRIES + 2):
        assert tuner.Tuner(file, timer=busy).choose("b", candidates) == "direct"
    assert len(busy.calls) == tuner.ATTEMPTS * (1 + tuner.RETRIES)  # each timing taken twice at once
    assert json.loads(file.read_text())["choices"]["b"]["tries"] == tuner.RETRIES


def test_a_disturbed_timing_is_taken_again_at_once():
    class Settling(StubTimer):
        def __call__(self, paths):
            self.others = 0.5 if not self.calls else 0.0  # busy, then quiet
            return super().__call__(paths)
    timer = Settling(direct=[1.0, 1.0, 1.0], winograd=[0.6, 0.6, 0.6])
    tuned = tuner.Tuner(timer=timer)
    assert tuned.choose("a", candidates) == "winograd" and len(timer.calls) == 2
    assert "provisional" not in tuned.choices["a"]


def test_unreadable_cache_is_tuned_again(tmp_path):
    file = tmp_path / "tuning.json"
    file.write_text("{not json")
    timer = StubTimer(direct=1.0, winograd=0.4)
    assert tuner.Tuner(file, timer=timer).choose("a", candidates) == "winograd" and len(timer.calls) == 1
    assert json.loads(file.read_text())["version"] == tuner.VERSION


def test_cache_file_is_per_kernel_build_and_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("DARKNET_PY_CACHE", str(tmp_path))
    first = tuner.cache_file()
    monkeypatch.setattr(native, "build_key", lambda name: "another kernel")
    second = tuner.cache_file()
    monkeypatch.setattr(native, "cpu_model", lambda: "another CPU")
    third = tuner.cache_file()
    assert len({first, second, third}) == 3 and first.parent == tmp_path


def test_measure_times_every_path():
    runs = {"direct": 0, "other": 0}

    def count(name):
        def run():
            runs[name] += 1
        return run
    timing = tuner.measure({name: count(name) for name in runs})
    rounds = timing.rounds
    assert 0 <= timing.others <= 1 and set(rounds) == set(runs) and all(t >= 0 for times in rounds.values() for t in times)
    assert len(rounds["direct"]) == len(rounds["other"]) >= 2
    # warm-up, then interleaved rounds; runs this short are repeated within each round
    assert runs["direct"] == runs["other"] == 1 + len(rounds["direct"]) * tuner.MAX_RUNS_PER_SAMPLE


@pytest.mark.skipif(winograd._kernel() is None, reason="no C compiler for the native kernel")
@pytest.mark.parametrize("winograd_s, path", [(0.3, "winograd"), (3.0, "direct")])
def test_layer_runs_the_tuned_path_and_reuses_the_choice(monkeypatch, tmp_path, winograd_s, path):
    """A [convolutional] layer times its two real paths (they agree), runs the one chosen, and
    a second layer of the same shape takes the cached choice without timing."""
    monkeypatch.delenv("DARKNET_PY_WINOGRAD", raising=False)
    outputs = {}

    def timer(paths):
        for name, run in paths.items():
            outputs[name] = run().clone()
        return tuner.Timing({name: [1.0 if name == "direct" else winograd_s + 0.1 * (name != "winograd")]
                             for name in paths})
    stub = tuner.Tuner(tmp_path / "tuning.json", timer=timer)
    monkeypatch.setattr(tuner, "_default", stub)
    torch.manual_seed(0)
    layers = [Convolutional(48, 40, 3, 1, 1, 1, 1, "leaky").eval() for _ in range(2)]
    for layer in layers:
        layer.reset_parameters()
        layer.prepare_inference(torch.float32, fold=False, input_shape=Shape(48, 17, 19))
    assert stub.timed == 1 and {"direct", "winograd"} <= set(outputs) <= {"direct", *winograd.GROUP_FLOATS}
    for name in outputs:
        assert torch.allclose(outputs["direct"], outputs[name], atol=1e-4)
    x = torch.randn(1, 48, 17, 19).contiguous(memory_format=torch.channels_last)
    for layer in layers:
        assert layer.path == path and (layer.winograd is not None) == (path == "winograd")
        assert (layer.packed is None) == (path == "winograd")
        with torch.no_grad():
            y = layer(x)
        with torch.enable_grad():
            expected = layer(x.clone().requires_grad_()).detach()
        assert torch.allclose(y, expected, atol=1e-4)
