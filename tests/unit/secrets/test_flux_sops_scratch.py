"""A Flux build with SOPS decryption renders with the renderer's temporary copy inside the
private workspace (``Renderer.render(scratch=...)``), so decrypted generator inputs are never
copied into the renderer's work directory; without decryption nothing changes."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from gitsail.kinds.flux_kustomization import parse_kustomization
from gitsail.kinds.flux_kustomization_build import build_local
from gitsail.model import Artifact
from gitsail.render import Rendered, RenderOptions
from gitsail.secrets import age, sops
from gitsail.secrets.sops_encrypt import encrypt_file

PLAIN = "flux-scratch-plain-0x44"


class KeyKube:
    def __init__(self, key_line: str) -> None:
        self.secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sops-age", "namespace": "flux-system"},
            "stringData": {"identity.agekey": key_line},
        }

    async def get(
        self, _api: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return self.secret if (kind, name) == ("Secret", "sops-age") else None


class RecordingRenderer:
    def __init__(self, work_dir: Path) -> None:
        work_dir.mkdir()
        self.work_dir = work_dir
        self.seen: list[tuple[Path | None, str, int]] = []

    async def render(
        self, artifact: Artifact, options: RenderOptions, scratch: Path | None = None
    ) -> Rendered:
        self._record(artifact, scratch)
        return Rendered(manifests=(), tool="kustomize", key="")

    def _record(self, artifact: Artifact, scratch: Path | None) -> None:
        env = (artifact.root / artifact.path / "app.env").read_text()
        mode = stat.S_IMODE(scratch.stat().st_mode) if scratch is not None else -1
        assert scratch is None or artifact.root.parent == scratch
        self.seen.append((scratch, env, mode))


def kustomization(decryption: bool) -> Any:
    spec: dict[str, Any] = {
        "interval": "10m",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "repo"},
    }
    if decryption:
        spec["decryption"] = {"provider": "sops", "secretRef": {"name": "sops-age"}}
    return parse_kustomization(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system", "generation": 1},
            "spec": spec,
        }
    )


async def test_a_decrypting_build_renders_inside_the_private_workspace(tmp_path: Path) -> None:
    line, ident = age.generate()
    source = tmp_path / "source"
    source.mkdir()
    (source / "kustomization.yaml").write_text(
        "secretGenerator:\n  - name: gen\n    envs: [app.env]\n"
    )
    data = encrypt_file(f"KEY={PLAIN}\n".encode(), sops.Format.DOTENV, [ident.recipient])
    (source / "app.env").write_bytes(data)
    renderer = RecordingRenderer(tmp_path / "work")
    kube: Any = KeyKube(line)

    await build_local(kube, kustomization(True), source, renderer=renderer)  # type: ignore[arg-type]
    await build_local(kube, kustomization(False), source, renderer=renderer)  # type: ignore[arg-type]

    [(scratch, env, mode), (plain_scratch, plain_env, _)] = renderer.seen
    assert env == f"KEY={PLAIN}\n"  # decrypted for kustomize, in the private workspace
    assert scratch is not None
    assert scratch != renderer.work_dir
    assert renderer.work_dir not in scratch.parents
    assert mode == 0o700
    assert not scratch.exists()  # removed after the build
    assert plain_scratch is None  # no decryption: the renderer's usual work directory
    assert PLAIN not in plain_env
