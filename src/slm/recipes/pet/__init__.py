"""PET / iPET at CPU scale: a small masked LM as a few-shot classifier through cloze patterns and verbalizers.

    slm recipe pet                                     # recipes/pet.yaml: 5 seeds x 8/16/32 labels, the table
    slm recipe pet --config recipes/pet-smoke.yaml     # seconds; the numbers mean nothing
    slm recipe pet --set task=jsonl --set data.train=train.jsonl --set data.test=test.jsonl --set patterns=pvp.yaml

Once: a masked LM (roberta-tiny shape) pretrained on the task's corpus. Per label count and seed: n labelled
examples drawn from the train split, the rest unlabelled; then
  CLS head            a sequence classifier fine-tuned on the n labels (the supervised baseline)
  zero-shot pattern   each pattern's untrained label scores, mean over patterns
  PET                 one model per pattern x repetition (slm.finetune.pet.train), their wmean ensemble, and the
                      classifier distilled from it on the unlabelled set (soft labels softmax(s / 2), KL x T^2)
  iPET                generations 1..k-1, each model trained on T plus examples the other models labelled,
                      |T| d^j in all; the last generation distilled; optionally zero-shot iPET.
Parts: data (tasks, corpus, built-in patterns), pipeline (config, pretraining, run, table), stages (one setting).
"""
from __future__ import annotations

import argparse

DEFAULT_RECIPE = "recipes/pet.yaml"


def register(parser: argparse.ArgumentParser) -> None:
    from slm.cli.recipe import add_recipe_options, table_recipe_main
    from slm.recipes.pet.pipeline import PETRecipeConfig, format_table, run

    add_recipe_options(parser, DEFAULT_RECIPE, "seeds=[0] --set labels=[8]")
    parser.set_defaults(func=table_recipe_main(DEFAULT_RECIPE, PETRecipeConfig, run, format_table))
