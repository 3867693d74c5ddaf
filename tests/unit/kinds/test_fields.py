from __future__ import annotations

import pytest

from gitsail.kinds._fields import Fields, go_duration
from gitsail.kinds.errors import SpecError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m", 60.0),
        ("10m0s", 600.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("0", 0.0),
        ("+5s", 5.0),
        ("3us", 3e-6),
    ],
)
def test_go_durations_are_read_as_go_reads_them(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "-5s", "m", ".s", "1h 2m", "5s5", "9" * 30 + "h"])
def test_what_go_refuses_is_not_a_duration(text: str) -> None:
    assert go_duration(text) is None


def test_errors_name_the_field_path() -> None:
    spec = Fields({"interval": "5x"}, "spec")
    with pytest.raises(SpecError) as err:
        spec.duration("interval")
    assert str(err.value) == 'spec.interval: not a duration: "5x" (use e.g. 30s, 5m, 1h)'
    assert err.value.field == "spec.interval"


def test_null_is_absent_and_unknown_fields_are_refused() -> None:
    spec = Fields({"suspend": None, "intervall": "1m"}, "spec")
    assert spec.boolean("suspend") is False
    with pytest.raises(SpecError, match=r"spec\.intervall: unknown field"):
        spec.finish()


def test_list_items_carry_their_index() -> None:
    spec = Fields({"images": [{"name": "a"}, "b"]}, "spec")
    with pytest.raises(SpecError, match=r"spec\.images\[1\]: expected an object"):
        spec.items("images")
