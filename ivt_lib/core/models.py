"""Load any HF vision-language model by hub id or local path; the tiny shipped model loads the same way."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# LoRA on the language model only: Qwen-VL's vision attention uses a fused qkv, so these names hit only the LLM.
LLM_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def is_quantized(model) -> bool:
    """True for a model (or peft model) whose weights are bitsandbytes-quantized (QLoRA)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False)
                or getattr(getattr(base, "config", None), "quantization_config", None) is not None)


def save_merged(peft_model, processor, path: str | Path, extra_files: dict[str, str] | None = None,
                dtype: str = "bfloat16") -> str:
    """Merge a LoRA adapter into its base and save model + processor as a plain folder that :func:`load_model`
    reads (atomically); ``extra_files`` maps file names to text written beside them.

    A QLoRA adapter is merged into a fresh ``dtype`` copy of its base model, not into the 4-bit weights: merging
    into NF4 rounds the small LoRA update back onto the 4-bit grid and loses most of it.
    """
    import tempfile

    from .io import atomic_dir

    with atomic_dir(path) as tmp:
        if is_quantized(peft_model):
            from peft import PeftModel

            base_src = peft_model.peft_config[peft_model.active_adapter].base_model_name_or_path
            log.info("QLoRA: merging the adapter into a %s copy of %s, not into the 4-bit weights", dtype, base_src)
            with tempfile.TemporaryDirectory() as adapter_dir:
                peft_model.save_pretrained(adapter_dir)
                base, _ = load_model(base_src, "cpu", dtype)  # on the CPU: the GPU holds the 4-bit model
                PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().save_pretrained(tmp)
        else:
            peft_model.merge_and_unload().save_pretrained(tmp)
        processor.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return str(path)


def adapter_checksum(adapter_dir: str | Path) -> dict:
    """Order-independent summary of the saved LoRA weights: float sums (tolerance-comparable) and a sha256 (exact)."""
    import hashlib

    from safetensors.torch import load_file

    sd = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    h = hashlib.sha256()
    total = total_abs = 0.0
    for k in sorted(sd):
        t = sd[k].detach().to("cpu").contiguous()
        h.update(k.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes: bf16 has no numpy dtype
        total += float(t.double().sum())
        total_abs += float(t.double().abs().sum())
    return {"sum": total, "abs_sum": total_abs, "sha256": h.hexdigest(), "n_tensors": len(sd),
            "n_params": sum(t.numel() for t in sd.values())}


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model(name_or_path: str | Path, device: str = "auto", dtype: str = "float32",
               attn_implementation: str | None = None, quantize_4bit: bool = False):
    """Return ``(model, processor)`` for a hub id (e.g. ``Qwen/Qwen3-VL-4B-Instruct``) or a saved folder."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected one of {sorted(DTYPES)}")
    src = str(name_or_path)
    if Path(src).exists() is False and src.startswith((".", "/")):
        raise FileNotFoundError(f"model path {src} does not exist")
    if (Path(src) / "config.json").exists():  # a saved folder: a cut-short file is named, not a bare SafetensorError
        from .integrity import check_model_folder

        check_model_folder(src)
    device = resolve_device(device)
    kwargs: dict = {"dtype": DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantize_4bit:  # QLoRA on GPU: 4-bit NF4 via bitsandbytes
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True)
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForImageTextToText.from_pretrained(src, **kwargs)
        processor = AutoProcessor.from_pretrained(src)
    except OSError as exc:
        raise OSError(f"could not load model {src!r}: {exc}. Offline? Download it where the hub is reachable "
                      f"(`hf download {src} --local-dir DIR`) and pass DIR instead.") from exc
    if not quantize_4bit:
        model.to(device)
    model.eval()
    log.info("loaded %s (%.1f M params) on %s", src, sum(p.numel() for p in model.parameters()) / 1e6, device)
    return model, processor


def load_policy(source: str | Path, backend: str = "hf", device: str = "auto", dtype: str = "float32",
                max_new_tokens: int = 32, batch_size: int = 32, show_progress: bool = True,
                vllm_gpu_memory: float = 0.3):
    """A greedy :class:`~ivt_lib.core.loop.Policy` on a model folder or hub id: ``HFPolicy`` (``backend="hf"``) or a
    ``VLLMPolicy`` engine (``"vllm"``, imported only then; GPU)."""
    if backend == "vllm":
        from .vllm_policy import VLLMPolicy

        kw = {} if dtype in ("auto", "float32") else {"dtype": dtype}
        return VLLMPolicy(str(source), max_new_tokens=max_new_tokens, show_progress=show_progress,
                          gpu_memory_utilization=vllm_gpu_memory, **kw)
    if backend != "hf":
        raise ValueError(f"backend={backend!r}: expected 'hf' or 'vllm'")
    from .loop import HFPolicy

    model, processor = load_model(source, device, dtype)
    return HFPolicy(model, processor, max_new_tokens, batch_size, show_progress=show_progress)


def sampling_copy(policy, temperature: float, top_p: float = 1.0):
    """The same policy (same weights, no reload) sampling at ``temperature``/``top_p`` instead of greedy."""
    import copy

    if temperature <= 0:
        raise ValueError(f"sampling_copy needs temperature > 0, got {temperature}")
    out = copy.copy(policy)  # shallow: the model (or vLLM engine) is shared
    out.temperature, out.top_p = temperature, top_p
    return out
