"""The one training loop: seeded, device-aware, progress bar, early stopping on validation loss,
atomic checkpoints of the best model. Every model in scprior trains through :func:`fit`.

A model supplies a *loss function* ``loss_fn(model, batch, epoch) -> dict[str, Tensor]`` whose
``"loss"`` entry is minimised; other entries (scalars) are logged. Multi-phase recipes (e.g.
pretraining then metric learning) call :func:`fit` once per phase with different loss functions.
The best epoch is chosen on the validation loss only, never on labels of evaluated cells.

Distributed data parallel: under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) :func:`fit`
joins the process group itself (NCCL on GPUs, gloo on CPUs), wraps the loss computation in
:class:`~torch.nn.parallel.DistributedDataParallel` and gives every rank its share of each *global*
batch: a DataLoader's batch of ``B`` cells (the same seeded order on every rank) is cut into
``N`` contiguous parts and each rank's mean loss is weighted by ``local cells * N / B`` before
DDP averages the gradients, so one step equals the single-process step on the whole batch for any
loss that is a mean over cells (dropout masks and in-batch losses such as triplets differ). Logged
losses are averaged over ranks; only rank 0 shows progress and writes the checkpoint.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scprior.errors import ScpriorInputError
from scprior.runtime import init_distributed, pick_device, seed_everything
from scprior.safe_io import check_writable, load_torch_tensors, save_torch_atomic

LossFn = Callable[[nn.Module, Any, int], Mapping[str, torch.Tensor]]


@dataclass
class TrainConfig:
    """Settings of one :func:`fit` call."""

    max_epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw | sgd
    lr_decay: float | None = None  # ExponentialLR gamma per epoch
    patience: int | None = 10  # epochs without val improvement before stopping; None = never
    min_delta: float = 0.0
    min_epochs: int = 0  # no early stop before this many epochs (e.g. until a KL warm-up ends)
    restore_best: bool = True  # False: keep the last epoch (fixed-budget phases; no selection at all)
    grad_clip: float | None = None
    #: linear learning-rate warm-up over the first this many optimizer steps (0 = off): step ``s``
    #: uses ``lr * (s + 1) / warmup_steps`` (times any ``lr_decay`` schedule), then the schedule alone
    warmup_steps: int = 0
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    desc: str = "train"


@dataclass
class TrainResult:
    """What :func:`fit` returns: per-epoch history, the best epoch and its validation loss."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped_early: bool = False
    checkpoint: str | None = None
    device: str = "cpu"
    seconds: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def move_to(batch: Any, device: str) -> Any:
    """Move tensors (also inside dicts, lists, tuples) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def _optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters.")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.9)
    raise ValueError(f"Unknown optimizer {cfg.optimizer!r}; use 'adam', 'adamw' or 'sgd'.")


def plain_state(obj: Any) -> Any:
    """``obj`` as tensors and plain data only (dict/list/tuple/str/int/float/bool/None).

    numpy arrays become tensors (numeric) or lists, numpy scalars Python numbers, so the result
    loads with ``torch.load(weights_only=True)``. Anything else is a programming error (TypeError).
    """
    if obj is None or isinstance(obj, bool | int | float | str | torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy()) if obj.dtype.kind in "biuf" else obj.tolist()
    if isinstance(obj, Mapping):
        return {plain_state(k): plain_state(v) for k, v in obj.items()}
    if type(obj) is tuple:
        return tuple(plain_state(v) for v in obj)
    if isinstance(obj, list | tuple):
        return [plain_state(v) for v in obj]
    raise TypeError(f"checkpoint state may hold tensors and plain data only, not {type(obj).__name__}")


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` (tensors + plain data, see :func:`plain_state`) with :func:`torch.save` atomically."""
    return save_torch_atomic(plain_state(dict(state)), path)


