"""Scenarios: the demo's story, and only valid lifecycle steps from realistic and random_flips."""

from __future__ import annotations

import random
from collections import Counter

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_simulator import (
    BULK_STATUSES,
    MAX_RETRIES,
    TERMINAL_STATUSES,
    BulkStatus,
    DemoParams,
    RealisticParams,
    RunningSimulator,
    Simulator,
    SimulatorControl,
    is_valid_transition,
    next_transition,
    plan_demo,
    plan_realistic,
    start,
)
from mpc_simulator.scenarios import AddBulkStep, PatchBulkStep, Plan, apply_step

from .helpers import (
    IMPORT_ID,
    SLUG,
    assert_valid_lifecycles,
    bulk_path,
    flips_of,
    import_path,
    mpc_headers,
    wait_for,
)

DEMO_STORY: dict[str, list[str]] = {
    "A": ["waiting", "working", "finished"],
    "B": ["waiting", "working", "waiting_for_retry", "working", "finished"],
    "C": ["waiting", *["working", "waiting_for_retry"] * MAX_RETRIES, "working", "failed"],
    "D": ["waiting", "working", "finished"],
}


def replay(plan: Plan) -> Simulator:
    """Apply a plan's steps in order on a fresh simulator (instantly)."""
    sim = Simulator()
    for timed in plan.steps:
        apply_step(sim, timed.step)
    return sim


def check_demo_outcome(sim: Simulator, slug: str, import_id: str, ids: list[int]) -> None:
    seen = assert_valid_lifecycles(f for f in flips_of(sim) if f.import_id == import_id)
    for name, bulk_id in zip("ABCD", ids, strict=True):
        assert seen[(slug, import_id, bulk_id)] == DEMO_STORY[name], name
    a, b, c, d = (sim.get_bulk(slug, import_id, bulk_id) for bulk_id in ids)
    assert a is not None and b is not None and c is not None and d is not None
    # A: clean.
    assert a.members_created_number + a.members_updated_number == a.members_in_payload_number
    assert (a.members_with_validation_errors_number, a.members_errors, a.retries) == (0, {}, 0)
    # B: one retry, three members with validation errors, grouped as the story says.
    assert (b.retries, b.members_with_validation_errors_number, len(b.members_errors)) == (1, 3, 3)
    assert b.members_created_number + b.members_updated_number + 3 == b.members_in_payload_number
    kinds = Counter(
        (prop, detail["error"])
        for member in b.members_errors.values()
        for entry in member["properties"]
        for prop, details in entry["error"].items()
        for detail in details
    )
    assert kinds == {("language", "value_not_match"): 2, ("birth_date", "invalid_format"): 1}
    assert all("@" in key or key.startswith("+") for key in b.members_errors)
    # C: failed after 5 retries.
    assert (c.status, c.retries) == ("failed", MAX_RETRIES)
    # D: appeared later, nothing imported.
    assert (d.request_number, d.members_created_number, d.members_updated_number) == (4, 0, 0)
    assert d.members_with_validation_errors_number == d.members_in_payload_number == len(d.members_errors) > 0


def test_demo_plan_tells_the_story() -> None:
    plan = plan_demo(DemoParams(), random.Random(7), 500)
    assert 30.0 <= plan.duration_s <= 60.0
    [ref] = plan.imports
    assert ref.slug == "infinity-mall"
    assert ref.bulk_ids == [500, 501, 502, 503]
    check_demo_outcome(replay(plan), ref.slug, ref.import_id, ref.bulk_ids)
    # D is posted while the others run.
    [added] = [t for t in plan.steps if isinstance(t.step, AddBulkStep)]
    first_work = min(t.at_s for t in plan.steps if isinstance(t.step, PatchBulkStep))
    assert first_work < added.at_s < plan.duration_s


def test_demo_plan_is_reproducible() -> None:
    one = plan_demo(DemoParams(), random.Random(3), 1)
    two = plan_demo(DemoParams(), random.Random(3), 1)
    assert msgspec.json.encode(one) == msgspec.json.encode(two)
    other = plan_demo(DemoParams(), random.Random(4), 1)
    assert other.imports[0].import_id != one.imports[0].import_id


async def test_demo_runs_to_completion(server: RunningSimulator, control: SimulatorControl) -> None:
    status = await control.start_scenario("demo", time_scale=200, slug="my-club", import_id="demo-1")
    assert status.state == "running"
    assert status.imports[0].import_id == "demo-1"
    # The import exists as soon as the scenario started.
    assert len((await control.get_import("my-club", "demo-1")).bulks) == 3

    async def done() -> bool:
        return (await control.scenario(status.id)).state != "running"

    await wait_for(done, timeout_s=10)
    final = await control.scenario(status.id)
    assert (final.state, final.error, final.steps_done, final.steps_skipped) == (
        "finished",
        None,
        final.steps_total,
        0,
    )
    assert {f.source for f in (await control.flips()).items} == {"scenario"}
    check_demo_outcome(server.sim, "my-club", "demo-1", status.imports[0].bulk_ids)


