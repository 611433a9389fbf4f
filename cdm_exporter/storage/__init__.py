"""State stores: where known state and the API budget outlive a process, or are shared by replicas.

Each implements :class:`cdm_exporter.polling.persistence.StateStore`; polling defines that
protocol and never imports this package (nor sqlite3 or redis), the command line builds the
store it was asked for and hands it to the exporter.

* :mod:`~cdm_exporter.storage.file_store`: one process, a local SQLite file (``--storage.path``);
* :mod:`~cdm_exporter.storage.redis_store`: replicas sharing Redis (``--storage.redis-url``), with
  :mod:`~cdm_exporter.storage.lease` (which replica polls) and
  :mod:`~cdm_exporter.storage.shared_budget` (one rolling minute per credential for all of them).
"""

from __future__ import annotations

import hashlib

from cdm_exporter.polling.budget import BudgetKey


def window_name(key: BudgetKey) -> str:
    """A budget key as stores name it: a hash of the credential's identity (which may name an
    IAM user) and the policy."""
    return f"{hashlib.sha256(key.identity.encode()).hexdigest()[:16]}:{key.policy}"
