"""The sandbox briefs render in: Jinja's immutable sandbox, strict about missing values.

Templates (`*.j2` files) come from the built-in folder and, file by file, from a campaign's own
folder, read once when the campaign is applied; runs render them from the store's copy.
Values (names, captions, campaign text) are only ever data in a context, never template source,
so `{{ ... }}` inside a creator's name prints as written. A template cannot read files outside
its folders (symlinks included), or reach private attributes; each render is held to a budget
of time, output and what it builds (`briefs.budget`, `briefs.bounded`), so no template can hang
a run or fill memory, and a recursive macro is one error, not a traceback.
"""

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from time import monotonic
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    UndefinedError,
    nodes,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import TemplateModule
from jinja2.runtime import Context, missing
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from briefs.bounded import (
    REFUSED_METHODS,
    STR_METHOD_SIZES,
    add,
    bounded_filters,
    bounded_format,
    dumps,
    modulo,
    multiply,
    power,
)
from briefs.budget import (
    BLOCK,
    BRIEF_BUDGET,
    MESSAGE_BUDGET,
    METER,
    Meter,
    RenderBudget,
    RenderBudgetExceeded,
    current,
)
from config.campaign_file import CampaignFileError
from config.errors import RallyError
from config.followups import Followups

BUILTIN_TEMPLATES = Path(__file__).parent / "templates" / "default"


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


_DICT_ATTRIBUTES = frozenset(dir(dict))
_SHORT_KINDS = frozenset({list, tuple, str})  # loops over a few of these need no checks inside


