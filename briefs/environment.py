"""The sandbox briefs render in: Jinja's immutable sandbox, strict about missing values.

Templates (`*.j2` files) come from the built-in folder and, file by file, from a campaign's own
folder.
Values (names, captions, campaign text) are only ever data in a context, never template source,
so `{{ ... }}` inside a creator's name prints as written. A template cannot read files outside
its folders (symlinks included), reach private attributes, or ask for huge ranges or powers.
"""

import hashlib
import operator
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    UndefinedError,
)
from jinja2.runtime import missing
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

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


class FolderLoader(FileSystemLoader):
    """A FileSystemLoader that refuses files whose real path lies outside its folder."""

    def __init__(self, folder: Path) -> None:
        super().__init__(str(folder))
        self.folder = folder.resolve()

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        if not template.endswith(".j2"):  # templates only: never `{% include ".env" %}`
            raise TemplateNotFound(template)
        source, filename, uptodate = super().get_source(environment, template)
        if not Path(filename).resolve().is_relative_to(self.folder):
            raise SecurityError(f"template {template!r} points outside {self.folder}")
        return source, filename, uptodate


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
    """The templates of one campaign: its own folder (if any) over the built-in defaults."""

    def __init__(self, custom_folder: Path | None = None) -> None:
        folders = [custom_folder, BUILTIN_TEMPLATES] if custom_folder else [BUILTIN_TEMPLATES]
        self.folders = folders
        self.environment = BriefSandbox(
            loader=ChoiceLoader([FolderLoader(f) for f in folders]),
            undefined=MissingValue,
            autoescape=_autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        self._cache: dict[str, Template] = {}

    def get(self, name: str) -> Template:
        template = self._cache.get(name)
        if template is None:
            template = self._cache[name] = self.environment.get_template(name)
        return template

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        return self.get(name).render(context)

    def fingerprint(self) -> str:
        """A hash of every template in effect, so that editing one makes new brief versions."""
        return fingerprint(self.folders)

    def check(self, names: tuple[str, ...]) -> None:
        """Load (and so compile) every template up front: a syntax error is reported once,
        with its file and line, before any creator's brief is attempted."""
        for name in names:
            try:
                self.get(name)
            except TemplateNotFound as exc:
                raise TemplateNotFound(f"{exc.name} (looked in {self._where()})") from exc

    def _where(self) -> str:
        return ", ".join(str(folder) for folder in self.folders)


def fingerprint(folders: list[Path]) -> str:
    """A hash of the templates in effect: each name from the first folder that has it."""
    effective: dict[str, Path] = {}
    for folder in reversed(folders):
        for path in folder.rglob("*.j2"):
            if path.is_file():
                effective[path.relative_to(folder).as_posix()] = path
    digest = hashlib.sha256()
    for name in sorted(effective):
        digest.update(name.encode() + b"\0" + effective[name].read_bytes() + b"\0")
    return digest.hexdigest()[:16]


_loaded: dict[tuple[Path | None, str], BriefTemplates] = {}


def load_templates(custom_folder: Path | None = None) -> BriefTemplates:
    """The templates of a folder, compiled once per process for as long as no file changes."""
    folders = [custom_folder, BUILTIN_TEMPLATES] if custom_folder else [BUILTIN_TEMPLATES]
    key = (custom_folder, fingerprint(folders))
    if key not in _loaded:
        _loaded[key] = BriefTemplates(custom_folder)
    return _loaded[key]


def message_sandbox() -> BriefSandbox:
    """The sandbox for short message templates kept in rule files (follow-up texts)."""
    return BriefSandbox(undefined=MissingValue, autoescape=False, keep_trailing_newline=False)
