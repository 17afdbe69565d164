"""``python -m tests.chaos.campaign --seconds N --seed S``: a randomized campaign.

Runs chaos scenarios back to back until ``--seconds`` is spent (or
``--runs`` reached): each run's seed comes from ``random.Random(S)``, and its
plan (1-4 faults drawn from every fault this machine can inject: the
partition faults need root, ``ip`` and ``nft``) comes from that run's seed
alone. Passing runs' directories are deleted; failing ones are kept, and
each failure prints its seed and the command that replays it:

    python -m tests.chaos.campaign --replay SEED --faults kill_leader,burst [--netns]

(or ``CHAOS_SEED=SEED pytest tests/chaos/test_faults.py -k replay``).
Exit status: 0 when every run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.chaos import netns
from tests.chaos.faults import available_faults
from tests.chaos.scenario import Outcome, Plan, reproduce_command, run

RUNS_MAX = 10_000
# A run is not started with less than this left (a run takes ~10-40 s).
RUN_S_MIN = 30.0


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.chaos.campaign", description=__doc__.split("\n")[0]
    )
    p.add_argument("--seconds", type=float, default=600.0, help="time budget (default 600)")
    p.add_argument(
        "--seed", type=int, default=None, help="campaign seed (default: random, printed)"
    )
    p.add_argument("--runs", type=int, default=RUNS_MAX, help="at most this many runs")
    p.add_argument(
        "--dir", type=Path, default=None, help="where runs are kept (default: a temp dir)"
    )
    p.add_argument("--no-netns", action="store_true", help="loopback faults only")
    p.add_argument("--replay", type=int, default=None, metavar="SEED", help="run one seed again")
    p.add_argument(
        "--faults", default=None, help="with --replay: the plan's faults, comma-separated"
    )
    p.add_argument("--netns", action="store_true", help="with --replay: the run used namespaces")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    reason = None if not args.no_netns else "--no-netns"
    if reason is None:
        reason = netns.unavailable_reason()
    use_netns = reason is None
    root = args.dir or Path(tempfile.mkdtemp(prefix="mcp-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.replay is not None:
        return _replay(args, root, use_netns)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    kinds = list(available_faults(use_netns))
    print(
        f"chaos campaign: seed {seed}, {args.seconds:.0f}s, faults {kinds}"
        + ("" if use_netns else f" (no partitions: {reason})"),
        flush=True,
    )
    master = random.Random(seed)
    deadline = time.monotonic() + args.seconds
    outcomes: list[Outcome] = []
    for i in range(min(args.runs, RUNS_MAX)):
        if outcomes and deadline - time.monotonic() < RUN_S_MIN:
            break
        run_seed = master.randrange(2**31)
        plan = Plan.random(run_seed, netns=use_netns)
        outcome = run(plan, root / f"run{i:03d}-{run_seed}", keep=False)
        outcomes.append(outcome)
        print(outcome.report(), flush=True)
    return _summary(seed, outcomes, root)


def _replay(args: argparse.Namespace, root: Path, netns_ok: bool) -> int:
    if args.netns and not netns_ok:
        print("this run needs network namespaces, which are not available here", file=sys.stderr)
        return 2
    planned = Plan.random(args.replay, netns=args.netns)
    faults = tuple(args.faults.split(",")) if args.faults else planned.faults
    plan = Plan(f"replay-{args.replay}", args.replay, faults, netns=args.netns)
    outcome = run(plan, root / f"replay-{args.replay}")
    print(outcome.report(), flush=True)
    return 0 if outcome.ok else 1


def _summary(seed: int, outcomes: list[Outcome], root: Path) -> int:
    failed = [o for o in outcomes if not o.ok]
    seconds = sum(o.seconds for o in outcomes)
    print(
        f"\nchaos campaign seed {seed}: {len(outcomes)} runs in {seconds:.0f}s, "
        f"{len(failed)} failed"
    )
    for o in failed:
        print(f"  FAILED seed {o.plan.seed} {list(o.plan.faults)}: {reproduce_command(o.plan)}")
        print(f"    artifacts: {o.run_dir}")
    if not failed:
        print(f"  (run directories were under {root})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
