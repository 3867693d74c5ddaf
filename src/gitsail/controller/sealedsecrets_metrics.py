"""Which sealing key each SealedSecret depends on, as a Prometheus gauge (Bitnami issue #108).

``gitsail_sealedsecret_key_info{namespace, name, key, current} 1``: ``key`` is the SHA-256
fingerprint of the key every value of the SealedSecret opens with (``none`` when no active key
opens them all), ``current`` is ``"true"`` when that is the newest key (the one that seals).
``sum by (key) (gitsail_sealedsecret_key_info{current="false"})`` lists what still depends on
old keys, before an old key is retired; ``gitsail seal rotate`` moves them to the newest.

Labels are bounded by the number of SealedSecrets (like ``gitsail_app_info``); a
SealedSecret's series is replaced when its key changes and removed when it is deleted. The
gauge lives on the controller's own registry (``Metrics.registry``), created once per registry.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from gitsail.secrets.keys import KeyRing
from gitsail.secrets.rotate import keys_in_use

__all__ = ["KeyUsage"]

_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, Gauge] = weakref.WeakKeyDictionary()


class KeyUsage:
    """The gauge of one registry, and the series each SealedSecret has now."""

    def __init__(self, registry: CollectorRegistry) -> None:
        gauge = _GAUGES.get(registry)
        if gauge is None:
            gauge = Gauge(
                "gitsail_sealedsecret_key_info",
                "The sealing key a SealedSecret's values open with (current: the newest key)",
                ["namespace", "name", "key", "current"],
                registry=registry,
            )
            _GAUGES[registry] = gauge
        self.gauge = gauge
        self._series: dict[tuple[str, str], tuple[str, str, str, str]] = {}

    def observe(self, sealed: Mapping[str, Any], ring: KeyRing) -> str:
        """Record which key ``sealed`` uses; returns its fingerprint (or ``none``)."""
        [(namespace, name, used)] = keys_in_use([sealed], ring.keys)
        newest = ring.newest
        current = "true" if newest is not None and used == newest.fingerprint else "false"
        labels = (namespace, name, used, current)
        previous = self._series.get((namespace, name))
        if previous is not None and previous != labels:
            self.gauge.remove(*previous)
        self.gauge.labels(*labels).set(1)
        self._series[(namespace, name)] = labels
        return used

    def forget(self, namespace: str, name: str) -> None:
        previous = self._series.pop((namespace, name), None)
        if previous is not None:
            self.gauge.remove(*previous)
