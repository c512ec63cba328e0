"""Corpora wing: where the samples come from.

Holds the procedurally generated referring scenes (``scenes``, ``records``), the stored splits and their checked
loading (``splits``), and the paper's real sets (``paper_data``: RefCOCOg, Ref-L4, Ref-Adv-S) with the mixed
benchmark built from them (``paper_benchmark``). It may import ``core`` and ``configs``.
"""
