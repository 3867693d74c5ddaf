from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gitsail.secrets.keys import SealingKey, generate_key

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def key() -> SealingKey:
    # 2048 bits keeps the unit tests fast; the wire format is the same for every size.
    return generate_key(now=NOW, key_size=2048)


@pytest.fixture(scope="session")
def other_key() -> SealingKey:
    return generate_key(now=NOW, key_size=2048)
