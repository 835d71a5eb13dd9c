"""SLaDe (Armengol-Estapé et al., CGO 2024): a small seq2seq decompiler from optimised assembly to C.

    slm recipe slade      # the pipeline: slm.recipes.slade.pipeline (config, run, table)

Parts: generator (C functions with IO examples), assembly (per-function -O0/-O3 assembly for x86-64 and
AArch64), data (dedup and split by function), typeinfer (declarations for out-of-context types), judge (IO
accuracy through slm.eval.c_io, edit similarity, retrieval and return-0 baselines), pipeline (the recipe).
"""
