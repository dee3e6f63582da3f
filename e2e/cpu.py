"""How much CPU the consumers got during a drain, and how busy the whole machine was.

A scale-out ratio only means something next to the CPU the replicas actually had: on a shared
node (or a machine other work keeps busy) two replicas limited to one CPU each may get less
than one CPU between them. Each container reports its own cgroup's CPU time (cgroup v2
`cpu.stat`, else v1 `cpuacct.usage`); the host's /proc/stat gives the machine's busy time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.records import Drain

# Run inside a container with its Python: prints the cgroup's CPU seconds so far.
CGROUP_CPU_SECONDS = (
    "from pathlib import Path\n"
    "v2 = Path('/sys/fs/cgroup/cpu.stat')\n"
    "if v2.exists():\n"
    "    usec = dict(l.split() for l in v2.read_text().splitlines())['usage_usec']\n"
    "    print(int(usec) / 1e6)\n"
    "else:\n"
    "    for d in ('cpuacct', 'cpu,cpuacct', 'cpuacct,cpu'):\n"
    "        f = Path('/sys/fs/cgroup') / d / 'cpuacct.usage'\n"
    "        if f.exists():\n"
    "            print(int(f.read_text()) / 1e9)\n"
    "            break\n"
)


def machine_busy_seconds(stat: Path = Path("/proc/stat")) -> float:
    """CPU seconds all cores spent not idle (idle and iowait excluded) since boot."""
    fields = stat.read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / 100  # USER_HZ


@dataclass(frozen=True)
class CpuShare:
    """CPU used over a wall-clock window by the consumers and by the whole machine."""

    seconds: float
    consumers_cpu_s: float
    machine_cpu_s: float

    @property
    def consumer_cores(self) -> float:
        return self.consumers_cpu_s / self.seconds if self.seconds > 0 else 0.0

    @property
    def machine_cores(self) -> float:
        return self.machine_cpu_s / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "seconds": round(self.seconds, 2),
            "consumer_cores": round(self.consumer_cores, 2),
            "machine_cores": round(self.machine_cores, 2),
            "consumers_cpu_s": round(self.consumers_cpu_s, 2),
        }


class CpuMeter:
    """Reads the consumers' CPU seconds (via `read`, one call per container) and the host's
    busy time at `start()` and `stop()`."""

    def __init__(self, containers: Sequence[str], read: Callable[[str], float]) -> None:
        self._containers = list(containers)
        self._read = read
        self._started = 0.0
        self._consumers = 0.0
        self._machine = 0.0

    def _consumers_now(self) -> float:
        return sum(self._read(c) for c in self._containers)

    def start(self) -> None:
        self._consumers = self._consumers_now()
        self._machine = machine_busy_seconds()
        self._started = time.monotonic()

    def stop(self) -> CpuShare:
        seconds = time.monotonic() - self._started
        return CpuShare(
            seconds,
            self._consumers_now() - self._consumers,
            machine_busy_seconds() - self._machine,
        )


def drain_figures(measured: Drain, share: CpuShare) -> dict[str, Any]:
    """A drain's throughput next to the CPU it had (the ratio means little without it)."""
    return {
        "events": measured.events,
        "seconds": measured.seconds,
        "per_second": measured.per_second,
        "cpu": share.as_dict(),
        "cpu_ms_per_photo": 1000 * share.consumers_cpu_s / measured.events,
        "load_average": os.getloadavg()[0],
    }
