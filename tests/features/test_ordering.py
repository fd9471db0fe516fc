"""The sequencer: released order is a function of the input, not of how partitions interleave."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from features.ordering import Sequencer

LATENESS = 10.0


@st.composite
def partitioned_streams(draw: st.DrawFn) -> dict[int, list[tuple[float, str]]]:
    """Per-partition event lists: roughly increasing times with disorder inside the lateness."""
    streams = {}
    counter = 0
    for partition in range(draw(st.integers(1, 4))):
        time = 1000.0
        events = []
        for _ in range(draw(st.integers(0, 25))):
            time += draw(st.sampled_from([0.0, 1.0, 3.0, 8.0]))
            jitter = draw(st.sampled_from([0.0, -2.0, -5.0, -9.5]))  # stays within the lateness
            counter += 1
            events.append((time + jitter, f"tx{counter:04d}"))
        streams[partition] = events
    return streams


def _run(streams: dict[int, list[tuple[float, str]]], schedule: list[int]) -> tuple[list[str], list[str]]:
    sequencer: Sequencer[str] = Sequencer(partitions=streams, allowed_lateness=LATENESS)
    cursors = dict.fromkeys(streams, 0)
    released: list[str] = []
    late: list[str] = []
    for pick in schedule:
        live = [p for p in streams if cursors[p] < len(streams[p])]
        if not live:
            break
        partition = live[pick % len(live)]
        time, txid = streams[partition][cursors[partition]]
        if sequencer.offer(partition=partition, offset=cursors[partition], time=time, transaction_id=txid, item=txid):
            late.append(txid)
        cursors[partition] += 1
        released += [e.item for e in sequencer.release()]
    for partition, events in streams.items():
        for offset in range(cursors[partition], len(events)):
            time, txid = events[offset]
            if sequencer.offer(partition=partition, offset=offset, time=time, transaction_id=txid, item=txid):
                late.append(txid)
    released += [e.item for e in sequencer.release(idle=streams)]  # end of input: everything is idle
    return released, late


@settings(max_examples=200, deadline=None)
@given(partitioned_streams(), st.lists(st.integers(0, 7), max_size=120), st.lists(st.integers(0, 7), max_size=120))
def test_release_order_is_independent_of_interleaving(
    streams: dict[int, list[tuple[float, str]]], first: list[int], second: list[int]
) -> None:
    released_a, late_a = _run(streams, first)
    released_b, late_b = _run(streams, second)
    assert late_a == late_b == []
    assert released_a == released_b
    everything = sorted(event for events in streams.values() for event in events)
    assert released_a == [txid for _, txid in everything]


def test_events_beyond_the_lateness_are_flagged_by_their_own_partition() -> None:
    sequencer: Sequencer[str] = Sequencer(partitions=[0, 1], allowed_lateness=5.0)
    assert not sequencer.offer(partition=0, offset=0, time=100.0, transaction_id="a", item="a")
    assert not sequencer.offer(partition=0, offset=1, time=96.0, transaction_id="b", item="b")  # within 5 s
    assert sequencer.offer(partition=0, offset=2, time=95.0, transaction_id="c", item="c")  # exactly 5 s behind
    assert sequencer.release() == []  # partition 1 has not spoken: the watermark holds
    assert sequencer.watermark(idle=[1]) == 95.0
    assert [e.item for e in sequencer.release(idle=[1])] == []
    assert [e.item for e in sequencer.release(idle=[0, 1])] == ["b", "a"]
    # Anything at or before what was already released can no longer be ordered: late.
    assert sequencer.offer(partition=1, offset=0, time=99.0, transaction_id="d", item="d")


def test_state_round_trip_keeps_buffer_and_progress() -> None:
    sequencer: Sequencer[str] = Sequencer(partitions=[0, 1], allowed_lateness=5.0)
    sequencer.offer(partition=0, offset=7, time=50.0, transaction_id="x", item="x")
    sequencer.skip(partition=1, offset=3)
    copy: Sequencer[str] = Sequencer.from_state(sequencer.state(str), str, partitions=[0, 1])
    assert copy.partitions[0].next_offset == 8 and copy.partitions[1].next_offset == 4
    assert [e.item for e in copy.release(idle=[0, 1])] == ["x"]
