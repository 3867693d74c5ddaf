"""Unpacking a chart package: bounded in size and entries, only files and directories."""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
from pathlib import Path

import pytest

from gitsail.policy import DEFAULT_POLICY
from gitsail.source import FetchError
from gitsail.source.helm import _extract


def _package(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return gzip.compress(raw.getvalue())


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, b""


def test_a_normal_chart_unpacks(tmp_path: Path) -> None:
    data = _package([_file("web/Chart.yaml", b"name: web\n"), _file("web/templates/a.yaml")])
    _extract(data, tmp_path / "out", "chart web", DEFAULT_POLICY)
    assert (tmp_path / "out" / "web" / "Chart.yaml").read_bytes() == b"name: web\n"
    assert (tmp_path / "out" / "web" / "templates" / "a.yaml").is_file()


def test_a_small_package_that_unpacks_huge_is_refused(tmp_path: Path) -> None:
    # 64 MiB of zeros is ~64 KiB compressed: the reported 2 MB -> 2 GiB shape, scaled down.
    policy = dataclasses.replace(DEFAULT_POLICY, chart_unpacked_bytes=8 * 1024 * 1024)
    data = _package([_file("web/Chart.yaml"), _file("web/big", bytes(64 * 1024 * 1024))])
    assert len(data) < 200_000
    with pytest.raises(FetchError, match="unpacks to more than 8388608 bytes"):
        _extract(data, tmp_path / "out", "chart web", policy)
    written = sum(f.stat().st_size for f in (tmp_path / "out").rglob("*") if f.is_file())
    assert written <= 8 * 1024 * 1024


def test_a_header_declaring_gigabytes_is_refused_before_anything_is_buffered(
    tmp_path: Path,
) -> None:
    info, _ = _file("web/huge")
    info.size = 3 * 1024**3
    block = info.tobuf(tarfile.GNU_FORMAT)
    data = gzip.compress(block + bytes(1024))
    with pytest.raises(FetchError, match="unpacks to more than"):
        _extract(data, tmp_path / "out", "chart web", DEFAULT_POLICY)


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    policy = dataclasses.replace(DEFAULT_POLICY, chart_entries=50)
    data = _package([_file(f"web/f{i}") for i in range(51)])
    with pytest.raises(FetchError, match="more than 50 entries"):
        _extract(data, tmp_path / "out", "chart web", policy)


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_special("web/link", tarfile.SYMTYPE, "/etc/shadow"), "not a regular file"),
        (_special("web/inner", tarfile.SYMTYPE, "Chart.yaml"), "not a regular file"),
        (_special("web/hard", tarfile.LNKTYPE, "/etc/shadow"), "not a regular file"),
        (_special("web/dev", tarfile.CHRTYPE), "not a regular file"),
        (_special("web/fifo", tarfile.FIFOTYPE), "not a regular file"),
        (_file("/etc/cron.d/x"), "unsafe path"),
        (_file("web/../../escape"), "unsafe path"),
    ],
)
def test_links_devices_and_escaping_paths_are_refused(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes], message: str
) -> None:
    data = _package([_file("web/Chart.yaml"), member])
    with pytest.raises(FetchError, match=message):
        _extract(data, tmp_path / "out", "chart web", DEFAULT_POLICY)
    assert not (tmp_path / "escape").exists()


def test_garbage_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot be unpacked safely"):
        _extract(b"not a gzip", tmp_path / "out", "chart web", DEFAULT_POLICY)
