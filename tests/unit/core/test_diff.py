"""The diff engine, one test per row of the event table (docs/design.md) and per rule around it."""

from __future__ import annotations

import msgspec
import pytest

from bridge.core.diff import DEFAULT_RULES, Diff, Rules, diff, event_id, iso_timestamp
from bridge.core.model import BulkListed, Event, Observation, WatchSnapshot, WatchSpec
from tests.builders import MEMBERS_ERRORS, T0, bulk, failed, gone, listed, seen, watch


def run(
    spec: WatchSpec,
    *observations: Observation,
    start: float = T0,
    step: float = 5.0,
    rules: Rules = DEFAULT_RULES,
) -> tuple[WatchSnapshot | None, list[Event]]:
    snapshot: WatchSnapshot | None = None
    events: list[Event] = []
    for index, observation in enumerate(observations):
        result = diff(spec, snapshot, observation, start + index * step, rules)
        snapshot = result.snapshot
        events += result.events
    return snapshot, events


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


# ---------------------------------------------------------------------------- bulk.discovered


def test_whole_import_watch_announces_each_new_bulk_once_with_its_status() -> None:
    spec = watch()
    _, events = run(spec, listed({11: "waiting"}, (bulk(11, "waiting"),)), listed({11: "waiting"}))
    assert types(events) == ["bulk.discovered"]
    data = events[0].data
    assert (data.bulk_id, data.status, data.previous_status, data.sequence) == (11, "waiting", None, 1)
    assert data.bulk and data.bulk.id == 11 and data.bulk.status == "waiting"


def test_named_bulks_are_not_discovered() -> None:
    _, events = run(watch((11,)), seen(bulk(11, "waiting")))
    assert events == []


def test_a_named_bulk_first_seen_past_waiting_has_its_status_announced_without_previous() -> None:
    _, events = run(watch((11, 12)), seen(bulk(11, "working"), bulk(12, "waiting")))
    assert types(events) == ["bulk.started"]
    assert events[0].data.previous_status is None


def test_a_bulk_first_seen_past_waiting_is_discovered_and_its_status_announced() -> None:
    _, events = run(watch(), listed({11: "finished"}, (bulk(11, "finished", members_created_number=13),)))
    assert types(events) == ["bulk.discovered", "bulk.finished", "import.completed"]
    assert events[1].data.previous_status is None
    assert events[1].data.outcome == "clean"


# ---------------------------------------------------------------------------- status changes


def test_working_is_announced_as_started_with_the_previous_status() -> None:
    _, events = run(watch((11,)), seen(bulk(11, "waiting")), seen(bulk(11, "working")))
    assert types(events) == ["bulk.started"]
    assert (events[0].data.status, events[0].data.previous_status) == ("working", "waiting")


def test_waiting_for_retry_is_announced_as_retrying_with_retries_out_of_five() -> None:
    _, events = run(
        watch((11,)),
        seen(bulk(11, "waiting")),
        seen(bulk(11, "working")),
        seen(bulk(11, "waiting_for_retry", retries=1)),
    )
    assert types(events) == ["bulk.started", "bulk.retrying"]
    events = events[1:]
    assert (events[0].data.retries, events[0].data.max_retries) == (1, 5)
    assert events[0].data.bulk and events[0].data.bulk.retries == 1


def test_a_new_retry_while_still_waiting_for_retry_is_announced_again() -> None:
    _, events = run(
        watch((11,)),
        seen(bulk(11, "working")),
        seen(bulk(11, "waiting_for_retry", retries=1)),
        seen(bulk(11, "waiting_for_retry", retries=2)),
        seen(bulk(11, "waiting_for_retry", retries=2)),
    )
    assert types(events) == ["bulk.started", "bulk.retrying", "bulk.retrying"]
    events = events[1:]
    assert [e.data.retries for e in events] == [1, 2]


def test_failed_is_announced() -> None:
    _, events = run(
        watch((11,)),
        seen(bulk(11, "waiting")),
        seen(bulk(11, "working")),
        seen(bulk(11, "failed", retries=5)),
    )
    assert types(events) == ["bulk.started", "bulk.failed", "import.completed"]
    events = events[1:]
    assert events[0].data.previous_status == "working"


def test_skipped_working_still_emits_finished_with_previous_status() -> None:
    _, events = run(
        watch((11,)), seen(bulk(11, "waiting")), seen(bulk(11, "finished", members_created_number=13))
    )
    assert types(events) == ["bulk.finished", "import.completed"]
    assert events[0].data.previous_status == "waiting"


