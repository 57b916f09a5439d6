"""A caption's versions compared word by word, and comment times as people type them."""

import pytest

from tasks.review.comments import CommentRefused, clock_time, parse_time
from tasks.review.compare import word_diff


def test_added_and_removed_words_are_marked_and_the_rest_kept_as_written():
    old = "#ad Paid for by Keystone.\nRegister now! #FirstVotePA"
    new = "#ad Paid for by Keystone.\nRegister today! Code MAYA #FirstVotePA"
    assert word_diff(old, new) == [
        ("same", "#ad Paid for by Keystone.\nRegister "),
        ("removed", "now! "),
        ("added", "today! Code MAYA "),
        ("same", "#FirstVotePA"),
    ]
    # Reading only what stays and what was added gives the new caption back.
    assert "".join(text for op, text in word_diff(old, new) if op != "removed") == new


def test_spacing_alone_is_no_change_and_an_empty_caption_is_all_added():
    assert [op for op, _ in word_diff("one  two", "one two")] == ["same"]
    assert word_diff("", "Register now") == [("added", "Register now")]


@pytest.mark.parametrize(
    ("typed", "seconds"), [("", None), ("0:00", 0), ("0:12", 12), ("1:05", 65), (" 12:59 ", 779)]
)
def test_times_in_minutes_and_seconds(typed, seconds):
    assert parse_time(typed, duration=None) == seconds


@pytest.mark.parametrize("typed", ["12", "1:5", "0:60", "1:2:3", "-0:10", "123:00", "0:1O"])
def test_other_times_are_refused_naming_the_field(typed):
    with pytest.raises(CommentRefused, match=r"^Time: ") as refused:
        parse_time(typed, duration=None)
    assert refused.value.field == "time"


def test_a_time_is_within_the_video():
    assert parse_time("0:22", duration=22.4) == 22
    with pytest.raises(CommentRefused, match=r"past the end of the video \(0:22\)"):
        parse_time("0:23", duration=22.4)
    assert clock_time(3600) == "60:00"
