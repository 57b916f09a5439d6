"""The brief sandbox reads mapping fields as data and still guards everything else."""

from pathlib import Path

import pytest
from jinja2.sandbox import SecurityError

from briefs.environment import BriefTemplates, Fields, MissingField


def render(tmp_path: Path, source: str, **context: object) -> str:
    (tmp_path / "probe.md.j2").write_text(source)
    return BriefTemplates.from_folder(tmp_path).render("probe.md.j2", context)


def test_fields_read_as_data_and_missing_ones_name_their_path(tmp_path):
    creator = Fields("creator", {"name": "Maya", "attributes": Fields("creator.attributes", {})})
    assert render(tmp_path, "{{ creator.name }}", creator=creator) == "Maya"
    with pytest.raises(MissingField) as raised:
        render(tmp_path, "{{ creator.attributes.city }}", creator=creator)
    assert raised.value.field == "creator.attributes.city"


def test_a_field_named_like_a_mapping_method_leaves_the_method_alone(tmp_path):
    attributes = Fields("creator.attributes", {"items": "stickers", "city": "Erie"})
    listed = render(
        tmp_path, "{% for k, v in a.items() %}{{ k }}={{ v }};{% endfor %}", a=attributes
    )
    assert listed == "items=stickers;city=Erie;"
    assert render(tmp_path, "{{ a['items'] }}", a=attributes) == "stickers"
    with pytest.raises(SecurityError):
        render(tmp_path, "{{ a.update({'city': 'Pittsburgh'}) }}", a=attributes)
    with pytest.raises(SecurityError):
        render(tmp_path, "{{ a._path }}", a=attributes)
