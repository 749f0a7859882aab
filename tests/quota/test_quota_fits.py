"""QuotaState.fits: would a workload be admitted on a flavor now, without preemption, usage unchanged."""

from __future__ import annotations

from quota_helpers import config, queue, wl

from rayfleet.quota.state import QuotaState


def test_fits_asks_without_changing_usage():
    st = QuotaState(config(queue("a", {"res": 4, "spot": 8})))
    st.restore(wl("held", "a", 3), "res")
    before = st.queue_usage("a")
    assert st.fits(wl("x", "a", 1), "res") and not st.fits(wl("x", "a", 2), "res")
    assert st.fits(wl("x", "a", 8), "spot") and not st.fits(wl("x", "a", 1), "nope")
    assert st.queue_usage("a") == before and not st.pending and list(st.admitted) == ["held"]
    st.release("held")
    assert st.fits(wl("x", "a", 4), "res")


def test_fits_counts_borrowing_from_the_cohort_but_never_preemption():
    st = QuotaState(config(queue("a", {"res": 2}, cohort="c"), queue("b", {"res": 2}, cohort="c"), cohorts=("c",)))
    assert st.fits(wl("x", "a", 4), "res")            # borrows b's unused quota
    st.restore(wl("b1", "b", 2), "res")
    assert not st.fits(wl("x", "a", 4), "res")        # only by preempting b1
    assert st.fits(wl("x", "a", 2), "res")
