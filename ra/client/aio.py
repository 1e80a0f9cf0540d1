"""No ra equivalent (Erlang processes need none). ra for asyncio programs: every module
function of :mod:`ra` as a coroutine, and pipeline events as an async iterator.

``await ra.aio.process_command(sid, cmd)`` works from any event loop, in any thread, with any
number of tasks at once. An :class:`AsyncClient` runs each call on a pool of worker threads,
each with a :class:`ra.Client` of its own (so a call never blocks the event loop, and calls
from many tasks go out in parallel, up to ``workers`` at a time; the rest wait their turn in
the pool's queue). Exactly-once holds as for :class:`ra.Client`: each worker's client keeps its
session with each cluster, and a call is retried within its timeout on that same client.

Pipelined commands and their events go through one dedicated thread and client, so that the
``applied`` / ``rejected`` events of :meth:`AsyncClient.pipeline_command` come back to
:meth:`AsyncClient.receive` / :meth:`AsyncClient.events` of the same client.

Errors are those of :mod:`ra` (``ra.Timeout``, ``ra.NotLeader``...), raised by the ``await``.
Cancelling the awaiting task does not cancel a call already running in a worker (a command
sent may still be applied, as with any ``OutcomeUnknown``).
"""
from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import ra
from ra.client.api import Client, RaEvent
from ra.errors import Timeout

__all__ = ["AsyncClient", "default_client"]

#: the blocking methods of ra.Client offered as coroutines: ra's module functions (one list,
#: ra._DELEGATES), less the pipeline and its events, which go through one thread of their own
_CALLS = tuple(n for n in ra._DELEGATES if n not in ("pipeline_command", "receive"))


class AsyncClient:
    """ra's API as coroutines. ``workers``: threads (each with its own :class:`ra.Client`)
    that carry calls out, i.e. how many calls are in flight at once. ``sessions``: as for
    :class:`ra.Client`. Close it (or use ``async with``) to stop its threads and sockets."""

    def __init__(self, workers: int = 32, sessions: bool | None = None) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, not {workers!r}")
        self._sessions = sessions
        self._local = threading.local()
        self._clients: list[Client] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ra-aio")
        self._pipe = ThreadPoolExecutor(1, thread_name_prefix="ra-aio-pipe")
        self._closed = False

    def _client(self) -> Client:
        """The calling worker thread's own client."""
        c: Client | None = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = Client(sessions=self._sessions)
            with self._lock:
                self._clients.append(c)
        return c

    async def _run(self, pool: ThreadPoolExecutor, name: str, *args: Any, **kw: Any) -> Any:
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")

        def job() -> Any:
            return getattr(self._client(), name)(*args, **kw)
        return await asyncio.get_running_loop().run_in_executor(pool, job)

    def __getattr__(self, name: str) -> Any:
        if name not in _CALLS:
            raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")
        method = getattr(Client, name)

        @functools.wraps(method)
        async def call(*args: Any, **kw: Any) -> Any:
            return await self._run(self._pool, name, *args, **kw)
        return call

    async def pipeline_command(self, server_id: Any, command: Any, correlation: Any = None,
                               priority: str = "low") -> None:
        """As :meth:`ra.Client.pipeline_command`; the events come to :meth:`receive`."""
        await self._run(self._pipe, "pipeline_command", server_id, command, correlation,
                        priority)

    async def receive(self, timeout: float | None = None) -> RaEvent:
        """The next event for this client's pipelined commands (or a machine's ``send_msg``
        to it); ``ra.Timeout`` if none arrives within ``timeout`` seconds (None: wait)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            # short waits, so that pipeline_command (same thread) is never held up long
            left = 0.05 if deadline is None else min(0.05, max(0.0, deadline - loop.time()))
            try:
                ev: RaEvent = await self._run(self._pipe, "receive", left)
                return ev
            except Timeout:
                if deadline is not None and loop.time() >= deadline:
                    raise Timeout(f"no event within {timeout} s") from None

    async def events(self) -> AsyncIterator[RaEvent]:
        """Every event, as they arrive: ``async for ev in client.events(): ...``."""
        while True:
            yield await self.receive(None)

    async def close(self) -> None:
        """Wait for the calls running, then close every worker's client."""
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        self._pipe.shutdown(wait=True)
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_default: AsyncClient | None = None
_default_lock = threading.Lock()


def default_client() -> AsyncClient:
    """The process's default :class:`AsyncClient`, used by this module's functions (made on
    first use; its threads serve every event loop of the process)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = AsyncClient()
        return _default


def _module_function(name: str) -> Any:
    method = getattr(Client, name) if hasattr(Client, name) else getattr(AsyncClient, name)

    async def fn(*args: Any, **kw: Any) -> Any:
        return await getattr(default_client(), name)(*args, **kw)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Coroutine form of ``ra.{name}``.\n\n{method.__doc__ or ''}"
    return fn


for _name in (*_CALLS, "pipeline_command", "receive"):
    globals()[_name] = _module_function(_name)
    __all__.append(_name)
del _name