def test_back_to_waiting_is_not_an_event_type_but_is_remembered() -> None:
    snapshot, events = run(
        watch((11,)), seen(bulk(11, "waiting_for_retry", retries=1)), seen(bulk(11, "waiting"))
    )
    assert types(events) == ["bulk.retrying"]
    assert snapshot is not None and snapshot.bulks[11].status == "waiting"


# ---------------------------------------------------------------------------- bulk.finished outcomes


@pytest.mark.parametrize(
    ("counts", "outcome"),
    [
        ({"members_created_number": 10, "members_updated_number": 3}, "clean"),
        ({"members_created_number": 10, "members_with_validation_errors_number": 1}, "with_errors"),
        ({"members_with_validation_errors_number": 13}, "nothing_imported"),
        ({}, "nothing_imported"),
    ],
)
def test_finished_carries_its_outcome(counts: dict[str, int], outcome: str) -> None:
    _, events = run(watch((11,)), seen(bulk(11, "waiting")), seen(bulk(11, "finished", **counts)))
    assert events[0].type == "bulk.finished"
    assert events[0].data.outcome == outcome


def test_finished_with_errors_carries_a_grouped_masked_summary() -> None:
    finished = bulk(
        11,
        "finished",
        members_created_number=10,
        members_with_validation_errors_number=3,
        members_errors=MEMBERS_ERRORS,
    )
    _, events = run(watch((11,)), seen(bulk(11, "waiting")), seen(finished))
    summary = events[0].data.errors_summary
    assert isinstance(summary, list)
    language = [g for g in summary if (g.property, g.error) == ("language", "value_not_match")]
    assert len(language) == 1 and language[0].count == 2
    assert sorted(language[0].examples) == ["a***@example.org", "j***@example.com"]
    assert "+47******12" in [x for g in summary for x in g.examples]
    assert "joe.bloggs" not in msgspec.json.encode(events).decode()


def test_members_errors_going_empty_is_not_a_change() -> None:
    finished = bulk(11, "working", members_with_validation_errors_number=3, members_errors=MEMBERS_ERRORS)
    later = bulk(11, "working", members_with_validation_errors_number=3, members_errors={})
    snapshot, events = run(watch((11,), notify_progress=True), seen(finished), seen(later), seen(later))
    assert types(events) == ["bulk.started"]
    assert snapshot is not None and snapshot.bulks[11].errors_digest != ""


# ---------------------------------------------------------------------------- bulk.progress


def test_counts_changing_without_a_status_change_is_progress_only_when_asked_for() -> None:
    observations = (seen(bulk(11, "working")), seen(bulk(11, "working", members_created_number=5)))
    _, quiet = run(watch((11,)), *observations)
    _, loud = run(watch((11,), notify_progress=True), *observations)
    assert types(quiet) == ["bulk.started"]
    assert types(loud) == ["bulk.started", "bulk.progress"]
    assert loud[1].data.bulk and loud[1].data.bulk.members_created_number == 5


def test_counts_are_kept_in_the_snapshot_even_without_progress_events() -> None:
    snapshot, _ = run(
        watch((11,)), seen(bulk(11, "working")), seen(bulk(11, "working", members_created_number=5))
    )
    assert snapshot is not None and snapshot.bulks[11].created == 5


# ---------------------------------------------------------------------------- bulk.missing


def test_a_seen_bulk_answering_404_is_missing_once() -> None:
    _, events = run(watch((11, 12)), seen(bulk(11, "waiting"), bulk(12, "waiting")), gone(11), gone(11))
    assert types(events) == ["bulk.missing"]
    assert (events[0].data.bulk_id, events[0].data.status) == (11, "waiting")


def test_a_named_bulk_still_404_after_missing_after_is_missing() -> None:
    spec = watch((11,), missing_after_s=60.0)
    _, early = run(spec, gone(11), gone(11), step=20)
    _, late = run(spec, gone(11), gone(11), gone(11), gone(11), gone(11), step=20)
    assert early == []
    assert types(late) == ["bulk.missing", "import.completed"]


def test_a_bulk_the_import_no_longer_lists_is_missing() -> None:
    _, events = run(watch(), listed({11: "working"}, (bulk(11, "working"),)), listed({}))
    assert types(events) == ["bulk.discovered", "bulk.started", "bulk.missing", "import.completed"]


