"""Embedded wing: the stand-in for Qwen3-VL-4B, a real but tiny ``Qwen3VLForConditionalGeneration``.

Holds its builder and tokenizer text (``tiny_model``, ``tokenizer_text``), and the base grounder's pretraining:
the stream of fresh scenes (``base_stream``) and the training script (``train_base``). It may import ``core``,
``configs`` and ``corpora``.
"""
