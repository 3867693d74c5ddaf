"""Sync: plan (phases, waves, kind order, hooks), apply with server-side apply, prune, wait."""

from gitsail.sync.engine import ResourceResult, SyncError, SyncRequest, SyncResult, run_sync
from gitsail.sync.plan import SyncOptions, parse_sync_options
from gitsail.sync.tracking import TRACKING_ANNOTATION, is_owned_by, tracking_id

__all__ = [
    "TRACKING_ANNOTATION",
    "ResourceResult",
    "SyncError",
    "SyncOptions",
    "SyncRequest",
    "SyncResult",
    "is_owned_by",
    "parse_sync_options",
    "run_sync",
    "tracking_id",
]
