"""Properties of the diff engine over arbitrary observation sequences (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.codec import encode_event
from bridge.core.diff import diff, events_so_far
from bridge.core.model import (
    BulkGone,
    BulkObservation,
    BulkSeen,
    Event,
    Failure,
    MpcBulk,
    Observation,
    WatchSnapshot,
    WatchSpec,
)
from bridge_tools.payload_contract import violation
from tests.builders import T0, bulk, watch

BULK_IDS = (11, 12, 13)
STATUSES = ("waiting", "working", "finished", "failed", "waiting_for_retry")
STEP_S = 5.0

counts = st.integers(min_value=0, max_value=30)
member_errors: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}),
    st.dictionaries(
        st.emails(),
        st.fixed_dictionaries(
            {
                "properties": st.lists(
                    st.fixed_dictionaries(
                        {
                            "error": st.dictionaries(
                                st.sampled_from(["language", "gender", "birth_date", "email"]),
                                st.lists(
                                    st.fixed_dictionaries(
                                        {"error": st.sampled_from(["value_not_match", "invalid"])}
                                    ),
                                    max_size=2,
                                ),
                                max_size=2,
                            )
                        }
                    ),
                    max_size=2,
                )
            }
        ),
        max_size=4,
    ),
)


@st.composite
def mpc_bulks(draw: st.DrawFn, bulk_id: int) -> MpcBulk:
    return bulk(
        bulk_id,
        draw(st.sampled_from(STATUSES)),
        members_created_number=draw(counts),
        members_updated_number=draw(counts),
        members_with_validation_errors_number=draw(counts),
        retries=draw(st.integers(min_value=0, max_value=5)),
        members_errors=draw(member_errors),
    )


@st.composite
def successes(draw: st.DrawFn, whole: bool) -> Observation:
    ids = draw(st.lists(st.sampled_from(BULK_IDS), unique=True))
    observed: dict[int, BulkObservation] = {}
    for bulk_id in ids:
        observed[bulk_id] = (
            BulkGone()
            if (not whole and draw(st.booleans()) and draw(st.booleans()))
            else BulkSeen(bulk=draw(mpc_bulks(bulk_id)))
        )
    if whole:
        listing = frozenset(b for b, o in observed.items() if isinstance(o, BulkSeen))
        return Observation(bulks={b: observed[b] for b in listing}, listing=listing)
    return Observation(bulks=observed)


failures = st.builds(
    lambda kind: Observation(failure=Failure(kind=kind)),
    st.sampled_from(["server_error", "timeout", "malformed", "connection", "rate_limited", "not_found"]),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[WatchSpec, list[Observation]]:
    whole = draw(st.booleans())
    named = (
        None if whole else tuple(sorted(draw(st.lists(st.sampled_from(BULK_IDS), min_size=1, unique=True))))
    )
    spec = watch(
        named, notify_progress=draw(st.booleans()), stall_after_s=draw(st.sampled_from([30.0, 7200.0]))
    )
    observations = draw(st.lists(st.one_of(successes(whole), successes(whole), failures), max_size=12))
    return spec, observations


def play(spec: WatchSpec, observations: list[Observation]) -> tuple[list[WatchSnapshot | None], list[Event]]:
    snapshots: list[WatchSnapshot | None] = [None]
    events: list[Event] = []
    for index, observation in enumerate(observations):
        result = diff(spec, snapshots[-1], observation, T0 + index * STEP_S)
        snapshots.append(result.snapshot)
        events += result.events
    return snapshots, events


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_replaying_the_same_observation_is_a_no_op(scenario: tuple[WatchSpec, list[Observation]]) -> None:
    spec, observations = scenario
    snapshots, _ = play(spec, observations)
    for index, observation in enumerate(observations):
        if observation.failure is not None:
            continue  # a repeated failure is another failed poll
        now = T0 + index * STEP_S
        replay = diff(spec, snapshots[index + 1], observation, now)
        assert replay.events == []
        assert msgspec.msgpack.encode(replay.snapshot) == msgspec.msgpack.encode(snapshots[index + 1])


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_no_event_when_nothing_changed(scenario: tuple[WatchSpec, list[Observation]]) -> None:
    spec, observations = scenario
    snapshots, _ = play(spec, observations)
    last = snapshots[-1]
    if last is None:
        return
    unchanged: dict[int, BulkObservation] = {}
    for bulk_id, snap in last.bulks.items():
        if snap.status is None:
            continue
        if snap.missing:
            unchanged[bulk_id] = BulkGone()
            continue
        unchanged[bulk_id] = BulkSeen(
            bulk=bulk(
                bulk_id,
                snap.status,
                request_number=snap.request_number,
                members_in_payload_number=snap.payload,
                members_created_number=snap.created,
                members_updated_number=snap.updated,
                members_with_validation_errors_number=snap.invalid,
                retries=snap.retries,
                members_errors={},  # emptied errors are not a change either
            )
        )
    now = T0 + (len(observations) - 1) * STEP_S
    observation = Observation(bulks=unchanged, listing=frozenset(unchanged) if spec.whole_import else None)
    result = diff(spec, last, observation, now)
    # Time passing is not a change, but a bulk unchanged for stall_after is rightly announced stalled.
    due_to_stall = {
        b
        for b, snap in last.bulks.items()
        if not snap.stalled and now - snap.last_changed >= spec.stall_after_s
    }
    unexpected = [
        e.type
        for e in result.events
        if e.type != "watch.upstream_recovered"
        and not (e.type == "watch.stalled" and e.data.bulk_id in due_to_stall)
    ]
    assert unexpected == []


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_event_ids_are_unique_per_change_and_stable_across_replays(
    scenario: tuple[WatchSpec, list[Observation]],
) -> None:
    spec, observations = scenario
    _, first = play(spec, observations)
    _, second = play(spec, observations)
    ids = [e.id for e in first]
    assert ids == [e.id for e in second]
    assert len(ids) == len(set(ids))


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_sequences_count_up_by_one_per_bulk_and_per_watch(
    scenario: tuple[WatchSpec, list[Observation]],
) -> None:
    spec, observations = scenario
    _, events = play(spec, observations)
    sequences: dict[Any, list[int]] = defaultdict(list)
    for event in events:
        sequences[event.data.bulk_id].append(event.data.sequence)
    for found in sequences.values():
        assert found == list(range(1, len(found) + 1))


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_positions_number_a_watchs_events_one_by_one_and_resume_from_the_snapshot(
    scenario: tuple[WatchSpec, list[Observation]],
) -> None:
    spec, observations = scenario
    snapshots, events = play(spec, observations)
    assert [e.data.position for e in events] == list(range(1, len(events) + 1))
    last = snapshots[-1]
    assert events_so_far(last or WatchSnapshot()) == len(events)
    for event in events:  # every event encodes, and validates against its published schema
        assert violation(encode_event(event)) is None


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.data())
def test_any_sequence_ends_in_one_import_completed_when_all_bulks_are_terminal(
    scenario: tuple[WatchSpec, list[Observation]], data: st.DataObject
) -> None:
    spec, observations = scenario
    snapshots, events = play(spec, observations)
    last = snapshots[-1]
    ids = list(spec.bulk_ids or sorted(set(last.bulks) if last else set()) or [11])
    final: dict[int, BulkObservation] = {
        b: BulkSeen(bulk=bulk(b, data.draw(st.sampled_from(["finished", "failed"])))) for b in ids
    }
    finale = Observation(bulks=final, listing=frozenset(final) if spec.whole_import else None)
    result = diff(spec, last, finale, T0 + len(observations) * STEP_S)
    everything = [e.type for e in events + result.events]
    ended_early = last is not None and last.state in ("error", "expired")
    assert everything.count("import.completed") == (0 if ended_early else 1)
    if not ended_early:
        assert result.snapshot.state == "completed"
        after = diff(spec, result.snapshot, finale, T0 + (len(observations) + 1) * STEP_S)
        assert after.events == []


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=300),
        st.recursive(
            st.none() | st.text(max_size=200),
            lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=100), c, max_size=5),
            max_leaves=30,
        ),
        max_size=200,
    )
)
def test_event_payloads_stay_under_20_kb_whatever_members_errors_holds(errors: dict[str, Any]) -> None:
    spec = watch((11,))
    first = diff(spec, None, Observation(bulks={11: BulkSeen(bulk=bulk(11, "working"))}), T0)
    finished = bulk(
        11,
        "finished",
        members_created_number=1,
        members_with_validation_errors_number=len(errors),
        members_errors=errors,
    )
    result = diff(spec, first.snapshot, Observation(bulks={11: BulkSeen(bulk=finished)}), T0 + 5)
    for event in result.events:
        body = encode_event(event)
        assert len(body) < 20_000
        msgspec.json.decode(body)
