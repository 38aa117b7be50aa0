"""Where this process stands among those a launcher started, and how they wait for each other.

`torchrun --nproc_per_node N -m builder.cli tune PROJECT` starts N processes that run the same
command; each reads its rank from the environment the launcher sets (RANK, WORLD_SIZE,
LOCAL_RANK). Run alone, a process is rank 0 of 1 and nothing here starts a process group.

Only the main process (rank 0) writes shared files: synthesis and the other preparation stages,
the checkpoint markers, the adapter, the run card. The others wait for it (`main_first`) and
then read what it wrote.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

# The other ranks wait at a barrier while the main process synthesizes pairs, which with a
# teacher model on a CPU takes hours on a large corpus: far past the 30 minutes (gloo) or
# 10 minutes (NCCL) of torch's default timeout. Training's own collectives keep the default.
PREPARE_TIMEOUT = timedelta(hours=24)


class LaunchError(Exception):
    """The launcher's environment is inconsistent; the message names the variable."""


@dataclass
class World:
    """This process's rank among `size` processes; `size == 1` when run alone."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    _wait_group: Any = None
    """A gloo group with `PREPARE_TIMEOUT`, for the long wait while rank 0 prepares."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched() -> World:
    """This process's place among those a launcher started, read from the environment.

    Raises:
        LaunchError: RANK, WORLD_SIZE or LOCAL_RANK is not a number, or the rank is out of range.
    """
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = os.environ.get(name, str(default))
        try:
            values[name] = int(text)
        except ValueError:
            raise LaunchError(
                f"${name} = {text!r} is not a number: start the processes with torchrun, or "
                f"unset {name} to run one process"
            ) from None
    if not 0 <= values["RANK"] < max(values["WORLD_SIZE"], 1):
        raise LaunchError(
            f"$RANK = {values['RANK']} is outside $WORLD_SIZE = {values['WORLD_SIZE']}: start "
            "the processes with torchrun"
        )
    return World(values["RANK"], max(values["WORLD_SIZE"], 1), values["LOCAL_RANK"])


def join(world: World) -> World:
    """Start the process group of a launched world (gloo on CPU, NCCL on CUDA), once.

    The Trainer finds the group started and uses it. Alone, `world` is returned untouched.
    """
    if not world.distributed or world._wait_group is not None:
        return world
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    world._wait_group = dist.new_group(backend="gloo", timeout=PREPARE_TIMEOUT)
    return world


def backend() -> str:
    """The started process group's backend ('gloo', 'nccl'), or 'none' when run alone."""
    import torch.distributed as dist

    return str(dist.get_backend()) if dist.is_initialized() else "none"


def wait_for_everyone(world: World) -> None:
    """Block until every process of `world` got here (no-op alone)."""
    if world.distributed:
        import torch.distributed as dist

        dist.barrier(group=join(world)._wait_group)


@contextmanager
def main_first(world: World) -> Iterator[None]:
    """Run the block on the main process, then on the others, which start once it is done.

    The main process writes (e.g. synthesizes pairs); the others then find its files and read
    them. If the main process fails inside the block it never reaches the barrier: the launcher
    sees it exit and stops the others.
    """
    if not world.is_main:
        wait_for_everyone(world)
    yield
    if world.is_main:
        wait_for_everyone(world)
