"""The operating-system side of driftloop: child processes, signals, ports, instance locks, and whether
a lease holder (a process, maybe on this host) still runs.

Kept out of ``driftloop.core``, which holds pure domain types only (decision 0055). Standard library
and ``driftloop.errors`` only, so every layer above may use it.
"""
