"""The creator's brief page's plain words: the brief folded into sections, how a version's
caption starts and what it changed, the deliverables in a sentence, times in the campaign's
zone, and which uploads are videos."""

from datetime import UTC, datetime

from tasks.briefs.portal import brief_sections, caption_change, caption_start, local_time, tracker
from tasks.review.uploads import NAME, sniff

BRIEF = (
    '<article class="brief">\n<h1>Vote: your brief</h1>\n<p>Hi Maya.</p>\n'
    "<h2>Objective</h2>\n<p>Register voters.</p>\n"
    "<h2>Hashtags</h2>\n<p>#Vote</p>\n"
    "<h2>Disclosures (required)</h2>\n<ul><li>#ad</li></ul>\n</article>"
)


def test_a_brief_folds_at_its_sections_with_the_first_and_important_ones_open() -> None:
    prelude, sections = brief_sections(BRIEF)
    assert "<h1>Vote: your brief</h1>" in prelude and "<h2>" not in prelude
    assert [(s.title, s.open) for s in sections] == [
        ("Objective", True),
        ("Hashtags", False),
        ("Disclosures (required)", True),
    ]
    assert sections[2].body.strip() == "<ul><li>#ad</li></ul>"
    assert sections[2].anchor == "section-disclosures-required"


def test_a_brief_whose_sections_are_not_side_by_side_is_shown_whole() -> None:
    nested = "<article><div><h2>One</h2><p>a</p></div><h2>Two</h2><p>b</p></article>"
    assert brief_sections(nested) == (nested, [])
    assert brief_sections("<p>No sections at all.</p>") == ("<p>No sections at all.</p>", [])


def test_versions_are_told_apart_by_what_follows_the_disclosure_and_what_changed() -> None:
    disclosure = "#ad Paid for by Fund."
    assert caption_start("#ad  Paid for by Fund. Register now!", disclosure) == (
        "Register now!",
        True,
    )
    assert caption_start("Register now! #ad", disclosure) == ("Register now! #ad", False)
    long, _ = caption_start("x " * 200, "")
    assert len(long) == 90 and long.endswith("…")
    assert caption_change("Register now!", "Register now! Code MAYA") == "added “Code MAYA”"
    assert caption_change("Vote by text now", "Vote now") == "removed “by text”"
    assert caption_change("a b", "a b") == "the same caption"


def test_the_deliverables_in_a_sentence() -> None:
    made = [{"status": s} for s in ("posted", "approved", "in_review", "changes_requested")]
    said = tracker(made, 5)
    assert said["summary"] == "2 of 5 approved, 1 posted"
    assert said["details"] == "1 waiting for review, 1 with changes requested, 1 still to send"
    assert said["percent"] == 40
    assert tracker([], 3)["summary"] == "0 of 3 approved, 0 posted"


def test_times_are_the_campaigns() -> None:
    at = datetime(2027, 2, 3, 15, 5, tzinfo=UTC)
    assert local_time(at, "America/New_York") == "Wed, Feb 3 at 10:05 AM EST"
    assert local_time(at, "Europe/Berlin") == "Wed, Feb 3 at 4:05 PM CET"


def test_videos_are_known_by_their_first_bytes_and_names_are_rallys() -> None:
    assert sniff(b"\x00\x00\x00\x18ftypmp42") == "mp4"
    assert sniff(b"\x00\x00\x00\x14ftypqt  ") == "mov"
    assert sniff(b"\x1a\x45\xdf\xa3\x01\x00") == "webm"
    assert sniff(b"\x89PNG\r\n\x1a\n") is None and sniff(b"") is None
    assert NAME.fullmatch("a" * 64 + ".mp4")
    assert not NAME.fullmatch("../" + "a" * 61 + ".mp4") and not NAME.fullmatch("a" * 64 + ".exe")
