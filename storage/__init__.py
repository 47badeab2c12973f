"""Store back-ends behind the WriteStore / ReadStore protocols (DESIGN.md §3.3, §3.4)."""

from storage.base import Bucket, ReadStore, SeriesKey, WriteStore
from storage.sqlite import SqliteStore

__all__ = ["Bucket", "ReadStore", "SeriesKey", "SqliteStore", "WriteStore"]
