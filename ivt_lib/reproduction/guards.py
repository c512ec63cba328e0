"""The guards a reproduction or seeds run passes before it starts: one run per tier, and a clean tree for the results
that are committed.

One run per tier at a time: a lock file per tier, held by ``reproduce`` and ``seeds`` for as long as they run.
Two reproductions of the same tier started 2 s apart used to train into the same checkpoint folders. Now the second
one refuses with a message naming the first one's PID, or, with ``--wait``, waits until it has finished. The lock is
an ``flock`` on ``runs/reproduce/<tier>.lock``: the kernel releases it when its holder exits, killed or not, so a
stale file never blocks a run; the file holds the holder's PID, command and start time for the message.

Committed results only from a clean tree: the tiers whose results are committed (their ``results_dir`` is outside
``runs/``: default, full, paper, paper_24gb) refuse to start while the code, notebooks, tier files or data have
uncommitted changes (:func:`ivt_lib.core.io.dirty_paths`), since those results must regenerate from a commit (the
committed seeds once carried ``+dirty`` and could not be traced). ``--allow-dirty`` runs anyway, with a warning; every
result's provenance says ``+dirty`` and lists the changes.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..configs import TIER_FOLDERS
from ..core.io import dirty_paths


class TierBusy(RuntimeError):
    """Another process holds the tier's lock (the message names its PID)."""


def lock_path(root: Path, tier: str) -> Path:
    """The lock file of a tier."""
    return root / "runs" / "reproduce" / f"{tier}.lock"


def holder(path: Path) -> dict:
    """What the lock file says about its holder (empty when it says nothing readable)."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(info: dict) -> str:
    return (f"PID {info.get('pid', '?')}" + (f" ({info['command']}, since {info['since']})"
                                                  if info.get("command") else ""))


@contextmanager
def tier_lock(root: Path, tier: str, command: str, wait: bool = False) -> Iterator[Path]:
    """Hold ``tier``'s lock for the block; another holder makes it raise :class:`TierBusy`, or wait (``wait``)."""
    path = lock_path(root, tier)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:  # a+: never truncates the holder's record before we hold the lock
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = holder(path)
            if not wait:
                raise TierBusy(f"the {tier} tier is already running in {_describe(info)}; lock file {path}. "
                               "Wait for it to finish, or rerun with --wait to start when it has.") from None
            print(f"waiting for the {tier} tier's run in {_describe(info)} to finish (lock file {path})",
                  file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "command": command, "since": time.strftime("%FT%T")}))
        fh.flush()
        try:
            yield path
        finally:
            fh.seek(0)
            fh.truncate()  # no holder recorded once released (the flock goes with the file's close)
            fh.flush()


def committed_tier(tier: str) -> bool:
    """Whether a tier's results are committed (its results folder is outside the scratch folder ``runs/``)."""
    return not TIER_FOLDERS[tier]["results_dir"].startswith("runs/")


def refuse_dirty(root: Path, tier: str, allow_dirty: bool, command: str) -> str | None:
    """Why ``command`` must not write ``tier``'s results from the tree at ``root`` (a committed tier, uncommitted
    changes to what results depend on, no ``allow_dirty``), else None; with ``allow_dirty``, a loud warning instead."""
    dirty = dirty_paths(root) if committed_tier(tier) else None
    if not dirty:
        return None
    listed = "; ".join(dirty[:8]) + (f"; and {len(dirty) - 8} more" if len(dirty) > 8 else "")
    if allow_dirty:
        print(f"WARNING: writing the {tier} tier's committed results from a tree with uncommitted changes ({listed})"
              ": they record git_sha <commit>+dirty and cannot be regenerated from a commit", file=sys.stderr,
              flush=True)
        return None
    return (f"refusing to write the {tier} tier's results ({TIER_FOLDERS[tier]['results_dir']}/, committed) from a "
            f"tree with uncommitted changes to what they depend on: {listed}. Commit or stash them first, so that "
            f"the results regenerate from a commit, or pass --allow-dirty to {command} anyway.")
