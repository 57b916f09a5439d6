"""The sandbox briefs render in: Jinja's immutable sandbox, strict about missing values.

Templates (`*.j2` files) come from the built-in folder and, file by file, from a campaign's own
folder, read once when the campaign is applied; runs render them from the store's copy.
Values (names, captions, campaign text) are only ever data in a context, never template source,
so `{{ ... }}` inside a creator's name prints as written. A template cannot read files outside
its folders (symlinks included), reach private attributes, or ask for huge ranges or powers.
"""

import hashlib
import operator
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateNotFound,
    UndefinedError,
)
from jinja2.runtime import missing
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from config.errors import RallyError

BUILTIN_TEMPLATES = Path(__file__).parent / "templates" / "default"
MAX_EXPONENT = 64
MAX_REPEAT = 100_000


class MissingField(UndefinedError):
    """A template asked for a value the context does not have; `field` is its full path."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is missing")
        self.field = field


class Fields(dict[str, Any]):
    """A mapping that knows its path in the context (`creator.attributes`), so that a missing
    key is reported as `creator.attributes.city` rather than "dict object has no attribute"."""

    __slots__ = ("_path",)

    def __init__(self, path: str, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self._path = path


class MissingValue(StrictUndefined):
    """StrictUndefined that raises `MissingField` naming the whole path of the missing value."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[Exception] = UndefinedError,
    ) -> None:
        chosen = MissingField if exc is UndefinedError and hint is None else exc
        super().__init__(hint, obj, name, chosen)  # type: ignore[arg-type]

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        parent = self._undefined_obj
        if isinstance(parent, Fields):
            return f"{parent._path}.{self._undefined_name}"
        if parent is missing:
            return str(self._undefined_name)
        return f"{type(parent).__name__}.{self._undefined_name}"


class SourceLoader(BaseLoader):
    """Templates from a mapping of name to text (as the campaign was applied with them): `.j2`
    names only, never a file (so never `{% include ".env" %}`)."""

    def __init__(self, sources: Mapping[str, str], filenames: Mapping[str, str]) -> None:
        self.sources, self.filenames = sources, filenames

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source = self.sources.get(template) if template.endswith(".j2") else None
        if source is None:
            raise TemplateNotFound(template)
        return source, self.filenames.get(template, template), lambda: True


def _multiply(left: Any, right: Any) -> Any:
    for sequence, times in ((left, right), (right, left)):
        repeated = isinstance(sequence, str | list | tuple) and isinstance(times, int)
        if repeated and len(sequence) * times > MAX_REPEAT:
            raise SecurityError(f"repeating a value more than {MAX_REPEAT} times")
    return operator.mul(left, right)


def _power(left: Any, right: Any) -> Any:
    if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
        raise SecurityError(f"exponent above {MAX_EXPONENT}")
    return operator.pow(left, right)


_DICT_ATTRIBUTES = frozenset(dir(dict))


class BriefSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `**` and repetition bounded so a template cannot hang."""

    intercepted_binops = frozenset({"**", "*"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`campaign.name` on a `Fields` mapping is its item, found without first trying (and
        failing) a Python attribute: the same value the sandbox would give, at half the cost.
        Names of dict methods (`items`, `keys`) still go the sandbox's way."""
        if type(obj) is Fields and attribute not in _DICT_ATTRIBUTES:
            value = obj.get(attribute, missing)
            if value is not missing:
                return value
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            return _power(left, right)
        if operator_ == "*":
            return _multiply(left, right)
        return super().call_binop(context, operator_, left, right)


def _autoescape(name: str | None) -> bool:
    return name is not None and (name.endswith(".html.j2") or name.endswith(".html"))


class BriefTemplates:
    """A campaign's templates (name -> text): its own folder's over the built-in defaults.
    `version` is their hash, part of every brief's inputs, so editing one makes new versions."""

    def __init__(
        self, sources: Mapping[str, str], *, filenames: Mapping[str, str] | None = None
    ) -> None:
        self.sources = dict(sources)
        self.version = templates_version(self.sources)
        self.environment = BriefSandbox(
            loader=SourceLoader(self.sources, filenames or {}),
            undefined=MissingValue,
            autoescape=_autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        self._cache: dict[str, Template] = {}

    @classmethod
    def from_folder(cls, custom_folder: Path | None = None) -> "BriefTemplates":
        """The templates in effect for a folder (each error names the file it is in)."""
        files = template_files(custom_folder)
        sources = {name: read_template(path) for name, path in files.items()}
        return cls(sources, filenames={name: str(path) for name, path in files.items()})

    def get(self, name: str) -> Template:
        template = self._cache.get(name)
        if template is None:
            template = self._cache[name] = self.environment.get_template(name)
        return template

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        return self.get(name).render(context)

    def check(self, names: Iterable[str]) -> None:
        """Load (and so compile) the templates up front: a syntax error is reported once, with
        its file and line, before any creator's brief is attempted."""
        for name in names:
            self.get(name)


def template_files(custom_folder: Path | None) -> dict[str, Path]:
    """The templates in effect by name: the campaign's folder's, else the built-in one. A file
    whose real path lies outside its folder (a symlink out) is refused."""
    effective: dict[str, Path] = {}
    for folder in [BUILTIN_TEMPLATES, custom_folder] if custom_folder else [BUILTIN_TEMPLATES]:
        root = folder.resolve()
        for path in folder.rglob("*.j2"):
            name = path.relative_to(folder).as_posix()
            if not path.resolve().is_relative_to(root):
                raise SecurityError(f"template {name!r} points outside {root}")
            if path.is_file():
                effective[name] = path
    return effective


def read_template(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise RallyError(f"{path}: cannot read: not UTF-8 text (save it as UTF-8)") from None


def templates_version(sources: Mapping[str, str]) -> str:
    """A hash of a template set: each name with its text, in name order."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()[:16]


def message_sandbox() -> BriefSandbox:
    """The sandbox for short message templates kept in rule files (follow-up texts)."""
    return BriefSandbox(undefined=MissingValue, autoescape=False, keep_trailing_newline=False)
