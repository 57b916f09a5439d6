"""Reading a `campaign.yaml`: every problem in a file reported at once, one line each, as
``campaign.yaml: kpis.engagement_rate: must be between 0 and 1 (got 1.5)``.
"""

import difflib
import re
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from config.campaign import CampaignSpec, Model
from config.errors import RallyError


def repeated(label: str, keys: list[str], message: str, suffix: str = "") -> list[tuple[str, str]]:
    """A problem for each key seen before in `keys`, named by its place in the list."""
    seen: set[str] = set()
    problems = []
    for index, key in enumerate(keys):
        if key in seen:
            problems.append((f"{label}[{index}]{suffix}", message.format(repr(key))))
        seen.add(key)
    return problems


def _cross_checks(spec: CampaignSpec) -> list[tuple[str, str]]:
    """Rules that span fields; each names the field to fix."""
    problems: list[tuple[str, str]] = []
    if spec.political and spec.committee is None:
        problems.append(("committee", "required for a political campaign (name and paid_for_by)"))
    if spec.committee and spec.committee.name.lower() not in spec.committee.paid_for_by.lower():
        problems.append(
            ("committee.paid_for_by", f"must name the committee {spec.committee.name!r}")
        )
    split = spec.budget.split
    total = split.creators + split.paid + split.production + split.tools
    if abs(total - 1) > 0.001:
        problems.append(("budget.split", f"shares must add up to 1 (they add up to {total:g})"))
    problems += repeated("segments", [s.id for s in spec.segments], "duplicate segment {}")
    problems += repeated(
        "destinations", [d.name for d in spec.destinations], "duplicate destination {}"
    )
    weeks = spec.sprint.weeks
    week_fields: list[tuple[str, int]] = [
        ("brief.draft_due_week", spec.brief.draft_due_week),
        ("brief.posting_weeks[0]", spec.brief.posting_weeks[0]),
        ("brief.posting_weeks[1]", spec.brief.posting_weeks[1]),
    ]
    for i, phase in enumerate(spec.sprint.phases or []):
        week_fields += [(f"sprint.phases[{i}].first_week", phase.first_week)]
        week_fields += [(f"sprint.phases[{i}].last_week", phase.last_week)]
        if phase.last_week < phase.first_week:
            problems.append((f"sprint.phases[{i}].last_week", "must not come before first_week"))
    for i, milestone in enumerate(spec.sprint.milestones or []):
        week_fields.append((f"sprint.milestones[{i}].week", milestone.week))
    problems += [
        (path, f"week {week} is after the sprint's {weeks} weeks")
        for path, week in week_fields
        if week > weeks
    ]
    if spec.brief.posting_weeks[1] < spec.brief.posting_weeks[0]:
        problems.append(("brief.posting_weeks", "the last week must not come before the first"))
    return problems


class CampaignFileError(RallyError):
    """A campaign file that does not hold; `problems` are (field path, message) pairs."""

    def __init__(self, file: str, problems: list[tuple[str, str]]) -> None:
        self.file, self.problems = file, problems
        super().__init__(
            "\n".join(
                f"{file}: {path}: {message}" if path else f"{file}: {message}"
                for path, message in problems
            )
        )


_MESSAGES = {
    "missing": "required",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
    "string_type": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of fields",
    "model_type": "must be a mapping of fields",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "string_pattern_mismatch": "has the wrong form",
    "literal_error": "must be one of {expected}",
    "finite_number": "must be a finite number",
}


def _known_fields() -> list[str]:
    return sorted({name for model in Model.__subclasses__() for name in model.model_fields})


def _describe(error: Any) -> tuple[str, str]:
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), _known_fields(), n=1, cutoff=0.75)
        return path, "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        message = "must not be empty"
    elif kind == "too_short":
        message = f"must have at least {ctx.get('min_length')} item(s)"
    elif kind in _MESSAGES:
        message = _MESSAGES[kind].format(
            **{k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()}
        )
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
    value = error.get("input")
    shown = kind != "missing" and value is not None and not isinstance(value, dict | list)
    if shown and repr(value) not in message:
        message += f" (got {value!r})"
    return path, message


