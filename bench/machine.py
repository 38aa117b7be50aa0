"""How busy the shared machine was while a benchmark ran: the CPU time that other processes
took, as a share of all cores' time. Every figure of a run with a large share is pessimistic."""

from __future__ import annotations

import os
import resource
import time

_TICKS = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU seconds every process of the machine has used since boot (from /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


def _own_seconds() -> float:
    """CPU seconds of this process and of its finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class OtherLoad:
    """Started at the beginning of a run; `share()` at its end."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.busy = _busy_seconds()
        self.own = _own_seconds()
        self.load = os.getloadavg()[0]

    def share(self) -> float:
        """Other processes' CPU time over all cores' time since the start, 0 to 1."""
        wall = time.monotonic() - self.began
        others = (_busy_seconds() - self.busy) - (_own_seconds() - self.own)
        return max(0.0, others) / (wall * (os.cpu_count() or 1))

    def row(self) -> tuple[str, str, str]:
        """A table row: the load average before the run and the others' share during it."""
        return (
            "machine: load average before / other processes' CPU share during",
            f"{self.load:.1f} / {100 * self.share():.0f}%",
            f"{os.cpu_count()} cores shared; other work skews every figure",
        )
