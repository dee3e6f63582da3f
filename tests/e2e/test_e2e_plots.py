"""e2e.plots and the KEDA timeline: PNGs from a run's samples."""

from __future__ import annotations

from PIL import Image

from e2e import plots
from e2e.k8s import keda_timeline
from e2e.records import Mark

PNG = b"\x89PNG\r\n\x1a\n"


def test_keda_timeline_finds_the_steps() -> None:
    lag = [(0.0, 0), (2.0, 9000), (20.0, 7000), (60.0, 500), (70.0, 0), (90.0, 0)]
    wanted = [(0.0, 1), (16.0, 2), (40.0, 3), (80.0, 3), (110.0, 2), (140.0, 1)]
    assert keda_timeline(lag, wanted) == {
        "max_replicas": 3,
        "scaled_up_at_s": 16.0,
        "peak_lag": 9000,
        "drained_at_s": 70.0,
        "back_to_min_at_s": 140.0,
    }


def test_keda_plot(tmp_path) -> None:
    path = plots.plot_keda(
        [(0, 0), (5, 800), (30, 0)],
        [(0, 1), (10, 2), (40, 1)],
        [(0, 1), (20, 2), (45, 1)],
        "t",
        tmp_path / "k.png",
    )
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as image:
        assert image.size[0] > 500


def test_handover_plot(tmp_path) -> None:
    points = [(t / 10, 0.05 if t % 50 else 30.0) for t in range(300)]
    path = plots.plot_handover(
        points,
        [(Mark("rollout", 0), 5.0, 12.0), (Mark("crash", 0), 20.0, 21.0)],
        "t",
        tmp_path / "sub" / "h.png",
    )
    assert path.read_bytes()[:8] == PNG
