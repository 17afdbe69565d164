"""The picking rules (mcpctl/fleet/select.py, docs/fleet.md "Picking"): weights
followed statistically, least-load preferred, operator state and health with
the protect threshold, and the fallback rule. Pure: a seeded Random, no network.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mcpctl.fleet.schema import InstanceInfo, Load, OperatorState
from mcpctl.fleet.select import Instance, candidates, choose, fallback_target
from mcpctl.mcp.schema import parse_document

# Tolerance for the weighted draws: each share within 0.02 of its weight's share
# over 30,000 draws (the standard deviation of a share is ~0.003: ~7 sigma).
DRAWS = 30_000
SHARE_TOLERANCE = 0.02


def inst(
    name: str,
    *,
    weight: int = 1,
    in_flight: int = 0,
    queue: int = 0,
    healthy: bool = True,
    operator: OperatorState | None = None,
) -> Instance:
    info = InstanceInfo(
        endpoint=f"http://{name}.test:80",
        weight=weight,
        load=Load(in_flight=in_flight, queue=queue, healthy=healthy),
    )
    return Instance("m", name, info, operator or OperatorState())


def shares(pool: list[Instance], policy: str, draws: int = DRAWS) -> dict[str, float]:
    rng = random.Random(7)
    counts = Counter(choose(pool, policy, rng).id for _ in range(draws))  # type: ignore[arg-type]
    return {i.id: counts[i.id] / draws for i in pool}


def test_weighted_picks_follow_weights() -> None:
    pool = [inst("a", weight=1), inst("b", weight=2), inst("c", weight=5)]
    got = shares(pool, "weighted")
    for name, want in (("a", 1 / 8), ("b", 2 / 8), ("c", 5 / 8)):
        assert abs(got[name] - want) < SHARE_TOLERANCE, got


def test_operator_weight_override_wins() -> None:
    pool = [inst("a", weight=1, operator=OperatorState(weight=3)), inst("b", weight=1)]
    got = shares(pool, "weighted")
    assert abs(got["a"] - 0.75) < SHARE_TOLERANCE, got


def test_least_load_prefers_the_least_loaded() -> None:
    pool = [inst("a", in_flight=5), inst("b", in_flight=1, queue=1), inst("c", in_flight=9)]
    got = shares(pool, "least-load", draws=1000)
    assert got["b"] == 1.0


def test_least_load_divides_by_weight_and_breaks_ties_at_random() -> None:
    # a: 4/2 = 2, b: 2/1 = 2: a tie, both chosen.
    pool = [inst("a", weight=2, in_flight=4), inst("b", in_flight=2), inst("c", in_flight=3)]
    got = shares(pool, "least-load", draws=2000)
    assert got["c"] == 0.0 and got["a"] > 0.4 and got["b"] > 0.4


def test_p2c_prefers_the_less_loaded() -> None:
    pool = [inst("a", in_flight=0), inst("b", in_flight=10), inst("c", in_flight=20)]
    got = shares(pool, "p2c")
    # a wins whenever drawn (5/9), b only against c or itself (3/9), c only against itself.
    assert abs(got["a"] - 5 / 9) < SHARE_TOLERANCE, got
    assert abs(got["c"] - 1 / 9) < SHARE_TOLERANCE, got


def test_disabled_draining_and_weight_zero_are_never_candidates() -> None:
    pool = [
        inst("a", operator=OperatorState(draining=True)),
        inst("b", operator=OperatorState(enabled=False)),
        inst("c", weight=0),
        inst("d", operator=OperatorState(weight=0)),
        inst("e"),
    ]
    assert [i.id for i in candidates(pool, 0.5)] == ["e"]
    assert candidates(pool[:4], 0.5) == []


def test_unhealthy_excluded_above_the_protect_threshold() -> None:
    pool = [inst("a"), inst("b"), inst("c", healthy=False)]
    assert [i.id for i in candidates(pool, 0.5)] == ["a", "b"]


def test_protect_threshold_uses_all_when_too_few_are_healthy() -> None:
    pool = [inst("a"), inst("b", healthy=False), inst("c", healthy=False)]
    assert [i.id for i in candidates(pool, 0.5)] == ["a", "b", "c"]
    # Off (0): only the healthy, and none when none is.
    assert [i.id for i in candidates(pool, 0.0)] == ["a"]
    assert candidates([inst("x", healthy=False)], 0.0) == []
    # A draining instance stays out even then.
    drained = [inst("a", healthy=False), inst("b", operator=OperatorState(draining=True))]
    assert [i.id for i in candidates(drained, 1.0)] == ["a"]


DOC = """
models:
  - {name: m, endpoint: "http://static-m.test:80"}
  - {name: backup, endpoint: "http://static-backup.test:80"}
routing: {fallback: model, fallback_model: backup}
"""


def test_fallback_live_instance_first() -> None:
    live = inst("a")
    target = fallback_target("m", parse_document(DOC), lambda model: live)
    assert target is not None and target.instance is live


def test_fallback_to_the_static_endpoint_of_the_model() -> None:
    target = fallback_target("m", parse_document(DOC), lambda model: None)
    assert target is not None and target.endpoint == "http://static-m.test:80"
    assert target.instance is None


def test_fallback_model_for_a_model_the_document_does_not_list() -> None:
    live = inst("b1")
    seen: list[str] = []

    def pick(model: str) -> Instance | None:
        seen.append(model)
        return live if model == "backup" else None

    target = fallback_target("other", parse_document(DOC), pick)
    assert target is not None and target.model == "backup" and target.instance is live
    assert seen == ["other", "backup"]
    static = fallback_target("other", parse_document(DOC), lambda model: None)
    assert static is not None and static.endpoint == "http://static-backup.test:80"


def test_no_target_without_fallback() -> None:
    doc = parse_document("models: [{name: m, endpoint: 'http://s.test:80'}]")
    assert fallback_target("other", doc, lambda model: None) is None
    assert fallback_target("other", None, lambda model: None) is None


@pytest.mark.parametrize("policy", ["weighted", "least-load", "p2c"])
def test_a_single_candidate_is_always_chosen(policy: str) -> None:
    pool = [inst("a", in_flight=100)]
    assert choose(pool, policy, random.Random(1)).id == "a"  # type: ignore[arg-type]