async def test_start_with_demo() -> None:
    running = await start(demo={"slug": "demo-club"}, seed=1)
    try:
        assert running.demo is not None
        ref = running.demo.imports[0]
        async with httpx.AsyncClient(base_url=running.url, trust_env=False) as http:
            headers = mpc_headers(slug=ref.slug, token="sim-token")
            response = await http.get(import_path(ref.slug, ref.import_id), headers=headers)
            assert response.status_code == 200
            assert [b["id"] for b in response.json()["bulks"]] == ref.bulk_ids[:3]
    finally:
        await running.stop()


async def test_stopping_the_server_stops_scenarios() -> None:
    running = await start(demo=True)
    assert running.demo is not None
    await running.stop()
    assert running.scenarios.status(running.demo.id).state == "stopped"


# --- realistic ------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    imports=st.integers(1, 3),
    bulks=st.integers(1, 6),
    members=st.integers(1, 40),
    retry_p=st.floats(0, 1),
    fail_p=st.floats(0, 1),
    nothing_p=st.floats(0, 1),
    error_rate=st.floats(0, 1),
    gap_s=st.sampled_from([0.0, 5.0]),
    purge=st.none() | st.floats(0, 1000),
)
def test_realistic_plans_are_valid(
    seed: int,
    imports: int,
    bulks: int,
    members: int,
    retry_p: float,
    fail_p: float,
    nothing_p: float,
    error_rate: float,
    gap_s: float,
    purge: float | None,
) -> None:
    params = RealisticParams(
        imports=imports,
        bulks_per_import=bulks,
        slugs=["club-a", "club-b"],
        members_per_bulk=members,
        retry_p=retry_p,
        fail_p=fail_p,
        nothing_p=nothing_p,
        error_rate=error_rate,
        gap_s=gap_s,
        purge_errors_after_s=purge,
    )
    plan = plan_realistic(params, random.Random(seed), 1)
    assert [t.at_s for t in plan.steps] == sorted(t.at_s for t in plan.steps)
    assert len(plan.imports) == imports
    assert {ref.slug for ref in plan.imports} <= {"club-a", "club-b"}
    # One job queue per import: never two of its bulks working at once.
    working: dict[str, set[int]] = {}
    for timed in plan.steps:
        step = timed.step
        if isinstance(step, PatchBulkStep) and step.patch.status is not msgspec.UNSET:
            busy = working.setdefault(step.import_id, set())
            (busy.add if step.patch.status == "working" else busy.discard)(step.bulk_id)
            assert len(busy) <= 1
    sim = replay(plan)
    seen = assert_valid_lifecycles(flips_of(sim))
    assert len(seen) == imports * bulks
    for ref in plan.imports:
        detail = sim.get_import(ref.slug, ref.import_id)
        assert [b.id for b in detail.bulks] == ref.bulk_ids
        assert [b.request_number for b in detail.bulks] == list(range(1, bulks + 1))
        for bulk in detail.bulks:
            assert bulk.status in TERMINAL_STATUSES
            assert bulk.retries <= MAX_RETRIES
            if bulk.status == "failed":
                assert bulk.retries == MAX_RETRIES
            else:
                invalid = bulk.members_with_validation_errors_number
                assert bulk.members_created_number + bulk.members_updated_number + invalid == (
                    bulk.members_in_payload_number
                )
                assert len(bulk.members_errors) == (0 if purge is not None else invalid)


async def test_realistic_runs_live(server: RunningSimulator, control: SimulatorControl) -> None:
    status = await control.start_scenario(
        "realistic",
        imports=3,
        bulks_per_import=4,
        members_per_bulk=50,
        start_spread_s=20,
        wait_s=60,
        work_s=20,
        retry_p=0.3,
        fail_p=0.2,
        time_scale=2000,
        seed=11,
    )
    assert status.steps_total is not None

    async def done() -> bool:
        return (await control.scenario(status.id)).state != "running"

    await wait_for(done, timeout_s=15)
    final = await control.scenario(status.id)
    assert (final.state, final.steps_done) == ("finished", status.steps_total)
    seen = assert_valid_lifecycles((await control.flips()).items)
    assert len(seen) == 12
    assert {statuses[-1] for statuses in seen.values()} <= set(TERMINAL_STATUSES)


async def test_realistic_is_slow_at_time_scale_one(control: SimulatorControl) -> None:
    """Defaults follow MPC's pace: nothing works within the first moment."""
    status = await control.start_scenario("realistic", start_spread_s=0, seed=1)
    assert all(f.to == "waiting" for f in (await control.flips()).items)
    stopped = await control.stop_scenario(status.id)
    assert stopped.state == "stopped"


