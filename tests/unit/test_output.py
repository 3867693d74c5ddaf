import json

import pytest
import yaml

from gitsail.cli.output import Format, emit


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
