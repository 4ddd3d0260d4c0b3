"""Benchmark suite of lmatrank: ``python -m bench <name> [options]``.

Each benchmark compares methods in one run on the same operators with the same
product accounting (``est.matvecs``) and writes JSON, a Markdown table and PNG
figures under ``bench/results/<name>/`` (see ``docs/benchmarks.md``).

Benchmarks (``python -m bench --list``): ``table1`` (the paper's Table 1 /
Fig. 2 protocol on deep-linear-network Hessians), ``fig1`` (loss curve vs
Theorem 1 and Proposition 1), ``families`` (graph Laplacians, noisy low-rank
Gram matrices, Kronecker products, indefinite matrices), and, where present,
``speed``, ``scaling``, ``gpu``, ``denoising``, ``accuracy``, ``realworld`` (real
matrices: right, inside the reported interval, confident-wrong).
"""

BENCHMARKS = ("table1", "fig1", "families", "report", "speed", "scaling", "gpu", "denoising",
              "accuracy", "realworld", "time_to_answer",
              "scale", "cold_start")

__all__ = ["BENCHMARKS"]
