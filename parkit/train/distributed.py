"""Data-parallel training set-up: process groups, the epoch batch sampler, synchronised BatchNorm.

`torchrun --nproc_per_node=N -m parkit train ...` starts N processes with RANK / WORLD_SIZE /
LOCAL_RANK in the environment; `init_distributed` joins them into a process group (NCCL on GPUs,
gloo on CPUs) and the engine wraps the model in `DistributedDataParallel`. Rank 0 alone logs and
writes checkpoints.

**Same result as one process.** A data-parallel run is designed to compute what a single-process
run with the same global batch computes:

* `EpochBatchSampler` draws one permutation per epoch from (seed, epoch) — the same
  `torch.randperm` that `DistributedSampler(shuffle=True, seed=seed).set_epoch(epoch)` uses — cuts
  it into *global* batches of `batch_size`, and gives rank r the entries r, r + W, r + 2W, ... of
  each global batch (W = world size). Unlike `DistributedSampler` it never pads the permutation
  with repeated samples, and it can start at any batch, which is what exact resume needs.
* The engine sums each rank's per-sample losses and divides by the *global* batch size times
  1/W, so DDP's gradient averaging yields the gradient of the global batch mean even when the last
  batch splits unevenly across ranks.
* BatchNorm: PromptPAR normalises its logits with BatchNorm1d (spec §3.4-§3.5), whose batch
  statistics would otherwise be per-rank statistics over B/W samples. `sync_batchnorm` replaces
  them with `torch.nn.SyncBatchNorm` on GPUs and with `CPUSyncBatchNorm` (below; PyTorch's version
  refuses CPU tensors) on CPUs, so statistics and running averages are those of the global batch.
* Randomness inside the model (DropPath of the fusion block) draws from each rank's own RNG, so it
  is not identical to a single-process run; with such layers active the two agree in distribution
  only. Data augmentation is seeded per sample (see `parkit.train.engine`), so it is identical.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, List, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from parkit.devices import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: Optional[str] = None) -> DistContext:
    """Join the process group torchrun prepared, or return a single-process context.

    Args:
        device: "cuda", "cpu" or None (CUDA when available). Chooses NCCL or gloo.

    Returns:
        A `DistContext`. When WORLD_SIZE > 1 and no group exists yet, one is created from the
        environment (MASTER_ADDR / MASTER_PORT / RANK / WORLD_SIZE).
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(),
                           int(os.environ.get("LOCAL_RANK", dist.get_rank())), dist.get_backend())
    world = env_world_size()
    if world <= 1:
        return DistContext()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    use_cuda = resolve_device(device).type == "cuda"
    backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def cleanup_distributed() -> None:
    """Destroy the process group if one exists (call once, at the end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def unwrap_ddp(model: nn.Module) -> nn.Module:
    """The model inside a `DistributedDataParallel` wrapper (the model itself when unwrapped)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_gather_objects(obj, ctx: DistContext) -> list:
    """[obj of rank 0, obj of rank 1, ...]; `[obj]` in a single process."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's `obj` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The sample order of one epoch: `DistributedSampler`'s permutation for (seed, epoch)."""
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    return torch.randperm(n, generator=g)


def num_global_batches(n: int, batch_size: int, world_size: int = 1) -> int:
    """How many global batches an epoch of `n` samples has after the BatchNorm-safe drop.

    A last, partial batch is dropped when it holds fewer than max(2, world_size) samples:
    BatchNorm1d in train mode cannot normalise a batch of one, and every rank needs a sample.
    """
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= max(2, world_size) else 0)


class EpochBatchSampler:
    """This rank's batches of one epoch, in the order of the global permutation.

    Yields lists of keys ``(epoch, dataset_position)``; the engine's dataset wrapper uses the
    epoch to seed each sample's augmentation, so a resumed run augments exactly as an
    uninterrupted one.

    Args:
        n: number of training samples.
        batch_size: global batch size (summed over ranks).
        seed, epoch: the permutation seed (see `epoch_permutation`).
        rank, world_size: this process's place in the run.
        start_batch: skip the first `start_batch` global batches (resume inside an epoch).
        shuffle: permute (training) or keep order.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                 world_size: int = 1, start_batch: int = 0, shuffle: bool = True):
        if batch_size < world_size:
            raise ValueError(f"batch size {batch_size} is smaller than the number of processes "
                             f"{world_size}; use a global batch of at least one sample per process")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world_size, self.start_batch, self.shuffle = rank, world_size, start_batch, shuffle
        self.num_batches = num_global_batches(n, batch_size, world_size)

    def global_batches(self) -> List[List[int]]:
        perm = epoch_permutation(self.n, self.seed, self.epoch, self.shuffle).tolist()
        return [perm[b * self.batch_size:(b + 1) * self.batch_size] for b in range(self.num_batches)]

    def __iter__(self) -> Iterator[list]:
        for batch in self.global_batches()[self.start_batch:]:
            yield [(self.epoch, i) for i in batch[self.rank::self.world_size]]

    def __len__(self) -> int:
        return max(self.num_batches - self.start_batch, 0)


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: forward all-reduces the values, backward the gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g)
        return g


class CPUSyncBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch across ranks.

    `torch.nn.SyncBatchNorm` accepts only accelerator tensors; this version works with gloo on
    CPUs. It all-reduces (count, sum), then the squared deviations, with a differentiable
    all-reduce whose backward all-reduces the gradients, so each
    rank's backward pass carries the gradient of every rank's loss through the shared statistics
    (the same scheme as SyncBatchNorm). Parameters and buffers are the original module's own
    tensors, so state dicts and optimiser references are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C) or (B, C, L)
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0] + list(range(2, x.ndim))  # every axis but the channel axis
        xf = x.float()
        c = x.shape[1]
        shape = [1, c] + [1] * (x.ndim - 2)
        count = torch.tensor([float(x.numel() // c)], device=x.device)
        # Two passes (mean, then squared deviations) rather than E[x²] − E[x]²: BatchNorm on
        # logits often sees a large mean and a tiny spread, where the one-pass formula cancels
        # catastrophically in fp32 and its gradient explodes.
        stats = _AllReduceSum.apply(torch.cat([count, xf.sum(dims)]))  # (1 + C,) summed over ranks
        total = stats[0]
        mean = stats[1:] / total  # (C,)
        var = _AllReduceSum.apply(((xf - mean.view(shape)) ** 2).sum(dims)) / total  # (C,) biased
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * total / (total - 1).clamp(min=1)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * unbiased.detach())
        y = (xf - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Swap every BatchNorm for its synchronised version (in place; returns `model`).

    On CUDA this is `torch.nn.SyncBatchNorm.convert_sync_batchnorm`; on CPU each `BatchNorm1d` is
    re-classed to `CPUSyncBatchNorm`, which keeps the module object, its parameters and buffers.
    """
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if type(module) is nn.BatchNorm1d:
            module.__class__ = CPUSyncBatchNorm
    return model


def unsync_batchnorm(model: nn.Module) -> nn.Module:
    """Undo the CPU re-classing of `sync_batchnorm` (so a finished model pickles as plain BN)."""
    for module in model.modules():
        if type(module) is CPUSyncBatchNorm:
            module.__class__ = nn.BatchNorm1d
    return model