class MeteredCodeGenerator(CodeGenerator):
    """Compiles templates so that what runs without a call into the sandbox reports to the
    render's meter too: each loop (its items checked against the clock), each `~` join and
    list or dict literal (measured), and each piece written into a macro's, a call block's or
    a `{% set %}` block's buffer (counted as built; the render's own output is counted as it
    is produced)."""

    loop_iterables: frozenset[int] = frozenset()

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        self.loop_iterables = frozenset(id(loop.iter) for loop in node.find_all(nodes.For))
        super().visit_Template(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        """Writes a loop's iterable as `environment.loop_items(...)` (Jinja allows no node
        types of our own, so the loops' iterables are known by identity)."""
        if id(node) not in self.loop_iterables:
            return super().visit(node, *args, **kwargs)
        self.write("environment.loop_items(")
        super().visit(node, *args, **kwargs)
        self.write(")")

    def _made(self, visit: Callable[[Any, Frame], None], node: nodes.Expr, frame: Frame) -> None:
        try:
            node.as_const(frame.eval_ctx)
        except nodes.Impossible:
            self.write("environment.made(")
            visit(node, frame)
            self.write(")")
        else:
            visit(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self._made(super().visit_Concat, node, frame)

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._made(super().visit_List, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._made(super().visit_Dict, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx == "load":
            self._made(super().visit_Tuple, node, frame)
        else:
            super().visit_Tuple(node, frame)

    def start_write(self, frame: Frame, node: nodes.Node | None = None) -> None:
        super().start_write(frame, node)
        if frame.buffer is not None:
            self.write("environment.made(")

    def end_write(self, frame: Frame) -> None:
        if frame.buffer is not None:
            self.write(")")
        super().end_write(frame)

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.buffer is not None:
            self.write("environment.made(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        if frame.buffer is not None:
            self.write(")")


class MeteredTemplate(Template):
    """A template of the sandbox: each render runs against the sandbox's budget, and a macro
    or include that calls itself without end is reported like any budget, in one line."""

    environment: "BriefSandbox"

    def render(self, *args: Any, **kwargs: Any) -> str:
        budget = self.environment.budget
        meter = Meter(budget, self.name or budget.unnamed)
        token = METER.set(meter)
        try:
            context = self.new_context(dict(*args, **kwargs))
            return meter.joined(self.root_render_func(context))
        except RenderBudgetExceeded:
            raise
        except RecursionError:
            raise meter.over("macros or includes nested too deep (one calls itself?)") from None
        except Exception:
            self.environment.handle_exception()
        finally:
            METER.reset(token)

    def make_module(
        self,
        vars: dict[str, Any] | None = None,
        shared: bool = False,
        locals: Mapping[str, Any] | None = None,
    ) -> TemplateModule:
        """An imported template: its own output counted like the render's."""
        context = self.new_context(vars, shared, locals)
        return TemplateModule(self, context, [current().joined(self.root_render_func(context))])

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        raise TypeError("templates of the brief sandbox are rendered with render()")


class BriefSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every render held to a budget (`briefs.budget`): time,
    output, and the size of what it builds; `lipsum` is left out."""

    intercepted_binops = frozenset({"**", "*", "%", "+"})
    code_generator_class = MeteredCodeGenerator
    template_class = MeteredTemplate

    budget = BRIEF_BUDGET

    def __init__(self, *, budget: RenderBudget | None = None, **options: Any) -> None:
        super().__init__(**options)
        if budget is not None:  # else the class's: 30 attributes on an environment would cost
            self.budget = budget  # CPython's quick attribute reads, a few percent of a render
        self.globals.pop("lipsum", None)
        self.filters.update(bounded_filters(self.filters))
        self.policies["json.dumps_function"] = dumps

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`campaign.name` on a `Fields` mapping is its item, found without first trying (and
        failing) a Python attribute: the same value the sandbox would give, at half the cost.
        Names of dict methods (`items`, `keys`) still go the sandbox's way."""
        if type(obj) is Fields and attribute not in _DICT_ATTRIBUTES:
            value = obj.get(attribute, missing)
            if value is not missing:
                return value
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr in REFUSED_METHODS and isinstance(obj, str | int):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        return bounded_format(wrapped, value.__self__, keyed=value.__name__ == "format_map")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            return power(left, right)
        if operator == "*":
            return multiply(left, right)
        if operator == "%":
            return modulo(left, right)
        if operator == "+":
            return add(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Calls check the clock, and a string method that can make much more than the string
        (`ljust`, `replace`, `join`) is sized first."""
        meter = current()
        meter.tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and (size := STR_METHOD_SIZES.get(__obj.__name__)):
            if __obj.__name__ == "join" and args:
                args = (list(args[0]), *args[1:])
            meter.fits(size(owner, *args, **kwargs), f"str.{__obj.__name__}")
        return meter.made(super().call(__context, __obj, *args, **kwargs))

    def loop_items(self, iterable: Any) -> Any:
        """A loop's iterable: short ones as they are, longer ones checked against the clock
        every few items (a loop body need not call anything the sandbox sees)."""
        meter = METER.get() or current()
        if monotonic() > meter.deadline:
            meter.tick()
        if type(iterable) in _SHORT_KINDS and len(iterable) <= BLOCK:
            return iterable
        return meter.loop(iterable)

    def made(self, value: Any) -> Any:
        """A value the compiled template just built (a `~` join, a list or dict literal, a piece
        of a macro's output), measured and counted."""
        return current().made(value)

    def concat(self, pieces: Iterable[str]) -> str:
        """Joins a macro's or block's output, refused past the output budget."""
        return current().joined(pieces)


def _autoescape(name: str | None) -> bool:
    return name is not None and (name.endswith(".html.j2") or name.endswith(".html"))


class BriefTemplates:
    """A campaign's templates (name -> text): its own folder's over the built-in defaults.
    `version` is their hash, part of every brief's inputs, so editing one makes new versions."""

    def __init__(
        self,
        sources: Mapping[str, str],
        *,
        filenames: Mapping[str, str] | None = None,
        budget: RenderBudget | None = None,
    ) -> None:
        self.sources = dict(sources)
        self.version = templates_version(self.sources)
        self.environment = BriefSandbox(
            budget=budget,
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


_checked: set[str] = set()  # versions of rules files whose texts all compile


def check_messages(followups: Followups) -> None:
    """Compile every text of a rules file now, so that a mistake is named by its rule and
    field when the file is applied or tested, rather than stopping every later pass of the
    rules (which compile them)."""
    if followups.version in _checked:
        return
    spec = followups.spec
    texts = [
        (f"rules[{i}].{part}", getattr(rule, part))
        for i, rule in enumerate(spec.rules)
        for part in ("subject", "message")
        if getattr(rule, part)
    ]
    for name in ("opt_out_confirmation", "opt_in_confirmation"):
        texts += [(f"{name}.{channel}", text) for channel, text in getattr(spec, name).items()]
    problems, sandbox = [], message_sandbox()
    for where, text in texts:
        try:
            sandbox.from_string(text)
        except TemplateError as exc:
            lineno = getattr(exc, "lineno", None)
            line = f" (line {lineno})" if lineno else ""
            problems.append((where, f"not a valid template: {exc.message or exc}{line}"))
    if problems:
        raise CampaignFileError(followups.source, problems)
    if len(_checked) < 256:
        _checked.add(followups.version)


def message_sandbox() -> BriefSandbox:
    """The sandbox for short message templates kept in rule files (follow-up texts)."""
    return BriefSandbox(
        budget=MESSAGE_BUDGET,
        undefined=MissingValue,
        autoescape=False,
        keep_trailing_newline=False,
    )