def load_checkpoint(path: str | os.PathLike, *, what: str = "checkpoint") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; never runs code from the file.

    Raises :class:`ScpriorInputError` for a missing, corrupt or non-plain file, and for one that
    lacks ``model_state``.
    """
    state = load_torch_tensors(path, what=what)
    if not isinstance(state, dict) or "model_state" not in state:
        raise ScpriorInputError(
            f"{what} {path} is not a scprior checkpoint (a dict with 'model_state'); pass a file "
            "written by the training loop (fit(..., checkpoint=...))."
        )
    return state


@dataclass
class ShardedBatch:
    """One rank's share of a global batch; ``weight`` = local cells x world size / global cells
    (0 for a rank whose share is empty: it then computes on one repeated cell that counts nothing)."""

    batch: Any
    weight: float


def shard_slice(n: int, rank: int, world: int) -> tuple[np.ndarray, float]:
    """Rows of a global batch of ``n`` that ``rank`` takes (contiguous parts) and their weight."""
    mine = np.array_split(np.arange(n), world)[rank]
    weight = len(mine) * world / n if n else 0.0
    if not len(mine):
        mine = np.asarray([n - 1])
    return mine, float(weight)


class _RankCollate:
    """Collates only this rank's part of the global batch the sampler gave (see :func:`shard_loader`)."""

    def __init__(self, collate: Callable, rank: int, world: int) -> None:
        self.collate, self.rank, self.world = collate, rank, world

    def __call__(self, items: list) -> ShardedBatch:
        mine, weight = shard_slice(len(items), self.rank, self.world)
        return ShardedBatch(self.collate([items[int(i)] for i in mine]), weight)


def shard_loader(loader: Iterable, rank: int, world: int) -> Iterable:
    """``loader`` for one rank of ``world``: a map-style DataLoader keeps its sampler and generator
    (so every rank draws the same global batches) and collates only its rank's part. Anything else
    (e.g. :class:`scprior.models.batching.ChunkBatches`) is returned as is: it shards itself."""
    from torch.utils.data import DataLoader, IterableDataset

    if world <= 1 or not isinstance(loader, DataLoader) or loader.batch_sampler is None \
            or isinstance(loader.dataset, IterableDataset):
        return loader
    return DataLoader(loader.dataset, batch_sampler=loader.batch_sampler,
                      collate_fn=_RankCollate(loader.collate_fn, rank, world), generator=loader.generator,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory)


