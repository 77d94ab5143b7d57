"""The balancer is a pure function over worker snapshots."""

from __future__ import annotations

from workerbridge._balancer import WorkerView, choose, choose_affinity_home


def views(*idle: bool, busy: tuple[float, ...] = ()) -> list[WorkerView]:
    return [
        WorkerView(i, flag, 0 if flag else 1, busy[i] if busy else 0.0)
        for i, flag in enumerate(idle)
    ]


def test_none_when_all_busy() -> None:
    assert choose("least-busy", views(False, False), -1) is None
    assert choose("round-robin", views(False, False), -1) is None


def test_round_robin_cycles() -> None:
    ws = views(True, True, True)
    picks = []
    last = -1
    for _ in range(6):
        last = choose("round-robin", ws, last)  # type: ignore[assignment]
        picks.append(last)
    assert picks == [0, 1, 2, 0, 1, 2]
    assert choose("round-robin", views(True, False, True), 0) == 2


def test_least_busy_prefers_rested_worker() -> None:
    assert choose("least-busy", views(True, True, busy=(5.0, 1.0)), -1) == 1
    assert choose("least-busy", views(False, True, busy=(0.0, 9.0)), -1) == 1


def test_affinity_home_balances_keys() -> None:
    ws = [WorkerView(0, True, 0, 0.0, 3), WorkerView(1, True, 0, 0.0, 1)]
    assert choose_affinity_home(ws) == 1


def test_least_busy_prefers_a_warm_worker() -> None:
    """A worker still spinning for work goes first; among warm ones, the least busy."""
    ws = [
        WorkerView(0, True, 0, 0.0),
        WorkerView(1, True, 0, 5.0, warm=True),
        WorkerView(2, True, 0, 4.0, warm=True),
    ]
    assert choose("least-busy", ws, -1) == 2
    assert choose("least-busy", ws[:2], -1) == 1
    # round-robin is a promise of order: warmth does not change it
    assert choose("round-robin", ws, 0) == 1
    assert choose("round-robin", ws, 1) == 2


def test_dispatcher_pick_agrees_with_the_balancer() -> None:
    """The dispatcher inlines least-busy on its hot path: it must pick what choose() picks."""
    import random
    import types

    from workerbridge._dispatcher import Dispatcher

    rng = random.Random(7)
    now, spin = 1000.0, 1e-4
    for strategy in ("least-busy", "round-robin"):
        for _ in range(2000):
            n = rng.randint(1, 6)
            slots = [
                types.SimpleNamespace(
                    state=rng.choice(["idle", "busy", "starting"]),
                    busy_seconds=rng.choice([0.0, 1.0, 2.5, rng.random()]),
                    affinity_keys=0,
                    # never answered, long ago, just within the spin budget, just outside
                    answered=rng.choice([float("-inf"), 3.0, now - spin / 2, now - spin]),
                )
                for _ in range(n)
            ]
            last = rng.randint(-1, n - 1)
            fake = types.SimpleNamespace(
                _slots=slots,
                _strategy=strategy,
                _last_choice=last,
                _backend=types.SimpleNamespace(spin=spin),
            )
            expected = choose(
                strategy,
                [
                    WorkerView(
                        i,
                        r.state == "idle",
                        0 if r.state == "idle" else 1,
                        r.busy_seconds,
                        warm=r.answered > now - spin,
                    )
                    for i, r in enumerate(slots)
                ],
                last,
            )
            assert Dispatcher._choose_idle(fake, now) == expected  # type: ignore[arg-type]
