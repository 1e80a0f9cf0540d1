"""Clients: the API (:mod:`ra.client.api`, re-exported by :mod:`ra`), the asyncio client
(:mod:`ra.client.aio`, public as :mod:`ra.aio`) and the ``ra`` command (:mod:`ra.client.cli`)."""
