"""Pieces of the bridges' plan machinery that need no pool."""

from __future__ import annotations

import itertools
import random

import pytest

from workerbridge.bridges._base import _InOrder


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_parts_are_joined_in_index_order_whatever_order_they_come_in(
    order: tuple[int, ...],
) -> None:
    parts = [b"a" * 3, b"", b"bc", b"d" * 70_000]
    joined = _InOrder()
    for index in order:
        joined.put(index, parts[index])
    assert joined.value() == b"".join(parts)


def test_many_parts_shuffled() -> None:
    rng = random.Random(7)
    parts = [rng.randbytes(rng.randrange(0, 5000)) for _ in range(300)]
    order = list(range(len(parts)))
    rng.shuffle(order)
    joined = _InOrder()
    for index in order:
        joined.put(index, parts[index])
    assert joined.value() == b"".join(parts)
    assert not joined._early  # nothing held back once all are in


def test_no_parts_is_empty_bytes() -> None:
    value = _InOrder().value()
    assert value == b""
    assert type(value) is bytes
