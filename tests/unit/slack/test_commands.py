"""The slash command's parser and the click payload's reader: pure, fed hostile input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.slack.commands import (
    ACTION_MUTE,
    ACTION_STOP,
    MAX_BULK_ID,
    MAX_BULK_IDS,
    MAX_PAYLOAD_DEPTH,
    MAX_TEXT_CHARS,
    Click,
    HelpCommand,
    ListCommand,
    Problem,
    StopCommand,
    WatchCommand,
    card_actions,
    done_line,
    help_text,
    nests_deeper_than,
    parse_click,
    parse_command,
)
from bridge.slack.render import CardControls, render_card
from tests.unit.slack.samples import WATCH

WID = "wch_" + "0123456789abcdef01234567"


def problem(text: str) -> Problem:
    parsed = parse_command(text)
    assert isinstance(parsed, Problem), parsed
    return parsed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", HelpCommand()),
        ("   ", HelpCommand()),
        ("help", HelpCommand()),
        ("HELP me", HelpCommand()),
        ("list", ListCommand()),
        (f"stop {WID}", StopCommand(watch_id=WID)),
        ("infinity-mall 89405ae3-2dd5", WatchCommand(club="infinity-mall", import_id="89405ae3-2dd5")),
        (
            "  infinity-mall\timp-1  11 12 ",
            WatchCommand(club="infinity-mall", import_id="imp-1", bulk_ids=(11, 12)),
        ),
        (f"c imp {MAX_BULK_ID}", WatchCommand(club="c", import_id="imp", bulk_ids=(MAX_BULK_ID,))),
    ],
)
def test_commands_are_read(text: str, expected: object) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("list everything", "usage"),
        ("stop", "usage"),
        ("stop wch_123", "malformed_watch_id"),
        (f"stop {WID.upper()}", "malformed_watch_id"),
        ("infinity-mall", "usage"),
        ("Infinity-Mall imp", "malformed_club"),
        ("-mall imp", "malformed_club"),
        ("c" * 65 + " imp", "malformed_club"),
        ("infinity-mall imp/1", "malformed_import_id"),
        ("infinity-mall " + "a" * 65, "malformed_import_id"),
        ("infinity-mall imp 0", "malformed_bulk_id"),
        ("infinity-mall imp -3", "malformed_bulk_id"),
        ("infinity-mall imp 1.5", "malformed_bulk_id"),
        ("infinity-mall imp NaN", "malformed_bulk_id"),
        ("infinity-mall imp inf", "malformed_bulk_id"),
        ("infinity-mall imp 1e3", "malformed_bulk_id"),
        ("infinity-mall imp ١٢", "malformed_bulk_id"),  # Arabic-Indic digits: int() would take them
        ("infinity-mall imp \uff11\uff12", "malformed_bulk_id"),  # full-width digits
        (f"infinity-mall imp {MAX_BULK_ID + 1}", "malformed_bulk_id"),
        ("infinity-mall imp " + "9" * 3000, "malformed_bulk_id"),
        ("infinity-mall imp 1_000", "malformed_bulk_id"),
        ("infinity-mall imp 7 7", "duplicate_bulk_id"),
        ("infinity-mall imp " + " ".join(str(i) for i in range(1, MAX_BULK_IDS + 2)), "too_many_bulks"),
        ("x" * (MAX_TEXT_CHARS + 1), "too_long"),
        ("\u0131nfinity-mall imp", "malformed_club"),  # dotless i
    ],
)
def test_wrong_commands_say_what_is_wrong(text: str, code: str) -> None:
    assert problem(text).code == code


def test_echoed_input_is_bounded_and_cannot_break_out_of_its_code_span() -> None:
    shown = problem("Evil`club\x00\x1b[31m imp").text
    assert "\x00" not in shown and "\x1b" not in shown and "Evil'club" in shown
    long = problem("infinity-mall imp " + "9" * 3000).text
    assert len(long) < 200 and "…" in long


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_command_or_a_problem_never_an_exception(text: str) -> None:
    parsed = parse_command(text)
    assert isinstance(parsed, WatchCommand | ListCommand | StopCommand | HelpCommand | Problem)
    if isinstance(parsed, WatchCommand) and parsed.bulk_ids is not None:
        assert all(1 <= b <= MAX_BULK_ID for b in parsed.bulk_ids)
        assert len(set(parsed.bulk_ids)) == len(parsed.bulk_ids)


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9-]{1,30}", fullmatch=True),
    st.lists(st.integers(1, MAX_BULK_ID), unique=True, max_size=20),
)
def test_a_valid_watch_command_reads_back_exactly(club: str, import_id: str, bulks: list[int]) -> None:
    text = " ".join([club, import_id, *map(str, bulks)])
    parsed = parse_command(text)
    if club.lower() in ("help", "list", "stop"):
        return
    assert parsed == WatchCommand(club=club, import_id=import_id, bulk_ids=tuple(bulks) or None)


def test_help_names_every_form_of_the_command() -> None:
    text = help_text("/watch-imports")
    for form in ("<club> <import id>", "list", "stop <watch id>"):
        assert f"/watch-imports {form}" in text


# ---------------------------------------------------------------------------- clicks


def payload(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "type": "block_actions",
        "user": {"id": "U0PERSON", "username": "person"},
        "channel": {"id": "C0CHAN"},
        "response_url": "https://hooks.slack.com/actions/T0/1/x",
        "actions": [{"action_id": ACTION_STOP, "value": WID, "type": "button"}],
        "message": {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "card"}}]},
    }
    body.update(overrides)
    return body


def test_a_click_is_read() -> None:
    click = parse_click(json.dumps(payload()))
    assert click == Click(
        action="stop",
        watch_id=WID,
        user="U0PERSON",
        channel="C0CHAN",
        response_url="https://hooks.slack.com/actions/T0/1/x",
    )
    assert parse_click(json.dumps(payload(actions=[{"action_id": ACTION_MUTE, "value": WID}]))) == Click(
        action="mute",
        watch_id=WID,
        user="U0PERSON",
        channel="C0CHAN",
        response_url=payload()["response_url"],  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not json"),
        pytest.param(b"\xff\xfe{}", id="not utf-8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep arrays"),
        pytest.param(b'{"type":"block_actions","x":' + b"[" * 40 + b"]" * 40 + b"}", id="deep unknown field"),
        pytest.param(b"{" + b'"a":{' * 5000 + b"}" * 5001, id="deep objects"),
        pytest.param(b'{"type":"block_actions","actions":[]}', id="no action"),
        pytest.param(json.dumps(payload(type="view_submission")).encode(), id="not a click"),
        pytest.param(json.dumps(payload(type=["block_actions"])).encode(), id="type not a string"),
        pytest.param(
            json.dumps(payload(actions=[{"action_id": "other", "value": WID}])).encode(), id="unknown"
        ),
        pytest.param(
            json.dumps(payload(actions=[{"action_id": ACTION_STOP, "value": "wch_x"}])).encode(), id="bad id"
        ),
        pytest.param(
            json.dumps(payload(actions=[{"action_id": ACTION_STOP, "value": 12}])).encode(), id="id number"
        ),
        pytest.param(json.dumps(payload(user={"id": "u0 lower"})).encode(), id="bad user"),
        pytest.param(json.dumps(payload(channel={"id": ""})).encode(), id="no channel"),
        pytest.param(json.dumps(payload(response_url="h" * 5000)).encode(), id="long url"),
        pytest.param(
            json.dumps(payload(actions=[{"action_id": ACTION_STOP, "value": WID}] * 2)).encode(), id="two"
        ),
        pytest.param(b'{"type": "block_actions", "user": {"id": 1e999999}}', id="huge number"),
        pytest.param(b"x" * 70_000, id="too large"),
        pytest.param('{"type":"block_actions","user":{"id":"\ud800"}}', id="lone surrogate"),
    ],
)
def test_anything_but_a_click_is_a_problem(raw: bytes | str) -> None:
    assert isinstance(parse_click(raw), Problem)


def test_nesting_is_measured_outside_strings_only() -> None:
    assert not nests_deeper_than(b'{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"["}', 2)
    assert nests_deeper_than(b"[" * (MAX_PAYLOAD_DEPTH + 1), MAX_PAYLOAD_DEPTH)
    assert not nests_deeper_than(b"[" * MAX_PAYLOAD_DEPTH, MAX_PAYLOAD_DEPTH)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=200))
def test_any_payload_is_a_click_or_a_problem(raw: bytes | str) -> None:
    assert isinstance(parse_click(raw), Click | Problem)


# ---------------------------------------------------------------------------- the card's buttons


def test_an_active_card_with_controls_ends_with_its_three_buttons() -> None:
    watch = WATCH
    plain = render_card(watch, None, "active")
    with_buttons = render_card(watch, None, "active", CardControls())
    assert [b["type"] for b in plain.message.blocks][-1] == "context"
    actions = with_buttons.message.blocks[-1]
    assert actions["type"] == "actions"
    assert [e["text"]["text"] for e in actions["elements"]] == [
        "Stop watching",
        "Refresh now",
        "Mute progress",
    ]
    assert with_buttons.digest != plain.digest
    muted = render_card(watch, None, "active", CardControls(muted=True))
    assert muted.message.blocks[-1]["elements"][2]["text"]["text"] == "Unmute progress"
    assert "progress replies muted" in json.dumps(muted.message.blocks, ensure_ascii=False)
    assert render_card(watch, None, "stopped", CardControls()).message.blocks[-1]["type"] == "context"


def test_buttons_carry_the_watch_id_and_stop_asks_first() -> None:
    block = card_actions(WID, muted=False).to_dict()
    assert {e["value"] for e in block["elements"]} == {WID}
    assert "confirm" in block["elements"][0] and "confirm" not in block["elements"][1]


def test_the_thread_line_names_the_person() -> None:
    assert done_line("stop", "U0PERSON") == "⏹️ Stopped by <@U0PERSON>"
