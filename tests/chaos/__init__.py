"""The robustness suite: faults, recorded histories and checkers.

Modelled on etcd's ``tests/robustness`` and Jepsen's etcd analysis: a real
cluster is driven by concurrent clients while faults are injected; every
operation and every watch event is recorded, and the history is checked
against a model afterwards (docs/robustness.md).

Modules, each with one job:

- ``history``     the operation record (``Op``) and a thread-safe recorder;
- ``linearize``   a bounded Wing-Gong search per key over a register with CAS;
- ``checks``      durability, trace (every read comes from a write), partition
                  (an isolated member acks nothing), liveness, watch promises;
- ``workload``    concurrent clients (put, CAS txn, get, serializable get,
                  watches) with unique values;
- ``worker``      ``python -m tests.chaos.worker``: runs the workload and every
                  client call, in the harness namespace when there is one;
- ``netns``       namespaces, a bridge and nft cuts for real partitions;
- ``clusters``    a loopback or namespaced cluster of ``mcpctl serve`` processes;
- ``faults``      the fault injector;
- ``scenario``    one seeded run: plan, faults, checks, report;
- ``campaign``    ``python -m tests.chaos.campaign --seconds N --seed S``.
"""
