"""The command line: `msabench = msabench.cli:main` (console script).

`app` holds the click group and the listing/data commands, `commands` the commands over runs and the
store; importing both registers every command. See docs/architecture.md (layering).
"""

from __future__ import annotations

import os

import click

from msabench.cli import commands  # noqa: F401  (registers run, status, clean, report, ...)
from msabench.cli.app import cli
from msabench.core.errors import UserError

# OpenMP threads that wait by spinning (libgomp's default) hold their core between torch's parallel
# regions: next to one busy process, 12 runs of the main job took over 200 s spinning, 45 s passive.
# Idle, passive waiting costs 8-20% (docs/architecture.md §9, "Threads"). Set before any
# torch import (commands import torch lazily), inherited by process workers; a user's own value wins.
OPENMP_WAIT_POLICY = "PASSIVE"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", OPENMP_WAIT_POLICY)
    try:
        # Without standalone mode click returns the code of a command's ctx.exit(N) (e.g. run's
        # EXIT_FAILED_RUNS) instead of raising, and a command's own return value otherwise.
        code = cli.main(args=argv, prog_name="msabench", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C (KeyboardInterrupt) into Abort; say what happened and how to go on
        ctrl_c = isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
        click.echo(f"msabench: {'interrupted' if ctrl_c else 'aborted'}; re-run the same command to resume (done "
                   "runs are kept and skipped)", err=True)
        return 130
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"msabench: error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"msabench: error: {exc.format_message()}", err=True)
        return 2
    except UserError as exc:
        click.echo(f"msabench: error: {' '.join(str(exc).splitlines())}", err=True)  # one line, always
        return 2
    except KeyboardInterrupt:
        click.echo("msabench: interrupted; re-run the same command to resume (done runs are kept and skipped)",
                   err=True)
        return 130
    return code if isinstance(code, int) else 0

