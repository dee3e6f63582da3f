"""The loopback internet: what it serves, and its link profile."""

from __future__ import annotations

import argparse
from pathlib import Path

import aiohttp
import pytest

from bench.netsim import STATS_PATH, LinkProfile, NetSim, NetSimProcess, parse_mount, resolve


def test_resolve_serves_files_and_folders_and_never_escapes(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "large").mkdir(parents=True)
    (folder / "large" / "a.jpg").write_bytes(b"a")
    model = tmp_path / "model.tflite"
    model.write_bytes(b"m")
    (tmp_path / "secret").write_bytes(b"s")
    mounts = {"/photos": folder, "/models/birds.tflite": model}

    assert resolve(mounts, "/photos/large/a.jpg") == (folder / "large" / "a.jpg").resolve()
    assert resolve(mounts, "/models/birds.tflite") == model
    assert resolve(mounts, "/photos/../secret") is None
    assert resolve(mounts, "/photos/large/missing.jpg") is None
    assert resolve(mounts, "/models/birds.tflite/x") is None
    assert resolve(mounts, "/elsewhere") is None


def test_link_profile_transfer_time() -> None:
    assert LinkProfile(0.05, 100e6).transfer_s(12_500_000) == pytest.approx(1.05)
    assert LinkProfile(0.01, 0).transfer_s(10**9) == pytest.approx(0.01)


def test_parse_mount() -> None:
    assert parse_mount("/photos=bench/out/photos") == ("/photos", Path("bench/out/photos"))
    with pytest.raises(argparse.ArgumentTypeError, match="PREFIX"):
        parse_mount("photos")


async def test_serves_whole_bodies_paced_and_counts_them(tmp_path: Path) -> None:
    body = bytes(range(256)) * 800  # 200 KiB: several paced chunks
    (tmp_path / "x.bin").write_bytes(body)
    async with (
        NetSim({"/files": tmp_path}, LinkProfile(0.005, 400e6)) as net,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(net.url("/files/x.bin")) as resp:
            assert resp.status == 200
            assert resp.content_length == len(body)
            assert await resp.read() == body
        async with session.get(net.url("/files/nope.bin")) as resp:
            assert resp.status == 404
        async with session.get(net.url(STATS_PATH)) as resp:
            stats = await resp.json()
    assert stats["requests"] == 2
    assert stats["bytes_sent"] == len(body)
    assert stats["by_path"]["/files/x.bin"] == 1


async def test_runs_as_a_subprocess(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("id,name\n0,a\n")
    with NetSimProcess({"/labels.csv": tmp_path / "labels.csv"}, LinkProfile(0.001, 0)) as net:
        assert net.base.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as session, session.get(net.url("/labels.csv")) as resp:
            assert await resp.text() == "id,name\n0,a\n"
    assert net.proc.poll() is not None
