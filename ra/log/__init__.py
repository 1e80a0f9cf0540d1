"""Mirrors ra_log.erl (package: ra_log_*). The durable log behind ``ra.core.log.Log``."""
from ra.log.log import DiskLog
from ra.log.memtable import Memtable
from ra.log.meta import CorruptMeta, DiskMeta
from wal.segments import Segments

__all__ = ["DiskLog", "DiskMeta", "CorruptMeta", "Memtable", "Segments"]
