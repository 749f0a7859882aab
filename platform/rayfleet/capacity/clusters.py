"""When a cluster that does not answer is cordoned on its own, and when it comes back (pure: the
clock is an argument).

A member cluster that has not answered the controller for ``unreachable_after`` seconds is
cordoned automatically (no new work goes to it; what runs there keeps its last known state, since
it may still be running); once it has answered again for ``recover_after`` seconds, a cordon that
the rule itself set is lifted. A cordon an admin set is never lifted by the rule (uncordon by hand).
"""

from __future__ import annotations

from typing import Literal


def decide(failing_since: float | None, answering_since: float | None, cordon_is_auto: bool | None, *,
           unreachable_after: float, recover_after: float, now: float) -> Literal["cordon", "uncordon"] | None:
    """``cordon_is_auto``: None when the cluster is not cordoned, else whether the rule cordoned it."""
    if failing_since is not None:
        if cordon_is_auto is None and now - failing_since >= unreachable_after:
            return "cordon"
        return None
    if cordon_is_auto and answering_since is not None and now - answering_since >= recover_after:
        return "uncordon"
    return None
