"""The layout holds: layers import only downwards, the service layer's packages only the ones
before them (the order `tasks/__init__.py` gives), and no module imports itself round a circle.

Read from the source with `ast`, every import counts, including those inside functions (the CLI
imports lazily to start fast, and a circle through a lazy import is still a circle).
"""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {  # top-level package -> the packages it may import
    "config": set(),
    "briefs": {"config"},
    "integrations": {"config"},
    "store": {"config"},
    "tasks": {"config", "briefs", "integrations", "store"},
    "flows": {"config", "store", "tasks"},
    "web": {"config", "integrations", "store", "tasks"},
    "cli": {"config", "integrations", "store", "tasks", "flows", "web"},
}
PLUMBING = {"formats", "progress", "outbox", "drain", "rate_limits"}
CAPABILITIES = {  # tasks' package -> the packages before it that it may import
    "campaigns": set(),
    "webhooks": {"campaigns"},
    "payments": {"campaigns", "webhooks"},
    "briefs": {"campaigns", "webhooks", "payments"},
    "review": {"campaigns", "webhooks", "payments"},
    "leads": {"campaigns", "webhooks"},
    "engagement": {"campaigns", "leads", "webhooks"},
    "amplification": {"campaigns", "review", "payments"},
    "reporting": {"campaigns", "payments", "amplification"},
    "rehearsal": {"campaigns", "briefs", "review", "engagement", "amplification"},
    "sprint": {
        "campaigns",
        "briefs",
        "review",
        "leads",
        "reporting",
        "rehearsal",
        "webhooks",
        "payments",
    },
    "mail": {"briefs", "review", "engagement"},
    "due": {"campaigns", "briefs", "review", "leads", "sprint", "webhooks"},
    "staff": {"campaigns", "review", "leads"},
    # the REST API's tokens and, as it grows, its resources: over every capability it serves
    "api": {
        "campaigns",
        "briefs",
        "review",
        "leads",
        "engagement",
        "reporting",
        "sprint",
        "webhooks",
        "payments",
    },
}


def modules() -> dict[str, Path]:
    """Every module of Rally's packages by dotted name (migrations aside: alembic runs them)."""
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The Rally modules `path` imports, with the line of each import."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LAYERS:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in LAYERS:
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield (submodule if submodule in known else node.module), node.lineno


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {target for target, _ in imports(path, known) if target != name}
        for name, path in known.items()
    }


def test_each_layer_imports_only_the_layers_below_it() -> None:
    known = modules()
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name} imports {target}"
        for name, path in known.items()
        for target, line in imports(path, known)
        if (top := target.split(".")[0]) != name.split(".")[0]
        and top not in LAYERS[name.split(".")[0]]
    ]
    assert not wrong, "\n".join(wrong)


def capability(module: str) -> str | None:
    """`tasks.review.routing` -> `review`; the plumbing and `tasks` itself -> None."""
    parts = module.split(".")
    if parts[0] != "tasks" or len(parts) < 2 or parts[1] in PLUMBING:
        return None
    return parts[1]


def test_the_service_layer_imports_packages_in_the_order_of_its_map() -> None:
    known = modules()
    assert {capability(m) for m in known} - {None} == set(CAPABILITIES), "update CAPABILITIES"
    wrong = []
    for name, path in known.items():
        mine = capability(name)
        for target, line in imports(path, known):
            theirs = capability(target)
            plumbing = name.startswith("tasks.") and name.split(".")[1] in PLUMBING
            if plumbing and target.startswith("tasks.") and target.split(".")[1] not in PLUMBING:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: plumbing imports {target}")
            if mine and theirs and theirs != mine and theirs not in CAPABILITIES[mine]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_round_a_circle() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_every_work_check_belongs_to_a_recurring_flow() -> None:
    from flows.deployments import RECURRING
    from tasks import due

    assert set(due.CHECKS) <= {d.name for d in RECURRING}
