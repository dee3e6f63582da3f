"""Reading a process's memory and CPU time from /proc (Linux), and pinning children to CPUs."""

from __future__ import annotations

import os
import time
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_status_kib(text: str, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (e.g. VmRSS, VmHWM) in KiB, or None."""
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            parts = line.split()
            return int(parts[1]) if len(parts) >= 2 else None
    return None


def memory_mib(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of `pid` in MiB, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss, hwm = parse_status_kib(text, "VmRSS"), parse_status_kib(text, "VmHWM")
    if rss is None or hwm is None:
        return None
    return rss / 1024, hwm / 1024


def parse_stat_cpu_s(text: str) -> float:
    """utime + stime in seconds from the text of /proc/<pid>/stat."""
    fields = text.rsplit(")", 1)[1].split()
    # After the command come state (field 3), ...; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by `pid` (its threads included), or None when it is gone."""
    try:
        return parse_stat_cpu_s(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, IndexError, ValueError):
        return None


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def parse_proc_stat_busy_s(text: str) -> float:
    """CPU seconds spent busy by all CPUs, from the aggregate `cpu` line of /proc/stat."""
    fields = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # guest time is already counted in user; leave it out of the sum
    return (sum(fields[:8]) - idle) / _CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds spent busy by the whole machine so far (every process, every CPU)."""
    return parse_proc_stat_busy_s(Path("/proc/stat").read_text())


class CpuMeter:
    """CPU seconds used by the processes sharing the machine, between `start` and `stop`:
    ours by pid, and the whole machine's from /proc/stat (the rest is other people's work)."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self._pids = {k: v for k, v in pids.items() if v is not None}
        self._before: dict[str, float] = {}
        self._wall = 0.0

    def _read(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) or 0.0 for name, pid in self._pids.items()}
        t = os.times()
        now["driver"] = t.user + t.system
        now["machine"] = machine_busy_s()
        return now

    def start(self) -> None:
        self._before, self._wall = self._read(), time.perf_counter()

    def stop(self) -> dict[str, float]:
        after, wall = self._read(), time.perf_counter() - self._wall
        used = {k: after[k] - self._before.get(k, 0.0) for k in after}
        machine = used.pop("machine")
        return cpu_shares(used, machine, wall, os.cpu_count() or 1)


def cpu_shares(
    used: dict[str, float], machine_s: float, wall_s: float, cpus: int
) -> dict[str, float]:
    """Our processes' CPU seconds (`used`) and the machine's, as shares of its capacity.

    /proc/stat is sampled a tick at a time while a process's times are not, so over a short
    window the machine can read a little lower than our own processes: the machine's busy time
    is at least ours, and the gap is sampling error rather than negative work by others."""
    ours = sum(used.values())
    machine_s = max(machine_s, ours)
    capacity = max(wall_s, 1e-9) * cpus
    return {
        **{f"{k}_cpu_s": v for k, v in used.items()},
        "others_cpu_s": machine_s - ours,
        "wall_s": wall_s,
        "ours_busy": ours / capacity,
        "machine_busy": machine_s / capacity,
    }
