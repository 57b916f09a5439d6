"""`from store.models import X` finds every table and status enum, in the module it lives in."""

import inspect
from enum import StrEnum
from importlib import import_module

import pytest
from sqlmodel import SQLModel

import store.models


def test_every_table_and_enum_is_listed_under_its_module() -> None:
    for module_name, listed in store.models.MODULES.items():
        module = import_module(f"store.models.{module_name}")
        defined = {
            name
            for name, value in vars(module).items()
            if inspect.isclass(value)
            and value.__module__ == module.__name__
            and (issubclass(value, SQLModel) or issubclass(value, StrEnum))
        }
        assert defined == set(listed), module_name
        for name in listed:
            assert getattr(store.models, name) is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="NoSuchTable"):
        store.models.NoSuchTable  # noqa: B018
