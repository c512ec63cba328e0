"""Teachers write step-conditioned corrective traces: ``(image, expression, previous box, step target, step, T)`` ->
reasoning text + the step's box. Backends behind one interface (:class:`Teacher`):

* :class:`ScriptedTeacher` — the embedded default. **It is geometric and uses the ground truth** (the step target
  lies on the line from the student's box to the GT box). It stands in for the paper's teacher VLM; it is not a
  model, and every notebook that uses it says so.
* :class:`HFTeacher` — any local HF VLM through :func:`ivt_lib.core.models.load_model`.
* :class:`OpenAITeacher` — an OpenAI-compatible chat-completions endpoint with images (vLLM, SGLang, ...).

:class:`CachedTeacher` wraps any of them with an on-disk cache keyed by the request, so an interrupted synthesis
resumes without repeating calls. :func:`validate_trace` checks that a trace's box parses and matches its target.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

from PIL import Image

from ..core import boxes as bx
from ..core.io import atomic_write_bytes
from ..core.parsing import format_box, parse_box
from ..core.render import draw_box

log = logging.getLogger(__name__)


@dataclass
class TeacherRequest:
    """One step of one trajectory to explain. Boxes are pixel xyxy."""

    sample_id: str
    image: Image.Image
    expression: str
    previous: tuple[float, float, float, float]
    target: tuple[float, float, float, float]
    step: int
    T: int
    objects: list[dict] = field(default_factory=list)   # scene objects (for "covers the wrong object")
    target_index: int = -1

    def target_model(self, fmt: str = "qwen3") -> tuple[int, int, int, int]:
        """The step target in the model's frame (what the trace must end with)."""
        return bx.to_model_frame(self.target, self.image.width, self.image.height, fmt)

    def key(self, teacher_id: str) -> str:
        """Cache key: the teacher and every input that shapes the answer (image bytes included)."""
        h = hashlib.sha256(self.image.convert("RGB").tobytes())
        h.update(json.dumps([teacher_id, self.expression, [round(v, 2) for v in self.previous],
                             [round(v, 2) for v in self.target], self.step, self.T]).encode())
        return h.hexdigest()


class Teacher(Protocol):
    """Writes one trace per request."""

    teacher_id: str

    def write(self, requests: Sequence[TeacherRequest]) -> list[str]: ...


# ----------------------------------------------------------------------------------------------------------- scripted
# Short phrases on purpose: the tiny embedded model must learn to write them (a few variants each, for variety).
_DIRS = {"left": ("too far left", "left of the target"), "right": ("too far right", "right of the target"),
         "up": ("too high", "above the target"), "down": ("too low", "below the target")}
_SIZES = {"small": ("too small", "missing part of it"), "large": ("too large", "too loose")}


class ScriptedTeacher:
    """Geometric teacher (uses the ground truth through the step target): says which way the box is off, whether it is
    too big or small, or which other object it covers, then gives the step's box. Deterministic per request."""

    def __init__(self, coord_format: str = "qwen3", seed: int = 0, reasoning: bool = True):
        self.coord_format, self.seed, self.reasoning = coord_format, seed, reasoning
        # box-only traces are a different teacher: they must not share cache entries with reasoning ones
        self.teacher_id = "scripted-geometric-v2" + ("" if reasoning else "-box-only")

    def reason(self, r: TeacherRequest) -> str:
        """The natural-language part of the trace: which object it covers, which way it is off, size, partway."""
        rng = random.Random(f"{self.seed}-{r.sample_id}-{r.step}")
        p, q = r.previous, r.target
        wrong = [o for i, o in enumerate(r.objects) if i != r.target_index and bx.iou(p, o["box"]) >= 0.4]
        if wrong and r.target_index >= 0 and bx.iou(p, r.objects[r.target_index]["box"]) < 0.3:
            o = wrong[0]
            head = f"It covers the {o['colour']} {o['shape']}, not the target."
            return head + (" Partway." if r.step < r.T else "")
        pw, ph = max(p[2] - p[0], 1.0), max(p[3] - p[1], 1.0)
        dx = ((q[0] + q[2]) - (p[0] + p[2])) / 2 / pw
        dy = ((q[1] + q[3]) - (p[1] + p[3])) / 2 / ph
        off = []
        if abs(dx) > 0.08:
            off.append(rng.choice(_DIRS["right" if dx < 0 else "left"]))
        if abs(dy) > 0.08:
            off.append(rng.choice(_DIRS["down" if dy < 0 else "up"]))
        ratio = bx.area(q) / max(bx.area(p), 1e-6)
        if ratio > 1.2:
            off.append(rng.choice(_SIZES["small"]))
        elif ratio < 1 / 1.2:
            off.append(rng.choice(_SIZES["large"]))
        if not off:
            return "It fits the target; keep it."
        text = "It is " + " and ".join(off) + "."
        return text + (" Partway." if r.step < r.T else "")

    def write(self, requests: Sequence[TeacherRequest]) -> list[str]:
        """Reasoning followed by the step target as ``{"bbox_2d": [...]}`` (the box alone if ``reasoning=False``)."""
        if not self.reasoning:
            return [format_box(r.target_model(self.coord_format)) for r in requests]
        return [f"{self.reason(r)} {format_box(r.target_model(self.coord_format))}" for r in requests]


