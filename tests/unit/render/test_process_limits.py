"""A tool run is bounded in time, memory and output, and a timeout kills its whole group."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest

from gitsail.policy import DEFAULT_POLICY, MiB
from gitsail.render import RenderError
from gitsail.render._process import ToolRunner


def _runner(tmp_path: Path, **limits: int) -> ToolRunner:
    policy = dataclasses.replace(DEFAULT_POLICY, **limits)
    return ToolRunner(home=tmp_path / "home", timeout=1.5, policy=policy)


def _run(runner: ToolRunner, code: str, cwd: Path) -> bytes:
    return asyncio.run(runner.run([sys.executable, "-c", code], cwd=cwd, what="tool"))


def test_output_over_the_limit_stops_the_tool(tmp_path: Path) -> None:
    runner = _runner(tmp_path, render_output_bytes=1000)
    with pytest.raises(RenderError, match="output over 1000 bytes"):
        _run(runner, "import sys\nwhile True: sys.stdout.write('x' * 4096)", tmp_path)
    assert _run(runner, "print('ok')", tmp_path) == b"ok\n"


def test_memory_over_the_limit_fails_the_tool(tmp_path: Path) -> None:
    runner = _runner(tmp_path, render_memory_bytes=256 * MiB)
    with pytest.raises(RenderError, match="MemoryError"):
        _run(runner, "x = bytearray(512 * 1024 * 1024)", tmp_path)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"timed out after 1.5s \(GITSAIL_RENDER_TIMEOUT\)"):
        _run(runner, code, tmp_path)
    assert time.monotonic() - started < 10
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            return
        # A killed child stays a zombie until init reaps it; a zombie is gone for our purposes.
        status = Path(f"/proc/{grandchild}/status")
        if status.exists() and "State:\tZ" in status.read_text():
            return
        time.sleep(0.05)
    pytest.fail("the tool's child outlived the timeout")


def test_a_go_style_out_of_memory_crash_names_the_limit(tmp_path: Path) -> None:
    runner = _runner(tmp_path, render_memory_bytes=1 << 30)
    code = (
        "import sys\n"
        "sys.stderr.write('fatal error: runtime: out of memory\\n' + 'goroutine trace\\n' * 5000)\n"
        "sys.exit(2)\n"
    )
    with pytest.raises(RenderError, match=r"ran out of memory: .*GITSAIL_RENDER_MEMORY_BYTES"):
        _run(runner, code, tmp_path)
