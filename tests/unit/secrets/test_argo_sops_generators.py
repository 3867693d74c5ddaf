"""SOPS-encrypted ``secretGenerator`` inputs of an opted-in Application
(gitsail.app.sops.render_decrypted): rendered from a private ``0700`` copy of only the
kustomization's inputs, with the renderer's own copy inside it, removed afterwards; the
shared checkout is never written; render errors are scrubbed; the copy is bounded."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any, cast

import pytest

from gitsail.app import sops as app_sops
from gitsail.app.sops import render_decrypted
from gitsail.errors import Stalled, Transient
from gitsail.kube import Kube
from gitsail.model import Artifact, Obj
from gitsail.policy import DEFAULT_POLICY
from gitsail.render import Rendered, RenderError
from gitsail.secrets import age, sops
from gitsail.secrets.sops_encrypt import encrypt_file
from tests.unit.secrets.test_argo_sops import Secrets, app, key_secret

PLAIN = "generator-plain-0x33"


def checkout(tmp_path: Path, recipient: str, *, encrypt: bool = True) -> Artifact:
    root = tmp_path / "checkout"
    (root / "app").mkdir(parents=True)
    (root / "other").mkdir()
    (root / "other/unrelated.yaml").write_text("kind: ConfigMap\n")
    (root / "app/kustomization.yaml").write_text(
        "secretGenerator:\n  - name: gen\n    envs: [app.env]\n"
    )
    env = f"API_KEY={PLAIN}\n".encode()
    data = encrypt_file(env, sops.Format.DOTENV, [recipient]) if encrypt else env
    (root / "app/app.env").write_bytes(data)
    return Artifact("https://git.example/r.git", "c0ffee", "HEAD", root, "app", "sha256:x")


class FakeRender:
    """Records what a render saw: its root, scratch, the app's env file, the modes."""

    def __init__(self, fail: str = "") -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    async def __call__(self, artifact: Artifact, scratch: Path | None) -> Rendered:
        env = self._record(artifact, scratch)
        if self.fail:
            raise RenderError(self.fail.replace("@", env.strip()) + f" in {scratch}")
        secret: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "gen"},
            "stringData": {"env": env},
        }
        return Rendered(manifests=(secret,), tool="kustomize", key="")

    def _record(self, artifact: Artifact, scratch: Path | None) -> str:
        env = (artifact.root / "app/app.env").read_text()
        self.calls.append(
            {
                "root": artifact.root,
                "digest": artifact.digest,
                "scratch": scratch,
                "env": env,
                "files": sorted(
                    p.relative_to(artifact.root).as_posix()
                    for p in artifact.root.rglob("*")
                    if p.is_file()
                ),
                "scratch_mode": stat.S_IMODE(scratch.stat().st_mode) if scratch else None,
                "env_mode": stat.S_IMODE((artifact.root / "app/app.env").stat().st_mode),
            }
        )
        return env


async def test_encrypted_generator_inputs_render_from_a_private_copy(tmp_path: Path) -> None:
    line, ident = age.generate()
    artifact = checkout(tmp_path, ident.recipient)
    before = (artifact.root / "app/app.env").read_bytes()
    render = FakeRender()
    kube = cast(Kube, Secrets(key_secret(line)))

    rendered = await render_decrypted(
        kube, "argocd", app(), artifact, render, work_dir=tmp_path / "work", policy=DEFAULT_POLICY
    )

    [call] = render.calls
    assert call["env"] == f"API_KEY={PLAIN}\n"
    assert call["root"] != artifact.root
    assert call["scratch"] == call["root"].parent  # the renderer's copy goes inside it
    assert call["scratch_mode"] == 0o700
    assert call["env_mode"] == 0o600
    assert call["digest"] == ""  # never in the render cache
    assert call["files"] == ["app/app.env", "app/kustomization.yaml"]  # only the inputs
    assert not call["root"].exists()  # removed afterwards
    assert (artifact.root / "app/app.env").read_bytes() == before  # checkout untouched
    assert PLAIN.encode() not in before
    assert rendered.manifests[0]["stringData"]["env"] == f"API_KEY={PLAIN}\n"


async def test_plain_generator_inputs_render_from_the_shared_checkout(tmp_path: Path) -> None:
    line, ident = age.generate()
    artifact = checkout(tmp_path, ident.recipient, encrypt=False)
    render = FakeRender()
    kube = cast(Kube, Secrets(key_secret(line)))
    await render_decrypted(
        kube, "argocd", app(), artifact, render, work_dir=tmp_path / "work", policy=DEFAULT_POLICY
    )
    [call] = render.calls
    assert (call["root"], call["scratch"], call["digest"]) == (artifact.root, None, "sha256:x")


async def test_render_errors_are_scrubbed_and_the_copy_removed(tmp_path: Path) -> None:
    line, ident = age.generate()
    artifact = checkout(tmp_path, ident.recipient)
    render = FakeRender(fail="kustomize said: @")
    kube = cast(Kube, Secrets(key_secret(line)))
    with pytest.raises(RenderError) as err:
        await render_decrypted(
            kube,
            "argocd",
            app(),
            artifact,
            render,
            work_dir=tmp_path / "work",
            policy=DEFAULT_POLICY,
        )
    assert PLAIN not in str(err.value)
    assert "<redacted>" in str(err.value)
    assert str(render.calls[0]["scratch"]) not in str(err.value)
    assert not render.calls[0]["root"].exists()


async def test_a_wrong_key_fails_before_any_render(tmp_path: Path) -> None:
    _, ident = age.generate()
    wrong, _ = age.generate()
    artifact = checkout(tmp_path, ident.recipient)
    render = FakeRender()
    kube = cast(Kube, Secrets(key_secret(wrong)))
    with pytest.raises(Transient, match="none of the") as err:
        await render_decrypted(
            kube,
            "argocd",
            app(),
            artifact,
            render,
            work_dir=tmp_path / "work",
            policy=DEFAULT_POLICY,
        )
    assert PLAIN not in str(err.value)
    assert render.calls == []


async def test_the_private_copy_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line, ident = age.generate()
    artifact = checkout(tmp_path, ident.recipient)
    monkeypatch.setattr(app_sops, "MAX_PRIVATE_BYTES", 100)
    render = FakeRender()
    kube = cast(Kube, Secrets(key_secret(line)))
    with pytest.raises(Stalled, match="more than 100 bytes"):
        await render_decrypted(
            kube,
            "argocd",
            app(),
            artifact,
            render,
            work_dir=tmp_path / "work",
            policy=DEFAULT_POLICY,
        )
    assert render.calls == []


async def test_without_the_annotation_the_render_is_refused_when_encrypted(
    tmp_path: Path,
) -> None:
    render = FakeRender()
    artifact = checkout(tmp_path, age.generate()[1].recipient, encrypt=False)

    async def encrypted(a: Artifact, scratch: Path | None) -> Rendered:
        await render(a, scratch)
        return Rendered(manifests=({"kind": "Secret", "sops": {"mac": "x"}},), tool="k", key="")

    with pytest.raises(Stalled, match=r"gitsail\.io/sops-decryption"):
        await render_decrypted(
            cast(Kube, Secrets()),
            "argocd",
            app(None),
            artifact,
            encrypted,
            work_dir=tmp_path / "work",
            policy=DEFAULT_POLICY,
        )
