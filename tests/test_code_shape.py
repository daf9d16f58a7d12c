"""The house rules a reader relies on: every function outside tests/ short enough to hold in one's head (at most 60
lines) and simple enough to follow (cyclomatic complexity at most 15, as radon counts it)."""
from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Class

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES, MAX_COMPLEXITY = 60, 15


def functions(block, prefix=""):
    """(qualified name, lines, complexity) of a radon block's functions, methods and closures."""
    if isinstance(block, Class):
        for method in block.methods:
            yield from functions(method, f"{prefix}{block.name}.")
        return
    yield f"{prefix}{block.name}", block.endline - block.lineno + 1, block.complexity
    for closure in block.closures:
        yield from functions(closure, f"{prefix}{block.name}.")


def project_sources() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py")
                  if not {".venv", "tests", ".git"} & set(p.relative_to(ROOT).parts) and "site-packages" not in p.parts)


def test_every_function_is_short_and_simple():
    sources = project_sources()
    assert len(sources) > 50 and ROOT / "train.py" in sources
    offenders = [f"{path.relative_to(ROOT)}:{name} ({lines} lines, complexity {complexity})"
                 for path in sources for block in cc_visit(path.read_text())
                 for name, lines, complexity in functions(block)
                 if lines > MAX_LINES or complexity > MAX_COMPLEXITY]
    assert not offenders, "\n".join(offenders)
