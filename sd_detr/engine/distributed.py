"""Training in several processes and machines: Detectron2's ``launch`` (CUDA, and CPU with gloo) and
``torchrun`` (anywhere).

Detectron2 0.6's ``launch()`` spawns one process per GPU and requires CUDA (its worker asserts it and uses
NCCL). :func:`launch` is the same launcher with the same arguments (``--num-gpus``, ``--num-machines``,
``--machine-rank``, ``--dist-url`` of ``default_argument_parser``): on CUDA it is Detectron2's, on a machine
without CUDA it starts ``--num-gpus`` CPU processes per machine on gloo. Under ``torchrun`` the processes
already exist: :func:`init_torchrun_process_group` creates the process group. Both create the per-machine
group that Detectron2's ``comm`` helpers expect, so that everything else (sharded samplers, gradient
all-reduce, gathered evaluation, main-process checkpoints) is Detectron2's own code path.
"""
import datetime
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as _detectron2_launch
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)  # Detectron2's


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
    _create_local_process_group(rank // local_world, world // local_world, local_world)
    comm.synchronize()


def _create_local_process_group(machine_rank: int, num_machines: int, per_machine: int) -> None:
    """Detectron2's ``comm._LOCAL_PROCESS_GROUP``: the ranks ``machine_rank * per_machine ...`` of this
    machine (``comm.get_local_rank``/``get_local_size`` read it). Every rank must create every group."""
    for i in range(num_machines):
        group = dist.new_group(list(range(i * per_machine, (i + 1) * per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group


def global_rank(machine_rank: int, per_machine: int, local_rank: int) -> int:
    """The rank in the whole job of process ``local_rank`` of machine ``machine_rank`` (machines are
    numbered 0 .. num_machines-1 and hold ``per_machine`` processes each): as Detectron2's launcher."""
    return machine_rank * per_machine + local_rank


def check_launch_args(num_processes_per_machine: int, num_machines: int, machine_rank: int, dist_url) -> None:
    """Refuse what would hang or fail late: a ``machine_rank`` outside ``0 .. num_machines-1`` (the others
    would wait for a rank that never joins, until the timeout), fewer than one process or machine, or a
    several-machine job without a ``dist_url`` or with ``"auto"`` (a local port the other machines cannot
    know). Raises ValueError naming the command-line option."""
    if num_processes_per_machine < 1 or num_machines < 1:
        raise ValueError(f"need at least one process per machine and one machine (got --num-gpus "
                         f"{num_processes_per_machine}, --num-machines {num_machines})")
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"--machine-rank {machine_rank} is not one of 0 .. {num_machines - 1} "
                         f"(--num-machines {num_machines})")
    if num_machines > 1 and (not dist_url or dist_url == "auto"):
        raise ValueError(f"a {num_machines}-machine job needs --dist-url tcp://HOST:PORT, HOST being machine 0 "
                         f"(the one with --machine-rank 0), the same URL on every machine (got {dist_url!r})")


def launch(main_func, num_processes_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url=None, args=(), timeout=DEFAULT_TIMEOUT):
    """Run ``main_func(*args)`` in ``num_processes_per_machine`` processes on each of ``num_machines``
    machines (call it on every machine, with its ``machine_rank``); Detectron2's ``launch`` with CPU support.

    With CUDA this is Detectron2's ``launch`` (one process per GPU, NCCL). Without CUDA the processes use
    gloo: one process per machine runs in this process, several are spawned (``torch.multiprocessing``).
    ``dist_url`` is where rank 0 listens (``tcp://HOST:PORT`` of machine 0; ``"auto"``: a free local port,
    one machine only). A world of one process calls ``main_func`` directly, without a process group.

    Raises:
        ValueError: arguments that cannot start a job (:func:`check_launch_args`).
    """
    check_launch_args(num_processes_per_machine, num_machines, machine_rank, dist_url)
    if torch.cuda.is_available():
        return _detectron2_launch(main_func, num_processes_per_machine, num_machines=num_machines,
                                  machine_rank=machine_rank, dist_url=dist_url, args=args, timeout=timeout)
    world_size = num_machines * num_processes_per_machine
    if world_size == 1:
        return main_func(*args)
    if dist_url == "auto" or not dist_url:
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    worker_args = (main_func, world_size, num_processes_per_machine, machine_rank, dist_url, args, timeout)
    if num_processes_per_machine == 1:  # nothing to spawn: this process is the machine's one worker
        return _cpu_worker(0, *worker_args)
    mp.spawn(_cpu_worker, nprocs=num_processes_per_machine, args=worker_args, daemon=False)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_worker(local_rank, main_func, world_size, per_machine, machine_rank, dist_url, args, timeout):
    """One CPU process of :func:`launch`: joins the gloo group as its global rank, then ``main_func``."""
    rank = global_rank(machine_rank, per_machine, local_rank)
    dist.init_process_group("gloo", init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout)
    _create_local_process_group(machine_rank, world_size // per_machine, per_machine)
    comm.synchronize()  # all joined before the work starts (as Detectron2's worker)
    try:
        return main_func(*args)
    finally:  # an in-process worker leaves the caller's process as it found it
        comm._LOCAL_PROCESS_GROUP = None
        dist.destroy_process_group()


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
