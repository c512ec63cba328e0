"""Check the files a run is about to load (models, checkpoints) and name a corrupt one with what to do about it.

The checks are cheap and read no tensor data: a safetensors file's header must promise exactly the bytes on disk, a
torch file (a zip) must have its central directory, a JSON file must parse. A file cut short (a full disk, a copy
stopped half-way) fails them; a truncated file is what the probes of issue 33 found, and loading one gave
``SafetensorError: incomplete metadata`` or ``OSError: [Errno 22]`` naming no file.

What to do is said in the error: delete the folder, or rerun with ``--force`` the notebook that writes it. A forced
run sets ``IVT_FORCE=1`` (:data:`FORCE_ENV`) for the notebooks it runs, and training then retrains over a corrupt
checkpoint of its own instead of stopping (:func:`force_requested`).
"""
from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from pathlib import Path
from typing import Iterable

FORCE_ENV = "IVT_FORCE"
REPRODUCE = "python -m ivt_lib.reproduction.reproduce"

# (pattern on the posix path, the notebook or command that writes that folder)
_WRITERS = (
    (r"/sft/[^/]+/(merged|adapter|checkpoints)(/|$)", "notebook 03_sft"),
    (r"/(grpo|grpo_refine_credit|single_step_grpo|grpo_sweep)[^/]*/", "notebook 04_grpo"),
    (r"/grpo_curve/", "python -m ivt_lib.analysis.grpo_curve"),
    (r"/untrained_tiny(/|$)", "notebook 00_base_model"),
    (r"(^|/)runs/base[^/]*(/|$)", "python -m ivt_lib.embedded.train_base (make base-model)"),
)


class CorruptFileError(RuntimeError):
    """A model or checkpoint file that cannot be what its writer wrote; the message names it and what to do."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


def force_requested(explicit: bool | None = None) -> bool:
    """``explicit`` if given, else whether the environment asks for a forced rerun (``IVT_FORCE=1``)."""
    if explicit is not None:
        return explicit
    return os.environ.get(FORCE_ENV, "").strip().lower() in ("1", "true", "yes")


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is unreadable (its header is cut, or promises more or fewer bytes), else None."""
    size = path.stat().st_size
    if size < 8:
        return f"is {size} bytes long, shorter than a safetensors header"
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            return f"is truncated: {size} bytes, its header alone promises {8 + n}"
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return "has an unreadable header (not JSON)"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return "has an unreadable header (no tensor offsets)"
    want = 8 + n + end
    if size < want:
        return f"is truncated: {size:,} of the {want:,} bytes its header promises"
    if size > want:
        return f"has {size - want:,} bytes more than its header promises ({want:,})"
    return None


def torch_file_problem(path: Path) -> str | None:
    """Why a ``torch.save`` file (a zip archive) is unreadable: no central directory, or members past its end."""
    try:
        with zipfile.ZipFile(path) as z:
            size = path.stat().st_size
            if any(i.header_offset + i.compress_size > size for i in z.infolist()):
                return "is truncated (a member ends past the end of the file)"
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"is not a complete torch file ({exc})"
    return None


def json_problem(path: Path) -> str | None:
    """Why a JSON file does not parse, else None."""
    try:
        json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        return f"is not valid JSON ({exc})"
    return None


def file_problem(path: str | Path) -> str | None:
    """What is wrong with a file (missing, empty, cut short, unparsable), judged by its kind; None if it looks whole."""
    path = Path(path)
    if not path.is_file():
        return "is missing"
    if path.stat().st_size == 0:
        return "is empty (0 bytes)"
    if path.suffix == ".safetensors":
        return safetensors_problem(path)
    if path.suffix in (".pt", ".pth", ".bin"):
        return torch_file_problem(path)
    if path.suffix == ".json":
        return json_problem(path)
    return None


def writer_hint(folder: str | Path) -> str:
    """What rewrites ``folder``: git for committed data, else the notebook (``--force``) or command that writes it."""
    p = Path(folder).resolve().as_posix()
    root = Path(__file__).resolve().parents[2].as_posix()
    rel = p[len(root) + 1:] if p.startswith(root + "/") else p
    if rel.startswith("data/"):
        return f"restore it with `git checkout -- {rel}` (or retrain it: data/BASE_MODEL_RUN.md)"
    tier = re.match(r"runs/([^/]+)/", rel)
    for pattern, writer in _WRITERS:
        if re.search(pattern, "/" + rel):
            cmd = f" (`{REPRODUCE} --tier {tier.group(1)} --force`)" if tier and writer.startswith("notebook") else ""
            return f"rerun {writer} with --force{cmd}, which writes it again"
    return "rerun the notebook or script that writes it with --force, which writes it again"


def corrupt_error(what: str, folder: str | Path, problems: Iterable[tuple[str, str]]) -> CorruptFileError:
    """The error for a corrupt ``what`` (e.g. "GRPO checkpoint") in ``folder``: each bad file, then what to do."""
    folder = Path(folder)
    listed = "; ".join(f"{name} {problem}" for name, problem in problems)
    return CorruptFileError(f"{what} {folder} is corrupt: {listed}. Delete that folder, or {writer_hint(folder)}.",
                            folder)


def folder_problems(folder: str | Path, names: Iterable[str]) -> list[tuple[str, str]]:
    """``(name, problem)`` for each of ``names`` in ``folder`` that is missing or unreadable."""
    folder = Path(folder)
    return [(n, pr) for n in names if (pr := file_problem(folder / n)) is not None]


def check_folder(what: str, folder: str | Path, names: Iterable[str]) -> None:
    """Raise :class:`CorruptFileError` naming ``folder``, its bad files and what to do, if any of ``names`` is bad."""
    bad = folder_problems(folder, names)
    if bad:
        raise corrupt_error(what, folder, bad)


def model_files(folder: str | Path) -> list[str]:
    """The files ``from_pretrained`` reads from a saved model folder: its JSON files and weights (shards by index)."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.glob("*.json"))  # config, generation and processor settings, tokenizer
    names += [] if "config.json" in names else ["config.json"]
    index = folder / "model.safetensors.index.json"
    if index.exists():
        if json_problem(index) is None:
            names += sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
    elif (folder / "model.safetensors").exists() or not (folder / "pytorch_model.bin").exists():
        names.append("model.safetensors")
    else:
        names.append("pytorch_model.bin")
    return names


def check_model_folder(folder: str | Path) -> None:
    """Raise :class:`CorruptFileError` if a saved model folder's config or weights are missing or cut short."""
    check_folder("model folder", folder, model_files(folder))
