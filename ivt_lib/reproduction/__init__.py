"""Reproduction wing: running everything, in one command.

Holds the notebook executor with its resume keys and stamps (``executor``), the ordered run (``reproduce``), the
parallel lanes (``lanes``), the extra training seeds (``seeds``), the GRPO sweep on validation (``grpo_sweep``) and
the report generator (``report``, ``report_tables``, ``findings``). It is the top floor: it may import every other wing, and
nothing imports it.
"""
