"""The pure decisions behind follow-ups: which messages say STOP or START, when quiet hours end,
and rules files whose mistakes are named by field."""

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from config.campaign_file import CampaignFileError
from config.followups import QuietHours, parse_followups
from store.models import ConsentStatus
from tasks.engagement.consent import asks_for_help, command, confirms
from tasks.engagement.rules import quiet_until

NEW_YORK = ZoneInfo("America/New_York")
NIGHT = QuietHours(start=time(21), end=time(8))

STOPS = [
    "STOP",
    "stop",
    "stop.",
    "Stop!!",
    "  STOP  ",
    "please stop",
    "STOP ALL",
    "STOPALL",  # a carrier keyword
    "unsubscribe",
    "Unsubscribe me",
    "Stop messaging me",
    "stop texting me now",
    "Stop DMing me",
    "stop sending me messages",
    "opt out",
    "OPTOUT",
    "cancel",
    "quit",
    "end",
    "REVOKE",  # one of the words the FCC's opt-out rule names
    "remove me from this list",
    "leave me alone",
    "no more messages",
    "\uff33\uff34\uff2f\uff30",  # STOP in full-width letters, as some keyboards type it
    "stop it",
    "STOP STOP",
    "Stop, stop!",
    "Stop, please",  # a courtesy after a comma or full stop, as people write
    "Unsubscribe, thanks",
    "Stop. Thanks",
    "Stop texting me, thanks",
    "stop pls",
    "unsub",
    "no more texts",
]
STARTS = ["START", "start", "Start please", "unstop", "resubscribe", "opt in", "opt-in"]
NEITHER = [
    None,
    "",
    "don't stop posting!",
    "I can't stop watching this",
    "stop by our table on Friday",
    "start registering today",
    "How do I start volunteering?",
    "Love this video",
    "stop " * 30,
]


@pytest.mark.parametrize("text", STOPS)
def test_stop_and_its_variants_opt_out(text):
    assert command(text) == ConsentStatus.REVOKED


@pytest.mark.parametrize("text", STARTS)
def test_start_and_its_variants_opt_back_in(text):
    assert command(text) == ConsentStatus.GRANTED


@pytest.mark.parametrize("text", NEITHER)
def test_a_message_that_only_mentions_stop_or_start_changes_nothing(text):
    assert command(text) is None


YESES = ["YES", "yes", "Yes!", " y ", "Yes please", "yes, thanks", "CONFIRM", "\uff39\uff25\uff33"]
NOT_YES = [None, "", "yes I'll be there", "yesterday", "yes? what is this", "no", "yes " * 30]


@pytest.mark.parametrize("text", YESES)
def test_yes_by_text_confirms(text):
    assert confirms(text, "sms") and command(text) is None


@pytest.mark.parametrize("text", NOT_YES)
def test_a_text_that_only_says_yes_in_passing_confirms_nothing(text):
    assert not confirms(text, "sms")


@pytest.mark.parametrize("channel", ["email", "dm", "reply", None])
def test_yes_confirms_only_by_text(channel):
    assert not confirms("YES", channel)


@pytest.mark.parametrize(
    ("text", "channel", "asks"),
    [
        ("HELP", "sms", True),
        ("help?", "sms", True),
        ("Info", "sms", True),
        ("help me register", "sms", False),
        ("HELP", "dm", False),
        (None, "sms", False),
    ],
)
def test_help_by_text_asks_for_help(text, channel, asks):
    assert asks_for_help(text, channel) is asks


def new_york(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, 2, day, hour, minute, tzinfo=NEW_YORK)


@pytest.mark.parametrize(
    ("local", "until"),
    [
        (new_york(3, 20, 59), new_york(3, 20, 59)),  # before quiet hours
        (new_york(3, 21), new_york(4, 8)),  # they start
        (new_york(3, 23), new_york(4, 8)),  # late evening: next morning
        (new_york(4, 0, 30), new_york(4, 8)),  # after midnight: this morning
        (new_york(4, 7, 59), new_york(4, 8)),
        (new_york(4, 8), new_york(4, 8)),  # they end
        (new_york(4, 12), new_york(4, 12)),
    ],
)
def test_quiet_hours_across_midnight_hold_a_message_until_they_end(local, until):
    moment = local.astimezone(UTC)
    held = quiet_until(moment, NIGHT, NEW_YORK)
    assert held == until
    assert held.tzinfo == UTC  # in the zone it was given


