"""The line of joins waiting for a room's lock (services/rooms/joins.py): the holder takes its
own line, a command other than a join ends a line, a join given up leaves it, and one
transaction takes at most JOINS_PER_TRANSACTION."""

import asyncio

from services.common.contracts.models import UserRef
from services.rooms import joins
from services.rooms.joins import Joining, WaitingJoins


def _joining(name: str) -> Joining:
    loop = asyncio.new_event_loop()
    try:
        return Joining(UserRef(id=name, name=name), f"{name}-socket", False, loop.create_future())
    finally:
        loop.close()


def test_the_holder_takes_every_join_of_its_line_in_arrival_order() -> None:
    waiting = WaitingJoins()
    a, b, c = (_joining(n) for n in "abc")
    for j in (a, b, c):
        waiting.add("room", j)
    assert waiting.take("room", a) == [a, b, c]
    assert waiting.take("room", b) == []  # taken along by a: nothing left for b
    assert waiting._rooms == {}


def test_another_command_ends_the_line() -> None:
    waiting = WaitingJoins()
    a, b, c = (_joining(n) for n in "abc")
    waiting.add("room", a)
    waiting.barrier("room")  # e.g. a `leave`, waiting for the lock after a
    waiting.add("room", b)
    waiting.add("room", c)
    assert waiting.take("room", a) == [a]
    assert waiting.take("room", b) == [b, c]
    assert waiting._rooms == {}


def test_a_barrier_with_no_join_before_it_changes_nothing() -> None:
    waiting = WaitingJoins()
    waiting.barrier("room")
    a, b = _joining("a"), _joining("b")
    waiting.add("room", a)
    waiting.add("room", b)
    assert waiting.take("room", a) == [a, b]


def test_rooms_are_apart() -> None:
    waiting = WaitingJoins()
    a, b = _joining("a"), _joining("b")
    waiting.add("one", a)
    waiting.add("two", b)
    waiting.barrier("one")
    assert waiting.take("two", b) == [b]
    assert waiting.take("one", a) == [a]


def test_a_join_given_up_is_not_taken() -> None:
    waiting = WaitingJoins()
    a, b, c = (_joining(n) for n in "abc")
    for j in (a, b, c):
        waiting.add("room", j)
    waiting.drop("room", a)
    waiting.drop("room", a)  # twice: nothing more happens
    assert waiting.take("room", b) == [b, c]
    assert waiting._rooms == {}


def test_a_long_line_goes_in_transactions_of_at_most_the_limit() -> None:
    waiting = WaitingJoins()
    line = [_joining(f"u{i}") for i in range(joins.JOINS_PER_TRANSACTION + 5)]
    for j in line:
        waiting.add("room", j)
    first = waiting.take("room", line[0])
    assert first == line[: joins.JOINS_PER_TRANSACTION]
    rest = waiting.take("room", line[joins.JOINS_PER_TRANSACTION])
    assert rest == line[joins.JOINS_PER_TRANSACTION :]
    assert waiting._rooms == {}
