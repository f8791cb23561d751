"""Metadata persistence: SQLAlchemy 2 tables, one managed session, Alembic migrations.

Returns entities, never ORM rows.
"""

from modelhost.store.database import Database, WriteConflictError
from modelhost.store.datasets import DatasetStore
from modelhost.store.models import ChooseVersion, ConcurrentVersionError, ModelStore, NewVersion
from modelhost.store.tracking import TrackingStore

__all__ = ["ChooseVersion", "ConcurrentVersionError", "Database", "DatasetStore", "ModelStore",
           "NewVersion", "TrackingStore", "WriteConflictError"]
