"""Choosing an instance: pure functions over a list of ``Instance`` (no I/O,
no clock; randomness is an argument), so the rules are unit-tested exactly.

The rules (docs/fleet.md, "Picking"):

1. **Operator state wins.** Disabled or draining instances are never chosen.
2. **Health, with a protect threshold** (Nacos' ``protectThreshold``): of the
   enabled, non-draining instances, the healthy ones are chosen from; when
   fewer than ``protect_threshold`` of them are healthy, all of them are (a
   bad health signal cannot empty a model).
3. **Weight 0 takes no traffic** (but still counts as registered).
4. **Policy**: ``weighted`` (random, in proportion to the effective weight),
   ``least-load`` (lowest ``(in_flight + queue) / weight``, ties at random),
   ``p2c`` (two weighted random draws, the less loaded of the two).
5. **Fallback** (``fallback_target``, the one place this rule lives): a model
   with nothing to choose from uses its static ``models[].endpoint``; a model
   that the MCP document does not list uses ``routing.fallback_model``'s
   instances, else its static endpoint (one hop, when ``routing.fallback`` is
   ``model``); else there is no target.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from mcpctl.fleet.schema import DEFAULT_OPERATOR, InstanceInfo, OperatorState
from mcpctl.mcp.schema import McpConfig

Policy = Literal["weighted", "least-load", "p2c"]
POLICIES: Final[tuple[Policy, ...]] = ("weighted", "least-load", "p2c")


@dataclass(frozen=True, slots=True)
class Instance:
    """One live instance as a picker sees it: its registration, its last
    load report and the operator's state for it."""

    model: str
    id: str
    info: InstanceInfo
    operator: OperatorState = DEFAULT_OPERATOR
    lease: int = 0
    mod_revision: int = 0

    @property
    def endpoint(self) -> str:
        return self.info.endpoint

    @property
    def weight(self) -> int:
        """The operator's override, else the instance's own weight."""
        w = self.operator.weight
        return self.info.weight if w is None else w

    @property
    def healthy(self) -> bool:
        return self.info.load.healthy

    @property
    def in_flight(self) -> int:
        return self.info.load.in_flight

    @property
    def available(self) -> bool:
        """Enabled and not draining: the operator lets it take new requests."""
        return self.operator.enabled and not self.operator.draining

    @property
    def load_score(self) -> float:
        return (self.info.load.in_flight + self.info.load.queue) / max(self.weight, 1)


def candidates(instances: Sequence[Instance], protect_threshold: float) -> list[Instance]:
    """Rules 1-3: the instances a pick may return (maybe none)."""
    allowed = [i for i in instances if i.available and i.weight > 0]
    if not allowed:
        return []
    healthy = [i for i in allowed if i.healthy]
    if len(healthy) < protect_threshold * len(allowed) or not healthy:
        return allowed if protect_threshold > 0 else healthy
    return healthy


def _weighted(pool: Sequence[Instance], rng: random.Random) -> Instance:
    return rng.choices(pool, weights=[i.weight for i in pool])[0]


def choose(pool: Sequence[Instance], policy: Policy, rng: random.Random) -> Instance:
    """Rule 4 on a non-empty pool (from ``candidates``)."""
    assert pool, "choose() needs at least one candidate"
    if policy == "weighted" or len(pool) == 1:
        return _weighted(pool, rng)
    if policy == "least-load":
        best = min(i.load_score for i in pool)
        return rng.choice([i for i in pool if i.load_score == best])
    a, b = _weighted(pool, rng), _weighted(pool, rng)
    if a.load_score == b.load_score:
        return a
    return a if a.load_score < b.load_score else b


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request for a model goes: an instance, or a static endpoint."""

    endpoint: str
    model: str
    instance: Instance | None = None  # None: a static endpoint (fallback)


def fallback_target(
    model: str,
    config: McpConfig | None,
    pick_live: Callable[[str], Instance | None],
) -> Target | None:
    """Rule 5, given what the live fleet offers for ``model`` (``pick_live``)."""
    live = pick_live(model)
    if live is not None:
        return Target(live.endpoint, model, live)
    if config is None:
        return None
    static = {m.name: m.endpoint for m in config.models}
    if model in static:
        return Target(static[model], model)
    other = config.routing.fallback_model
    if config.routing.fallback != "model" or other is None or other == model:
        return None
    live = pick_live(other)
    if live is not None:
        return Target(live.endpoint, other, live)
    return Target(static[other], other) if other in static else None


__all__ = ["POLICIES", "Instance", "Policy", "Target", "candidates", "choose", "fallback_target"]
