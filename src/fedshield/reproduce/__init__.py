"""Paper reproductions: one command regenerates a paper's tables on fedshield's engine.

* :mod:`fedshield.reproduce.fedre` -- FedRE (Xiao et al., ICMR 2025), Tables 1-4 and
  Figure 6 on synthetic documents (``fedshield reproduce fedre``).
* :mod:`fedshield.reproduce.fedqsn` -- FedQSN (Xu et al., EMNLP 2025 Findings): the sweep
  over mask ratios and quantizer bits with utility and protection metrics
  (``fedshield reproduce fedqsn``).
"""

REPRODUCTIONS = ("fedre", "fedqsn")
"""Names ``fedshield reproduce NAME`` accepts."""

__all__ = ["REPRODUCTIONS"]
