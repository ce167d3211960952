"""The one user-facing error type, printed as source line, caret and a note with the fix."""

from __future__ import annotations

import linecache
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLoc:
    """A position in the user's Python source (1-based line, 0-based column)."""

    file: str
    line: int
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col + 1}"

    @staticmethod
    def parse(text: str) -> SourceLoc | None:
        """Inverse of ``str()``; ``None`` for an empty or malformed location."""
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        return SourceLoc(parts[0], int(parts[1]), int(parts[2]) - 1)


class TilegridError(Exception):
    """A mistake in a user's kernel: names the kernel, the user's source line and the fix."""

    def __init__(
        self,
        message: str,
        loc: SourceLoc | str | None = None,
        *,
        kernel: str | None = None,
        note: str | None = None,
    ) -> None:
        self.message = message
        self.loc = SourceLoc.parse(loc) if isinstance(loc, str) else loc
        self.kernel = kernel
        self.note = note
        super().__init__(self.render())

    def with_kernel(self, kernel: str) -> TilegridError:
        """The same error, attributed to ``kernel`` if it names none yet."""
        if self.kernel:
            return self
        return type(self)(self.message, self.loc, kernel=kernel, note=self.note)

    def render(self) -> str:
        where = f" in kernel '{self.kernel}'" if self.kernel else ""
        lines = [f"error{where}: {self.message}"]
        if self.loc is not None:
            lines.append(f"  --> {self.loc}")
            text = linecache.getline(self.loc.file, self.loc.line).rstrip("\n")
            if text:
                lines.append(f"   | {text}")
                lines.append("   | " + " " * self.loc.col + "^")
        if self.note:
            lines.append(f"   = note: {self.note}")
        return "\n".join(lines)


class DeadlockError(TilegridError):
    """No thread on any core can make progress."""


class CompileError(TilegridError):
    """The kernel cannot be compiled as written."""
