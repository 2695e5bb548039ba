"""The run store (docs/store.md): runs, their per-case predictions and job claims, in SQL."""
from .claims import Heartbeat, Owner, claim_ttl
from .runstore import DONE_STATUSES, RESULT_PURPOSES, RunStore, StoreError, default_url
from .schema import SCHEMA_HEAD
from .urls import normalize_url

__all__ = ["DONE_STATUSES", "RESULT_PURPOSES", "RunStore", "StoreError", "default_url", "Heartbeat", "Owner",
           "claim_ttl", "SCHEMA_HEAD", "normalize_url"]
