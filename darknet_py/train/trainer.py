"""Darknet's ``train_detector`` on PyTorch's engine.

One update = ``batch`` images in ``subdivisions`` mini-batches (gradients accumulate), then
SGD with Darknet's rule: ``w += rate/batch * (sum of deltas - decay*batch*w)`` and momentum,
which is ``torch.optim.SGD`` on the mean gradient with ``weight_decay=decay`` for weights only.
Every random choice (which images, augmentation, multi-scale size) is a function of the seed
and the image or iteration number, so a run resumed from ``_last.weights`` repeats exactly
what the uninterrupted run would have done.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import numpy as np
import torch
import torch.distributed as dist

from ..datafile import DataConfig
from ..datasets import Problems, open_dataset
from ..errors import TrainingError
from ..files import check_writable_folder, write_failure
from ..model import Darknet, check_budget
from ..weights import layers_in_file
from . import multiscale
from .alexeyab_options import check_training_options, net_section
from .augment import Augment
from .augment_alexeyab import AlexeyabAugment
from .amp import amp_plan
from .checkpoint import load_state, save_checkpoint, save_checkpoint_staged, state_path
from .console import Banner, start_line
from .guard import NonFiniteUpdate, guarded_step
from .deltas import head_delta, trainable
from .ema import WeightsEma
from .interrupt import Interrupted, StopOnSignal, TrainingInterrupted
from .map_schedule import MapSchedule, spacing
from .samples import TrainingSamples, collate
from .schedule import learning_rate, uniform_draw
from .watch import Watch, WatchOptions

log = logging.getLogger(__name__)

# Darknet's own numbers (train_detector, network.c), named
RESIZE_EVERY = 10  # random=1: a new network size every 10 iterations
SIZE_CHOICES, SIZE_MIN_BLOCKS, SIZE_BLOCK = 10, 10, 32  # (rand() % 10 + 10) * 32: 320..608
LARGEST_SIZE = 608  # ... and 608 for the last LAST_AT_LARGEST iterations
LAST_AT_LARGEST = 200
EARLY_CHECKPOINT_EVERY, EARLY_CHECKPOINTS_UNTIL = 100, 1000  # <cfg>_N.weights: every 100 below 1000,
CHECKPOINT_EVERY = 10000  # then every 10000
# tags of the random streams default_rng((seed, n, tag)) (schedule.py's policy=random uses 7)
STREAM_ORDER, STREAM_SIZE = 1, 3


@dataclass
class TrainOptions:
    """What ``detector train`` adds to the cfg. Bag-of-Freebies switches are off by default."""

    backup: str | None = None  # default: the .data file's backup=
    seed: int = 0
    workers: int = 2
    clear: bool = False  # Darknet's -clear: start at seen = 0
    mixup: float = 0.0  # probability of a geometry-preserving mixup per image
    label_smoothing: float = 0.0
    multi_scale: bool = False  # as random=1 in the last head: 320..608 every 10 iterations
    amp: bool = False  # mixed precision where the device makes it pay (amp.py)
    sync_bn: bool = False  # batch statistics over all processes of a distributed run
    last_every: int = 100  # iterations between _last.weights saves
    valid_every: int | None = None  # None: every 4 epochs (at least 100 iterations) with valid=
    calc_map: bool = False  # AlexeyAB's -map: mAP also without valid= (on the training list), its lines
    max_bad_steps: int = 3  # consecutive non-finite losses before the run stops
    progress: bool = True  # the bar on a terminal (else Darknet's line per iteration)
    verbose: bool = False  # Darknet's lines even on a terminal
    tensorboard: str | None = None  # event folder (default <backup>/tensorboard/<cfg>, when installed)
    console: TextIO | None = None  # where the banner and lines go (default sys.stdout)
    device: str | None = None
    callback: Callable | None = None  # called with the trainer after every iteration


@dataclass
class UpdateRecord:
    """What one update did, for whoever reports it (console, CSV, chart, callbacks)."""

    iteration: int  # Darknet's get_current_batch after the update
    seen: int
    rate: float
    loss: float  # what train_network returns: the mean of head_losses
    head_losses: dict = field(default_factory=dict)  # layer index -> that head's cost per image
    head_stats: list = field(default_factory=list)  # (layer index, HeadStats) per head per mini-batch
    skipped: str | None = None  # why the update was skipped (weights and statistics kept)
    overflow: bool = False  # skipped by float16's gradient scaler, which lowered its scale (not an error)


@dataclass
class TrainResult:
    iteration: int
    seen: int
    losses: list[float] = field(default_factory=list)
    best_map: float | None = None
    final: Path | None = None


def _distributed():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochOrder:
    """Every image once per epoch, in an order drawn per epoch from the seed."""

    def __init__(self, count: int, seed: int):
        self.count, self.seed = count, seed
        self.epoch, self.perm = None, None

    def __getitem__(self, sample_number: int) -> int:
        epoch, k = divmod(sample_number, self.count)
        if epoch != self.epoch:
            self.perm = np.random.default_rng((self.seed, epoch, STREAM_ORDER)).permutation(self.count)
            self.epoch = epoch
        return int(self.perm[k])


class Trainer:
    """Darknet's ``train_detector`` in three parts.

    Setup: ``Trainer(data_file, cfg, ...)`` builds the network, its optimizer and (with a
    .data file) the dataset; ``Trainer.from_cfg`` only the network, for updates on given
    tensors. Update: ``update(images, truths)`` (or ``step`` on prepared mini-batches) is one
    ``train_network`` call. Loop: ``run()`` feeds the dataset to ``step`` until ``max_batches``,
    with checkpoints, validation and one report per iteration (``report``).
    """

    def __init__(self, data_file, cfg, weights=None, *, overrides=(), options: TrainOptions | None = None):
        self.options = options = options or TrainOptions()
        if not 0 <= options.seed < 2**64:  # what numpy's and torch's generators take
            raise TrainingError(f"seed={options.seed} is outside 0 .. 2**64 - 1")
        self.data = DataConfig.from_file(data_file) if data_file is not None else None
        self.weights = weights
        self.cut = None  # layers a cut weights file (darknet53.conv.74) holds
        self.signals = StopOnSignal()  # run() installs it; step() holds signals while applying an update
        self._setup_network(cfg, weights, overrides)
        self.best_map = None
        self.avg_loss = None  # Darknet's running average, carried in the sidecar
        if weights is not None and not options.clear:
            self._resume(weights)
        if self.data is not None:
            self._setup_data()

    @classmethod
    def from_cfg(cls, cfg, weights=None, *, clear: bool = False, device=None, seed: int = 0,
                 overrides=()) -> "Trainer":
        """The network of ``cfg`` (with ``weights``, ``seen`` reset by ``clear`` as Darknet's
        ``-clear``) ready for ``update``; no dataset, no checkpoints. ``seed`` draws the
        initial weights of layers the file does not hold."""
        return cls(None, cfg, weights, overrides=overrides,
                   options=TrainOptions(clear=clear, device=device, seed=seed, workers=0, progress=False))

    # -- setup ---------------------------------------------------------------------------------
    def _setup_network(self, cfg, weights, overrides):
        """The network (Darknet's random init per seed, then ``weights``), its training
        geometry, frozen layers, device and optimizer."""
        options = self.options
        self.rank, self.world = _distributed()
        self.net = Darknet(cfg, overrides=overrides, init=False)
        with torch.random.fork_rng(devices=[]):  # Darknet's random init, reproducible per seed
            torch.manual_seed(options.seed)
            self.net.init_weights()
        self.name = Path(cfg).stem
        self.cfg = self.net.net
        self._check_trainable()
        check_training_options(net_section(cfg, overrides), self.cfg)
        if weights is not None:
            self._load(weights)
        if options.clear:
            self.net.seen = 0
        self.batch = self.cfg.batch
        self.subdivisions = self.cfg.subdivisions
        if self.batch % (self.subdivisions * self.world):
            raise TrainingError(f"batch={self.batch} is not a multiple of subdivisions={self.subdivisions} "
                                f"x {self.world} processes")
        self.mini = self.batch // self.subdivisions  # images per forward, over all processes
        self.local = self.mini // self.world
        last = self.net.layers[-1]  # train_detector reads the last layer's random=
        self.random = options.multi_scale or (trainable(last) and bool(last.settings.random))
        # value, gradient and a saved intermediate per activation; parameter, gradient, momentum
        # the last iteration trains at the largest multi-scale size (either fork's rule)
        check_budget(self.net, self.local, 3, self.size_at(self.cfg.max_batches - 1) if self.random else None)
        self.iteration = self.net.seen // self.batch
        self.device = torch.device(options.device or (f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
                                                      if torch.cuda.is_available() else "cpu"))
        self.frozen = self._freeze()
        if options.sync_bn and self.world > 1:
            for layer in self.net.layers:
                if hasattr(layer, "sync_group"):
                    layer.sync_group = dist.group.WORLD
        self.net.to(self.device).train()
        self.amp = amp_plan(options.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp.scaler else None
        self.model = self.net
        if self.world > 1:  # every process starts from the same weights and statistics
            self.model = torch.nn.parallel.DistributedDataParallel(self.net, forward_sync_buffers=False)
        self.optimizer = self._optimizer()
        self.ema = WeightsEma(self.net, self.cfg.ema_alpha) if self.cfg.ema_alpha else None
        self.last_record: UpdateRecord | None = None  # what the latest update did

    def _resume(self, weights):
        """The optimizer's momentum, best mAP and EMA from the ``.state`` sidecar of ``weights``."""
        state = load_state(weights, self.net.seen, self.optimizer)  # checked field by field
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.best_map = state.get("best_map")
            self.avg_loss = state.get("avg_loss")
            if self.ema is not None and state.get("ema") is not None:
                self.ema.load(state["ema"], state_path(weights))

    def _setup_data(self):
        """The training source, its augmentation and the run's bookkeeping."""
        options = self.options
        self.backup = Path(options.backup or self.data.backup)
        self.problems = Problems()
        self.source = open_dataset(self.data, "train", self.problems)
        if len(self.source) == 0:
            raise TrainingError(f"{self.data.path}: no usable training images "
                                f"({self.problems.summary() or 'the list is empty'})")
        self.order = EpochOrder(len(self.source), options.seed)
        last = self.net.layers[self.net.heads[-1]]
        if self.cfg.fork == "alexeyab":
            augment = AlexeyabAugment.from_net(self.cfg, last, mixup=options.mixup)
        else:
            augment = Augment.from_net(self.cfg, last, flip=bool(self.cfg.flip), mixup=options.mixup)
        self.samples = TrainingSamples(self.source, self.cfg.width, self.cfg.height, augment,
                                       last.settings.max_boxes, options.seed)
        self.reported: set = set()
        self._valid_source = None

    def _check_trainable(self):
        if not self.net.heads:
            raise TrainingError(f"{self.net.cfg_file} has no [yolo] or [region] layer to train")
        for i in self.net.heads:
            layer = self.net.layers[i]
            if not trainable(layer):
                raise TrainingError(f"layer {i} ({self.net.describe(i)}): training this head type is not supported")
            resize = layer.settings.resize
            if self.net.fork != "alexeyab" and (resize != 1.0 or layer.settings.random not in (0, 1)):
                # AlexeyAB's data pipeline (augment_alexeyab.py, multiscale.py) reads these
                raise TrainingError(f"layer {i} ({self.net.describe(i)}): resize={resize:g} and "
                                    f"random={layer.settings.random:g} need AlexeyAB's data pipeline; this cfg "
                                    f"trains as {self.net.fork}'s (set fork=alexeyab)")
            if self.data is not None and layer.classes < self.data.classes:
                raise TrainingError(f"layer {i} ({self.net.describe(i)}) has classes={layer.classes}, "
                                    f"{self.data.path} has classes={self.data.classes}")
        for i, layer in enumerate(self.net.layers):
            if getattr(layer, "dropblock", False):
                raise TrainingError(f"layer {i} ({self.net.describe(i)}): dropblock=1 is not supported for "
                                    f"training (AlexeyAB implements DropBlock in CUDA only); inference reads it")
        if self.cfg.adam:
            raise TrainingError(f"{self.net.cfg_file}: adam=1 is not supported for training (SGD only)")
        if self.cfg.max_batches <= 0:
            raise TrainingError(f"{self.net.cfg_file}: max_batches must be set (e.g. --set max_batches=500)")

    def _load(self, weights):
        """A whole file, or a cut one (darknet53.conv.74): the layers it holds, found from its
        exact size; anything else is refused by read_weights with the reason."""
        cutoff = layers_in_file(self.net, weights)
        self.net.load_weights(weights, cutoff)
        rest = self.net.layers[cutoff:] if cutoff is not None else []
        self.cut = cutoff if any(next(layer.parameters(), None) is not None for layer in rest) else None
        if self.cut is not None:
            log.info("%s holds layers 0..%d; the rest start from Darknet's initialisation", weights, cutoff - 1)

    def _freeze(self) -> int:
        """``stopbackward`` stops Darknet's backward pass at that layer: it and everything before
        it get no gradient. ``update_network`` still updates them: see ``_optimizer``."""
        stops = [i for i, f in enumerate(self.net.flags) if f.stopbackward]
        last = max(stops, default=-1)
        for layer in self.net.layers[:last + 1]:
            layer.requires_grad_(False)
        return last

    def _optimizer(self):
        """SGD in groups of (layer learning_rate scale, decayed or not). Weights of frozen layers
        are in it too: Darknet's update_network runs for every layer, so a weight without a
        gradient still decays (``weight_updates -= decay*batch*w``, with momentum); biases and
        scales without a gradient stay as they are."""
        groups = {}
        self.decay_only = []  # frozen weights: a zero gradient before each step
        for i, layer in enumerate(self.net.layers):
            scale = self.net.flags[i].learning_rate_scale
            for name, p in layer.named_parameters():
                decay = name.rsplit(".", 1)[-1] == "weights"  # Darknet decays weights only
                if p.requires_grad or decay:
                    groups.setdefault((scale, decay), []).append(p)
                if decay and not p.requires_grad:
                    self.decay_only.append(p)
        if not any(p.requires_grad for ps in groups.values() for p in ps):
            raise TrainingError(f"{self.net.cfg_file}: every layer is frozen (stopbackward)")
        return torch.optim.SGD([{"params": ps, "lr_scale": scale,
                                 "weight_decay": self.cfg.decay if decay else 0.0}
                                for (scale, decay), ps in groups.items()],
                               lr=0.0, momentum=self.cfg.momentum)

    # -- data ----------------------------------------------------------------------------------
    def size_at(self, iteration: int) -> tuple[int, int]:
        """Darknet's random=1: every 10 iterations a square size (10..19) * 32, 608 near the end;
        AlexeyAB's rule (multiscale.py) for fork=alexeyab."""
        if not self.random:
            return self.cfg.width, self.cfg.height
        rng = np.random.default_rng((self.options.seed, iteration // RESIZE_EVERY, STREAM_SIZE))
        if self.cfg.fork == "alexeyab":
            return multiscale.size_at(self.net.layers[self.net.heads[-1]].settings.random, self.cfg.width,
                                      self.cfg.height, self.cfg.resize_step, iteration, self.cfg.max_batches, rng)
        if iteration // RESIZE_EVERY * RESIZE_EVERY + LAST_AT_LARGEST > self.cfg.max_batches:
            return LARGEST_SIZE, LARGEST_SIZE
        dim = (int(rng.integers(SIZE_CHOICES)) + SIZE_MIN_BLOCKS) * SIZE_BLOCK
        return dim, dim

    def sample_keys(self):
        """Every mini-batch of this process from the current iteration to ``max_batches``: lists
        of (sample number, image index, width, height), the keys of ``TrainingSamples``."""
        for it in range(self.iteration, self.cfg.max_batches):
            w, h = self.size_at(it)
            for s in range(self.subdivisions):
                first = it * self.batch + s * self.mini + self.rank * self.local
                yield [(n, self.order[n], w, h) for n in range(first, first + self.local)]

    def _loader(self):
        return torch.utils.data.DataLoader(
            self.samples, batch_sampler=self.sample_keys(), collate_fn=collate,
            num_workers=self.options.workers, persistent_workers=False,
            pin_memory=self.device.type == "cuda")

    # -- one update ----------------------------------------------------------------------------
    def update(self, images, truths) -> float:
        """One ``train_network`` call on given tensors: ``images`` float32 (batch, 3, h, w),
        ``truths`` (batch, n, 5) in Darknet's layout (x, y, w, h relative, class; a row of zeros
        ends an image's list). Runs ``subdivisions`` mini-batches and one SGD step and returns
        Darknet's loss for the update. A non-finite loss or gradient skips the step (weights and
        batch-norm statistics kept) and raises TrainingError."""
        images = torch.as_tensor(images, dtype=torch.float32)
        truths = torch.as_tensor(truths, dtype=torch.float32)
        count = self.local * self.subdivisions
        if images.dim() != 4 or images.shape[:2] != (count, self.cfg.channels) \
                or truths.dim() != 3 or truths.shape[0] != count or truths.shape[2] != 5:
            raise TrainingError(f"update() takes {count} images (batch={self.batch}) as (batch, "
                                f"{self.cfg.channels}, h, w) and truths as (batch, n, 5); got "
                                f"{tuple(images.shape)} and {tuple(truths.shape)}")
        weighted = torch.cat([truths, torch.ones_like(truths[..., :1])], 2)  # each truth's weight 1
        minibatches = [(images[s:s + self.local], weighted[s:s + self.local], [])
                       for s in range(0, count, self.local)]
        record = self.step(minibatches)
        if record.skipped:
            raise TrainingError(f"iteration {record.iteration}: {record.skipped}; update skipped, weights kept")
        return record.loss

    def step(self, minibatches) -> UpdateRecord:
        """One update from ``subdivisions`` mini-batches of (images, truths with weights,
        problems): Darknet's ``train_network``. Advances ``iteration`` even when the update is
        skipped (``record.skipped``), as the loop counts it. Interrupted before its end (Ctrl-C),
        it leaves nothing behind: no gradients, the batch-norm statistics and ``seen`` of before."""
        batch_num = self.iteration + 1
        rate = learning_rate(self.cfg, batch_num, uniform_draw(self.options.seed, batch_num))
        for group in self.optimizer.param_groups:
            group["lr"] = rate * group["lr_scale"]
        saved_stats = [b.clone() for b in self.net.buffers()]
        try:
            costs, head_stats, finite = self._forward_backward(minibatches)
            total = torch.cat([costs, costs.new_tensor([float(not finite)])])
            if self.world > 1:
                dist.all_reduce(total)
        except BaseException:
            self._undo(saved_stats)
            raise
        # calc_network_cost: the mean of the cost layers' costs; train_network: per image
        head_losses = dict(zip(self.net.heads, (total[:-1] / self.batch).tolist()))
        loss = sum(head_losses.values()) / len(head_losses)
        record = UpdateRecord(batch_num, self.net.seen, rate, loss, head_losses, head_stats)
        with self.signals.deferred():  # an update is applied whole, with its bookkeeping, or not at all
            if total[-1] > 0 or not math.isfinite(loss):
                record.skipped = f"loss is {loss}" if not math.isfinite(loss) else \
                    f"gradients are not finite (loss {loss:g})"
                if self.scaler is not None:
                    self.scaler.update()  # after an overflow: a lower scale next time
                    if math.isfinite(loss):
                        record.overflow = True
                        record.skipped = (f"float16 gradients overflowed; loss scale lowered to "
                                          f"{self.scaler.get_scale():g}")
            else:
                for p in self.decay_only:  # update_network decays what backward_network skipped
                    p.grad = torch.zeros_like(p)
                try:
                    guarded_step(self.optimizer, {id(p): n for n, p in self.net.named_parameters()})
                except NonFiniteUpdate as e:  # undone: weights and momentum as before the step
                    record.skipped = e.reason
                if self.scaler is not None:
                    self.scaler.update()
            if record.skipped:
                self._undo(saved_stats, keep_seen=True)  # batch-norm statistics from before the bad forward
            self.optimizer.zero_grad(set_to_none=True)
            self.iteration = batch_num
            if self.ema is not None:
                self.ema.step(self.iteration)
            self.last_record = record
        return record

    def _forward_backward(self, minibatches):
        """Forward, Darknet's deltas and backward for each mini-batch (gradients accumulate):
        (each head's summed cost, (head, HeadStats) pairs, whether the gradients are finite)."""
        costs = torch.zeros(len(self.net.heads), dtype=torch.float64)  # l.cost summed per head
        head_stats = []
        amp = self.amp
        for s, (images, truths, problems) in enumerate(minibatches):
            self._report_problems(problems)
            self.net.seen += self.mini
            images, truths = images.to(self.device, non_blocking=True), truths.to(self.device)
            last = s == len(minibatches) - 1
            sync = contextlib.nullcontext() if last or self.world == 1 else self.model.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=amp.dtype, enabled=amp.enabled):
                    outputs = self.model(images)
                surrogate = 0.0
                for k, (index, x) in enumerate(zip(self.net.heads, outputs)):
                    x = x.float()
                    delta, stats = head_delta(self.net.layers[index], x, truths, images.shape[3],
                                              images.shape[2], self.net.seen, self.options.label_smoothing)
                    surrogate = surrogate - (delta * x).sum()
                    costs[k] += stats.cost
                    head_stats.append((index, stats))
                surrogate = surrogate * (self.world / self.batch)
                (self.scaler.scale(surrogate) if self.scaler is not None else surrogate).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        return costs, head_stats, self._grads_finite()

    def _undo(self, saved_stats, keep_seen: bool = False):
        """Drop an update's gradients and batch-norm statistics (and, unless kept, its ``seen``)."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for b, old in zip(self.net.buffers(), saved_stats):
                b.copy_(old)
        if not keep_seen:
            self.net.seen = self.iteration * self.batch

    def _grads_finite(self) -> bool:
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        return not grads or bool(torch.isfinite(torch.stack([g.sum() for g in grads]).sum()))

    def _report_problems(self, problems):
        for path, reason in problems:
            if path not in self.reported:
                self.reported.add(path)
                log.warning("%s: %s; skipped", path, reason)

    # -- the loop ------------------------------------------------------------------------------
    def checkpoint(self, suffix: str, staged: bool = False) -> Path:
        """``<cfg>_<suffix>.weights`` and its sidecar (rank 0 writes); ``staged``: both renamed
        into place together, signals held (checkpoint.save_checkpoint_staged)."""
        path = self.backup / f"{self.name}_{suffix}.weights"
        if self.rank == 0:
            extra = {"best_map": self.best_map, "avg_loss": self.avg_loss}
            if self.ema is not None:
                extra["ema"] = self.ema.state()
            if staged:
                save_checkpoint_staged(self.net, path, self.optimizer, extra, self.signals.deferred)
            else:
                save_checkpoint(self.net, path, self.optimizer, extra)
            if suffix == "last" and self.ema is not None and self.ema.initialized():
                self.ema.save(self.backup / f"{self.name}_ema.weights")  # as AlexeyAB, beside _last
        return path

    def map_schedule(self) -> MapSchedule:
        """AlexeyAB's mAP schedule (map_schedule.py): with -map, or when the .data file has
        valid=; ``--valid-every`` sets the spacing (0: never)."""
        every = self.options.valid_every
        if every is None:
            every = spacing(len(self.source), self.batch) if (self.data.valid or self.options.calc_map) else 0
        return MapSchedule(every, self.cfg.burn_in, self.cfg.max_batches, self.iteration)

    def valid_source(self):
        """The valid= images (AlexeyAB's -map without valid=: the training list)."""
        if self._valid_source is None:
            self._valid_source = (open_dataset(self.data, "valid", Problems(known=self.problems))
                                  if self.data.valid else self.source)
        return self._valid_source

    def validate(self):
        """Darknet's mAP figures (``evaluate.MapResult``) of the network on the validation images."""
        from ..validate import validate_map
        self.net.eval()
        try:
            return validate_map(self.net, self.valid_source(), self.data.names,
                                progress=self.watch.console.bar_wanted if self.watch else self.options.progress,
                                reported=self.reported)
        finally:
            self.net.train()

    def banner(self, schedule: MapSchedule) -> Banner:
        cfg = self.cfg
        skipped = self.problems.summary().splitlines()[0] if self.problems.summary() else ""
        if not schedule.every:
            valid = "valid: no mAP during training" + ("" if self.data.valid else " (no valid= in the .data file)")
        else:
            source = self.valid_source()
            where = f"{len(source)} images from {self.data.valid}" if self.data.valid else \
                "no valid= list: the training images, as AlexeyAB's -map"
            valid = f"valid: {where}; mAP@0.5 every {schedule.every} iterations, the first at {schedule.next}"
        extras = (self.amp.note,) if self.amp.note else ()
        return Banner(self.name, cfg.fork, cfg.fork_reason, cfg.learning_rate, cfg.momentum, cfg.decay,
                      len(self.source), str(self.data.train), skipped, valid,
                      start_line(self.iteration, self.weights, self.options.clear, self.cut),
                      str(self.backup), extras)

    def run(self) -> TrainResult:
        """``train_detector``'s loop: updates from the dataset until ``max_batches``, with
        validation, checkpoints and a report per iteration. Ctrl-C or SIGTERM ends it cleanly:
        the unfinished update is dropped, ``_last`` written, ``TrainingInterrupted`` raised."""
        if self.data is None:
            raise TrainingError("run() needs a .data file: Trainer(data_file, cfg, ...)")
        opts = self.options
        speaks = self.rank == 0
        if speaks:  # a read-only or missing-and-uncreatable folder fails now, not at the first save
            check_writable_folder(self.backup, TrainingError, what="backup folder")
        result = TrainResult(self.iteration, self.net.seen, best_map=self.best_map)
        schedule = self.map_schedule()
        self.watch = Watch(self.name, self.backup, self.cfg.max_batches, self.batch, self.iteration, self.avg_loss,
                           WatchOptions(speaks=speaks, progress=opts.progress, verbose=opts.verbose,
                                        tensorboard=opts.tensorboard, stream=opts.console), self.world)
        with self.signals:
            try:
                self.watch.start(self.banner(schedule) if speaks else None, self.iteration, self._batch_picture)
                self._loop(schedule, result)
            except OSError as e:  # a full disk under the CSV log, a chart, the EMA file
                last = self.backup / f"{self.name}_last.weights"
                raise TrainingError(f"iteration {self.iteration}: {write_failure(e, self.backup)}; the last good "
                                    f"checkpoint is {last if last.is_file() else 'not written yet'}") from None
            except Interrupted as e:
                raise self._interrupted(e.signum) from None
            except KeyboardInterrupt:  # raised by other code (a callback): saved the same way, passed on
                self._interrupted(signal.SIGINT)
                raise
            finally:
                self.watch.close()
        self.checkpoint("last")
        result.final = self.checkpoint("final")
        self.watch.chart()
        result.iteration, result.seen = self.iteration, self.net.seen
        return result

    def _loop(self, schedule: MapSchedule, result: TrainResult) -> None:
        opts = self.options
        loader = iter(self._loader())
        bad = 0
        while self.iteration < self.cfg.max_batches:
            start = time.time()
            record = self.step([next(loader) for _ in range(self.subdivisions)])
            if record.skipped:
                bad += 0 if record.overflow else 1
                log.log(logging.INFO if record.overflow else logging.ERROR,
                        "iteration %d: %s; update skipped, weights kept", record.iteration, record.skipped)
                if bad >= opts.max_bad_steps:
                    raise TrainingError(
                        f"iteration {record.iteration}: loss or gradients not finite {bad} times in a row; "
                        f"stopped. The last good weights are in {self.backup / (self.name + '_last.weights')}")
                record.loss = float("nan")
            else:
                bad = 0
            if opts.calc_map:  # AlexeyAB's lines before the iteration's
                self.watch.map_lines(schedule.next, self.last_map, self.best_map)
            validation, best = None, False
            if schedule.due(self.iteration):
                if self.rank == 0:
                    validation = self.validate()
                    self.last_map = validation.map
                    if self.best_map is None or validation.map > self.best_map:
                        self.best_map = result.best_map = validation.map
                        best = True
                        self.checkpoint("best")
                if self.world > 1:
                    dist.barrier()
            result.losses.append(record.loss)
            self.report(record, time.time() - start, validation, best)
            if self.iteration % opts.last_every == 0:
                self.checkpoint("last")
                self.watch.chart()
            if self.iteration % CHECKPOINT_EVERY == 0 or (self.iteration < EARLY_CHECKPOINTS_UNTIL and
                                                           self.iteration % EARLY_CHECKPOINT_EVERY == 0):
                self.checkpoint(str(self.iteration))
            if opts.callback:
                opts.callback(self)

    last_map = None  # the latest mAP measured in this run
    watch = None  # the run's console, CSV, chart and TensorBoard (watch.py), while run() runs

    def report(self, record: UpdateRecord, seconds: float, validation=None, best: bool = False) -> None:
        """The one place an iteration is reported: the console, the CSV, TensorBoard (watch.py);
        the running average loss goes on from there into the checkpoints."""
        with self.signals.deferred():  # a CSV row is written whole
            self.watch.iteration(record, seconds, validation, best)
        self.avg_loss = self.watch.avg_loss

    def _interrupted(self, signum: int) -> TrainingInterrupted:
        """After a stop signal: ``_last`` for the updates done (a second signal gives the save up,
        leaving the previous ``_last`` as it was)."""
        self.net.seen = self.iteration * self.batch
        last = self.backup / f"{self.name}_last.weights"
        try:
            self.checkpoint("last", staged=True)  # the chart waits for the resume: out quickly
            saved = True
        except Interrupted:
            saved = False
        return TrainingInterrupted(signum, self.iteration, last, saved, speaks=self.rank == 0)

    def first_samples(self, count: int | None = None):
        """The first ``count`` samples (default: one mini-batch) this run will train on, in its
        own order and sizes, from its iteration on: (images (n, 3, h, w), truths (n, max_boxes, 6));
        images that do not decode are reported as the loop reports them."""
        count = count or self.mini
        keys = []
        for minibatch in self.sample_keys():
            keys += minibatch[:count - len(keys)]
            if len(keys) == count:
                break
        images, truths, problems = collate([self.samples[key] for key in keys])
        self._report_problems(problems)
        return images, truths

    def _batch_picture(self):
        """The first augmented mini-batch with its boxes (TensorBoard's picture), as BGR."""
        from ..draw import batch_grid
        images, truths = self.first_samples()
        return batch_grid(images.numpy(), truths.numpy(), self.data.names, self.data.classes)


def train(data_file, cfg, weights=None, *, overrides=(), options: TrainOptions | None = None) -> TrainResult:
    """``darknet detector train DATA CFG [WEIGHTS]``: returns where the run ended."""
    return Trainer(data_file, cfg, weights, overrides=overrides, options=options).run()
