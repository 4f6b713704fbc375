"""The lines of commands waiting for a room's lock (services/rooms/lines.py): the holder takes
its own line, a command of another kind or one not lined up ends a line, a command given up
leaves it, and one transaction takes at most the limit."""

from dataclasses import dataclass

from services.rooms.lines import WaitingLines


@dataclass(eq=False)
class _Command:
    name: str


def _commands(names: str) -> list[_Command]:
    return [_Command(n) for n in names]


def test_the_holder_takes_every_command_of_its_line_in_arrival_order() -> None:
    waiting: WaitingLines[_Command] = WaitingLines()
    a, b, c = _commands("abc")
    for x in (a, b, c):
        waiting.add("room", "join", x)
    assert waiting.waiting("room") == 3
    assert waiting.take("room", a, 100) == [a, b, c]
    assert waiting.take("room", b, 100) == []  # taken along by a: nothing left for b
    assert waiting._rooms == {}


def test_another_command_ends_the_line() -> None:
    waiting: WaitingLines[_Command] = WaitingLines()
    a, b, c = _commands("abc")
    waiting.add("room", "join", a)
    waiting.barrier("room")  # e.g. a `leave`, waiting for the lock after a
    waiting.add("room", "join", b)
    waiting.add("room", "join", c)
    assert waiting.take("room", a, 100) == [a]
    assert waiting.take("room", b, 100) == [b, c]
    assert waiting._rooms == {}


def test_a_command_of_another_kind_ends_the_line_for_good() -> None:
    waiting: WaitingLines[_Command] = WaitingLines()
    j1, r1, j2 = _commands(["join 1", "ready 1", "join 2"])
    waiting.add("room", "join", j1)
    waiting.add("room", "ready", r1)
    waiting.drop("room", r1)  # its caller gave up: its line is gone, yet j1's stays closed
    waiting.add("room", "join", j2)
    assert waiting.take("room", j1, 100) == [j1]
    assert waiting.take("room", j2, 100) == [j2]


def test_kinds_take_turns_in_arrival_order() -> None:
    waiting: WaitingLines[_Command] = WaitingLines()
    r1, r2, j1, r3 = _commands(["r1", "r2", "j1", "r3"])
    waiting.add("room", "ready", r1)
    waiting.add("room", "ready", r2)
    waiting.add("room", "join", j1)
    waiting.add("room", "ready", r3)
    assert waiting.take("room", r1, 100) == [r1, r2]
    assert waiting.take("room", j1, 100) == [j1]
    assert waiting.take("room", r3, 100) == [r3]
    assert waiting._rooms == {}


def test_a_barrier_with_nothing_before_it_changes_nothing() -> None:
    waiting: WaitingLines[_Command] = WaitingLines()
    waiting.barrier("room")
    a, b = _commands("ab")
    waiting.add("room", "join", a)
    waiting.add("room", "join", b)
    assert waiting.take("room", a, 100) == [a, b]


def test_rooms_are_apart() -> None:
    waiting: WaitingLines[_Command] = WaitingLines()
    a, b = _commands("ab")
    waiting.add("one", "join", a)
    waiting.add("two", "join", b)
    waiting.barrier("one")
    assert waiting.take("two", b, 100) == [b]
    assert waiting.take("one", a, 100) == [a]


def test_a_command_given_up_is_not_taken() -> None:
    waiting: WaitingLines[_Command] = WaitingLines()
    a, b, c = _commands("abc")
    for x in (a, b, c):
        waiting.add("room", "join", x)
    waiting.drop("room", a)
    waiting.drop("room", a)  # twice: nothing more happens
    assert waiting.take("room", b, 100) == [b, c]
    assert waiting._rooms == {}


def test_commands_are_found_by_identity() -> None:
    waiting: WaitingLines[_Command] = WaitingLines()
    first, twin = _Command("same"), _Command("same")
    waiting.add("room", "ready", first)
    waiting.add("room", "ready", twin)
    waiting.drop("room", twin)
    assert waiting.take("room", first, 100) == [first]
    assert waiting.take("room", twin, 100) == []


def test_a_long_line_goes_in_transactions_of_at_most_the_limit() -> None:
    waiting: WaitingLines[_Command] = WaitingLines()
    limit = 7
    line = [_Command(f"u{i}") for i in range(limit + 5)]
    for x in line:
        waiting.add("room", "join", x)
    first = waiting.take("room", line[0], limit)
    assert first == line[:limit]
    rest = waiting.take("room", line[limit], limit)
    assert rest == line[limit:]


def test_a_holder_behind_the_limit_goes_now_all_the_same() -> None:
    waiting: WaitingLines[_Command] = WaitingLines()
    line = _commands("abcd")
    for x in line:
        waiting.add("room", "join", x)
    taken = waiting.take("room", line[3], 2)  # not at the head: FIFO locks never do this
    assert taken == [line[0], line[1], line[3]]
    assert waiting.take("room", line[2], 2) == [line[2]]
    assert waiting._rooms == {}
