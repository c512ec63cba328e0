"""Analysis wing: what the runs mean.

Holds the side-by-side evaluation (``evaluation``), answer rules fitted on validation (``selection``,
``deployable``), probes of behaviour and of the image tokens (``probe``, ``visual_probe``), per-seed contrasts
(``seed_stats``), the GRPO validation curve (``grpo_curve``), the figures (``plots``), the widget explorer and live
mode (``explorer``, ``live``). It may import every wing below it: ``core``, ``configs``, ``corpora``, ``embedded``
and ``training``.
"""