def test_quiet_hours_within_a_day_hold_only_inside_them():
    lunch = QuietHours(start=time(12), end=time(13))
    assert quiet_until(new_york(3, 11, 59), lunch, NEW_YORK) == new_york(3, 11, 59)
    assert quiet_until(new_york(3, 12, 30), lunch, NEW_YORK) == new_york(3, 13)
    assert quiet_until(new_york(3, 13), lunch, NEW_YORK) == new_york(3, 13)


def test_no_quiet_hours_hold_nothing():
    late = new_york(3, 23)
    assert quiet_until(late, None, NEW_YORK) == late
    assert quiet_until(late, QuietHours(start=time(8), end=time(8)), NEW_YORK) == late


def test_quiet_hours_follow_the_zone_given():
    late_in_new_york = datetime(2027, 2, 4, 3, 0, tzinfo=UTC)  # 22:00 NY, 19:00 LA
    assert quiet_until(late_in_new_york, NIGHT, ZoneInfo("America/Los_Angeles")) == (
        late_in_new_york
    )
    assert quiet_until(late_in_new_york, NIGHT, NEW_YORK) == new_york(4, 8)


def rule(rule_id: str, **fields) -> dict:
    return {"id": rule_id, "when": {"types": ["comment"]}, "action": "tag", "tags": ["t"]} | fields


def problems(*rules: dict) -> list[tuple[str, str]]:
    with pytest.raises(CampaignFileError) as caught:
        parse_followups({"name": "Test", "rules": list(rules)}, file="rules.yaml")
    assert str(caught.value).startswith("rules.yaml: ")
    return caught.value.problems


def test_a_duplicate_rule_id_is_named_by_its_place():
    assert problems(rule("thanks"), rule("other"), rule("thanks")) == [
        ("rules[2].id", "duplicate id 'thanks'")
    ]


def test_a_pattern_that_is_not_a_regular_expression_is_named():
    bad = rule("asks", when={"types": ["comment"], "patterns": ["how can i help", "(unclosed"]})
    [(where, message)] = problems(rule("ok"), bad)
    assert where == "rules[1].when.patterns[1]"
    assert message.startswith("not a valid pattern")


def test_a_dm_rule_without_a_message_names_the_rule_and_the_message():
    [(where, message)] = problems(rule("ok"), rule("dm_them", action="dm", tags=[]))
    assert where.startswith("rules[1]") and "message" in f"{where} {message}"


def test_an_unknown_event_type_is_named():
    [(where, message)] = problems(rule("odd", when={"types": ["poke"]}))
    assert where == "rules[0].when.types[0]" and "poke" in message


def test_a_valid_file_compiles_with_a_stable_version():
    data = {"name": "Test", "rules": [rule("thanks")]}
    first = parse_followups(data, file="a.yaml")
    assert first.version == parse_followups(data, file="b.yaml").version
    assert first.rule("thanks") is not None and first.rule("nope") is None


def test_a_flag_that_holds_alone_but_not_among_the_others_is_named():
    """Rally joins a rule's patterns into one expression: a global flag must then fail here,
    not when the rules first run."""
    flagged = rule("asks", when={"types": ["comment"], "patterns": ["(?i)register"]})
    [(where, message)] = problems(flagged)
    assert where == "rules[0].when.patterns[0]" and "scope a flag as (?i:...)" in message


def test_a_message_that_is_no_template_is_named_when_the_file_is_read():
    """A broken text would stop every pass of the rules; it is refused by its rule and field
    (the subject too), and a good file's texts pass."""
    from briefs.environment import check_messages

    good = rule("hi", action="dm", tags=[], message="Thanks {{ actor.handle }}!")
    broken = rule("oops", action="email", tags=[], subject="Hi {{", message="{{ a | nofilter }}")
    check_messages(parse_followups({"name": "Test", "rules": [good]}, file="rules.yaml"))
    with pytest.raises(CampaignFileError) as caught:
        check_messages(parse_followups({"name": "Test", "rules": [good, broken]}, file="r.yaml"))
    assert [where for where, _ in caught.value.problems] == ["rules[1].subject", "rules[1].message"]
    assert all(m.startswith("not a valid template") for _, m in caught.value.problems)
