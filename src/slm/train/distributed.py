"""Scale-out with torchrun: process groups, DDP / FSDP2 wrapping, and full state dicts for checkpoints.

Nothing home-made: torch.distributed, DistributedDataParallel and FSDP2's `fully_shard`. The trainer
calls `setup()` once; under torchrun (WORLD_SIZE > 1) it joins the process group, gloo on CPU and
NCCL on GPU. A single process needs no process group at all.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from slm.errors import ConfigError


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> Dist:
    """Pick the device and, under torchrun, join the process group (idempotent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but torch sees no GPU; use device: cpu")
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
    return Dist(rank, local_rank, world, dev)


def wrap(model: nn.Module, strategy: str, d: Dist, layer_types: tuple[type, ...] = ()) -> nn.Module:
    """DDP or FSDP2 around `model` (already on its device); a single process gets the model back unchanged.

    FSDP2 shards each transformer block on its own (so only one block is gathered at a time), then the root
    (embeddings, final norm, head: tied weights must live in one group).
    """
    if not d.enabled:
        return model
    if strategy in ("auto", "ddp"):
        from torch.nn.parallel import DistributedDataParallel

        ids = [d.device.index] if d.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in model.modules():
            if layer_types and isinstance(module, layer_types):
                fully_shard(module)
        fully_shard(model)
        return model
    raise ConfigError(f"strategy must be auto, ddp or fsdp, got {strategy!r}")


def is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj, d: Dist) -> list:
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, d: Dist):
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Unsharded model and optimizer state on CPU, keyed by parameter name; complete on rank 0 (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer | None, model_state: dict,
                          optim_state: dict | None) -> None:
    """The inverse of `full_state_dicts`: every rank passes the full dicts; FSDP2 keeps its own shard."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    if optimizer is not None and optim_state is not None:
        set_optimizer_state_dict(model, optimizer, optim_state, options=options)


def torchrun_command(n_procs: int, module_args: list[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc-per-node N -m slm ...` for `--devices N`."""
    if n_procs < 1:
        raise ConfigError(f"--devices must be at least 1, got {n_procs}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n_procs}",
            "-m", *module_args]


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
