"""The brief sandbox reads mapping fields as data and still guards everything else: each render
keeps to its budget of time, output and what it builds, and says which one it went over."""

import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from jinja2 import Environment
from jinja2.sandbox import SecurityError

from briefs.budget import BRIEF_BUDGET, RenderBudget, RenderBudgetExceeded
from briefs.environment import BriefTemplates, Fields, MissingField, message_sandbox


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


def sandboxed(source: str, budget: RenderBudget = BRIEF_BUDGET, **context: object) -> str:
    return BriefTemplates({"probe.md.j2": source}, budget=budget).render("probe.md.j2", context)


def naming(message: str) -> str:
    """A pattern for an error about the probe template that says `message`."""
    return re.escape(f"probe.md.j2: {message}")


QUICK = replace(BRIEF_BUDGET, seconds=0.2)


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{{ '%0900000000d' % 1 }}", "a width or precision above 1000 in % formatting"),
        ("{{ '%.*f' % (900000000, 1.5) }}", "'*' widths in % formatting"),
        ("{{ '%0900000000d'|format(1) }}", "a width or precision above 1000 in % formatting"),
        ("{{ '{:>900000000}'.format(1) }}", "a width or precision above 1000 in {} formatting"),
        ("{{ '{:>{w}}'.format(1, w=900000000) }}", "a field inside a format spec"),
        ("{{ ('{0}' * 30000).format('x' * 1000) }}", "formatting would be larger than 1 MB"),
        ("{{ 'x'|center(900000000) }}", "the center filter would be larger than 1 MB"),
        ("{{ 'x'.ljust(900000000) }}", "str.ljust would be larger than 1 MB"),
        ("{{ ('a\n' * 1000)|indent(900000) }}", "the indent filter would be larger than 1 MB"),
        ("{{ ('x' * 100000)|replace('x', 'yyyyyyyyyyyy') }}", "the replace filter would be larger"),
        ("{{ ('x' * 100).replace('', 'y' * 100000) }}", "str.replace would be larger than 1 MB"),
        ("{{ range(100000)|join('x' * 100) }}", "the join filter would be larger than 1 MB"),
        ("{{ ('x' * 2000).join(['y'] * 1000) }}", "str.join would be larger than 1 MB"),
        ("{{ ('x' * 1000).join(['y' * 1000] * 900) }}", "a value larger than 1 MB"),
        ("{{ ('ab ' * 1000)|wordwrap(1, wrapstring='y' * 1000) }}", "the wordwrap filter"),
        ("{{ [1]|batch(900000000, 0)|list }}", "the batch filter would be larger than 1 MB"),
        ("{{ [[1]] * 100000|sum(start=[]) }}", "the sum filter adds numbers only"),
        ("{{ (['x' * 100000] * 100)|join }}", "repeating a value would be larger than 1 MB"),
        ("{{ 'x'.encode() }}", "access to attribute 'encode' of 'str' object is unsafe"),
        ("{{ (12345 ** 64) ** 64 }}", "a number above 4096 bits"),
        ("{{ (2 ** 64) ** 60 * (2 ** 64) ** 60 }}", "a number above 4096 bits"),
    ],
)
def test_a_step_that_would_build_huge_text_is_refused_before_it_runs(source, says):
    with pytest.raises(SecurityError, match=re.escape(says)):
        sandboxed(source)


def test_lipsum_is_not_there_to_fill_memory():
    with pytest.raises(MissingField) as raised:
        sandboxed("{{ lipsum(100000, html=False, min=100000, max=100000) }}")
    assert raised.value.field == "lipsum"


def test_a_list_holding_itself_twice_over_is_measured_as_printed():
    doubling = (
        "{% set ns = namespace(x=['x' * 1000]) %}"
        "{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x }}"
    )
    with pytest.raises(RenderBudgetExceeded, match=naming("a value larger than 1 MB")):
        sandboxed(doubling)


@pytest.mark.parametrize(
    "source",
    [
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% set r = range(100000)|list %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "{% set t, u = 'x' * 10000, 'x' * 10000 %}{% for a in range(100000) %}"
        "{% for b in range(100000) %}{% if t == u %}{% endif %}{% endfor %}{% endfor %}",
    ],
)
def test_a_render_that_runs_past_its_time_stops_with_the_budget_named(source):
    start = time.monotonic()
    with pytest.raises(RenderBudgetExceeded, match=naming("rendering took longer than 0.2 s")):
        sandboxed(source, QUICK)
    assert time.monotonic() - start < 5  # the budget, and a margin for a busy machine


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "output larger than 1 MB"),
        (
            "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endmacro %}"
            "{{ m() }}",
            "built more than 10 MB of text",
        ),
        (
            "{% set page %}{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}x",
            "output larger than 1 MB",
        ),
    ],
)
def test_output_past_its_budget_is_refused_as_it_grows(source, says):
    with pytest.raises(RenderBudgetExceeded, match=naming(says)):
        sandboxed(source)


@pytest.mark.parametrize(
    "source",
    [
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        '{% include "probe.md.j2" %}',
        "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    ],
)
def test_a_template_calling_itself_without_end_is_one_error_not_a_traceback(source):
    with pytest.raises(RenderBudgetExceeded) as raised:
        sandboxed(source)
    assert (
        str(raised.value) == "probe.md.j2: macros or includes nested too deep (one calls itself?)"
    )
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_follow_up_messages_have_a_budget_of_their_own():
    sandbox = message_sandbox()
    assert sandbox.from_string("Hi {{ name }}!").render(name="Sam") == "Hi Sam!"
    with pytest.raises(RenderBudgetExceeded, match="message: output larger than 20 KB"):
        sandbox.from_string("{% for i in range(30) %}{{ 'x' * 1000 }}{% endfor %}").render()
    with pytest.raises(RenderBudgetExceeded, match="message: macros or includes nested too deep"):
        sandbox.from_string("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").render()


def test_templates_that_keep_within_their_budget_render_as_jinja_does():
    source = (
        "{{ '%5.2f|%-4s' % (3.14159, 'ab') }}|{{ '%(n)03d' % {'n': 7} }}"
        "|{{ '{:>6}|{:^5}|{:.3f}|{name}'.format('ab', 'c', 2.5, name='z') }}"
        "|{{ 'a'|center(5) }}|{{ 'x\ny'|indent(2, true) }}|{{ 'banana'|replace('a', 'o', 2) }}"
        "|{{ [1, 2, 3]|join(', ') }}|{{ 'abc'.rjust(5, '.') }}|{{ 'a b c d'|wordwrap(3) }}"
        "|{{ range(7)|batch(3, 0)|list }}|{{ [1, 2, 3]|sum }}|{{ {'a': [1, 2]}|tojson(2) }}"
        "|{% macro m(x) %}<{{ x }}>{% endmacro %}{% for i in range(3) %}{{ m(i) }}{% endfor %}"
        "|{{ ['a', 'b'] + ['c'] }}|{{ 'x' ~ 1 ~ [2] }}|{{ 2 ** 10 }}|{{ 7 % 3 }}|{{ 'ab' * 3 }}"
    )
    plain = Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    assert sandboxed(source) == plain.from_string(source).render()


def test_a_template_rendered_another_way_than_render_is_refused():
    template = BriefTemplates({"probe.md.j2": "{% for x in [1] %}{{ x }}{% endfor %}"}).get(
        "probe.md.j2"
    )
    with pytest.raises(TypeError, match="rendered with render"):
        list(template.generate())
    with pytest.raises(RenderBudgetExceeded, match="outside render"):
        str(template.module)
