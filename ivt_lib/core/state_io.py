"""Training state (optimiser, scheduler, counters, logs) saved without pickle: tensors as safetensors, the rest JSON.

A checkpoint's ``state.pt`` used to be a pickle read with ``torch.load(weights_only=False)``, so a copied or
downloaded ``runs/`` folder could run code on load. Now :func:`save_state` writes ``state.safetensors`` (every
tensor) and ``state.json`` (everything else, with tagged tuples and non-string dict keys, so the structure read back
is exactly the one saved: the same Adam moments, the same ``betas`` tuple, the same integer parameter ids).

Checkpoints written before the change still resume: :func:`load_state` reads an old ``state.pt`` with
``torch.load(weights_only=True)``. Allowed are PyTorch's own weights-only types (tensors, dtypes, sizes; dict,
OrderedDict, list, tuple, set, str, bytes, int, float, complex, bool, None) plus numpy scalars and dtypes
(:data:`LEGACY_ALLOWED`: a metric kept as ``numpy.float64``, as transformers allows numpy values in its RNG state);
anything else is refused before it is built (:class:`UnsafeStateError`).
"""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_TENSORS, STATE_JSON, LEGACY_STATE = "state.safetensors", "state.json", "state.pt"
FORMAT = 1  # state.json's "format": bump when the encoding changes
_TAGS = ("__tensor__", "__tuple__", "__items__", "__float__")
# added to torch's weights-only allowlist for old state.pt files: numpy scalar values and their dtypes, nothing callable
LEGACY_ALLOWED = [(getattr(np, "_core", None) or np.core).multiarray.scalar, np.dtype,
                  *(type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_))]


class UnsafeStateError(ValueError):
    """An old ``state.pt`` that holds more than tensors and plain values: loading it could run code."""


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):  # repr round-trips exactly; JSON has no NaN or inf
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        # optimiser state is keyed by integer parameter ids, which JSON would turn into strings
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"cannot save a {type(obj).__name__} in a training state (tensors and plain values only)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1 and next(iter(obj)) in _TAGS:
        tag, val = next(iter(obj.items()))
        if tag == "__tensor__":
            return tensors[val]
        if tag == "__tuple__":
            return tuple(_decode(v, tensors) for v in val)
        if tag == "__float__":
            return float(val)
        return {_decode(k, tensors): _decode(v, tensors) for k, v in val}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def save_state(folder: str | Path, state: dict) -> None:
    """Write ``state`` into ``folder`` as ``state.safetensors`` + ``state.json`` (the caller makes it atomic)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    body = _encode(state, tensors)
    save_file(tensors, str(folder / STATE_TENSORS))
    (folder / STATE_JSON).write_text(json.dumps({"format": FORMAT, "state": body}))


def has_state(folder: str | Path) -> bool:
    """Whether ``folder`` holds a training state, in the current or the old (``state.pt``) format."""
    folder = Path(folder)
    return (folder / STATE_JSON).exists() or (folder / LEGACY_STATE).exists()


def state_files(folder: str | Path) -> tuple[str, ...]:
    """The files :func:`load_state` will read in ``folder`` (to verify them first)."""
    return (STATE_JSON, STATE_TENSORS) if (Path(folder) / STATE_JSON).exists() else (LEGACY_STATE,)


def load_state(folder: str | Path) -> dict:
    """The training state saved in ``folder``: the current format, else an old ``state.pt`` read safely."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / STATE_JSON).exists():
        doc = json.loads((folder / STATE_JSON).read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"{folder / STATE_JSON}: state format {doc.get('format')!r}, this code reads {FORMAT}")
        return _decode(doc["state"], load_file(str(folder / STATE_TENSORS)))
    path = folder / LEGACY_STATE
    try:
        # map_location: the old saves kept each tensor's device; the optimiser moves its state to the parameters'
        with torch.serialization.safe_globals(LEGACY_ALLOWED):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeStateError(
            f"{path} holds pickled objects other than tensors and plain values ({first}); it is not loaded, because "
            f"loading it could run code. If you did not write it with this project, delete that folder; if you did, "
            f"it is not a state this project writes either: delete it and retrain") from exc
