"""The plain tables of `store.tables` name and type their columns as the models do, and the
plan's tables, shown whole, list every column, in the models' order."""

from datetime import UTC, date, datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import TableClause
from sqlalchemy.types import TypeEngine
from sqlmodel import AutoString, SQLModel

import store.tables
from store.models import Milestone, load_all

PLAIN = [t for t in vars(store.tables).values() if isinstance(t, TableClause)]


def kind(column_type: TypeEngine) -> type:
    """The column's type; sqlmodel's AutoString is a plain String (it only picks a length)."""
    return type(column_type.impl) if isinstance(column_type, AutoString) else type(column_type)


def test_each_column_is_the_models_column_of_that_name_and_type() -> None:
    load_all()
    assert PLAIN
    for plain in PLAIN:
        model = SQLModel.metadata.tables[plain.name]
        for column in plain.c:
            assert column.name in model.c, f"{plain.name}.{column.name}"
            assert kind(model.c[column.name].type) is type(column.type), (
                f"{plain.name}.{column.name}: {model.c[column.name].type!r}"
            )


def test_the_plan_tables_list_every_column_in_order() -> None:
    load_all()
    for plain in (store.tables.sprint_phases, store.tables.milestones):
        model = SQLModel.metadata.tables[plain.name]
        assert [c.name for c in plain.c] == [c.name for c in model.c]


def test_a_plain_row_is_shown_as_its_model_is() -> None:
    values: dict[str, Any] = {
        "id": 1,
        "campaign_id": 2,
        "key": "kickoff",
        "name": "Kickoff",
        "week": 1,
        "due_on": date(2027, 2, 7),
        "check": "manual",
        "params": {"at_least": 3},
        "status": "met",
        "outcome": {"why": "done"},
        "evaluated_at": datetime(2027, 2, 7, 18, 4, 5, 120000, tzinfo=UTC),
    }
    shown = Milestone(**values).model_dump(mode="json", exclude={"id", "campaign_id"})
    plain = {k: v for k, v in values.items() if k not in ("id", "campaign_id")}
    assert list(to_jsonable_python(plain).items()) == list(shown.items())
