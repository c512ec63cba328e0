"""Training wing: the IVT recipe.

Holds Phase 1 (the teachers and corrective traces: ``teacher``, ``traces``; LoRA SFT with trl: ``sft``) and Phase 2
(multi-step GRPO over whole trajectories: ``grpo``, its run config ``grpo_config`` and one update's math
``grpo_objective``; single-step GRPO on trl's trainer: ``single_step``; the multi-process sums: ``process_group``).
It may import ``core``, ``configs``, ``corpora`` and ``embedded``.
"""
