"""Slack's limits: lengths, cutting, escaping and packing lines into sections."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.slack.format import ELLIPSIS, code, escape, fit, pack_lines, plural, slack_len, unescape


def more(n: int) -> str:
    return f"+{n} more"


def test_lengths_are_counted_in_utf16_units() -> None:
    assert slack_len("abc") == 3
    assert slack_len("✅") == 1  # U+2705
    assert slack_len("🔁") == 2  # outside the BMP: a surrogate pair
    assert slack_len("⚙️") == 2  # gear + variation selector


def test_fit_keeps_text_at_the_limit_and_cuts_one_past_it() -> None:
    assert fit("x" * 150, 150) == "x" * 150
    cut = fit("x" * 151, 150)
    assert cut.endswith(ELLIPSIS) and slack_len(cut) == 150


def test_fit_never_splits_a_surrogate_pair() -> None:
    cut = fit("🔁" * 100, 151)
    assert slack_len(cut) <= 151 and cut.endswith(ELLIPSIS)
    assert cut[:-1] == "🔁" * 75


def test_escape_neutralises_mentions_and_links_and_round_trips() -> None:
    text = "<!channel> & <https://x|y>"
    assert escape(text) == "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
    assert unescape(escape(text)) == text


def test_code_spans_cannot_be_broken_out_of() -> None:
    assert code("a`b\nc") == "`a'b c`"
    assert code("") == "`-`"
    assert slack_len(code("x" * 500, 50)) == 52


def test_plural() -> None:
    assert (plural(1, "bulk"), plural(1000, "bulk"), plural(2, "entry", "entries")) == (
        "1 bulk",
        "1,000 bulks",
        "2 entries",
    )


def test_lines_exactly_filling_a_section_stay_in_one() -> None:
    lines = ["x" * 999, "y" * 999, "z" * 1000]  # 2998 + two newlines = 3000
    assert pack_lines(lines, max_chars=3000, max_chunks=3, more=more) == ["\n".join(lines)]


def test_one_character_more_opens_the_next_section() -> None:
    lines = ["x" * 999, "y" * 999, "z" * 1001]
    assert pack_lines(lines, max_chars=3000, max_chunks=3, more=more) == [
        "\n".join(lines[:2]),
        lines[2],
    ]


def test_when_sections_run_out_the_rest_is_counted_in_the_last_one() -> None:
    lines = [f"line {i:02d} " + "x" * 90 for i in range(100)]
    chunks = pack_lines(lines, max_chars=1000, max_chunks=2, more=more, heading="*Bulks*")
    assert len(chunks) == 2 and chunks[0].startswith("*Bulks*\n")
    shown = [line for chunk in chunks for line in chunk.split("\n") if line.startswith("line")]
    assert shown == lines[: len(shown)]
    assert chunks[-1].endswith(f"+{100 - len(shown)} more")
    assert all(slack_len(chunk) <= 1000 for chunk in chunks)


def test_a_line_longer_than_a_section_is_cut() -> None:
    (chunk,) = pack_lines(["x" * 5000], max_chars=3000, max_chunks=1, more=more)
    assert slack_len(chunk) == 3000 and chunk.endswith(ELLIPSIS)


def test_max_chunks_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chunks"):
        pack_lines(["x"], max_chunks=0, more=more)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(max_size=400), max_size=80),
    st.integers(min_value=40, max_value=3000),
    st.integers(min_value=1, max_value=5),
    st.text(max_size=30),
)
def test_packing_respects_every_limit_and_accounts_for_every_line(
    lines: list[str], max_chars: int, max_chunks: int, heading: str
) -> None:
    chunks = pack_lines(lines, max_chars=max_chars, max_chunks=max_chunks, more=more, heading=heading)
    assert len(chunks) <= max_chunks
    assert all(slack_len(chunk) <= max_chars for chunk in chunks)
    joined = "\n".join(chunks)
    if joined.endswith(" more") and joined.rsplit("\n", 1)[-1].startswith("+"):
        counted = int(joined.rsplit("\n", 1)[-1][1:].split()[0])
        assert 0 < counted <= len(lines)
    elif lines and not heading:
        # Nothing counted: every line is there, in order (cut to a section at most).
        assert joined == "\n".join(fit(line, max_chars) for line in lines)
