"""The state database: alert states and latches, daily baselines and peaks, window
history, silences, and the action and notification audit logs (docs/configuration.md,
"The state database").

Open it with :meth:`Store.open`; see :mod:`riskwatch.store.db` for the durability and
threading contract and :mod:`riskwatch.store.schema` for what files are refused. The
records it hands back (:class:`~riskwatch.records.ActionRecord`,
:class:`~riskwatch.records.Silence`, ...) live in :mod:`riskwatch.records`, which does
no I/O, so the pure layers read them without importing the store.
"""

from riskwatch.store.db import Store
from riskwatch.store.errors import DuplicateActionError, DuplicateRecordError, StateStoreError
from riskwatch.store.schema import APPLICATION_ID, SCHEMA_VERSION

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "DuplicateActionError",
    "DuplicateRecordError",
    "StateStoreError",
    "Store",
]
