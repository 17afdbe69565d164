"""One seeded chaos run: plan, cluster, workload, faults, checks, report.

Everything random in a run comes from one ``random.Random(seed)``: the fault
plan (when not given), the workload's seed, fault targets and hold times,
the Raft compaction threshold. The same seed replays the same choices (the
timing of a real cluster still varies, so a failure may need a few runs to
recur; the campaign prints the command). Artifacts of a run — every node's
log, the worker's log, history.jsonl, watches.jsonl, reference.jsonl,
final.json, faults.json, report.txt — stay in its directory.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos import checks, netns
from tests.chaos.checks import Finding, MemberFinal, RunData
from tests.chaos.clusters import endpoints, make_cluster
from tests.chaos.faults import Injector, LivenessError, available_faults
from tests.chaos.history import read_ops
from tests.chaos.leases import LeaseOpKind, LeaseSpec, read_lease_ops
from tests.chaos.worker import LEASE_DRAIN_S, WorkerProcess
from tests.chaos.workload import WorkloadSpec

SEED_ENV = "CHAOS_SEED"
# Faults that take long (or change the membership): at most once per plan.
LONG_FAULTS = ("burst", "membership", "membership_remove_leader")
START_TIMEOUT_S = 45.0
WARMUP_OPS = 150
SETTLE_OPS = 300
SETTLE_S_MAX = 5.0
FINISH_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    seed: int
    faults: tuple[str, ...]
    netns: bool = False
    clients: int = 6
    keys: int = 6
    watchers: int = 3
    # The lease workload (owners keeping leases alive, dead owners, revokers, a reader).
    leases: bool = True

    @classmethod
    def random(cls, seed: int, *, netns: bool, faults_max: int = 4) -> Plan:
        """A plan drawn from the seed alone (the campaign's runs)."""
        rng = random.Random(f"plan/{seed}")
        kinds = available_faults(netns)
        count = rng.randint(1, faults_max)
        # The burst and the membership change are long: at most one of each.
        chosen: list[str] = []
        for _ in range(count):
            kind = rng.choice(kinds)
            if kind in LONG_FAULTS and kind in chosen:
                continue
            chosen.append(kind)
        return cls(f"random-{seed}", seed, tuple(chosen), netns=netns)


@dataclass
class Outcome:
    plan: Plan
    run_dir: Path
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def report(self) -> str:
        p = self.plan
        head = (
            f"chaos run {p.name}: seed {p.seed}, faults {list(p.faults)}, "
            f"{'netns' if p.netns else 'loopback'}, {self.seconds:.1f}s, "
            f"{'OK' if self.ok else f'{len(self.findings)} FINDINGS'}"
        )
        lines = [head, f"  artifacts: {self.run_dir}", f"  stats: {self.stats}"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  {f}" for f in self.findings]
        if not self.ok:
            lines.append(f"  reproduce: {reproduce_command(p)}")
        return "\n".join(lines)


def reproduce_command(plan: Plan) -> str:
    faults = ",".join(plan.faults)
    netns_flag = " --netns" if plan.netns else ""
    return f"python -m tests.chaos.campaign --replay {plan.seed} --faults {faults}{netns_flag}"


def run(plan: Plan, root: Path, *, keep: bool = True) -> Outcome:
    """Run a plan in ``root`` (created). Raises nothing for findings: see ``Outcome``."""
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(plan, root)
    rng = random.Random(plan.seed)
    network: netns.Network | None = None
    cluster = None
    worker: WorkerProcess | None = None
    try:
        if plan.netns:
            netns.remove_stale()
            network = netns.Network()
            network.setup()
        extra = {"raft": {"compaction_min_entries": rng.choice([500, 2000, 20_000])}}
        outcome.notes.append(
            f"raft.compaction_min_entries={extra['raft']['compaction_min_entries']}"
        )
        cluster = make_cluster(root / "cluster", netns=network, extra=extra)
        cluster.start_all()
        prefix = network.exec_prefix(network.harness) if network is not None else []
        worker = WorkerProcess(root, prefix)
        injector = Injector(cluster, worker, rng, network)
        worker.call("members", endpoints=endpoints(cluster))
        worker.call("wait_ready", names=injector.names(), timeout_s=START_TIMEOUT_S)
        spec = WorkloadSpec(
            seed=rng.getrandbits(32),
            endpoints=endpoints(cluster),
            clients=plan.clients,
            keys=plan.keys,
            watchers=plan.watchers,
            leases=LeaseSpec() if plan.leases else None,
        )
        worker.call("start", spec=_spec_dict(spec))
        worker.call("wait_ops", count=WARMUP_OPS, timeout_s=20.0)
        try:
            for kind in plan.faults:
                injector.run(kind)
            worker.call("wait_ops", count=SETTLE_OPS, timeout_s=SETTLE_S_MAX)
        except LivenessError as e:
            outcome.findings.append(Finding("liveness", str(e)))
        finally:
            (root / "faults.json").write_text(json.dumps([f.to_dict() for f in injector.records]))
        outcome.notes += injector.notes
        outcome.stats["ops"] = worker.call("stop", timeout_s=30.0)
        for node in injector.members:
            if not node.running:
                cluster.start(node)
        final = worker.call(
            "finish", names=injector.names(), keys=plan.keys, timeout_s=FINISH_TIMEOUT_S
        )
        if plan.leases and final.get("lease_drain_s") is None:
            outcome.findings.append(
                Finding(
                    "lease-liveness",
                    f"lease keys still present {LEASE_DRAIN_S:.0f} s after every lease owner "
                    "stopped (the leader's clock did not expire them)",
                )
            )
        elif plan.leases:
            outcome.stats["lease_drain_s"] = round(final["lease_drain_s"], 1)
        data = load_run(root, injector.records, final)
        outcome.stats.update(_stats(data))
        outcome.findings += checks.check_run(data)
    except Exception as e:
        outcome.findings.append(Finding("harness", f"{type(e).__name__}: {e}"))
    finally:
        if worker is not None:
            worker.stop()
        if cluster is not None:
            cluster.close()
        if network is not None:
            network.close()
        outcome.seconds = time.monotonic() - started
        (root / "report.txt").write_text(outcome.report() + "\n")
        if outcome.ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
    return outcome


def _spec_dict(spec: WorkloadSpec) -> dict[str, Any]:
    return spec.to_dict()


def load_run(root: Path, faults: list[checks.FaultRecord], final: dict[str, Any]) -> RunData:
    return RunData(
        ops=read_ops(root / "history.jsonl"),
        watches=checks.read_records(root / "watches.jsonl"),
        reference=checks.read_records(root / "reference.jsonl")[0],
        final_revision=int(final["revision"]),
        members={n: MemberFinal(**m) for n, m in final["members"].items()},
        faults=faults,
        lease_ops=read_lease_ops(root / "leases.jsonl"),
    )


def load_saved(root: Path) -> RunData:
    """A finished run's data from its directory (re-check a failure offline)."""
    final = json.loads((root / "final.json").read_text())
    faults = [checks.FaultRecord.of(d) for d in json.loads((root / "faults.json").read_text())]
    return load_run(root, faults, final)


def _stats(data: RunData) -> dict[str, Any]:
    by: dict[str, int] = {}
    for op in data.ops:
        k = f"{op.type.value}:{op.result.value}"
        by[k] = by.get(k, 0) + 1
    leases: dict[str, int] = {}
    for lop in data.lease_ops:
        if lop.kind is LeaseOpKind.KEEPALIVE:
            k = "renewed" if lop.renewed else ("gone" if lop.result.value == "ok" else "failed")
        else:
            k = f"{lop.kind.value}:{lop.result.value}"
        leases[k] = leases.get(k, 0) + 1
    if data.lease_ops:
        reference, _ = checks.reference_of(data.reference, data.final_revision)
        ends, _ = checks.check_lease_ends(reference, data.lease_ops)
        revoked = {
            op.lease
            for op in data.lease_ops
            if op.kind is LeaseOpKind.REVOKE and op.result.value != "fail"
        }
        leases["ended:revoked"] = sum(i in revoked for i in ends)
        leases["ended:expired"] = len(ends) - leases["ended:revoked"]
    return {
        "final_revision": data.final_revision,
        "by_result": dict(sorted(by.items())),
        "watch_events": sum(len(r.events) for r in data.watches),
        "leases": dict(sorted(leases.items())),
    }


def main_recheck(argv: list[str]) -> int:  # pragma: no cover - a debugging aid
    data = load_saved(Path(argv[0]))
    found = checks.check_run(data)
    for f in found:
        print(f)
    return 1 if found else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_recheck(sys.argv[1:]))
