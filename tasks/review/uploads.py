"""Videos creators upload with a draft: checked to be a common video type (by their first bytes,
not the name or type the browser gave), bounded in size (RALLY_MAX_UPLOAD_MB), stored under
RALLY_HOME/uploads/<campaign slug>/<sha256>.<ext>, or in an S3-compatible bucket when
RALLY_S3_BUCKET is set (a name Rally makes, never one the sender chose), and served only to
those who may see the draft:

- its creator, with their brief link (`tasks.briefs.portal.creator_video_url`);
- the campaign's approvers and staff, signed in: `upload_url(draft)` (the review room's).

Both addresses carry the file's hash, so they cannot be guessed either.
"""

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydantic import Field
from sqlmodel import Session, col, select

from config.errors import RallyError
from config.settings import RallySettings, Settings
from integrations.errors import IntegrationError
from integrations.s3 import Bucket, BucketSettings
from store.audit import Change, record
from store.models import Campaign, Creative, CreativeDraft
from tasks.campaigns.campaign import on_team

VIDEO_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}
NAME = re.compile(r"[0-9a-f]{64}\.(?:mp4|mov|webm)")
CHUNK = 1024 * 1024
FORM_ROOM = 64 * 1024  # room in a draft's form for its text fields, beside the video
log = logging.getLogger(__name__)


class UploadSettings(RallySettings):
    max_upload_mb: int = Field(
        200, ge=1, le=4096, description="Largest video a creator may upload with a draft, in MB"
    )


