"""`rally serve` starts a recurring flow's run only when it has work: each check says yes
exactly when its flow would do something."""

from datetime import timedelta

from store.types import utcnow
from tasks.due import has_work
from tasks.mail import deliver_email
from tests.conftest import SLUG
from tests.helpers import generate, make_leads

JOBS = ("deliver", "sync-leads", "follow-up-rules", "review-deadlines", "brief-reminders")


def test_nothing_to_do_on_a_quiet_store_then_each_job_has_work(settings, engine, applied):
    now = utcnow()
    assert not any(has_work(job, engine, now) for job in JOBS)
    assert has_work("retention-purge", engine, now)  # jobs without a check always run

    generate(settings, engine, SLUG, send=True, now=now)  # emails queued, reminders set
    now = utcnow()
    assert has_work("deliver", engine, now) and not has_work("sync-leads", engine, now)
    assert deliver_email(engine, settings, now=utcnow).sent == 50  # sent briefs set reminders
    now = utcnow()
    assert not has_work("deliver", engine, now) and not has_work("brief-reminders", engine, now)
    assert has_work("brief-reminders", engine, now + timedelta(days=30))

    make_leads(engine, SLUG, 3)
    assert has_work("sync-leads", engine, utcnow())
