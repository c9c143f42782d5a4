"""Helpers the benchmark scripts share (run as scripts, they import this from their dir)."""

from __future__ import annotations

import os
import resource
import sys


def load_average() -> str:
    """Other work on a shared box skews latency: every result is printed beside this."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def raise_fd_limit(need: int | None = None) -> None:
    """Soft fd limit up to ``need`` (or to the hard limit); warn if the hard one is short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if need is None else min(hard, max(soft, need))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if need is not None and want < need:
        print(f"warning: fd limit {want} < {need} needed; raise the hard limit (ulimit -Hn)",
              file=sys.stderr)
