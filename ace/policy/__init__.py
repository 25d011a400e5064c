"""Traffic-ramp policies: which live rooms get more promoted traffic, tick by tick.

Catalogue (choose by name with :func:`get_policy`)::

    ramp          the ACE policy: Bayesian values on promoted traffic, corroborated highlight
                  boosts, priced water-filling, caps, ramp limits, tiers, probes, anti-gaming
    uniform       the plan split evenly over live rooms
    proportional  in proportion to current viewers
    pid           PID pacing of each room's own spend plan
    thompson      budgeted Thompson sampling (no highlight features, no ramp limits)
    oracle        hindsight upper bound (simulator only)

Library use::

    from ace.policy import get_policy, RoomAggregate
    policy = get_policy("ramp", seed=0)
    decisions = policy.decide(t, [RoomAggregate("room-1", viewers=300, ...)], moments, plan=20_000)

Modules: ``state`` (inputs, outputs, per-room state), ``ramp`` (the policy), ``baselines``,
``allocation`` (caps, water-filling, pacing), ``simulator``, ``metrics``, ``plots``, ``sink``
(where decisions go), ``cli`` (``ace policy simulate``).
"""

from __future__ import annotations

from collections.abc import Callable

from ace.policy.base import Policy
from ace.policy.baselines import OraclePolicy, PIDPacingPolicy, ProportionalPolicy, ThompsonPolicy, UniformPolicy
from ace.policy.ramp import RampOptions, RampPolicy
from ace.policy.state import Allocation, CategoryPrior, Observation, RoomAggregate, RoomState, Tier, interaction_counts

POLICIES: dict[str, Callable[..., Policy]] = {
    "ramp": RampPolicy,
    "uniform": UniformPolicy,
    "proportional": ProportionalPolicy,
    "pid": PIDPacingPolicy,
    "thompson": ThompsonPolicy,
    "oracle": OraclePolicy,
}


def get_policy(name: str | Policy, **kwargs) -> Policy:
    """A policy by catalogue name (keyword arguments go to its constructor), or ``name`` itself
    when it already is a policy. Unknown names raise ``ValueError`` listing the valid ones."""
    if isinstance(name, Policy):
        return name
    try:
        cls = POLICIES[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; valid names: {', '.join(POLICIES)}") from None
    return cls(**kwargs)


def policy_names() -> list[str]:
    return list(POLICIES)


__all__ = [
    "POLICIES",
    "Allocation",
    "CategoryPrior",
    "Observation",
    "OraclePolicy",
    "PIDPacingPolicy",
    "Policy",
    "ProportionalPolicy",
    "RampOptions",
    "RampPolicy",
    "RoomAggregate",
    "RoomState",
    "ThompsonPolicy",
    "Tier",
    "UniformPolicy",
    "get_policy",
    "interaction_counts",
    "policy_names",
]
