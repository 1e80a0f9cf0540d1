"""No ra equivalent (ra_log_wal.erl writes its own framing inline). The bytes of a WAL file.

File layout::

    header  : magic b"RAPYWAL\\0" | u16 version (1) | u16 flags (bit 0: checksums) | u32 0
    records : u64 xxh64 | u32 payload_len | u16 uid_len | u64 index | u64 term | uid | payload

All integers little-endian. ``xxh64`` covers every byte of the record after the checksum field
(lengths, index, term, uid, payload); it is 0 when the file was written without checksums.

Recovery contract (:func:`scan`): records are returned in file order up to the first record
that is torn (runs past the end of the data), implausible (uid_len 0 — a zero-filled tail —,
index 0, absurd lengths) or, in a checksummed file, fails its checksum. Nothing after that
point is ever returned, even if later bytes would parse: the log ends there and the caller
truncates the file at ``valid_end``. Without checksums a flipped bit inside the index, term or
payload is *not* detected and the altered record is returned as is (documented limitation;
enable ``wal_compute_checksums``, the default). Pure: no I/O except :func:`scan_file`.

:func:`resolve` applies ra's overwrite rule per writer: a write at index ``i`` replaces the
writer's entries from ``i`` on, so the result holds the *last* write for each index and
nothing written before an overwrite point at a higher index. A forward jump (a write past the
writer's last index + 1, which the WAL accepts only when the writer's confirmed index covers the
gap, i.e. after it installed a snapshot) also restarts the writer's run: what came before is
covered by that snapshot.
"""
from __future__ import annotations

import struct
from bisect import bisect_left
from dataclasses import dataclass
from collections.abc import Callable, Iterable

import xxhash

__all__ = [
    "MAGIC", "VERSION", "HEADER_SIZE", "RECORD_HEADER_SIZE", "FLAG_CHECKSUMS",
    "Record", "ScanResult", "BadHeader", "encode_header", "decode_header", "encode_records",
    "scan", "scan_file", "resolve",
]

MAGIC = b"RAPYWAL\x00"
VERSION = 1
FLAG_CHECKSUMS = 1
_HEADER = struct.Struct("<8sHHI")
HEADER_SIZE = _HEADER.size  # 16
_CK = struct.Struct("<Q")
_BODY = struct.Struct("<IHQQ")
RECORD_HEADER_SIZE = _CK.size + _BODY.size  # 30
_REC = struct.Struct("<QIHQQ")                # checksum and body header in one unpack
_MAX_PAYLOAD = 1 << 30
_MAX_UID = 255

#: (uid, index, term, payload)
Record = tuple[bytes, int, int, bytes]

_xxh = xxhash.xxh64_intdigest


class BadHeader(ValueError):
    """The file does not start with a WAL header of a version this code reads."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Records read, the offset just past the last good one, and why the scan stopped
    (``"eof"`` when the data ended exactly on a record boundary)."""

    records: list[Record]
    valid_end: int
    size: int
    reason: str
    checksums: bool


def encode_header(checksums: bool) -> bytes:
    """The 16-byte file header."""
    return _HEADER.pack(MAGIC, VERSION, FLAG_CHECKSUMS if checksums else 0, 0)


def decode_header(data: bytes | memoryview) -> bool:
    """Check the header; return whether the file's records carry checksums."""
    if len(data) < HEADER_SIZE:
        raise BadHeader("short header")
    magic, version, flags, _ = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise BadHeader(f"bad magic {magic!r}")
    if version != VERSION:
        raise BadHeader(f"unsupported version {version}")
    return bool(flags & FLAG_CHECKSUMS)


def encode_records(records: Iterable[Record], checksums: bool) -> bytes:
    """Frame ``records`` into one buffer (the batch the WAL writes with a single write call)."""
    parts: list[bytes] = []
    append = parts.append
    ck_pack = _CK.pack
    zero = ck_pack(0)
    xxh = _xxh
    last_ulen = -1
    body_pack = _BODY.pack
    for uid, idx, term, payload in records:
        ulen = len(uid)
        if ulen != last_ulen:   # the uid packed with the header: one pack, one concatenation
            body_pack = _body_uid(ulen)
            last_ulen = ulen
        body = body_pack(len(payload), ulen, idx, term, uid) + payload
        append(ck_pack(xxh(body)) if checksums else zero)
        append(body)
    return b"".join(parts)