class UploadRefused(RallyError):
    """An upload Rally will not keep; the message names the form's field, `status` is the
    HTTP answer (413 too large, 415 not a video)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StoredVideo:
    name: str  # <sha256>.<ext>
    size: int
    new: bool  # no draft had sent this very file before


def too_large(limit_mb: int) -> str:
    return f"video: a file of at most {limit_mb} MB, please (this one is larger)"


NOT_A_VIDEO = (
    "video: an MP4, MOV (QuickTime) or WebM video file, please (this file is not one of those)"
)


NOT_STORED = (
    "video: the file could not be stored just now; please send the draft again in a few "
    "minutes (nothing was sent)"
)


def sniff(head: bytes) -> str | None:
    """The extension of a video by its first bytes: MP4 and QuickTime share the ISO box
    layout (`ftyp`, QuickTime's brand `qt  `), WebM is EBML. None for anything else."""
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # old QuickTime files
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    return None


class FolderShelf:
    """Uploads kept on this machine: RALLY_HOME/uploads/<campaign slug>/<name>."""

    bucket = None

    def __init__(self, home: Path) -> None:
        self.home = home

    def folder(self, slug: str) -> Path:
        return self.home / "uploads" / slug

    def incoming(self, slug: str) -> Path:
        """Where an upload is written while it is checked: beside its final place, so keeping
        it is a rename."""
        return self.folder(slug)

    def keep(self, slug: str, incoming: Path, name: str) -> bool:
        """Move the checked file in place; whether no earlier draft had sent this file."""
        target = self.folder(slug) / name
        new = not target.exists()
        os.replace(incoming, target)  # the same video twice is one file
        return new

    def size(self, slug: str, name: str) -> int | None:
        path = self.folder(slug) / name
        return path.stat().st_size if path.is_file() else None

    def forget(self, slug: str, name: str) -> None:
        (self.folder(slug) / name).unlink(missing_ok=True)

    def place(self, slug: str, name: str) -> Path | str | None:
        """The file to stream, if it is there."""
        path = self.folder(slug) / name
        return path if path.is_file() else None


class BucketShelf:
    """Uploads kept in an S3-compatible bucket (`RALLY_S3_BUCKET`), as uploads/<slug>/<name>;
    pages play them from a presigned link, so video bytes never pass through Rally."""

    def __init__(self, bucket: Bucket, home: Path) -> None:
        self.bucket, self.home = bucket, home

    def incoming(self, slug: str) -> Path:
        return self.home / "uploads" / ".incoming"

    def keep(self, slug: str, incoming: Path, name: str) -> bool:
        key = f"uploads/{slug}/{name}"
        new = self.bucket.size(key) is None
        if new:
            sha256_hex = name.split(".", 1)[0]
            self.bucket.put(key, incoming, sha256_hex=sha256_hex, content_type=media_type(name))
        return new  # `store_video` removes the local copy either way

    def size(self, slug: str, name: str) -> int | None:
        return self.bucket.size(f"uploads/{slug}/{name}")

    def forget(self, slug: str, name: str) -> None:
        self.bucket.delete(f"uploads/{slug}/{name}")

    def place(self, slug: str, name: str) -> Path | str | None:
        """A link to the object, valid for RALLY_S3_LINK_MINUTES (no call to the bucket)."""
        return self.bucket.link(f"uploads/{slug}/{name}", content_type=media_type(name))


Shelf = FolderShelf | BucketShelf


def video_shelf(settings: Settings) -> Shelf:
    """Where this installation keeps uploaded videos: the bucket when one is configured."""
    bucket = settings.section(BucketSettings)
    if bucket.s3_bucket:
        return BucketShelf(Bucket(bucket), settings.home)
    return FolderShelf(settings.home)


def store_video(shelf: Shelf, slug: str, source: BinaryIO, *, limit_mb: int) -> StoredVideo:
    """Check an uploaded file, name it by its hash and keep it on `shelf`; `UploadRefused` if
    it is not a video of a known type, larger than `limit_mb`, or the bucket cannot take it
    now. The file is first copied to local disk, hashed and measured on the way."""
    head = source.read(64)
    kind = sniff(head)
    if kind is None:
        raise UploadRefused(NOT_A_VIDEO, 415)
    incoming_folder = shelf.incoming(slug)
    incoming_folder.mkdir(parents=True, exist_ok=True)
    digest, size, limit = hashlib.sha256(head), len(head), limit_mb * 1024 * 1024
    handle, temporary = tempfile.mkstemp(dir=incoming_folder, prefix=".incoming-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(head)
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise UploadRefused(too_large(limit_mb), 413)
                digest.update(chunk)
                out.write(chunk)
        name = f"{digest.hexdigest()}.{kind}"
        new = shelf.keep(slug, Path(temporary), name)
    except IntegrationError as exc:
        log.warning("an uploaded video could not be stored: %s", exc)
        raise UploadRefused(NOT_STORED, 503) from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    return StoredVideo(name, size, new)


def forget_video(shelf: Shelf, slug: str, video: StoredVideo) -> None:
    """Remove a video stored for a draft that was then refused, unless an earlier draft has
    the same file."""
    if video.new:
        try:
            shelf.forget(slug, video.name)
        except IntegrationError as exc:  # the draft's refusal matters more than the leftover
            log.warning("a refused draft's video stays in the bucket: %s", exc)


def attach_video(
    session: Session, *, creative_id: int, version: int, video: StoredVideo, actor: str
) -> None:
    """Record the uploaded video as part of this version of the creative (and in the audit
    log, for the chain of custody)."""
    draft = session.exec(
        select(CreativeDraft).where(
            CreativeDraft.creative_id == creative_id, CreativeDraft.version == version
        )
    ).one()
    draft.video_file = video.name
    session.add(draft)
    summary = f"video uploaded with creative {creative_id} v{version} ({video.size} bytes)"
    details = {"version": version, "file": video.name, "bytes": video.size}
    record(
        session,
        [Change(actor, "creative.video_uploaded", "creative", creative_id, summary, details)],
    )


def keep_previous_video(
    session: Session, shelf: Shelf, *, creative_id: int, version: int, actor: str
) -> None:
    """Carry the video file of the version before `version` over to it (a fix to the caption
    alone needs no new upload)."""
    previous = session.exec(
        select(CreativeDraft.video_file, Campaign.slug)
        .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
        .join(Campaign, col(Campaign.id) == col(Creative.campaign_id))
        .where(CreativeDraft.creative_id == creative_id, CreativeDraft.version == version - 1)
    ).first()
    name, slug = (previous[0] or "", previous[1]) if previous else ("", "")
    size = shelf.size(slug, name) if NAME.fullmatch(name) else None
    if size is not None:
        video = StoredVideo(name, size, new=False)
        attach_video(session, creative_id=creative_id, version=version, video=video, actor=actor)


def video_place(shelf: Shelf, slug: str, name: str) -> Path | str | None:
    """Where the stored video named `name` is (a file, or a link to the bucket), if the name
    is one Rally makes."""
    return shelf.place(slug, name) if NAME.fullmatch(name) else None


def media_type(name: str) -> str:
    return VIDEO_TYPES[name.rsplit(".", 1)[1]]


# --- who may see a video ---------------------------------------------------------------------


def upload_url(draft: CreativeDraft) -> str | None:
    """Where the campaign's approvers and staff, signed in, watch the video uploaded with
    `draft` (None if it has none): `/review/videos/<draft id>/<sha256>.<ext>`."""
    if not draft.video_file:
        return None
    return f"/review/videos/{draft.id}/{draft.video_file}"


def video_for_approver(
    session: Session, *, draft_id: int, name: str, email: str
) -> tuple[str, str] | None:
    """(campaign slug, file name) of the video uploaded with this draft, if it is `name` and
    `email` is one of its campaign's approvers or staff; None otherwise."""
    row = session.exec(
        select(CreativeDraft.video_file, Campaign)
        .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
        .join(Campaign, col(Campaign.id) == col(Creative.campaign_id))
        .where(CreativeDraft.id == draft_id)
    ).first()
    if row is None or row[0] != name or not on_team(row[1], email):
        return None
    return row[1].slug, name


def member_has_video(session: Session, member_id: int, name: str) -> bool:
    """Whether `name` was uploaded with a draft of this roster member's creatives."""
    found = session.exec(
        select(CreativeDraft.id)
        .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
        .where(Creative.member_id == member_id, CreativeDraft.video_file == name)
        .limit(1)
    ).first()
    return found is not None
