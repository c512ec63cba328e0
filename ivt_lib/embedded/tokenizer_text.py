"""Refinement sentences in the style of a VLM teacher's critique, fed to the tiny tokenizer's BPE training so that
its vocabulary covers such text (the scripted teacher's own short phrases are in :mod:`ivt_lib.training.teacher`)."""
PHRASES = [
    "The red box is too far left, so I move it right.",
    "The red box is too far right, so I move it left.",
    "The red box is too high, so I move it down.",
    "The red box is too low, so I move it up.",
    "The red box is too small, so I enlarge it.",
    "The red box is too large, so I shrink it.",
    "The red box covers another object instead of the target.",
    "The red box already fits the target well, so I keep it.",
    "It misses part of the target.",
    "Correcting towards the target.",
]
