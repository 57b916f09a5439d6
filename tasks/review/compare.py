"""Two versions of a caption compared word by word, for the reviewer to see what changed."""

import difflib
import re

WORD = re.compile(r"\S+\s*")  # a word with the spaces after it, as written
MAX_CHARS = 10_000  # captions are far shorter; a bound on the comparison's work all the same


def _words(text: str) -> list[str]:
    words = WORD.findall(text[:MAX_CHARS])
    lead = text[: len(text) - len(text.lstrip())]
    if words and lead:
        words[0] = lead + words[0]
    return words


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """The new caption as runs of ("same" | "added" | "removed", text), in reading order; a
    replaced run is the removed words, then the added ones. Words are compared without the
    spaces around them, so a changed line break alone is no change."""
    before, after = _words(old), _words(new)
    matcher = difflib.SequenceMatcher(
        None, [w.strip() for w in before], [w.strip() for w in after], autojunk=False
    )
    runs: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            runs.append(("same", "".join(after[j1:j2])))
            continue
        if op in ("delete", "replace"):
            runs.append(("removed", "".join(before[i1:i2])))
        if op in ("insert", "replace"):
            runs.append(("added", "".join(after[j1:j2])))
    return runs
