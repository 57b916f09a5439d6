"""A rehearsal stream of engagement: plausible events from each creator's followers at
benchmark rates, reproducible from a seed, in the same shape as every other source.

Per video: views from the creator's followers, engagement 5-10% of views (mostly likes, some
comments and shares), link clicks 0.5-1.5% of views, 2-5% of clicks signing up. `scale`
simulates that share of the audience one person at a time (a million likes are not useful
rows for a rehearsal). A few comments ask how to help, a few DMs say STOP and START.
"""

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

COMMENTS = (
    "this is so important 🙌",
    "just registered!!",
    "wait you can register online?",
    "love this",
    "my first time voting 🗳️",
    "sending this to my roommates",
    "how can I help?",
    "I want to volunteer",
    "sign me up",
    "what's the deadline again",
    "🔥🔥🔥",
    "ok but which county office",
)
DMS = ("hi! how do I help?", "can I volunteer on weekends?", "STOP", "START", "thanks for this")
GIVEN = ("Ana", "Jamal", "Priya", "Luis", "Mei", "Tyler", "Aisha", "Noah", "Sofia", "Dev")
FAMILY = ("Diaz", "Brooks", "Patel", "Garcia", "Chen", "Nguyen", "Okafor", "Rossi", "Kim")


@dataclass(frozen=True)
class SimCreator:
    handle: str
    followers: int
    source_code: str


def simulate(
    slug: str,
    creators: Sequence[SimCreator],
    *,
    start: datetime,
    days: int,
    seed: int,
    videos_per_creator: int = 3,
    scale: float = 0.01,
) -> Iterator[dict[str, Any]]:
    """Events in time order per video; ids are stable for a seed, so a re-run is a redelivery."""
    rng = random.Random(seed)
    for creator in creators:
        for n in range(videos_per_creator):
            posted = start + timedelta(days=rng.uniform(0, max(days - 1, 0.01)))
            video = f"sim-{slug}-{creator.handle}-{n + 1}"
            yield from _video_events(rng, slug, creator, video, posted, start, days, scale)


def _video_events(
    rng: random.Random,
    slug: str,
    creator: SimCreator,
    video: str,
    posted: datetime,
    start: datetime,
    days: int,
    scale: float,
) -> Iterator[dict[str, Any]]:
    views = creator.followers * rng.uniform(0.2, 1.5) * scale
    engaged = views * rng.uniform(0.05, 0.10)
    counts = {
        "like": engaged * 0.85,
        "comment": engaged * 0.06,
        "share": engaged * 0.07,
        "follow": engaged * 0.02,
        "link_click": views * rng.uniform(0.005, 0.015),
    }
    end = start + timedelta(days=days)
    clicks = 0
    for kind, expected in counts.items():
        for i in range(_count(rng, expected)):
            at = posted + timedelta(hours=rng.expovariate(1 / 18))
            if at >= end:
                continue
            fan = f"fan{rng.randrange(10**7):07d}"
            event: dict[str, Any] = {
                "source": "tiktok" if kind != "link_click" else "rally",
                "external_id": f"{video}-{kind}-{i}",
                "type": kind,
                "actor": fan if kind != "link_click" else None,
                "creator": creator.handle,
                "campaign": slug,
                "video": video,
                "time": at.isoformat(),
            }
            if kind == "comment":
                event["text"] = rng.choice(COMMENTS)
            yield event
            if kind == "link_click":
                clicks += 1
                if rng.random() < rng.uniform(0.02, 0.05):
                    yield _signup(rng, slug, creator, video, at, i)
            elif kind == "comment" and rng.random() < 0.03:
                yield _dm(rng, slug, creator, fan, at, f"{video}-dm-{i}")


def _count(rng: random.Random, expected: float) -> int:
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


def _dm(
    rng: random.Random, slug: str, creator: SimCreator, fan: str, at: datetime, key: str
) -> dict[str, Any]:
    return {
        "source": "tiktok",
        "external_id": key,
        "type": "dm",
        "actor": fan,
        "creator": creator.handle,
        "campaign": slug,
        "text": rng.choice(DMS),
        "time": (at + timedelta(minutes=rng.uniform(1, 120))).isoformat(),
    }


def _signup(
    rng: random.Random, slug: str, creator: SimCreator, video: str, at: datetime, i: int
) -> dict[str, Any]:
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    number = rng.randrange(10**6)
    return {
        "source": "web",
        "external_id": f"{video}-signup-{i}",
        "type": "signup",
        "creator": creator.handle,
        "campaign": slug,
        "time": (at + timedelta(minutes=rng.uniform(1, 30))).isoformat(),
        "contact": {
            "name": f"{given} {family}",
            "email": f"{given.lower()}.{family.lower()}.{number}@example.org",
            "phone": f"+1215{rng.randrange(10**7):07d}" if rng.random() < 0.6 else None,
            "zip": f"19{rng.randrange(100, 200):03d}",
            "source_code": creator.source_code,
            "consent": {"email": rng.random() < 0.85, "sms": rng.random() < 0.45},
        },
    }
