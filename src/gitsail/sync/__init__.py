"""Sync: plan (phases, waves, kind order, hooks), apply with server-side apply, prune, wait.

Who owns what is data handed in: an ``Owner`` (``ArgoTracking`` or ``FluxLabels``) marks and
recognises objects, an ``Inventory`` says what the last sync applied (so what may be pruned).
"""

from gitsail.sync.engine import ResourceResult, SyncError, SyncRequest, SyncResult, run_sync
from gitsail.sync.inventory import Inventory, InventoryEntry, InventoryError
from gitsail.sync.ownership import (
    FLUX_NAME_LABEL,
    FLUX_NAMESPACE_LABEL,
    TRACKING_ANNOTATION,
    ArgoTracking,
    FluxLabels,
    Owner,
    owners_of,
    tracking_id,
)
from gitsail.sync.plan import SyncOptions, parse_sync_options
from gitsail.sync.tracking import is_owned_by

__all__ = [
    "FLUX_NAMESPACE_LABEL",
    "FLUX_NAME_LABEL",
    "TRACKING_ANNOTATION",
    "ArgoTracking",
    "FluxLabels",
    "Inventory",
    "InventoryEntry",
    "InventoryError",
    "Owner",
    "ResourceResult",
    "SyncError",
    "SyncOptions",
    "SyncRequest",
    "SyncResult",
    "is_owned_by",
    "owners_of",
    "parse_sync_options",
    "run_sync",
    "tracking_id",
]
