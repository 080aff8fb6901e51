"""The compact written-state table behind check-in write skipping."""
import random

from gateway.memory.seen import SeenTable

G = 300.0


def test_remembers_value_and_age():
    t = SeenTable()
    t.put(hash((1, "D1", "main")), hash(("mp", "1.0.0")), 1_700_000_000.0)
    key = hash((1, "D1", "main"))
    cases = [  # (value, now, expected)
        (hash(("mp", "1.0.0")), 1_700_000_010.0, True),
        (hash(("mp", "1.0.0")), 1_700_000_000.0 + G + 1, False),  # too old: last_seen is due
        (hash(("mp", "2.0.0")), 1_700_000_010.0, False),  # a new version
        (hash(("evt", "1.0.0")), 1_700_000_010.0, False),  # other hardware
    ]
    for value, now, expected in cases:
        assert t.get(key, value, now, G) is expected
    assert t.get(hash((1, "D2", "main")), hash(("mp", "1.0.0")), 1_700_000_010.0, G) is False


def test_grows_keeps_every_entry_and_overwrites():
    t = SeenTable()
    rng = random.Random(5)
    entries = {rng.getrandbits(63) - 2**62: rng.getrandbits(63) for _ in range(50_000)}
    for k, v in entries.items():
        t.put(k, v, 1_700_000_000)
    assert len(t) == len(entries)
    assert all(t.get(k, v, 1_700_000_001, G) for k, v in entries.items())
    k0 = next(iter(entries))
    t.put(k0, 7, 1_700_000_002)
    assert len(t) == len(entries)
    assert t.get(k0, 7, 1_700_000_003, G) and not t.get(k0, entries[k0], 1_700_000_003, G)


def test_key_zero_and_reserve():
    t = SeenTable(expected=10)
    t.put(0, 3, 1_700_000_000)  # 0 marks empty slots internally
    t.reserve(100_000)
    assert t.get(0, 3, 1_700_000_001, G)
    assert t.nbytes >= 200_000 * 20


def test_bounded():
    t = SeenTable(max_entries=20_000)
    for i in range(1, 50_001):
        t.put(i * 7919, i, 1_700_000_000)
    assert len(t) <= 20_000
    assert t.get(50_000 * 7919, 50_000, 1_700_000_001, G)  # the newest survive a reset


def test_shared_table_is_seen_by_forked_processes():
    import os

    from gateway.memory.seen import SharedSeenTable

    t = SharedSeenTable(max_entries=50_000)
    t.put(11, 1, 1_700_000_000)
    pid = os.fork()
    if pid == 0:  # a worker: learns what the parent wrote, writes its own
        code = 0 if t.get(11, 1, 1_700_000_001, G) else 3
        for i in range(1, 1001):
            t.put(1_000 + i, i, 1_700_000_000)
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(t) == 1001
    assert all(t.get(1_000 + i, i, 1_700_000_001, G) for i in range(1, 1001))


def test_shared_table_is_bounded_and_clears():
    from gateway.memory.seen import SharedSeenTable

    t = SharedSeenTable(max_entries=20_000)
    slots = t.nbytes
    for i in range(1, 50_001):
        t.put(i * 7919, i, 1_700_000_000)
    assert len(t) <= 20_000 and t.nbytes == slots  # fixed size: full means cleared, never grown
    assert t.get(50_000 * 7919, 50_000, 1_700_000_001, G)
    t.reserve(10_000_000)
    assert t.nbytes == slots
