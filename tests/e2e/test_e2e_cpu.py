"""e2e.cpu: the CPU the consumers got during a drain, and the machine's busy time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from e2e import cpu
from e2e.records import Drain


def test_machine_busy_seconds_leave_idle_and_iowait_out(tmp_path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 5000 70 1 2 3 40 0\ncpu0 1 2 3 4\n")
    assert cpu.machine_busy_seconds(stat) == pytest.approx((100 + 20 + 30 + 1 + 2 + 3) / 100)


def test_machine_busy_seconds_grow_on_this_machine() -> None:
    before = cpu.machine_busy_seconds()
    sum(i * i for i in range(2_000_000))
    assert cpu.machine_busy_seconds() >= before


def test_the_cgroup_script_prints_cpu_seconds() -> None:
    """The script the runs execute in the containers, run here (cgroup v1 or v2 alike)."""
    proc = subprocess.run(
        [sys.executable, "-c", cpu.CGROUP_CPU_SECONDS],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert float(proc.stdout) > 0


def test_meter_sums_the_containers_over_the_window(monkeypatch) -> None:
    readings = {"a": [10.0, 12.5], "b": [3.0, 4.0]}
    busy = iter([1000.0, 1006.0])
    clock = iter([50.0, 54.0])
    monkeypatch.setattr(cpu, "machine_busy_seconds", lambda: next(busy))
    monkeypatch.setattr(cpu.time, "monotonic", lambda: next(clock))
    meter = cpu.CpuMeter(["a", "b"], lambda c: readings[c].pop(0))
    meter.start()
    share = meter.stop()
    assert (share.seconds, share.consumers_cpu_s, share.machine_cpu_s) == (4.0, 3.5, 6.0)
    assert share.consumer_cores == pytest.approx(0.875)
    assert share.machine_cores == pytest.approx(1.5)
    assert cpu.CpuShare(0, 1, 1).consumer_cores == 0.0


def test_drain_figures_put_throughput_beside_cpu() -> None:
    found = cpu.drain_figures(Drain(300, 10.0), cpu.CpuShare(10.0, 9.0, 18.0))
    assert found["per_second"] == 30.0
    assert found["cpu_ms_per_photo"] == pytest.approx(30.0)
    assert found["cpu"] == {
        "seconds": 10.0,
        "consumer_cores": 0.9,
        "machine_cores": 1.8,
        "consumers_cpu_s": 9.0,
    }
    assert found["load_average"] >= 0
