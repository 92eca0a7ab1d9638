"""Training in several processes: Detectron2's ``launch`` on CUDA, ``torchrun`` anywhere (CPU included).

Detectron2 0.6's ``launch()`` spawns one process per GPU and requires CUDA. Under ``torchrun`` the
processes already exist: :func:`init_torchrun_process_group` creates the process group (gloo on CPU,
NCCL on GPU) and the per-machine group that Detectron2's ``comm`` helpers expect, so that everything
else (sharded samplers, gradient all-reduce, gathered evaluation, main-process checkpoints) is
Detectron2's own code path.
"""
import datetime
import os

import torch
import torch.distributed as dist
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel


def launched_by_torchrun() -> bool:
    """True in a worker started by torchrun (or another launcher setting the env:// variables)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_torchrun_process_group(timeout_minutes: int = 30) -> None:
    """Initialise torch.distributed from torchrun's environment and Detectron2's local process group."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://", rank=rank, world_size=world,
                            timeout=datetime.timedelta(minutes=timeout_minutes))
    machine = rank // local_world
    for i in range(world // local_world):  # every rank must create every group
        group = dist.new_group(list(range(i * local_world, (i + 1) * local_world)))
        if i == machine:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()


def create_ddp_model(model, *, fp16_compression: bool = False, **kwargs):
    """Detectron2's ``create_ddp_model`` that also works on CPU (no ``device_ids`` there)."""
    if comm.get_world_size() == 1:
        return model
    if "device_ids" not in kwargs and next(model.parameters()).is_cuda:
        kwargs["device_ids"] = [comm.get_local_rank()]
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp
