"""torchvision compatibility step for the CPU torch wheel.

transformers 5.x imports torchvision to build any Qwen-VL processor (through the video processor).
PyPI's torchvision 0.28.0 links CUDA libraries that the CPU torch 2.13.0 wheel lacks, so importing it raises
``RuntimeError: operator torchvision::nms does not exist``. torchvision only needs the two operator *schemas* it
registers abstract implementations for at import; nothing in this project calls nms. So:

1. try to load torchvision's compiled ``_C.so`` the normal way (GPU machines: it loads, and we do nothing else);
2. if that raises, declare ``torchvision::nms`` and ``torchvision::qnms`` with ``torch.library`` so that the import
   succeeds. Calling them would still fail loudly (no kernel), which is what we want.
"""
from __future__ import annotations

import importlib.util
import logging
import os

log = logging.getLogger(__name__)
_APPLIED: bool | None = None
_LIB = None  # keep the torch.library.Library alive for the process lifetime


def apply() -> bool:
    """Make torchvision importable beside a CPU torch; return True if the shim was needed."""
    global _APPLIED, _LIB
    if _APPLIED is not None:
        return _APPLIED
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        _APPLIED = False
        return False
    libdir = list(spec.submodule_search_locations)[0]
    so = next((os.path.join(libdir, f) for f in os.listdir(libdir) if f.startswith("_C") and f.endswith(".so")), None)
    try:
        if so is None:
            raise OSError("torchvision _C.so not found")
        torch.ops.load_library(so)
        _APPLIED = False  # compiled ops load: no-op
    except (OSError, RuntimeError) as exc:
        log.debug("torchvision _C.so did not load (%s); declaring op schemas", exc)
        try:
            _LIB = torch.library.Library("torchvision", "DEF")
            for name in ("nms", "qnms"):
                _LIB.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError as exc2:  # already defined by someone else: fine
            log.debug("schema definition skipped: %s", exc2)
        _APPLIED = True
    return _APPLIED
