"""Errors hwgen raises for bad input. Each names what is wrong and where (node, op, tensor)."""
from __future__ import annotations

from dataclasses import dataclass


class HwgenError(Exception):
    """A problem with the user's input. The CLI prints ``str(error)`` (at most three lines) and exits 2."""


@dataclass(frozen=True)
class NodeIssue:
    """One unsupported or malformed node: enough to find it in Netron and know what to do."""

    node: str
    op_type: str
    why: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"node '{self.node}' ({self.op_type}): {self.why}"
        return f"{text}; {self.hint}" if self.hint else text


class UnsupportedModelError(HwgenError):
    """Every unsupported node of a model, reported at once."""

    def __init__(self, issues: list[NodeIssue]):
        self.issues = list(issues)
        count = len(self.issues)
        head = f"{count} unsupported node{'s' if count != 1 else ''}"
        super().__init__(f"{head}: " + " | ".join(str(i) for i in self.issues))
