"""Seeded, batch-invariant sampling: each sequence draws its tokens from its own seed, not from a shared RNG.

Why: with ``model.generate(do_sample=True)`` every row of a batch consumes the one global torch RNG, so what a
trajectory samples depends on which other trajectories share its batch. Multi-process GRPO splits a batch of prompts
across processes, and a resumed run may batch differently; with per-sequence seeds both give the *same* rollouts
as one uninterrupted process (up to float noise in the logits), which is what lets ``tests/test_accelerate.py``
compare 1 and 2 processes. vLLM has the same notion (``SamplingParams(seed=...)`` per request).

The sampler is a transformers ``LogitsProcessor`` used with greedy decoding: it applies temperature and top-p, draws
one uniform number per row from ``hash(seed, position)`` (splitmix64, vectorised in numpy) and keeps only the token
at that quantile of the row's distribution (inverse-CDF sampling, exact in distribution), so ``argmax`` picks it. It
also records the log-probability of each chosen token under the distribution it was drawn from (tempered, top-p
renormalised), the label-free confidence, as HF's processed scores give it.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

_MASK64 = (1 << 64) - 1


def derive_seed(*parts) -> int:
    """A stable 63-bit seed from any printable parts (sha256 of their ``repr``; independent of PYTHONHASHSEED)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 (wrapping arithmetic)."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(_MASK64)
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(_MASK64)
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(_MASK64)
    return x ^ (x >> np.uint64(31))


def uniforms(seeds: np.ndarray, position: int) -> np.ndarray:
    """One U[0, 1) number per seed for this token position (53-bit resolution)."""
    with np.errstate(over="ignore"):
        x = _splitmix64(_splitmix64(seeds.astype(np.uint64)) ^ np.uint64(position & _MASK64))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class SeededSampler:
    """``LogitsProcessor`` that samples row ``i`` of the batch with ``seeds[i]`` (use with ``do_sample=False``)."""

    def __init__(self, seeds, prompt_len: int, temperature: float = 1.0, top_p: float = 1.0):
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: seeded sampling needs temperature > 0")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p}: must be in (0, 1]")
        self.seeds = np.asarray([int(s) & _MASK64 for s in seeds], dtype=np.uint64)
        self.prompt_len, self.temperature, self.top_p = prompt_len, temperature, top_p
        self.logps: list[torch.Tensor] = []  # per generated position: (batch,) log-prob of the chosen token

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.seeds):
            raise ValueError(f"SeededSampler has {len(self.seeds)} seeds for a batch of {scores.shape[0]}")
        pos = input_ids.shape[1] - self.prompt_len
        logp = torch.log_softmax(scores.float() / self.temperature, -1)
        probs = logp.exp().double()
        if self.top_p < 1.0:  # keep the smallest set of most likely tokens whose mass reaches top_p
            sp, order = probs.sort(-1, descending=True)
            drop = (sp.cumsum(-1) - sp) >= self.top_p
            probs = probs.scatter(-1, order, sp.masked_fill(drop, 0.0))
        cdf = probs.cumsum(-1)
        u = torch.as_tensor(uniforms(self.seeds, pos), dtype=torch.float64, device=cdf.device)
        chosen = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).clamp(max=cdf.shape[1] - 1)
        # never land on a zero-probability token (possible only at float ties on the CDF)
        zero = probs.gather(1, chosen) == 0
        if zero.any():
            chosen = torch.where(zero, probs.argmax(-1, keepdim=True), chosen)
        # log-prob under the distribution actually sampled (tempered, top-p renormalised), as HF's processed scores
        chosen_p = probs.gather(1, chosen).squeeze(1) / probs.sum(-1)
        self.logps.append(torch.log(chosen_p).to(logp.dtype) if self.top_p < 1.0 else logp.gather(1, chosen).squeeze(1))
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(1, chosen, 0.0)

    def token_logps(self) -> torch.Tensor:
        """``(batch, generated)`` log-probabilities of the chosen tokens."""
        return torch.stack(self.logps, 1) if self.logps else torch.zeros((len(self.seeds), 0))
