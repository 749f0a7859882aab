"""Property tests: random configurations and random streams of submissions, cycles, releases,
withdrawals and quota-schedule ticks (well over 10,000 operations in all), checked after every
operation:

- no queue uses more than nominal + borrowingLimit of any (flavor, resource);
- no lender lends beyond its lendingLimit (what cohort members borrow is covered by what lenders
  may lend);
- a cohort never uses more than its capacity;
- a gang is never partly admitted (usage is exactly the sum of whole admitted workloads, each on
  one flavor);
- a queue that borrows nothing and whose head fits within its nominal quota after reclaiming is
  admitted within one cycle;
- the same inputs give the same decisions.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rayfleet.quota import (
    BorrowWithinCohort,
    CohortConfig,
    FlavorFungibility,
    PodSet,
    PreemptionConfig,
    PreemptionPolicy,
    QueueConfig,
    QueueingStrategy,
    QuotaConfig,
    QuotaState,
    QuotaWindow,
    ResourceQuota,
    Workload,
)

FLAVORS = ("f0", "f1")
RESOURCES = ("cpu", "nvidia.com/gpu")
HOUR = 3600.0
OPS = {"n": 0, "heads": 0, "preempted": 0, "shrunk": 0, "admitted": 0}  # counted across examples (checked last)

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def resource_quota(draw, busy: bool) -> ResourceQuota:
    nominal = draw(st.sampled_from([6, 8, 4, 10, 12] if busy else [6, 8, 4, 10, 2, 0, 12, 5]))
    borrowing = draw(st.sampled_from([None, 2, 0, 4, 6]))
    lending = draw(st.one_of(st.none(), st.integers(0, nominal)))
    return ResourceQuota(nominal, borrowing, lending)


@st.composite
def quota_config(draw, busy: bool = False) -> QuotaConfig:
    """Random queues and cohorts; ``busy`` draws larger quotas and policies that preempt, so that
    small workloads crowd in and preempt each other."""
    n_cohorts = draw(st.integers(0, 3))
    cohorts = []
    for k in range(n_cohorts):
        # hierarchical cohorts: a parent among the cohorts drawn before (no cycles), and quota of
        # the cohort's own on some (flavor, resource) pairs, lent to its subtree
        parent = draw(st.sampled_from([None] + [f"c{j}" for j in range(k)]))
        own = {}
        for fr in draw(st.lists(st.sampled_from([(f, r) for f in ("f0", "f1") for r in RESOURCES]), max_size=2, unique=True)):
            nominal = draw(st.sampled_from([0, 2, 4, 6]))
            own[fr] = ResourceQuota(nominal, draw(st.sampled_from([None, 0, 2])) if parent else None,
                                    draw(st.sampled_from([None, 0, 2, nominal + 4])))
        cohorts.append(CohortConfig(f"c{k}", parent=parent, quotas=own, fair_share_weight=draw(st.sampled_from([0.5, 1.0, 2.0]))))
    cohorts = tuple(cohorts)
    queues = []
    for k in range(draw(st.integers(1, 5))):
        flavors = draw(st.sampled_from([("f0",), ("f1",), ("f0", "f1"), ("f1", "f0")]))
        quotas = {(f, r): draw(resource_quota(busy)) for f in flavors for r in RESOURCES}
        cohort = draw(st.sampled_from([c.name for c in cohorts] + [None])) if cohorts else None
        schedule = ()
        if draw(st.booleans()):
            f, r = draw(st.sampled_from(sorted(quotas)))
            start = draw(st.integers(0, 23))
            schedule = (
                QuotaWindow(
                    "window",
                    start=f"{start:02d}:00",
                    end=f"{(start + draw(st.integers(1, 12))) % 24:02d}:00",
                    quotas={(f, r): ResourceQuota(draw(st.integers(0, 8)))},
                ),
            )
        queues.append(
            QueueConfig(
                name=f"q{k}",
                flavors=flavors,
                quotas=quotas,
                cohort=cohort,
                queueing_strategy=draw(st.sampled_from(list(QueueingStrategy))),
                preemption=PreemptionConfig(
                    within_cluster_queue=draw(
                        st.sampled_from(
                            ([] if busy else [PreemptionPolicy.NEVER])
                            + [PreemptionPolicy.LOWER_PRIORITY, PreemptionPolicy.LOWER_OR_NEWER_EQUAL_PRIORITY]
                        )
                    ),
                    reclaim_within_cohort=draw(
                        st.sampled_from(
                            ([] if busy else [PreemptionPolicy.NEVER]) + [PreemptionPolicy.ANY, PreemptionPolicy.LOWER_PRIORITY]
                        )
                    ),
                    borrow_within_cohort=BorrowWithinCohort(
                        draw(st.sampled_from(["Never", "LowerPriority"])), draw(st.one_of(st.none(), st.integers(0, 3)))
                    ),
                ),
                flavor_fungibility=FlavorFungibility(
                    draw(st.sampled_from(["Borrow", "TryNextFlavor"])), draw(st.sampled_from(["Preempt", "TryNextFlavor"]))
                ),
                fair_share_weight=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])),
                schedule=schedule,
            )
        )
    return QuotaConfig(queues=tuple(queues), cohorts=cohorts, fair_sharing=draw(st.booleans()))


# An operation: ("submit", queue index, priority, podsets, flavor restriction) | ("cycle", hours)
# | ("release", k) | ("withdraw", k)
submit_op = st.tuples(
    st.just("submit"),
    st.integers(0, 4),
    st.sampled_from([1, 0, 2, 3]),
    st.lists(
        st.tuples(st.sampled_from([1, 1, 2, 3]), st.sampled_from([1, 2, 1, 0]), st.sampled_from([1, 0, 0, 2])),
        min_size=1,
        max_size=2,
    ),
    st.sampled_from([None, None, None, ("f0",), ("f1",), ("f1", "f0")]),
)
cycle_op = st.tuples(st.just("cycle"), st.sampled_from([0.0, 0.0, 0.5, 3.0, 7.0]))
release_op = st.tuples(st.just("release"), st.integers(0, 1000))
withdraw_op = st.tuples(st.just("withdraw"), st.integers(0, 1000))


def _mix(weights: list[tuple[int, st.SearchStrategy]]) -> st.SearchStrategy:
    """Pick a strategy with the given weights (one_of would not weight repeated strategies)."""
    table = [strat for w, strat in weights for _ in range(w)]
    return st.integers(0, len(table) - 1).flatmap(lambda k: table[k])


# Submissions dominate, so that queues fill up and compete.
op = _mix([(4, submit_op), (2, cycle_op), (1, release_op), (1, withdraw_op)])
# Busy streams: small gangs, many of them, few releases.
busy_submit = st.tuples(
    st.just("submit"),
    st.integers(0, 4),
    st.sampled_from([0, 1, 2, 3]),
    st.lists(st.tuples(st.sampled_from([1, 2, 1]), st.sampled_from([1, 2, 1, 0]), st.sampled_from([0, 1])), min_size=1, max_size=1),
    st.sampled_from([None, None, None, None, ("f1", "f0")]),
)
busy_op = _mix([(6, busy_submit), (3, cycle_op), (1, release_op)])


def _quota(cfg: QuotaConfig, qname: str) -> dict:
    return {q.name: q for q in cfg.queues}[qname].quotas


def check_invariants(state: QuotaState) -> None:
    eff = state.effective_config
    admitted = state.admitted
    # Whole gangs: per-queue usage is exactly the sum of whole admitted workloads.
    expected: dict[str, dict] = {}
    for a in admitted.values():
        assert a.usage == a.workload.total()
        per = expected.setdefault(a.workload.queue, {})
        for r, v in a.usage.items():
            per[(a.flavor, r)] = per.get((a.flavor, r), 0) + v
    by_cohort: dict[str, list] = {}
    # every queue's usage at once (lending worked out once a tree) is each queue's usage
    assert state.queue_usages() == {qc.name: state.queue_usage(qc.name) for qc in eff.queues}
    for qc in eff.queues:
        u = state.queue_usage(qc.name)
        assert {k: v for k, v in u.usage.items() if v} == {k: v for k, v in expected.get(qc.name, {}).items() if v}
        for fr, rq in qc.quotas.items():
            used = u.usage.get(fr, 0)
            if qc.cohort is None:
                assert used <= rq.nominal, (qc.name, fr)
            elif rq.borrowing_limit is not None:
                assert used <= rq.nominal + rq.borrowing_limit, (qc.name, fr, used)
        if qc.cohort is not None:
            by_cohort.setdefault(qc.cohort, []).append((qc, u))
    _check_levels(eff, {qc.name: state.queue_usage(qc.name).usage for qc in eff.queues})
    flat = {c.name for c in eff.cohorts if c.parent is None and not c.quotas and not any(o.parent == c.name for o in eff.cohorts)}
    for cohort, members in by_cohort.items():
        if cohort not in flat:
            continue
        frs = {fr for qc, _ in members for fr in qc.quotas}
        for fr in frs:
            used = sum(u.usage.get(fr, 0) for _, u in members)
            capacity = sum(qc.quotas[fr].nominal for qc, _ in members if fr in qc.quotas)
            assert used <= capacity, (cohort, fr)
            # Lending limits: what members borrow is covered by what lenders may lend.
            borrowed = 0
            lendable = 0
            for qc, u in members:
                rq = qc.quotas.get(fr)
                if rq is None:
                    continue
                x = u.usage.get(fr, 0)
                borrowed += max(0, x - rq.nominal)
                unused = max(0, rq.nominal - x)
                lendable += unused if rq.lending_limit is None else min(unused, rq.lending_limit)
            assert borrowed <= lendable, (cohort, fr, borrowed, lendable)
            usage, cap = state.cohort_usage(cohort).get(fr, (0, 0))
            assert usage <= cap


def _check_levels(eff: QuotaConfig, usage: dict[str, dict]) -> None:
    """Every level of every cohort tree within its quota, worked out from the config alone: a
    subtree uses no more than the nominal quota in it (its queues' and its cohorts' own) plus its
    borrowing limit (a root: nothing more), and what the rest of the tree uses of a node's quota
    is at most its lending limit."""
    parent = {c.name: c.parent for c in eff.cohorts}
    own = {c.name: c.quotas for c in eff.cohorts}
    below: dict[str, list[str]] = {c.name: [] for c in eff.cohorts}   # cohort -> queues in its subtree
    cohorts_below: dict[str, list[str]] = {c.name: [c.name] for c in eff.cohorts}
    for c in eff.cohorts:
        anc = c.parent
        while anc is not None:
            cohorts_below[anc].append(c.name)
            anc = parent[anc]
    for qc in eff.queues:
        anc = qc.cohort
        while anc is not None:
            below[anc].append(qc.name)
            anc = parent[anc]
    quotas = {qc.name: qc.quotas for qc in eff.queues}
    for c in eff.cohorts:
        root = c.name
        while parent[root] is not None:
            root = parent[root]
        frs = {fr for q in below[root] for fr in quotas[q]} | {fr for x in cohorts_below[root] for fr in own[x]}
        for fr in frs:
            def nominal(queues: list[str], cs: list[str], fr=fr) -> int:
                return sum(quotas[q][fr].nominal for q in queues if fr in quotas[q]) + sum(own[x][fr].nominal for x in cs if fr in own[x])

            used = sum(usage[q].get(fr, 0) for q in below[c.name])
            mine = nominal(below[c.name], cohorts_below[c.name])
            limit = own[c.name][fr].borrowing_limit if fr in own[c.name] else None
            if c.parent is None:
                assert used <= mine, (c.name, fr, used, mine)
            elif limit is not None:
                assert used <= mine + limit, (c.name, fr, used, mine, limit)
            lending = own[c.name][fr].lending_limit if fr in own[c.name] else None
            if lending is not None:
                outside = [q for q in below[root] if q not in below[c.name]]
                others = [x for x in cohorts_below[root] if x not in cohorts_below[c.name]]
                assert sum(usage[q].get(fr, 0) for q in outside) <= nominal(outside, others) + min(lending, mine), (c.name, fr)


def reclaimable_heads(state: QuotaState) -> list[str]:
    """Heads of queues borrowing nothing that fit within nominal quota on one of their flavors,
    and whose queue may reclaim from anyone (Any) or has no cohort."""
    eff = state.effective_config
    heads: dict[str, Workload] = {}
    for w in sorted(state.pending.values(), key=lambda w: w.order_key):
        heads.setdefault(w.queue, w)
    out = []
    for qc in eff.queues:
        h = heads.get(qc.name)
        if h is None:
            continue
        if qc.cohort is not None and qc.preemption.reclaim_within_cohort != PreemptionPolicy.ANY:
            continue
        u = state.queue_usage(qc.name)
        if any(v > qc.quotas[fr].nominal for fr, v in u.usage.items()):
            continue
        need = h.total()
        flavors = [f for f in qc.flavors if h.flavors is None or f in h.flavors]
        if any(all(u.usage.get((f, r), 0) + v <= qc.quotas[(f, r)].nominal for r, v in need.items()) for f in flavors):
            out.append(h.id)
    return out


def run(cfg: QuotaConfig, ops: list) -> list:
    now = 1_700_000_000.0
    state = QuotaState(cfg, now)
    decisions = []
    seq = 0
    for o in ops:
        OPS["n"] += 1
        kind = o[0]
        if kind == "submit":
            _, qi, prio, podsets, flavors = o
            qname = cfg.queues[qi % len(cfg.queues)].name
            wl = Workload(
                f"w{seq}",
                qname,
                tuple(PodSet(c, {"cpu": cpu, "nvidia.com/gpu": gpu}) for c, cpu, gpu in podsets),
                priority=(prio + seq) % 4,  # spread priorities whatever the drawn value
                created=now + seq,
                flavors=flavors,
            )
            seq += 1
            state.submit(wl)
        elif kind == "cycle":
            now += o[1] * HOUR
            shrunk = state.tick(now)  # quota windows first, so the expectation sees today's quota
            check_invariants(state)
            expect = reclaimable_heads(state)
            res = state.schedule(now)
            res.preempted[:0] = shrunk
            admitted = {a.workload_id for a in res.admitted}
            for wid in expect:
                assert wid in admitted, (wid, res.to_dict())
            OPS["heads"] += len(expect)
            OPS["admitted"] += len(admitted)
            OPS["preempted"] += len(res.preempted)
            OPS["shrunk"] += sum(1 for p in res.preempted if p.reason == "QuotaShrunk")
            assert not admitted & {p.victim_id for p in res.preempted}
            assert len({w.workload_id for w in res.waiting}) == len(res.waiting)
            assert admitted.isdisjoint(w.workload_id for w in res.waiting)
            decisions.append(res.to_dict())
        elif kind == "release":
            ids = list(state.admitted)
            if ids:
                state.release(ids[o[1] % len(ids)])
        else:
            ids = sorted(state.pending)
            if ids:
                state.withdraw(ids[o[1] % len(ids)])
        check_invariants(state)
    return decisions


@SETTINGS
@given(quota_config(), st.lists(op, min_size=30, max_size=100))
def test_invariants_hold_over_random_streams(cfg, ops):
    run(cfg, ops)


@SETTINGS
@given(quota_config(busy=True), st.lists(busy_op, min_size=40, max_size=100))
def test_invariants_hold_under_contention(cfg, ops):
    run(cfg, ops)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(quota_config(), st.lists(op, min_size=20, max_size=60))
def test_same_inputs_same_decisions(cfg, ops):
    assert run(cfg, ops) == run(cfg, ops)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(quota_config(), st.lists(op, min_size=10, max_size=60))
def test_batch_and_restored_state_agree(cfg, ops):
    """A state rebuilt from another's admitted set (restore, as the simulator loads today's state)
    and pending set decides the next cycle exactly as the original does."""
    now = 1_700_000_000.0
    state = QuotaState(cfg, now)
    seq = 0
    for o in ops:
        OPS["n"] += 1
        if o[0] == "submit":
            _, qi, prio, podsets, flavors = o
            qname = cfg.queues[qi % len(cfg.queues)].name
            state.submit(
                Workload(
                    f"w{seq}",
                    qname,
                    tuple(PodSet(c, {"cpu": cpu, "nvidia.com/gpu": gpu}) for c, cpu, gpu in podsets),
                    priority=(prio + seq) % 4,  # spread priorities whatever the drawn value
                    created=now + seq,
                    flavors=flavors,
                )
            )
            seq += 1
        elif o[0] == "cycle":
            now += o[1] * HOUR
            state.schedule(now)
        elif o[0] == "release" and state.admitted:
            ids = list(state.admitted)
            state.release(ids[o[1] % len(ids)])
    state.tick(now)
    copy = QuotaState(cfg, now)
    for a in state.admitted.values():
        copy.restore(a.workload, a.flavor, order=a.order, admitted_at=a.admitted_at)
    pending = list(state.pending.values())
    assert copy.schedule(now + 1, pending).to_dict() == state.schedule(now + 1, pending).to_dict()


class ReferenceState(QuotaState):
    """The cycle written plainly: every workload evaluated afresh, one by one, in order; no memo,
    no sleeping runs, no tree cache. The optimised cycle must decide exactly the same."""

    def _try(self, wl, q, phase):
        return self._decide(wl, q, phase)

    def _batch(self, tree, now, res):
        from rayfleet.quota import state as st

        snapshot = {q.name: q.ordered() for q in tree.queues}  # the queues' orders at cycle start
        ordered = sorted((w for lst in snapshot.values() for w in lst), key=lambda w: w.order_key)
        pos: dict[str, int] = {}
        mode: dict[str, str] = {}
        blocked: dict[str, str] = {}
        later = []
        waits = []
        for wl in ordered:
            q = self._queues[wl.queue]
            p = pos[q.name] = pos.get(q.name, -1) + 1
            if mode.get(q.name) == "deferred":
                later.append((wl, q, p))
                continue
            if mode.get(q.name) == "blocked":
                waits.append(self._blocked_wait(wl, q, p, blocked[q.name]))
                continue
            out = self._decide(wl, q, 1)
            if out.kind == st._ADMIT:
                self._admit(wl, q, out, now, res, p)
            elif out.kind == st._DEFER:
                mode[q.name] = "deferred"
                later.append((wl, q, p))
            else:
                waits.append(st._wait(wl.id, q.name, p, out.reason, out.blocking, out.could, out.code))
                if q.strict:
                    mode[q.name] = "blocked"
                    blocked[q.name] = wl.id
        if later and self._fair:
            firsts: dict[str, int] = {}
            for _, q, p in later:
                firsts.setdefault(q.name, p)
            deferred = []
            for q in tree.queues:
                if q.name in firsts:
                    q.lst, q.i, q.state = snapshot[q.name], firsts[q.name], st._OPEN
                    deferred.append(q)
            self._phase2_fair(deferred, now, res, waits)
        else:
            for wl, q, p in later:
                if mode.get(q.name) == "blocked":
                    waits.append(self._blocked_wait(wl, q, p, blocked[q.name]))
                    continue
                out = self._decide(wl, q, 2)
                if out.kind == st._ADMIT:
                    self._admit(wl, q, out, now, res, p)
                else:
                    waits.append(st._wait(wl.id, q.name, p, out.reason, out.blocking, out.could, out.code))
                    if q.strict:
                        mode[q.name] = "blocked"
                        blocked[q.name] = wl.id
        res.waiting.extend(waits)


def _drive(state: QuotaState, cfg: QuotaConfig, ops: list) -> list:
    now = 1_700_000_000.0
    out = []
    seq = 0
    for o in ops:
        OPS["n"] += 1
        if o[0] == "submit":
            _, qi, prio, podsets, flavors = o
            state.submit(
                Workload(
                    f"w{seq}",
                    cfg.queues[qi % len(cfg.queues)].name,
                    tuple(PodSet(c, {"cpu": cpu, "nvidia.com/gpu": gpu}) for c, cpu, gpu in podsets),
                    priority=(prio + seq) % 4,  # spread priorities whatever the drawn value
                    created=now + seq // 3,  # equal creation times: ties broken by id
                    flavors=flavors,
                )
            )
            seq += 1
        elif o[0] == "cycle":
            now += o[1] * HOUR
            res = state.schedule(now)
            out.append(res.to_dict())
        elif o[0] == "release" and state.admitted:
            ids = list(state.admitted)
            state.release(ids[o[1] % len(ids)])
        elif o[0] == "withdraw" and state.pending:
            ids = sorted(state.pending)
            state.withdraw(ids[o[1] % len(ids)])
    return out


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(quota_config(), quota_config(busy=True)), st.lists(st.one_of(op, busy_op), min_size=20, max_size=100))
def test_optimised_cycle_decides_as_the_plain_one(cfg, ops):
    assert _drive(QuotaState(cfg, 1_700_000_000.0), cfg, ops) == _drive(ReferenceState(cfg, 1_700_000_000.0), cfg, ops)


def test_property_suites_ran_enough_operations():
    # The property tests above run first (pytest keeps file order). The streams must also
    # exercise what the properties are about.
    assert OPS["n"] >= 10_000, OPS
    assert OPS["heads"] >= 200 and OPS["preempted"] >= 300 and OPS["shrunk"] >= 50 and OPS["admitted"] >= 1000, OPS
