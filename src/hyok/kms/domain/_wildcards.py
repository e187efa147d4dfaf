"""Wildcard matching of policy actions, resources and StringLike. Private to hyok.kms.domain."""

from __future__ import annotations

__all__ = ["wildcard_match"]


def wildcard_match(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """Return whether ``text`` matches ``pattern``: ``*`` matches any run, ``?`` one character.

    Every other character matches itself. The match takes at most
    len(pattern) * len(text) steps, unlike a backtracking regular expression,
    whose time grows exponentially with the number of ``*`` in a hostile pattern.
    """
    if ignore_case:
        pattern = pattern.lower()
        text = text.lower()
    p = 0
    t = 0
    # The position of the last '*' seen, and the text position it currently absorbs up to.
    star = -1
    resume = 0
    while t < len(text):
        if p < len(pattern) and pattern[p] != "*" and pattern[p] in ("?", text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star = p
            resume = t
            p += 1
        elif star >= 0:
            # Let the last '*' absorb one more character and retry from there.
            p = star + 1
            resume += 1
            t = resume
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)
