"""No ra equivalent (Jepsen for ra): ``ra check``, an end-to-end check of a real cluster.

Node daemons, a cluster, concurrent clients recording a history, faults injected on a schedule,
and a checker's verdict on the history. Modules, one job each: ``machines`` (the state
machines), ``workloads`` (clients and their operations), ``nodes`` (the daemons), ``netns``
(namespaces and partitions), ``nemesis`` (faults and their schedule), ``runner``
(:func:`ra.check.runner.run_check`), ``history`` and ``checkers`` (the recorded history and its
verdict). Nothing is imported here: ``import ra.check.runner`` loads what it needs.
"""