def _body_uid(ulen: int) -> Callable[..., bytes]:
    """``pack(payload_len, uid_len, index, term, uid)`` for uids of ``ulen`` bytes."""
    st = _BODY_UID.get(ulen)
    if st is None:
        st = _BODY_UID[ulen] = struct.Struct(f"{_BODY.format}{ulen}s")
    return st.pack


_BODY_UID: dict[int, struct.Struct] = {}     # at most 256: uids are 1..255 bytes


def scan(data: bytes | memoryview, *, start: int = HEADER_SIZE,
         checksums: bool | None = None, only_uid: bytes | None = None) -> ScanResult:
    """Parse records from ``data`` (a whole file image); see the module contract. With
    ``only_uid`` every record is still verified (that decides where the log ends) but only that
    writer's records are returned."""
    if checksums is None:
        checksums = decode_header(data)
    if type(data) is not bytes:
        data = bytes(data)      # slices of bytes are the records' bytes, in one step each
    size = len(data)
    pos = start
    out: list[Record] = []
    append = out.append
    rec_unpack = _REC.unpack_from
    xxh = _xxh
    hsize = RECORD_HEADER_SIZE
    reason = "eof"
    uid = b""               # the last record's uid: a run of one writer's shares the object
    while True:
        if pos == size:
            break
        if pos + hsize > size:
            reason = "torn_header"
            break
        ck, plen, ulen, idx, term = rec_unpack(data, pos)
        if ulen == 0 or ulen > _MAX_UID or idx == 0 or plen > _MAX_PAYLOAD:
            reason = "implausible"
            break
        end = pos + hsize + ulen + plen
        if end > size:
            reason = "torn_record"
            break
        if checksums and ck != xxh(data[pos + 8:end]):
            reason = "checksum"
            break
        u0 = pos + hsize
        if ulen != len(uid) or not data.startswith(uid, u0):
            uid = data[u0:u0 + ulen]
        if only_uid is None or uid == only_uid:
            append((uid, idx, term, data[u0 + ulen:end]))
        pos = end
    return ScanResult(out, pos, size, reason, checksums)


def scan_file(path: str, only_uid: bytes | None = None) -> ScanResult:
    """Read and scan a whole WAL file. A file shorter than its header is an empty log with
    ``valid_end == 0`` (a crash between create and header write); a bad magic raises."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < HEADER_SIZE:
        if data.strip(b"\x00") and not MAGIC.startswith(data[:8]):
            raise BadHeader(f"{path}: bad magic")
        return ScanResult([], 0, len(data), "torn_header", False)
    return scan(data, only_uid=only_uid)


def resolve(records: Iterable[Record]) -> dict[bytes, list[tuple[int, int, bytes]]]:
    """Per writer, the entries that survive ra's overwrite rule, in index order.

    The first entry's index of each list is also the writer's *truncation point* for this file:
    everything the writer had at or above it before this file (e.g. in segments) is superseded.
    """
    out: dict[bytes, list[tuple[int, int, bytes]]] = {}
    idxs: dict[bytes, list[int]] = {}
    for uid, idx, term, payload in records:
        lst = out.get(uid)
        if lst is None:
            out[uid] = [(idx, term, payload)]
            idxs[uid] = [idx]
            continue
        ix = idxs[uid]
        if idx == ix[-1] + 1:
            lst.append((idx, term, payload))
            ix.append(idx)
        elif idx > ix[-1]:  # forward jump: the writer installed a snapshot; restart the run
            out[uid] = [(idx, term, payload)]
            idxs[uid] = [idx]
        else:
            cut = bisect_left(ix, idx)
            del lst[cut:]
            del ix[cut:]
            lst.append((idx, term, payload))
            ix.append(idx)
    return out