# --- random flips ---------------------------------------------------------------------------------


@given(
    status=st.sampled_from(BULK_STATUSES),
    retries=st.integers(0, MAX_RETRIES),
    seed=st.integers(0, 2**32),
    finish_p=st.floats(0, 1),
)
def test_next_transition_is_always_valid(
    status: BulkStatus, retries: int, seed: int, finish_p: float
) -> None:
    step = next_transition(status, retries, random.Random(seed), finish_p=finish_p)
    if status in TERMINAL_STATUSES:
        assert step is None
    else:
        assert step is not None
        assert is_valid_transition(status, retries, *step)


@pytest.mark.parametrize(
    ("before", "after", "valid"),
    [
        (("waiting", 0), ("working", 0), True),
        (("waiting", 0), ("finished", 0), False),
        (("working", 0), ("finished", 0), True),
        (("working", 2), ("waiting_for_retry", 3), True),
        (("working", 2), ("waiting_for_retry", 2), False),
        (("working", 5), ("waiting_for_retry", 6), False),
        (("working", 4), ("failed", 4), False),
        (("working", 5), ("failed", 5), True),
        (("waiting_for_retry", 3), ("working", 3), True),
        (("waiting_for_retry", 3), ("finished", 3), False),
        (("finished", 0), ("working", 0), False),
        (("failed", 5), ("waiting", 5), False),
    ],
)
def test_is_valid_transition(
    before: tuple[BulkStatus, int], after: tuple[BulkStatus, int], valid: bool
) -> None:
    assert is_valid_transition(*before, *after) is valid


async def test_random_flips_until_all_terminal(server: RunningSimulator, control: SimulatorControl) -> None:
    status = await control.start_scenario(
        "random_flips", imports=2, bulks_per_import=4, rate=500, finish_p=0.5, seed=5, slug="flip-club"
    )
    assert len(status.imports) == 2
    assert [len(ref.bulk_ids) for ref in status.imports] == [4, 4]

    async def done() -> bool:
        return (await control.scenario(status.id)).state != "running"

    await wait_for(done, timeout_s=10)
    final = await control.scenario(status.id)
    assert final.state == "finished"
    flips = (await control.flips()).items
    seen = assert_valid_lifecycles(flips)
    assert {statuses[-1] for statuses in seen.values()} <= set(TERMINAL_STATUSES)
    assert final.flips == sum(1 for f in flips if f.from_ is not None)
    assert all(f.source == "scenario" for f in flips)


async def test_random_flips_on_given_bulks(
    http: httpx.AsyncClient, server: RunningSimulator, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 1}, {"id": 2}, {"id": 3}])
    await control.patch_bulk(SLUG, IMPORT_ID, 2, status="working")
    await control.patch_bulk(SLUG, IMPORT_ID, 3, status="working")
    await control.patch_bulk(SLUG, IMPORT_ID, 3, status="finished")
    since = (await control.flips()).last_seq
    keys = [{"slug": SLUG, "import_id": IMPORT_ID, "bulk_id": bulk_id} for bulk_id in (1, 2, 3)]
    status = await control.start_scenario("random_flips", bulks=keys, rate=300, max_flips=6, finish_p=0.0)

    async def done() -> bool:
        return (await control.scenario(status.id)).state != "running"

    await wait_for(done, timeout_s=10)
    flips = (await control.flips(since=since)).items
    assert len(flips) == 6
    assert {f.bulk_id for f in flips} <= {1, 2}
    assert_valid_lifecycles(flips_of(server.sim))
    assert (await http.get(bulk_path(3), headers=mpc_headers())).json()["status"] == "finished"


async def test_random_flips_duration_and_stop(control: SimulatorControl) -> None:
    timed = await control.start_scenario("random_flips", rate=2, duration_s=0.2, bulks_per_import=50)
    endless = await control.start_scenario("random_flips", rate=1, bulks_per_import=50)

    async def timed_done() -> bool:
        return (await control.scenario(timed.id)).state == "finished"

    await wait_for(timed_done, timeout_s=5)
    assert (await control.scenario(endless.id)).state == "running"
    assert (await control.stop_scenario(endless.id)).state == "stopped"
    assert [s.state for s in await control.list_scenarios()] == ["finished", "stopped"]


async def test_random_flips_refill_grows_imports(control: SimulatorControl) -> None:
    status = await control.start_scenario(
        "random_flips", bulks_per_import=1, rate=500, finish_p=1.0, refill=True, max_flips=10
    )

    async def done() -> bool:
        return (await control.scenario(status.id)).state != "running"

    await wait_for(done, timeout_s=10)
    [detail] = await control.list_imports()
    assert len(detail.bulks) == 5  # each bulk: working, finished; then a new one
    assert [b.request_number for b in detail.bulks] == [1, 2, 3, 4, 5]
    assert_valid_lifecycles((await control.flips()).items)
