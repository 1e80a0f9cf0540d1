"""The public name of ra's asyncio client: see :mod:`ra.client.aio`, whose names it re-exports."""
from ra.client.aio import *
from ra.client.aio import __all__  # noqa: F401  (the same public names)