def test_a_missing_bulk_that_comes_back_is_announced_again() -> None:
    _, events = run(
        watch((11, 12)), seen(bulk(11, "working"), bulk(12, "waiting")), gone(11), seen(bulk(11, "working"))
    )
    assert types(events) == ["bulk.started", "bulk.missing", "bulk.started"]


# ---------------------------------------------------------------------------- import.completed


def test_import_completed_once_when_every_bulk_is_terminal_with_totals() -> None:
    spec = watch((11, 12))
    snapshot, events = run(
        spec,
        seen(bulk(11, "working"), bulk(12, "working")),
        seen(bulk(11, "finished", members_created_number=10, members_updated_number=3)),
        seen(bulk(12, "failed", retries=5)),
        seen(bulk(12, "failed", retries=5)),
    )
    assert types(events) == [
        "bulk.started",
        "bulk.started",
        "bulk.finished",
        "bulk.failed",
        "import.completed",
    ]
    done = events[-1].data
    assert done.bulk_id is msgspec.UNSET
    assert done.totals and done.totals.members_created_number == 10
    assert done.bulks_by_outcome == {"clean": 1, "failed": 1}
    assert snapshot is not None and snapshot.state == "completed"


def test_a_completed_watch_produces_nothing_more() -> None:
    spec = watch((11,))
    snapshot, _ = run(spec, seen(bulk(11, "finished")))
    assert snapshot is not None
    again = diff(spec, snapshot, seen(bulk(11, "working")), T0 + 100)
    assert again.events == [] and again.snapshot.state == "completed"


def test_whole_import_with_no_bulks_yet_is_not_complete() -> None:
    snapshot, events = run(watch(), listed({}))
    assert events == [] and snapshot is not None and snapshot.state == "active"


# ---------------------------------------------------------------------------- upstream failures


def test_upstream_failing_after_n_consecutive_failures_and_recovered_after() -> None:
    spec = watch((11,))
    observations = [seen(bulk(11, "waiting")), *[failed()] * 6, seen(bulk(11, "waiting")), failed()]
    _, events = run(spec, *observations)
    assert types(events) == ["watch.upstream_failing", "watch.upstream_recovered"]
    assert events[0].data.failures == 5
    assert events[0].data.bulk_id is msgspec.UNSET


def test_failures_keep_the_last_good_snapshot_and_emit_nothing_false() -> None:
    spec = watch((11,))
    snapshot, events = run(
        spec, seen(bulk(11, "working")), failed("timeout"), failed("malformed"), seen(bulk(11, "working"))
    )
    assert types(events) == ["bulk.started"]
    assert snapshot is not None and snapshot.bulks[11].status == "working" and snapshot.failures == 0


def test_rate_limiting_is_not_counted_as_a_failure() -> None:
    snapshot, events = run(watch((11,)), *[failed("rate_limited", retry_after=3)] * 10)
    assert events == [] and snapshot is not None and snapshot.failures == 0


@pytest.mark.parametrize("rules", [Rules(failing_after=1), Rules(failing_after=5)])
def test_unauthorized_stops_the_watch_in_error_with_one_event(rules: Rules) -> None:
    snapshot, events = run(watch((11,)), failed("unauthorized"), failed("unauthorized"), rules=rules)
    assert types(events) == ["watch.upstream_failing"]
    assert snapshot is not None and snapshot.state == "error"


def test_unreadable_credentials_announce_failing_at_once_and_keep_the_watch_to_recover() -> None:
    spec = watch((11,))
    snapshot, events = run(
        spec, failed("credentials_unreadable"), failed("credentials_unreadable"), seen(bulk(11, "working"))
    )
    assert types(events) == ["watch.upstream_failing", "watch.upstream_recovered", "bulk.started"]
    assert snapshot is not None and snapshot.state == "active"


def test_a_poll_held_back_by_the_clubs_budget_counts_no_failure() -> None:
    snapshot, events = run(watch((11,)), *[failed("throttled")] * 10, rules=Rules(failing_after=2))
    assert events == []
    assert snapshot is not None and snapshot.failures == 0


# ---------------------------------------------------------------------------- stalled, expired


