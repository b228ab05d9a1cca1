"""``kill -9`` on ``lstmbt compare --workers 2`` leaves no worker, forkserver or resource tracker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _children() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            out[int(entry.name)] = int(fields[1])
    return out


def _descendants(root: int) -> set[int]:
    parents = _children()
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_kill_9_on_compare_leaves_no_worker_forkserver_or_resource_tracker(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LSTMBT_DATA_DIR": str(tmp_path / "store")}
    proc = subprocess.Popen([sys.executable, "-m", "backtests.cli", "compare", "--workers", "2",
                             "--strategies", "sma_cross,buy_hold", "--start", "2023-01-01", "--end", "2024-12-31",
                             "--rolling", "1M", "--no-cell-reports", "--out", str(tmp_path / "cmp")],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the forkserver, the resource tracker and two workers: at least four descendants
        deadline = time.monotonic() + 240
        tree: set[int] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            tree = _descendants(proc.pid)
            if len(tree) >= 4:
                break
            time.sleep(0.2)
        assert proc.poll() is None and len(tree) >= 4, f"the pool did not start: {tree}"
        time.sleep(0.5)
        tree = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        alive = tree
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            live = _children()
            alive = {pid for pid in tree if pid in live}
        assert not alive, f"left behind: {[(pid, _cmdline(pid)) for pid in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "cmp").exists()      # no folder that looks like a finished comparison


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"
