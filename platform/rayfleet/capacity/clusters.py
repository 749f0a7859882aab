"""When a cluster that does not answer is cordoned on its own, presumed lost, and back (pure: the
clock is an argument).

A member cluster that has not answered the controller for ``unreachable_after`` seconds is
cordoned automatically (no new work goes to it; what runs there keeps its last known state, since
it may still be running). One silent for ``lost_after`` (Kueue MultiKueue's workerLostTimeout) is
presumed lost: the rule's cordon becomes a drain, so its runs resume elsewhere from their last
checkpoints. Once it has answered again for ``recover_after`` seconds, a cordon that the rule
itself set (drain or not) is lifted. A cordon an admin set is never changed by the rule: neither
drained (the admin decides whether its work goes on elsewhere) nor lifted (uncordon by hand).
"""

from __future__ import annotations

from typing import Literal

Decision = Literal["cordon", "drain", "uncordon"]


def decide(failing_since: float | None, answering_since: float | None, cordon_is_auto: bool | None, *,
           unreachable_after: float, recover_after: float, now: float,
           lost_after: float | None = None, drained: bool = False) -> Decision | None:
    """``cordon_is_auto``: None when the cluster is not cordoned, else whether the rule cordoned it;
    ``drained``: the cordon in force is a drain."""
    if failing_since is not None:
        silent = now - failing_since
        if lost_after is not None and silent >= lost_after and cordon_is_auto is not False and not drained:
            return "drain"
        if cordon_is_auto is None and silent >= unreachable_after:
            return "cordon"
        return None
    if cordon_is_auto and answering_since is not None and now - answering_since >= recover_after:
        return "uncordon"
    return None