def _control_characters(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Text with NUL or other control characters (tabs and newlines aside), by field path."""
    if isinstance(value, str):
        bad = re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", value)
        return [(path, f"contains a control character ({bad.group()!r})")] if bad else []
    items: Any = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    found = []
    for key, item in items:
        found += _control_characters(
            item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}".lstrip(".")
        )
    return found


def parse_campaign(data: Any, *, file: str) -> CampaignSpec:
    """Validate already-parsed YAML data; raise `CampaignFileError` listing every problem."""
    if not isinstance(data, dict):
        raise CampaignFileError(file, [("", "must be a mapping of campaign fields")])
    if problems := _control_characters(data):
        raise CampaignFileError(file, problems)
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise CampaignFileError(file, validation_problems(exc)) from None
    problems = _cross_checks(spec)
    if problems:
        raise CampaignFileError(file, problems)
    return spec


@cache
def _loader(fast: bool) -> type:
    """YAML's safe loader, except that dates stay text for the schema to check (PyYAML would
    fail on `2027-02-30` with an error that names no field), that a key given twice in one
    mapping is refused (YAML would keep the later one silently), and that aliases are refused:
    a few lines of `*alias` can stand for billions of values (a "billion laughs" file), or for
    a value that contains itself. `fast` parses with libyaml (about ten times as fast), for
    text with no `*` (so no alias) and no tab (which libyaml takes in places PyYAML refuses);
    libyaml refuses nesting over 1,000 levels deep."""
    import yaml

    base = yaml.CSafeLoader if fast and yaml.__with_libyaml__ else yaml.SafeLoader

    class CampaignLoader(base):  # type: ignore[valid-type,misc]
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.events.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"an alias (*{event.anchor}) stands for another value: write the value "
                    "out instead (aliases are not taken in Rally's files)",
                    event.start_mark,
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = getattr(key_node, "value", None)
                if isinstance(key, str) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"{key!r} is given twice here (first on line "
                        f"{seen[key].start_mark.line + 1}): keep one",
                        key_node.start_mark,
                    )
                seen[key] = key_node
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node: Any) -> Any:
            try:
                return super().construct_yaml_int(node)
            except ValueError:  # more digits than Python reads (4,300)
                raise yaml.constructor.ConstructorError(
                    None, None, f"a number of {len(node.value):,} digits", node.start_mark
                ) from None

    CampaignLoader.add_constructor("tag:yaml.org,2002:int", CampaignLoader.construct_yaml_int)

    CampaignLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return CampaignLoader


def read_yaml(path: Path) -> Any:
    """A YAML file's data; an unreadable or malformed file is one clear `CampaignFileError`."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RallyError(f"{file}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RallyError(f"{file}: cannot read: not UTF-8 text (save it as UTF-8)") from None
    import yaml

    try:
        data = yaml.load(text, Loader=_loader(fast="*" not in text and "\t" not in text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if "maximum nesting depth" in problem:  # libyaml's words
            where, problem = "", "nested too deeply"
        raise CampaignFileError(file, [("", f"{where}not valid YAML: {problem}")]) from None
    except RecursionError:
        raise CampaignFileError(file, [("", "not valid YAML: nested too deeply")]) from None
    except ValueError as exc:  # a number with more digits than Python reads (4,300)
        raise CampaignFileError(file, [("", f"not a value Rally reads: {exc}")]) from None
    return data


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """A pydantic error as (field path, message) pairs, worded as campaign files are."""
    return [_describe(e) for e in exc.errors()]


def load_campaign(path: Path) -> CampaignSpec:
    """Read and validate a `campaign.yaml`; names in errors are the path as given."""
    return parse_campaign(read_yaml(path), file=str(path))
