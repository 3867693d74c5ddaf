import json
import sys
from pathlib import Path

import pytest
import yaml

from gitsail.cli import render as cli_render
from gitsail.cli.output import Format, emit, fail
from gitsail.kinds.argo_application import AppSpecError


def test_json_and_yaml_output_carry_the_same_data(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"name": "a", "alive": True, "nested": {"x": 1}}]
    emit(rows, Format.json)
    as_json = json.loads(capsys.readouterr().out)
    emit(rows, Format.yaml)
    as_yaml = yaml.safe_load(capsys.readouterr().out)
    assert as_json == as_yaml == rows


def test_table_output_shows_the_chosen_columns(capsys: pytest.CaptureFixture[str]) -> None:
    emit([{"name": "a", "secret_detail": "hidden"}], Format.table, columns=("name",))
    out = capsys.readouterr().out
    assert "NAME" in out
    assert "secret_detail" not in out.lower()


def _run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from gitsail.cli.main import main

    monkeypatch.setattr(sys, "argv", ["gitsail", *args])
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.delenv("GITSAIL_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0)


def test_fail_prints_one_unwrapped_line_and_no_markup(capsys: pytest.CaptureFixture[str]) -> None:
    message = "spec.source.helm.parameters[0].value: [bold]x[/bold] " + "long " * 40
    exit_ = fail(message)
    assert exit_.exit_code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "[bold]x[/bold]" in err
    assert err.startswith("error: spec.source.helm.parameters[0].value")


def test_an_unexpected_exception_in_a_command_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("metadata")

    monkeypatch.setattr(cli_render, "render_local", broken)
    assert _run_cli(monkeypatch, "render", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1
    assert err.startswith("error: KeyError: 'metadata' (unexpected; set GITSAIL_DEBUG=1")


def test_gitsail_errors_escaping_a_command_keep_their_own_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def refused(*_args: object, **_kwargs: object) -> None:
        raise AppSpecError("application x: spec.project: expected string, got 7")

    monkeypatch.setattr(cli_render, "render_local", refused)
    assert _run_cli(monkeypatch, "render", str(tmp_path)) == 1
    assert capsys.readouterr().err == (
        "error: application x: spec.project: expected string, got 7\n"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"spec:\n  source: just-a-string\n", 'spec.source: expected object, got "just-a-string"'),
        (b"- 1\n- 2\n", "an Application must be an object, got array"),
        (b"\xff\xfe\x00", "cannot read an Application manifest"),
        (
            b"metadata: {name: x}\nspec:\n  source: {repoURL: r, helm: {parameters: 3}}\n",
            "spec.source.helm.parameters: expected array, got 3",
        ),
    ],
)
def test_render_with_a_broken_application_file_names_the_problem(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: bytes,
    expected: str,
) -> None:
    app = tmp_path / "app.yaml"
    app.write_bytes(content)
    assert _run_cli(monkeypatch, "render", str(tmp_path), "--app", str(app)) == 1
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err
    assert err.count("\n") == 1
