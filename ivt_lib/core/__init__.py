"""Core wing: the thin IVT library that every other wing builds on.

Holds the box convention and IoU (``boxes``), model text -> box (``parsing``), the prompts, the one renderer
(``render``), the IoU and format rewards, the batched refinement loop and its trajectories, seeded sampling, the
metrics and paired statistics, the model loader (``models``, with the optional vLLM backend), atomic I/O, progress
bars and the torchvision shim (``compat``). It imports nothing from other wings.
"""
