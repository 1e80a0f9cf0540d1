"""Mirrors ra_log_snapshot.erl. The default on-disk snapshot format.

Layout (little-endian)::

    magic b"RAPYSNP\\0" | u16 version (1) | u16 0 | u64 xxh64(meta + data) | u32 meta_len
    meta : codec-encoded [index, term, cluster, machine_version]
    data : the machine state, already encoded by the caller (bytes)

:func:`write` is durable when it returns: temp file, fsync, rename into place, fsync directory.
:func:`read` verifies the checksum and raises :class:`CorruptSnapshot` on any damage, so a
torn or bit-flipped snapshot is never decoded.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

import xxhash

from ra.core.messages import SnapshotMeta
from wal import osio

__all__ = ["CorruptSnapshot", "write", "read", "read_meta", "file_name", "parse_file_name"]

_MAGIC = b"RAPYSNP\x00"
_HDR = struct.Struct("<8sHHQI")
_SUFFIX = ".snapshot"


class CorruptSnapshot(IOError):
    """The snapshot file is torn, truncated or fails its checksum."""


def file_name(index: int, term: int) -> str:
    return f"{index:020d}_{term}{_SUFFIX}"


def parse_file_name(name: str) -> tuple[int, int] | None:
    if not name.endswith(_SUFFIX):
        return None
    try:
        i, t = name[: -len(_SUFFIX)].split("_")
        return int(i), int(t)
    except ValueError:
        return None


def write(dirpath: str, meta: SnapshotMeta, data: bytes, encode: Callable[[Any], bytes]) -> str:
    """Durably write a snapshot file for ``meta``; returns its path."""
    mb = encode([meta.index, meta.term, list(meta.cluster), meta.machine_version])
    body = mb + data
    blob = _HDR.pack(_MAGIC, 1, 0, xxhash.xxh64_intdigest(body), len(mb)) + body
    final = os.path.join(dirpath, file_name(meta.index, meta.term))
    osio.atomic_write(final, blob)
    return final


def _load(path: str) -> tuple[bytes, bytes]:
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < _HDR.size:
        raise CorruptSnapshot(f"{path}: short header")
    magic, version, _, ck, mlen = _HDR.unpack_from(blob, 0)
    body = blob[_HDR.size:]
    if magic != _MAGIC or version != 1 or mlen > len(body) or xxhash.xxh64_intdigest(body) != ck:
        raise CorruptSnapshot(f"{path}: bad header or checksum")
    return body[:mlen], body[mlen:]


def read(path: str, decode: Callable[[bytes], Any]) -> tuple[SnapshotMeta, bytes]:
    """(meta, encoded machine state) of a verified snapshot file."""
    mb, data = _load(path)
    try:
        idx, term, cluster, mv = decode(mb)
    except Exception as exc:  # checksum passed but meta undecodable: treat as corrupt
        raise CorruptSnapshot(f"{path}: meta: {exc}") from None
    return SnapshotMeta(idx, term, tuple(cluster), mv), data


def read_meta(path: str, decode: Callable[[bytes], Any]) -> SnapshotMeta:
    return read(path, decode)[0]
