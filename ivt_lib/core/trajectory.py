"""Trajectories: what the refinement loop records per sample and step, and their JSON-lines file format."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .io import atomic_write_bytes


@dataclass
class StepRecord:
    """What happened to one sample at one step."""

    text: str
    box: tuple[float, float, float, float] | None   # pixel xyxy after the validity rule; None = parse failure
    iou: float
    parse_ok: bool
    reason: str | None = None
    mean_logprob: float = float("nan")
    stopped: bool = False                           # True when a stopping rule froze this sample before this step
    min_logprob: float = float("nan")               # lowest token log-probability of the answer
    window: tuple[int, int, int, int] | None = None  # zoom view: the window the answer was given in (image px)


@dataclass
class Trajectory:
    """A sample's whole refinement: ``steps[0]`` is the grounding, ``steps[t]`` the t-th refinement."""

    sample_id: str
    family: str
    gt: tuple[float, float, float, float]
    width: int
    height: int
    steps: list[StepRecord] = field(default_factory=list)
    # GRPO only (``record_inputs=True``): per generated step, the exact messages, image and completion token ids
    rollout: list[dict] = field(default_factory=list, repr=False, compare=False)

    @property
    def ious(self) -> list[float]:
        """IoU per step."""
        return [s.iou for s in self.steps]

    def to_dict(self) -> dict:
        """JSON-ready dict (without the rollout inputs)."""
        d = asdict(Trajectory(self.sample_id, self.family, self.gt, self.width, self.height, self.steps))
        d.pop("rollout")
        return d


def save_trajectories(path: str | Path, trajs) -> Path:
    """Atomically write trajectories as JSON lines (one sample per line), for the explorer and later notebooks."""
    lines = [json.dumps(t.to_dict(), default=float) for t in trajs]
    return atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def load_trajectories(path: str | Path):
    """Read trajectories written by :func:`save_trajectories`."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            steps = [StepRecord(**{**s, "box": tuple(s["box"]) if s["box"] is not None else None,
                                   "window": tuple(s["window"]) if s.get("window") is not None else None})
                     for s in d.pop("steps")]
            out.append(Trajectory(**{**d, "gt": tuple(d["gt"])}, steps=steps))
    return out
