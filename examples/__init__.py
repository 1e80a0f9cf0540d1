"""Example machines for ra for Python, with runnable walkthroughs.

Machines are named by import path (``("module", "examples.kv:KV", config)``) because each ra
server process imports its machine itself; this package is installed with the library
(``pip install -e .``) so that server processes find it.

* :mod:`examples.counter` -- a counter (the smallest useful machine).
* :mod:`examples.kv` -- a key-value store: put/get/delete/cas, snapshots via release_cursor.
* :mod:`examples.demo` -- ``make demo``: three real node daemons, a KV cluster, a node SIGKILLed.
"""
