"""No ra equivalent (ra_log_wal and ra_log_segment_writer take an Erlang map). The configs of
the WAL and segment writer processes, as data.

Each process takes one frozen dataclass: :class:`WalConfig` (``wal.wal.run``),
:class:`SegmentWriterConfig` (``wal.segment_writer.run``). Their command lines
(``python -m wal.wal --help``) are derived from the fields, so a field is listed once, here.
ra maps its node configuration onto these (``ra.node.sup.wal_child_specs``) and forks the
processes with the dataclass as their argument; this package knows nothing of ra.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["WalConfig", "SegmentWriterConfig", "DEFAULT_MAX_SIZE_BYTES",
           "DEFAULT_SEGMENT_MAX_ENTRIES", "DEFAULT_MAX_BATCH_BYTES", "WRITE_STRATEGIES",
           "from_argv", "to_argv", "coerce"]

DEFAULT_MAX_SIZE_BYTES = 256_000_000
DEFAULT_SEGMENT_MAX_ENTRIES = 4096
DEFAULT_MAX_BATCH_BYTES = 32 << 20
WRITE_STRATEGIES = ("default", "o_sync")

_MISSING: Any = dataclasses.MISSING


def _opt(default: Any = _MISSING, help: str = "", *, type: Any = str,
         choices: Sequence[str] | None = None, metavar: str | None = None) -> Any:
    """A field with its command-line option: ``--field-name`` (a bool defaulting to True
    becomes ``--no-field-name``)."""
    meta = {"help": help, "type": type, "choices": choices, "metavar": metavar}
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class WalConfig:
    """The WAL process (:func:`wal.wal.run`)."""

    wal_dir: str = _opt(help="directory of the WAL files")
    data_dir: str = _opt(help="the node's data directory (segments go to DATA_DIR/<uid>/)")
    endpoint: str = _opt(help="the WAL's mailbox address (ipc:// or tcp://)")
    segment_writer: str | None = _opt(None, "the segment writer's mailbox address")
    max_size_bytes: int = _opt(DEFAULT_MAX_SIZE_BYTES, "roll over to a new file at this size",
                               type=int)
    checksums: bool = _opt(True, "xxh64 checksum per record", type=bool)
    write_strategy: str = _opt("default", "default: write + one fdatasync per batch; o_sync: "
                                          "the file is opened O_SYNC", choices=WRITE_STRATEGIES)
    segment_max_entries: int = _opt(DEFAULT_SEGMENT_MAX_ENTRIES,
                                    "entries per segment file (start-up recovery)", type=int)
    max_batch_bytes: int = _opt(DEFAULT_MAX_BATCH_BYTES, "cap of one drained batch", type=int)
    idle_poll_ms: int = _opt(0, "while batches come, and this long after the last, keep the "
                                "machine's idle CPUs polling (Linux PM QoS, /dev/cpu_dma_latency; "
                                "wal.idle_poll); 0: off", type=int)
    notice_defer_ms: int = _opt(2, "a writer whose reply this WAL sent for it (WalAppend.reply) "
                                   "hears of that batch at the start of the WAL's next batch, "
                                   "or after this long without one: its work on the notice then "
                                   "overlaps the next sync instead of the leader's turn; 0: at "
                                   "once", type=int)
    error_exit_after: float = _opt(1.0, "seconds a failed WAL keeps answering overview before "
                                        "exiting 1", type=float)
    inject_fault: str | None = _opt(None, "testing: fail CALL (write|fdatasync) with ERRNO "
                                          "(e.g. EIO) after AFTER successful calls, through "
                                          "the wal.osio seam", metavar="CALL:ERRNO:AFTER")


@dataclass(frozen=True, slots=True)
class SegmentWriterConfig:
    """The segment writer process (:func:`wal.segment_writer.run`)."""

    wal_dir: str = _opt(help="directory of the WAL files")
    data_dir: str = _opt(help="the node's data directory")
    segment_max_entries: int = _opt(DEFAULT_SEGMENT_MAX_ENTRIES, "entries per segment file",
                                    type=int)
    endpoint: str | None = _opt(None, "mailbox address for roll-over nudges")
    poll_ms: int = _opt(200, "how often closed WAL files are looked for without a nudge",
                        type=int)


C = TypeVar("C", WalConfig, SegmentWriterConfig)


def _flag(f: dataclasses.Field[Any]) -> str:
    name = f.name.replace("_", "-")
    return f"--no-{name}" if f.metadata["type"] is bool else f"--{name}"


def parser(cls: type[Any], prog: str) -> argparse.ArgumentParser:
    """The command line of ``cls``'s process, one option per field."""
    ap = argparse.ArgumentParser(prog=prog, description=cls.__doc__)
    for f in dataclasses.fields(cls):
        m = f.metadata
        if m["type"] is bool:
            ap.add_argument(_flag(f), dest=f.name, action="store_false",
                            help="turn off: " + m["help"])
            continue
        kw: dict[str, Any] = {"dest": f.name, "type": m["type"], "help": m["help"]}
        if m["choices"]:
            kw["choices"] = m["choices"]
        if m["metavar"]:
            kw["metavar"] = m["metavar"]
        if f.default is _MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
        ap.add_argument(_flag(f), **kw)
    return ap


def from_argv(cls: type[C], argv: Sequence[str] | None, prog: str) -> C:
    """Parse a command line into ``cls``."""
    return cls(**vars(parser(cls, prog).parse_args(argv)))


def to_argv(cfg: WalConfig | SegmentWriterConfig) -> list[str]:
    """The command line that :func:`from_argv` parses back into ``cfg``."""
    out: list[str] = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.metadata["type"] is bool:
            if not v:
                out.append(_flag(f))
        elif f.default is _MISSING or (v is not None and v != f.default):
            out += [_flag(f), str(v)]
    return out


def coerce(cls: type[C], cfg: C | Mapping[str, Any]) -> C:
    """``cfg`` as a ``cls`` (a mapping of its fields is accepted)."""
    if isinstance(cfg, cls):
        return cfg
    assert isinstance(cfg, Mapping), cfg
    return cls(**cfg)