# -------------------------------------------------------------------------------------------------------- model-based
TEACHER_PROMPT = (
    'A student located "{expression}" and drew the red box {previous}. This is refinement step {step} of {T}. '
    "The corrected box for this step is {target}. In one or two short sentences, explain what is wrong with the red "
    "box (direction, size, or the wrong object), then end with exactly this JSON: {target}")


def teacher_messages(r: TeacherRequest, fmt: str = "qwen3") -> list[dict]:
    """The teacher's chat messages for one request (the image carries the drawn previous box)."""
    w, h = r.image.width, r.image.height
    text = TEACHER_PROMPT.format(expression=r.expression, step=r.step, T=r.T,
                                 previous=format_box(bx.to_model_frame(r.previous, w, h, fmt)),
                                 target=format_box(r.target_model(fmt)))
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


class HFTeacher:
    """A local HF VLM as teacher (e.g. a larger Qwen3-VL), batched through the loop's :class:`HFPolicy`."""

    def __init__(self, model, processor, name: str = "hf", coord_format: str = "qwen3", max_new_tokens: int = 128,
                 batch_size: int = 8):
        from ..core.loop import HFPolicy

        self.policy = HFPolicy(model, processor, max_new_tokens=max_new_tokens, batch_size=batch_size)
        self.teacher_id, self.coord_format = f"hf:{name}", coord_format

    def write(self, requests: Sequence[TeacherRequest]) -> list[str]:
        """Generate one trace per request."""
        msgs = [teacher_messages(r, self.coord_format) for r in requests]
        imgs = [draw_box(r.image, r.previous) for r in requests]
        return [g.text for g in self.policy.generate(msgs, imgs)]


class TeacherUnreachable(RuntimeError):
    """The teacher endpoint could not be reached."""


class OpenAITeacher:
    """An OpenAI-compatible chat-completions endpoint (vLLM, SGLang, ...) with images as base64 data URLs.

    Timeouts and retries with exponential backoff come from the ``openai`` client; concurrency is bounded by
    ``max_workers``. An unreachable endpoint raises :class:`TeacherUnreachable` naming the URL."""

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", timeout_s: float = 60.0,
                 max_retries: int = 3, max_workers: int = 4, max_tokens: int = 160, temperature: float = 0.0,
                 coord_format: str = "qwen3"):
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=max_retries)
        self.base_url, self.model, self.max_workers = base_url, model, max_workers
        self.max_tokens, self.temperature, self.coord_format = max_tokens, temperature, coord_format
        self.teacher_id = f"openai:{model}"

    @staticmethod
    def _data_url(img: Image.Image) -> str:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    def _one(self, r: TeacherRequest) -> str:
        import openai

        text = teacher_messages(r, self.coord_format)[0]["content"][1]["text"]
        content = [{"type": "image_url", "image_url": {"url": self._data_url(draw_box(r.image, r.previous))}},
                   {"type": "text", "text": text}]
        try:
            out = self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": content}],
                                                      max_tokens=self.max_tokens, temperature=self.temperature)
        except openai.APIConnectionError as exc:  # includes timeouts, after the client's retries
            raise TeacherUnreachable(f"teacher endpoint {self.base_url} unreachable after retries: {exc}. Start the "
                                     f"server (e.g. `vllm serve {self.model}`) or use the scripted teacher.") from exc
        return out.choices[0].message.content or ""

    def write(self, requests: Sequence[TeacherRequest]) -> list[str]:
        """One chat completion per request, at most ``max_workers`` in flight."""
        with ThreadPoolExecutor(max_workers=self.max_workers) as ex:
            return list(ex.map(self._one, requests))


# --------------------------------------------------------------------------------------------------------------- cache
class CachedTeacher:
    """Disk cache in front of a teacher: only requests without a cached answer reach the teacher."""

    def __init__(self, teacher: Teacher, cache_dir: str | Path):
        self.teacher, self.dir = teacher, Path(cache_dir)
        self.teacher_id = teacher.teacher_id
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def write(self, requests: Sequence[TeacherRequest], chunk: int = 64) -> list[str]:
        """Answers for all requests; misses are sent in chunks and each chunk is cached as soon as it returns."""
        keys = [r.key(self.teacher_id) for r in requests]
        out: list[str | None] = []
        for k in keys:
            p = self._path(k)
            out.append(json.loads(p.read_text())["text"] if p.exists() else None)
        todo = [i for i, o in enumerate(out) if o is None]
        self.hits += len(requests) - len(todo)
        self.misses += len(todo)
        for s in range(0, len(todo), chunk):
            idx = todo[s:s + chunk]
            for i, text in zip(idx, self.teacher.write([requests[i] for i in idx])):
                atomic_write_bytes(self._path(keys[i]), json.dumps({"text": text}).encode())
                out[i] = text
        return out  # type: ignore[return-value]


def validate_trace(text: str, request: TeacherRequest, fmt: str = "qwen3", tol: float = 2.0,
                   need_reasoning: bool = True) -> str | None:
    """None if the trace is usable, else the rejection reason (no box / box off target / no reasoning)."""
    parsed = parse_box(text)
    if not parsed.ok:
        return f"parse:{parsed.reason}"
    want = request.target_model(fmt)
    if max(abs(a - b) for a, b in zip(parsed.box, want)) > tol:
        return "box_off_target"
    if need_reasoning and len(text.split("{")[0].strip()) < 3:
        return "no_reasoning"
    return None
