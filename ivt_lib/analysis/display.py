"""How the notebooks show things to a reader: tables as in the paper, log lines as plain text, no library noise.

:func:`setup_notebook` is the one call at the top of each notebook: it makes every ``DataFrame`` render with
accuracies and shares as percentages with one decimal (IoU-like values with three), sends the library's INFO lines
to stdout with paths relative to the project (not red stderr blocks with absolute paths), and silences the
deprecation warnings of the pinned transformers that the reader cannot act on.
"""
from __future__ import annotations

import logging
import re
import sys
import warnings

import pandas as pd

from ..configs import ROOT
from ..core.io import relative_paths

# column names (or their last level) shown x100 with one decimal: accuracies, rates and shares of samples
PERCENT = re.compile(r"(^|[ _(])(acc@|parse|rate|share|improve|degrade|stay|honoured|chance|toward|away|unchanged"
                     r"|kept|pixels|pre_merger|lm_token|majority)", re.I)
# shown with three decimals: IoU, degradation, correlations, deltas of IoU, losses
THREE = re.compile(r"(iou|degradation|^r_|loss|kl|delta|tau|gain|mean_move)", re.I)


def _name(col) -> str:
    return str(col[-1] if isinstance(col, tuple) else col)


def column_format(col) -> str | None:
    """The format of one column by its name: ``"pct"``, ``"3f"`` or None (left as it is)."""
    name = _name(col)
    if PERCENT.search(name) and not re.search(r"\bn\b|count|^n_", name):
        return "pct"
    if THREE.search(name):
        return "3f"
    return None


def _cell(x, kind: str | None) -> str:
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (int, float)) for v in x):  # e.g. a CI [lo, hi]
        return "[" + ", ".join(_cell(v, kind) for v in x) + "]"
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x:  # NaN and non-numbers pass through
        return "–" if isinstance(x, float) and x != x else str(x)
    if kind == "pct":
        return f"{100 * x:.1f}"
    if kind == "3f":
        return f"{x:.3f}"
    return f"{x:,}" if isinstance(x, int) else f"{x:.3g}"


def paper_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every number as text in the paper's style (percent columns x100, one decimal)."""
    out = df.copy().astype(object)
    for col in df.columns:
        kind = column_format(col)
        out[col] = [_cell(x, kind) for x in df[col]]
    out.columns = [f"{_name(c)} (%)" if column_format(c) == "pct" and not isinstance(c, tuple) else c
                   for c in df.columns]
    return out


def rel(path) -> str:
    """``path`` as the reader should see it: relative to the project root when it lies under it."""
    return relative_paths(str(path))


class _RelativePaths(logging.Filter):
    """Show paths under the project root relative to it (an executed notebook never echoes a machine's path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = record.getMessage().replace(f"{ROOT}/", "").replace(str(ROOT), "."), None
        return True


def setup_notebook(level: int = logging.INFO) -> None:
    """Paper-style tables, plain-text log lines without absolute paths, no deprecation noise (call once)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_RelativePaths())
    lib = logging.getLogger("ivt_lib")
    lib.handlers[:] = [handler]
    lib.setLevel(level)
    lib.propagate = False
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers(\.|$)")
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*")
    try:
        import transformers

        transformers.logging.set_verbosity_error()  # e.g. "mtime may not be reliable on this filesystem"
    except ImportError:  # pragma: no cover - transformers is a required package
        pass
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - not in a kernel
        return
    ip = get_ipython()
    if ip is None:
        return
    fmt = ip.display_formatter.formatters
    fmt["text/html"].for_type(pd.DataFrame, lambda df: paper_frame(df).to_html())
    fmt["text/plain"].for_type(pd.DataFrame, lambda df, p, cycle: p.text(paper_frame(df).to_string()))
    fmt["text/html"].for_type(pd.Series, lambda s: paper_frame(s.to_frame()).to_html())
    fmt["text/plain"].for_type(pd.Series, lambda s, p, cycle: p.text(paper_frame(s.to_frame()).to_string()))
