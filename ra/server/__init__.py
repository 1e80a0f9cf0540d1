"""A ra server's process shell (:mod:`ra.server.proc`: mailbox, timers, disk log, effects), its
supervision on a node (:mod:`ra.server.sup`) and the boundary around users' code
(:mod:`ra.server.usercode`). The Raft rules themselves are pure, in :mod:`ra.core`."""
