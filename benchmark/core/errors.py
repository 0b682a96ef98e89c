"""User-facing errors.

A `UserError` is raised for anything the user can fix (bad input, missing file, unknown name).
The CLI turns it into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input; the message names the problem and the fix."""

    exit_code = 2


def require_regular_file(path, where: str | None = None) -> None:
    """A data file must be a regular file: reading a FIFO blocks forever, /dev/zero never ends.
    Missing files are left to the caller's own message."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"{where or os.fspath(path)}: cannot read it ({exc.strerror or exc}); check the path") from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise UserError(f"{where or os.fspath(path)} is {kind}, not a data file; give the file itself")


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.5)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' Did you mean: a, b?' or a list of what exists when nothing is close."""
    candidates = sorted(candidates)
    matches = close_matches(word, candidates)
    if matches:
        return f" Did you mean: {', '.join(matches)}?"
    if not candidates:
        return ""
    shown = ", ".join(candidates[:12]) + (", ..." if len(candidates) > 12 else "")
    return f" Known: {shown}."
