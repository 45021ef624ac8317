"""AlexeyAB's ``[net]`` training options, checked before the first iteration.

Inference reads and keeps every one of them (netcfg.py); training implements the data
options of AlexeyAB's ``load_data_detection`` (augment_alexeyab.py, mosaic.py),
``resize_step`` (multiscale.py) and ``ema_alpha`` (ema.py), and refuses by name and line the
options that would change how AlexeyAB trains and that this trainer does not do. Options that
only steer memory, speed, the chart or the CUDA build's half precision (``optimized_memory``,
``workspace_size_limit_MB``, ``use_cuda_graph``, ``loss_scale``, ``max_chart_loss``,
``show_receptive_field``, ``attention``) change nothing here; ``label_smooth_eps`` in ``[net]``
is read by AlexeyAB's classifier only (detection heads have their own), and ``augment_speed``,
``sequential_subdivisions``, ``contrastive_jit_flip`` and ``contrastive_color`` act only with
``track`` or ``contrastive``.
"""
from __future__ import annotations

import logging
from dataclasses import fields

from ..cfg import Section, parse_cfg, set_options
from ..netcfg import NetConfig

log = logging.getLogger(__name__)

# option -> what AlexeyAB does with it (not done here)
REFUSED = {
    "track": "sequence training on consecutive frames (get_sequential_paths)",
    "contrastive": "the contrastive loss",
    "unsupervised": "unsupervised contrastive training",
    "adversarial_lr": "adversarial training on perturbed inputs",
    "dynamic_minibatch": "a mini-batch that grows as random= shrinks the network",
    "try_fix_nan": "replacing NaN and inf in layer outputs while training",
    "weights_reject_freq": "rejecting similar filters every N iterations",
    "equidistant_point": "the equidistant-point term of AlexeyAB's training",
    "badlabels_rejection_percentage": "rejecting labels whose loss is high",
    "num_sigmas_reject_badlabels": "rejecting labels whose loss is high",
}
# load_data_detection's options: AlexeyAB's data pipeline only (fork=alexeyab)
PIPELINE = ("mosaic", "cutmix", "mixup", "blur", "gaussian_noise", "letter_box", "mosaic_bound")
MIXUP_VALUES = range(5)  # 0 none, 1 mixup, 2 cutmix, 3 mosaic, 4 cutmix and mosaic
_DEFAULTS = {f.name: f.default for f in fields(NetConfig)}


def net_section(cfg_file, overrides=()) -> Section:
    """The cfg's [net] section with ``--set`` applied, for errors that name a line."""
    section = parse_cfg(cfg_file)[0]
    set_options(section, overrides)
    return section


def check_training_options(section: Section, net: NetConfig) -> None:
    """Refuse what training would otherwise silently skip; warn about ``cutmix`` as AlexeyAB's
    detector does (it drops it)."""
    for key in sorted((k for k in section.options if k in REFUSED and getattr(net, k) != _DEFAULTS[k]),
                      key=lambda k: section.options[k].line):
        raise section.error(f"{key}={getattr(net, key):g} ({REFUSED[key]}) is not supported for training; "
                            f"inference reads it", key)
    if not 0 <= net.ema_alpha <= 1:
        raise section.error(f"ema_alpha={net.ema_alpha:g}: the average's weight of its old value, 0..1 "
                            f"(0: off)", "ema_alpha")
    if net.mixup not in MIXUP_VALUES:
        raise section.error(f"mixup={net.mixup}: AlexeyAB's values are 0..4 (1 mixup, 2 cutmix, 3 mosaic, "
                            f"4 cutmix and mosaic)", "mixup")
    if net.fork != "alexeyab":
        if net.ema_alpha:
            raise section.error(f"ema_alpha={net.ema_alpha:g} is AlexeyAB's weight averaging; this cfg "
                                f"trains as pjreddie's (fork={net.fork})", "ema_alpha")
        for key in PIPELINE:
            if key in section.options and getattr(net, key) != _DEFAULTS[key]:
                raise section.error(f"{key}={getattr(net, key)} is an option of AlexeyAB's data loading; "
                                    f"this cfg trains as pjreddie's (fork={net.fork})", key)
    cutmix = "cutmix" if net.cutmix else "mixup" if net.mixup in (2, 4) else None
    if cutmix:
        log.warning("%s", section.error("cutmix isn't supported for Detector (AlexeyAB's load_data_detection "
                                        "drops it too)" + ("; mosaic stays" if net.mosaic or net.mixup == 4
                                                           else ""), cutmix))
