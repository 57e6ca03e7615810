"""Errors a user can act on.

Every error raised for bad input is a :class:`UsageError`: the CLI prints its message and exits
with status 2, as argparse does. The message always names the problem and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(Exception):
    """Bad input from the user (unknown name, bad value, missing extra). Exit status 2."""


class MissingExtra(UsageError):
    """A component needs an optional dependency that is not installed."""


class ContractError(Exception):
    """A plugin broke a contract (wrong shape, wrong type): a bug in that plugin."""


def unknown(kind: str, name: str, known: Iterable[str], of: str = "") -> UsageError:
    """An error for an unknown ``name`` that lists what is known and suggests close matches.

    ``of`` names the owner, e.g. ``"of task 'sphere'"``.
    """
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(known) if known else "(none)"
    owner = f" {of}" if of else ""
    return UsageError(f"unknown {kind} {name!r}{owner}.{hint} Known: {listing}.")
