"""The state database: alert states and latches, daily baselines and peaks, window
history, silences, and the action and notification audit logs (docs/configuration.md,
"The state database").

Open it with :meth:`Store.open`; see :mod:`riskwatch.store.db` for the durability and
threading contract and :mod:`riskwatch.store.schema` for what files are refused.
"""

from riskwatch.store.db import Store
from riskwatch.store.errors import DuplicateActionError, DuplicateRecordError, StateStoreError
from riskwatch.store.records import (
    LATCH_KEY,
    ActionRecord,
    AlertRow,
    LatchReset,
    NotificationRecord,
    Silence,
    url_id,
)
from riskwatch.store.schema import APPLICATION_ID, SCHEMA_VERSION

__all__ = [
    "APPLICATION_ID",
    "LATCH_KEY",
    "SCHEMA_VERSION",
    "ActionRecord",
    "AlertRow",
    "DuplicateActionError",
    "DuplicateRecordError",
    "LatchReset",
    "NotificationRecord",
    "Silence",
    "StateStoreError",
    "Store",
    "url_id",
]
