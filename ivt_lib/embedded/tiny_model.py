"""Build the embedded tiny Qwen3-VL: a real ``Qwen3VLForConditionalGeneration`` (~5 M params) with a local
byte-level BPE tokenizer, a ``Qwen3VLProcessor`` and a Qwen-style chat template.

It runs the same code path as ``Qwen/Qwen3-VL-4B-Instruct``; the saved folder loads with
:func:`ivt_lib.core.models.load_model`, exactly like a hub id. Constraints (each was an error when
broken): ``sum(mrope_section) == head_dim/2``; deepstack indexes < vision depth; ``num_position_embeddings`` a
perfect square; vision ``out_hidden_size == text hidden_size``; no BOS token.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>"]

# Qwen's chat format. {% generation %} marks assistant tokens so that assistant-only losses get a mask.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{%- if message['role'] == 'assistant' -%}{% generation %}{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}"
    "{%- else -%}{{- message['content'] + '<|im_end|>' -}}{%- endif -%}"
    "{%- else -%}"
    "{%- if message['role'] == 'assistant' -%}{% generation %}"
    "{%- for part in message['content'] -%}{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}{%- endfor -%}"
    "{{- '<|im_end|>' -}}{% endgeneration %}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{{- '<|im_end|>' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
    "{{- '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@dataclass
class TinyConfig:
    """Sizes of the tiny Qwen3-VL (defaults: 4.9 M parameters)."""

    hidden: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 64
    ffn: int = 768
    mrope_section: list[int] = field(default_factory=lambda: [8, 12, 12])
    vision_depth: int = 3
    vision_hidden: int = 128
    vision_ffn: int = 512
    vision_heads: int = 2
    deepstack: list[int] = field(default_factory=lambda: [1])
    num_position_embeddings: int = 64   # 8x8 patches = a 128 px canvas at patch 16
    vocab_target: int = 600
    canvas: int = 128


def _tokenizer_corpus(n: int = 4000, seed: int = 0) -> list[str]:
    """Text that the tiny tokenizer's BPE merges are learnt from: prompts, expressions, boxes, teacher phrases."""
    from ..core.parsing import format_box
    from ..core.prompts import REFINE_TEMPLATE, STEP0_TEMPLATE
    from ..corpora.scenes import FAMILIES, generate_scene
    from .tokenizer_text import PHRASES

    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = generate_scene(rng, FAMILIES[i % 3])
        box = [rng.randint(0, 1000) for _ in range(4)]
        out.append(STEP0_TEMPLATE.format(expression=s.expression))
        out.append(REFINE_TEMPLATE.format(expression=s.expression, previous=format_box(box), step=i % 3 + 1,
                                          T=i % 3 + 2))
        out.append(format_box(box))
    out.extend(PHRASES * 20)
    return out


def build_tokenizer(cfg: TinyConfig):
    """Train a byte-level BPE with Qwen2's pre-tokenizer (single digits) and wrap it as a fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Qwen2's split pattern: digits one at a time, like the real Qwen tokenizer.
    pat = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
           r"|\s+(?!\S)|\s+")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pat), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_target, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_tokenizer_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer, canvas: int = 128):
    """A Qwen3VLProcessor around the tiny tokenizer; the pixel budget keeps a ``canvas`` image un-resized."""
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    img = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2,
                                   image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
                                   size={"shortest_edge": 32 * 32, "longest_edge": 4 * canvas * canvas})
    vid = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2,
                                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return Qwen3VLProcessor(image_processor=img, tokenizer=tokenizer, video_processor=vid, chat_template=CHAT_TEMPLATE)


def build_model(tokenizer, cfg: TinyConfig, seed: int = 0):
    """Instantiate a randomly initialised tiny ``Qwen3VLForConditionalGeneration``."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    if sum(cfg.mrope_section) != cfg.head_dim // 2:
        raise ValueError("sum(mrope_section) must equal head_dim/2")
    if any(i >= cfg.vision_depth for i in cfg.deepstack):
        raise ValueError("deepstack indexes must be < vision_depth")
    if int(cfg.num_position_embeddings ** 0.5) ** 2 != cfg.num_position_embeddings:
        raise ValueError("num_position_embeddings must be a perfect square")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=cfg.ffn,
            num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
            head_dim=cfg.head_dim, max_position_embeddings=4096, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                             "mrope_section": cfg.mrope_section, "mrope_interleaved": True},
            bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(
            depth=cfg.vision_depth, hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_ffn,
            num_heads=cfg.vision_heads, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
            out_hidden_size=cfg.hidden, num_position_embeddings=cfg.num_position_embeddings,
            deepstack_visual_indexes=cfg.deepstack),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    gc = model.generation_config
    gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = None, ids["<|im_end|>"], ids["<|endoftext|>"]
    gc.do_sample = False
    return model


def build_tiny(out_dir: str | Path, cfg: TinyConfig | None = None, seed: int = 0):
    """Build tokenizer + processor + model, save them to ``out_dir`` (loadable by ``load_model``); return them."""
    import json

    cfg = cfg or TinyConfig()
    tok = build_tokenizer(cfg)
    proc = build_processor(tok, cfg.canvas)
    model = build_model(tok, cfg, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    (out / "tiny_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return model, proc