def test_stalled_once_per_stall_and_again_after_a_change() -> None:
    spec = watch((11,), stall_after_s=100.0)
    _, events = run(
        spec,
        seen(bulk(11, "working")),
        seen(bulk(11, "working")),
        seen(bulk(11, "working")),
        seen(bulk(11, "waiting_for_retry", retries=1)),
        seen(bulk(11, "waiting_for_retry", retries=1)),
        seen(bulk(11, "waiting_for_retry", retries=1)),
        step=60,
    )
    assert types(events) == ["bulk.started", "watch.stalled", "bulk.retrying", "watch.stalled"]
    assert events[1].data.bulk_id == 11 and events[1].data.unchanged_for_s == 120.0


def test_terminal_bulks_never_stall() -> None:
    _, events = run(
        watch((11, 12), stall_after_s=60.0),
        seen(bulk(11, "finished"), bulk(12, "waiting")),
        seen(bulk(12, "waiting")),
        step=100,
    )
    assert types(events) == ["bulk.finished", "watch.stalled"]
    assert events[1].data.bulk_id == 12


def test_expired_when_expires_at_passes_without_completion() -> None:
    spec = watch((11,), expires_at=T0 + 10)
    snapshot, events = run(
        spec, seen(bulk(11, "waiting")), seen(bulk(11, "waiting")), seen(bulk(11, "working"))
    )
    assert types(events) == ["bulk.started", "watch.expired"]  # the last news is told, then the watch ends
    assert snapshot is not None and snapshot.state == "expired"


def test_a_watch_completing_at_its_expiry_is_completed_not_expired() -> None:
    spec = watch((11,), expires_at=T0)
    _, events = run(spec, seen(bulk(11, "finished")))
    assert types(events) == ["bulk.finished", "import.completed"]


# ---------------------------------------------------------------------------- listing


def test_a_listed_bulk_with_an_unchanged_status_is_seen_without_events() -> None:
    spec = watch()
    snapshot, events = run(spec, listed({11: "working"}, (bulk(11, "working"),)), listed({11: "working"}))
    assert types(events) == ["bulk.discovered", "bulk.started"]
    assert snapshot is not None and snapshot.bulks[11].last_seen == T0 + 5


def test_a_bulk_listed_as_newly_working_is_started_without_its_details() -> None:
    spec = watch()
    first, _ = run(spec, listed({11: "waiting"}, (bulk(11, "waiting", members_in_payload_number=13),)))
    result = diff(spec, first, listed({11: "working"}), T0 + 5)
    assert types(result.events) == ["bulk.started"]
    data = result.events[0].data
    assert (data.status, data.previous_status) == ("working", "waiting")
    assert data.bulk and data.bulk.status == "working" and data.bulk.members_in_payload_number == 13
    again = diff(spec, result.snapshot, listed({11: "working"}), T0 + 10)
    assert again.events == []


def test_a_listed_status_change_without_details_waits_for_the_details() -> None:
    spec = watch()
    first, _ = run(spec, listed({11: "working"}, (bulk(11, "working"),)))
    result = diff(
        spec, first, Observation(bulks={11: BulkListed(status="finished")}, listing=frozenset({11})), T0 + 5
    )
    assert result.events == []
    assert result.snapshot.bulks[11].status == "working"


# ---------------------------------------------------------------------------- ids, purity, shapes


def test_event_ids_are_derived_from_watch_bulk_sequence_and_type() -> None:
    _, events = run(watch((11,)), seen(bulk(11, "waiting")), seen(bulk(11, "working")))
    expected = event_id("wch_000000000000000000000001", 11, 1, "bulk.started")
    assert events[0].id == expected and expected.startswith("evt_")
    assert event_id("w", None, 1, "import.completed") != event_id("w", 1, 1, "import.completed")


def test_diff_does_not_change_its_inputs() -> None:
    spec = watch((11,))
    before, _ = run(spec, seen(bulk(11, "waiting")))
    assert before is not None
    frozen = msgspec.msgpack.encode(before)
    diff(spec, before, seen(bulk(11, "finished")), T0 + 5)
    assert msgspec.msgpack.encode(before) == frozen


def test_every_event_names_the_club_import_and_watch_and_a_timestamp() -> None:
    spec = watch((11,))
    result: Diff = diff(spec, None, seen(bulk(11, "finished")), T0)
    for event in result.events:
        assert event.data.loyalty_club_slug == spec.loyalty_club_slug
        assert event.data.import_id == spec.import_id
        assert event.data.watch_id == spec.id
        assert event.timestamp == iso_timestamp(T0) == "2027-01-15T08:00:00.000Z"
