"""ivt_lib: Iterative Visual Thinking companion library (boxes, rendering, refinement loop, rewards, GRPO)."""
from . import compat as _compat

_compat.apply()  # must run before anything imports transformers/torchvision

__version__ = "0.1.0"