class _LossModule(nn.Module):
    """The loss computation as a module, so DistributedDataParallel's forward runs it."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Any, epoch: int) -> Mapping[str, torch.Tensor]:
        return self.loss_fn(self.model, batch, epoch)


def _run_epoch(model, loss_fn, loader, epoch, device, optimizer=None, grad_clip=None, net=None,
               world: int = 1, warmup: list[int] | None = None) -> dict[str, float]:
    """One pass over ``loader``; ``warmup`` = [steps done, warm-up steps] (updated in place)."""
    train = optimizer is not None
    model.train(train)
    sums: dict[str, float] = {}
    n = 0
    with torch.set_grad_enabled(train):
        for batch in loader:
            weight = 1.0
            if isinstance(batch, ShardedBatch):
                batch, weight = batch.batch, batch.weight
            batch = move_to(batch, device)
            out = net(batch, epoch) if (train and net is not None) else loss_fn(model, batch, epoch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"Loss became {loss.item()} at epoch {epoch}; lower the learning rate or check the input for NaN."
                )
            if train:
                optimizer.zero_grad(set_to_none=True)
                (loss * weight if weight != 1.0 else loss).backward()
                if grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                if warmup is not None and warmup[0] < warmup[1]:  # scale the scheduled lr for this step only
                    scheduled = [g["lr"] for g in optimizer.param_groups]
                    for g in optimizer.param_groups:
                        g["lr"] = g["lr"] * (warmup[0] + 1) / warmup[1]
                    optimizer.step()
                    for g, lr in zip(optimizer.param_groups, scheduled):
                        g["lr"] = lr
                else:
                    optimizer.step()
                if warmup is not None:
                    warmup[0] += 1
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * weight
            n += 1
    if world > 1:  # global batch means: sum of weighted rank means / world, then over batches
        import torch.distributed as dist

        keys = sorted(sums)
        t = torch.tensor([sums[k] for k in keys] + [float(n)], dtype=torch.float64)
        dist.all_reduce(t)
        sums = {k: float(v) / world for k, v in zip(keys, t[:-1])}
        n = int(round(float(t[-1]) / world))
    if n == 0:
        raise ValueError("The data loader yielded no batches; is the split empty?")
    return {k: v / n for k, v in sums.items()}


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    config: TrainConfig | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra_state: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` in place by minimising ``loss_fn``; restore and return the best epoch.

    Without ``val_loader`` the training loss decides the best epoch (and early stopping).
    ``config.restore_best=False`` keeps the last epoch instead (a fixed budget, nothing selected). With
    ``checkpoint`` the best state dict is saved atomically there together with the config, the
    history and ``extra_state`` (anything the model needs to be rebuilt).
    Under ``torchrun`` (see the module docstring) the same call trains data-parallel; rank 0 writes.
    """
    cfg = config or TrainConfig()
    rank, world = init_distributed()
    if checkpoint is not None and rank == 0:
        check_writable(Path(checkpoint).parent)  # fail now, not after the run
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    if world > 1 and device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
    model.to(device)
    net = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(_LossModule(model, loss_fn), find_unused_parameters=True,
                                      device_ids=[torch.device(device)] if device.startswith("cuda") else None)
        train_loader = shard_loader(train_loader, rank, world)
        val_loader = shard_loader(val_loader, rank, world) if val_loader is not None else None
    opt = optimizer or _optimizer(model.parameters(), cfg)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, cfg.lr_decay) if cfg.lr_decay else None
    result = TrainResult(device=device)
    best_state = copy.deepcopy(model.state_dict())
    stale = 0
    start = time.perf_counter()
    if cfg.warmup_steps < 0:
        raise ScpriorInputError(f"warmup_steps must be >= 0, got {cfg.warmup_steps}.")
    warmup = [0, int(cfg.warmup_steps)] if cfg.warmup_steps else None

    epochs: Iterable[int] = range(cfg.max_epochs)
    bar = None
    if cfg.progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(epochs, desc=cfg.desc, unit="epoch", leave=False)
        epochs = bar
    for epoch in epochs:
        row = {f"train_{k}": v for k, v in _run_epoch(model, loss_fn, train_loader, epoch, device, opt, cfg.grad_clip,
                                                        net=net, world=world, warmup=warmup).items()}
        if val_loader is not None:
            row.update({f"val_{k}": v for k, v in _run_epoch(model, loss_fn, val_loader, epoch, device,
                                                             world=world).items()})
        monitor = row["val_loss"] if val_loader is not None else row["train_loss"]
        row["epoch"] = epoch
        result.history.append(row)
        if sched is not None:
            sched.step()
        if monitor < result.best_val_loss - cfg.min_delta:
            result.best_val_loss, result.best_epoch, stale = monitor, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if bar is not None:
            bar.set_postfix(loss=f"{row['train_loss']:.4g}", monitor=f"{monitor:.4g}", best=result.best_epoch)
        if cfg.patience is not None and stale > cfg.patience and epoch + 1 >= cfg.min_epochs:
            result.stopped_early = True
            break
    if bar is not None:
        bar.close()
    if cfg.restore_best:
        model.load_state_dict(best_state)
    elif result.history:
        best_state = copy.deepcopy(model.state_dict())
        result.best_epoch = len(result.history) - 1
        result.best_val_loss = float(monitor)
    result.seconds = time.perf_counter() - start
    if checkpoint is not None and rank == 0:
        state = {
            "model_state": {k: v.detach().cpu() for k, v in best_state.items()},
            "train_config": asdict(cfg),
            "history": result.history,
            "best_epoch": result.best_epoch,
            **dict(extra_state or {}),
        }
        result.checkpoint = str(save_checkpoint(state, checkpoint))
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # the checkpoint exists before any rank goes on
        result.checkpoint = str(checkpoint) if checkpoint is not None else None
    return result


def tensor_loader(
    *arrays: Any, batch_size: int = 128, shuffle: bool = False, seed: int = 0, drop_last: bool = False
) -> torch.utils.data.DataLoader:
    """A DataLoader over aligned arrays/tensors (first axis = samples), shuffled with its own seed."""
    tensors = [a if isinstance(a, torch.Tensor) else torch.as_tensor(a) for a in arrays]
    n = {len(t) for t in tensors}
    if len(n) != 1:
        raise ValueError(f"Arrays must share their first dimension, got lengths {sorted(n)}")
    gen = torch.Generator().manual_seed(int(seed))
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*tensors),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen if shuffle else None,
        drop_last=drop_last,
    )
