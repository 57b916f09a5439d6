"""The audit log: a hash chain that names the first entry edited, deleted or reordered."""

import threading

import pytest
from sqlalchemy import Engine, text

from store.audit import Change, export, record, verify
from store.db import transaction


def append(engine: Engine, count: int, actor: str = "staff:test") -> None:
    for i in range(count):
        with transaction(engine) as session:
            record(
                session,
                [
                    Change(
                        actor, "thing.updated", "thing", i, f"thing {i} changed", {"n": [i, i + 1]}
                    )
                ],
            )


def check(engine: Engine):
    with transaction(engine, write=False) as session:
        return verify(session)


def test_an_untouched_chain_verifies(engine: Engine) -> None:
    append(engine, 5)
    result = check(engine)
    assert result.ok and result.entries == 5


def test_an_empty_log_verifies(engine: Engine) -> None:
    assert check(engine).ok


def test_floats_huge_numbers_and_entries_hashed_the_older_way_verify(
    engine: Engine, monkeypatch
) -> None:
    """Some floats are written differently by orjson (`1.5e-7`) and `json` (`1.5e-07`):
    entries hashed with `json`, as all were before, verify beside newer ones, and an edit is
    still caught."""
    import store.audit

    odd = {"rate": 1e16, "share": 0.1, "id": 2**70}
    with transaction(engine) as session:  # an integer beyond 64 bits: the older way
        record(session, [Change("staff:test", "thing.updated", "thing", 1, "odd", odd)])
    monkeypatch.setattr(store.audit, "entry_hash", store.audit.legacy_hash)
    with transaction(engine) as session:  # written as before
        record(session, [Change("staff:test", "thing.updated", "thing", 3, "odd", {"r": 1.5e-7})])
    append(engine, 1)
    monkeypatch.undo()
    with transaction(engine) as session:
        record(session, [Change("staff:test", "thing.updated", "thing", 2, "odd", {"r": 1.5e-7})])
    assert check(engine).ok and check(engine).entries == 4
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET summary = 'even' WHERE seq = 4"))
    assert check(engine).first_bad == 4


def test_an_edited_entry_is_named(engine: Engine) -> None:
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'someone:else' WHERE seq = 3"))
    result = check(engine)
    assert (result.ok, result.first_bad) == (False, 3)
    assert "edited" in (result.problem or "")


def test_an_edit_that_also_rewrites_the_hash_breaks_the_next_link(engine: Engine) -> None:
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET hash = :h WHERE seq = 2"), {"h": "f" * 64})
    result = check(engine)
    assert result.first_bad == 2


def test_a_deleted_entry_is_named(engine: Engine) -> None:
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    result = check(engine)
    assert result.first_bad == 2
    assert result.problem == "missing: deleted"


def test_deleting_the_newest_entries_is_caught_too(engine: Engine) -> None:
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq >= 4"))
    result = check(engine)
    assert result.first_bad == 4
    assert result.problem == "missing: deleted with entries up to 5, the newest"


def test_reordered_entries_are_caught(engine: Engine) -> None:
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET seq = 100 WHERE seq = 2"))
        conn.execute(text("UPDATE audit_events SET seq = 2 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_events SET seq = 3 WHERE seq = 100"))
    result = check(engine)
    assert result.first_bad == 2


def test_changes_roll_back_with_the_transaction_that_made_them(engine: Engine) -> None:
    append(engine, 2)
    with pytest.raises(RuntimeError), transaction(engine) as session:
        record(session, [Change("staff:test", "thing.updated", "thing", 9, "lost", {})])
        raise RuntimeError("the domain change failed")
    append(engine, 1)
    result = check(engine)
    assert result.ok and result.entries == 3


def test_concurrent_writers_keep_one_unbroken_chain(engine: Engine) -> None:
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            append(engine, 25, actor=name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"worker:{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = check(engine)
    assert result.ok and result.entries == 75


def test_export_writes_one_json_line_per_entry(engine: Engine, tmp_path) -> None:
    import json

    append(engine, 4)
    out = tmp_path / "audit.jsonl"
    with transaction(engine, write=False) as session, out.open("w") as handle:
        assert export(session, handle, since=1) == 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [2, 3, 4]
    assert lines[0]["changes"] == {"n": [1, 2]} and lines[0]["prev_hash"] != lines[0]["hash"]
