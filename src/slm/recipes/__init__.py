"""One module per seed system, and the one registry of them.

    from slm.recipes import RECIPES, get_recipe
    for r in RECIPES: print(r.name, r.description, r.docs_page)
    get_recipe("eft").config_class()       # the dataclass its YAML builds

A recipe adds only what is its own (a data builder, a transform, a loss, a composition) and trains,
generates and evaluates through the shared parts. The registry below is what `slm recipe`, `slm recipe list`,
the docs test and the recipe-file test read: adding a recipe is one `Recipe(...)` entry here plus its module,
its two YAML files (recipes/<name>.yaml, the measured run; recipes/<name>-smoke.yaml, seconds, run by a test)
and its page docs/recipes/<name>.md. tests/test_docs.py fails until all of them exist.

This module is imported by `slm --help`, so it imports nothing heavy: modules are named, not imported.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    name: str             # `slm recipe NAME`; also the stem of its YAML files and docs page
    module: str           # the module with register(parser) that adds the recipe's options and its function
    config: str           # "module:Class", the dataclass that recipes/<name>.yaml builds
    description: str      # one line for `slm recipe list`
    paper: str            # the seed system it reproduces
    stages: str           # what one run does, in a sentence
    default_time: str     # how long recipes/<name>.yaml takes on 2 CPU cores, as measured (see the docs page)
    smoke_time: str       # the same for recipes/<name>-smoke.yaml
    results: str          # where the run writes what it measured

    @property
    def docs_page(self) -> str:
        return f"docs/recipes/{self.name}.md"

    @property
    def default_yaml(self) -> str:
        return f"recipes/{self.name}.yaml"

    @property
    def smoke_yaml(self) -> str:
        return f"recipes/{self.name}-smoke.yaml"

    def config_class(self) -> type:
        module, _, cls = self.config.partition(":")
        return getattr(importlib.import_module(module), cls)


RECIPES: list[Recipe] = [
    Recipe(
        name="eft",
        module="slm.recipes.eft",
        config="slm.recipes.eft:EFTRecipeConfig",
        description="EFT: up-scale a small fine-tuned model with a large base by log-prob arithmetic",
        paper="Emulated fine-tuning (Mitchell et al. 2023, arXiv 2310.12962)",
        stages="per seed: a world of made-up facts, a large and a small base pretrained on it, two small "
               "fine-tuned experts (answer formats), then greedy answers to held-out questions from each model, "
               "the up-scaled composition and a sweep of the weight between the two experts",
        default_time="about 4 minutes for 3 seeds (222 s measured on the shared 2-core machine)",
        smoke_time="about 7 s",
        results="runs/eft/results.json and the table on stdout; per seed, the models and "
                "runs/eft/seed-N/upscaled.yaml, a composition every model-taking verb accepts",
    ),
    Recipe(
        name="tinygsm",
        module="slm.recipes.tinygsm",
        config="slm.recipes.tinygsm.pipeline:TinyGSMConfig",
        description="TinyGSM: generator + verifier writing Python for grade-school math",
        paper="TinyGSM (Liu et al. 2023, arXiv 2312.09241)",
        stages="per seed: generated math problems as Python programs, the paper's filters and 13-gram "
               "decontamination, generator fine-tuning, verifier samples labelled in the sandbox, verifier "
               "training, then greedy / majority@N / verifier@N / pass@N on problems of held-out skeletons",
        default_time="about 11 minutes for 3 seeds (638 s measured on the idle 2-core machine)",
        smoke_time="about 8 s",
        results="runs/tinygsm/results.json and the accuracy table on stdout; per seed, the generator "
                "checkpoints, the verifier and the labelled samples under runs/tinygsm/seed-N/",
    ),
    Recipe(
        name="roberta",
        module="slm.recipes.roberta",
        config="slm.recipes.roberta:RobertaRecipeConfig",
        description="RoBERTa: masked-LM pretraining ablations (dynamic vs static masking, FULL- vs DOC-SENTENCES)",
        paper="RoBERTa (Liu et al. 2019, arXiv 1907.11692)",
        stages="once: a RoBERTa byte BPE and token shards of the stdlib corpus; per seed and variant: an encoder "
               "pretrained with fairseq's masking (no NSP), held-out MLM perplexity on one fixed masked set, then "
               "classifier fine-tuning and test accuracy on the embedded stdlib docstring tasks",
        default_time="about 6 minutes for 3 seeds x 4 variants (353 s measured on the shared 2-core machine)",
        smoke_time="about 15 s",
        results="runs/roberta/results.json and the table on stdout; per seed, the pretrained and fine-tuned "
                "checkpoints under runs/roberta/seed-N/<variant>/",
    ),
    Recipe(
        name="t5",
        module="slm.recipes.t5",
        config="slm.recipes.t5:T5RecipeConfig",
        description="T5: span-corruption pretraining, then seq2seq instruction SFT (the encoder-decoder base)",
        paper="T5 (Raffel et al. 2020, arXiv 1910.10683); nanoT5 (Nawrot 2023, arXiv 2309.02373)",
        stages="per seed: a t5-tiny encoder-decoder pretrained with span corruption on stdlib source, then "
               "fine-tuned on word-level instructions (and the same fine-tuning from a fresh init), scored by "
               "exact match and Rouge-L on instructions over held-out words",
        default_time="measured on the docs page",
        smoke_time="about 10 s",
        results="runs/t5/results.json and the table on stdout; per seed, the pretrained base and the "
                "fine-tuned checkpoints under runs/t5/seed-N/",
    ),
    Recipe(
        name="phi",
        module="slm.recipes.phi",
        config="slm.recipes.phi:PhiRecipeConfig",
        description="phi-1.5: synthetic textbooks from topic seeds and an educational-value filter for pretraining",
        paper="phi-1 (Gunasekar et al. 2023, arXiv 2306.11644); phi-1.5 (Li et al. 2023, arXiv 2309.05463)",
        stages="once: topic seeds (stdlib modules and documented functions, user topics) x audiences x styles, "
               "lessons from the teacher (the local real model by default), MinHash dedup and decontamination, "
               "judge labels on a sample of raw text and a random forest on the real model's embeddings for the "
               "rest; per seed: the same phi model pretrained for the same tokens on raw, filtered, synthetic "
               "and synthetic + filtered text, scored on held-out-topic questions, held-out raw bits per byte "
               "and the eval smoke tasks",
        default_time="about 31 minutes from nothing on the contended 2-core machine (27 of them the local teacher; "
                     "3-5 on an idle one), under 3 minutes when the teacher's answers are on disk",
        smoke_time="about 10 s",
        results="runs/phi/results.json and the tables on stdout; the lessons in runs/phi/synthetic.jsonl, the "
                "teacher's cache in runs/phi/teacher.sqlite, per seed the checkpoints under runs/phi/seed-N/",
    ),
    Recipe(
        name="pet",
        module="slm.recipes.pet",
        config="slm.recipes.pet.pipeline:PETRecipeConfig",
        description="PET / iPET: a small masked LM as a few-shot classifier through cloze patterns and verbalizers",
        paper="PET (Schick & Schütze, EACL 2021, arXiv 2001.07676); multi-token PET (NAACL 2021, arXiv 2009.07118)",
        stages="once: a masked LM pretrained on the task's corpus; per label count (8/16/32) and seed: a CLS-head "
               "classifier on the labels, zero-shot pattern scores, one PET model per pattern and repetition, "
               "their ensemble and the classifier distilled from it on the unlabelled rest, then iPET's "
               "generations and their distilled classifier; test accuracy of each",
        default_time="about 7 minutes for 5 seeds x 3 label counts (425 s measured on the shared 2-core machine)",
        smoke_time="about 10 s",
        results="runs/pet/results.json and the table on stdout; the pretrained MLM in runs/pet/mlm/final "
                "(keep_models: true keeps every trained model under runs/pet/nN/seed-S/models/)",
    ),
]

RECIPES.append(Recipe(
    name="ul2r",
    module="slm.recipes.ul2r",
    config="slm.recipes.ul2r:UL2RRecipeConfig",
    description="UL2R: continue a causal LM briefly on a mixture of denoisers; infilling without losing next-token",
    paper="UL2 (Tay et al. 2023, arXiv 2205.05131); U-PaLM / UL2R (Tay et al. 2022, arXiv 2210.11399)",
    stages="once: stdlib shards and a causal nano base given UL2's mode tokens and sentinels; per seed and extra "
           "fraction of the base's tokens: plain causal continuation and UL2R continuation (prefix LM, 50% S / 25% "
           "R / 25% X) for the same steps, then held-out gap losses (both sides vs left context), greedy infilling "
           "exact match, next-token perplexity and a 3-shot task",
    default_time="about 30 minutes for 3 seeds x 3 fractions (the base 5 min; 30% runs 113-144 s each, measured on the 2-core machine)",
    smoke_time="about 10 s",
    results="runs/ul2r/results.json and the table on stdout; the base under runs/ul2r/base, each continuation "
            "under runs/ul2r/seed-N/",
))

RECIPES.append(Recipe(
    name="flan",
    module="slm.recipes.flan",
    config="slm.recipes.flan:FlanRecipeConfig",
    description="FLAN / Flan-T5: instruction tuning on templated task mixtures, zero-shot on a held-out cluster",
    paper="FLAN (Wei et al. 2022, arXiv 2109.01652); Flan 2022 / Flan-T5 (Chung et al. 2022, arXiv 2210.11416)",
    stages="once: the stdlib task collection (21 tasks, 7 clusters, templated) and a pretrained nano decoder and "
           "t5-tiny; per held-out cluster, model and seed: instruction tuning on the capped mixture with one "
           "template, all templates, and a third / two thirds of the tasks, then zero-shot scores on the "
           "held-out cluster's tasks against the untuned base",
    default_time="about 25 minutes for 2 clusters x 2 models x 3 seeds with a trained base (1,506 s measured), plus about 7 minutes for the two bases",
    smoke_time="about 30 s",
    results="runs/flan/results.json and the table on stdout; the bases under runs/flan/decoder and runs/flan/t5, "
            "each tuned model under runs/flan/seed-N/<cluster>/<model>/<variant>/",
))

RECIPES.append(Recipe(
    name="slade",
    module="slm.recipes.slade.pipeline",
    config="slm.recipes.slade.pipeline:SladeRecipeConfig",
    description="SLaDe: a small T5 decompiling -O0/-O3 x86-64 and AArch64 assembly to C, judged by running it",
    paper="SLaDe (Armengol-Estapé, Woodruff, Cummins, O'Boyle; CGO 2024, arXiv 2305.12520)",
    stages="once: generated C functions with IO examples, their per-function assembly for each (ISA, -O level), "
           "split by function, a BPE for assembly and C (digit splitting measured); per seed: one shared T5 and a "
           "same-size decoder-only model trained on assembly -> C, beam search, then IO accuracy in the C sandbox "
           "(top-1 and first passing candidate; reference declarations, none, type inference), edit similarity, "
           "against nearest-neighbour retrieval and return-0 baselines",
    default_time="measured on the docs page",
    smoke_time="about 20 s",
    results="runs/slade/results.json and the table on stdout; the data under runs/slade/data, per seed the "
            "checkpoints under runs/slade/seed-N/<model>/",
))

# Sub-verbs of `slm recipe` that are not recipes.
RESERVED_NAMES = {"list"}


def get_recipe(name: str) -> Recipe:
    for recipe in RECIPES:
        if recipe.name == name:
            return recipe
    from slm.errors import ConfigError

    raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(r.name for r in RECIPES)} (slm recipe list)")

RECIPES.append(Recipe(
    name="orca2",
    module="slm.recipes.orca2",
    config="slm.recipes.orca2:Orca2RecipeConfig",
    description="Orca 2: per-family reasoning strategies from a teacher, learned with the instructions erased",
    paper="Orca 2 (Mitra et al. 2023, arXiv 2311.11045)",
    stages="once: four task families (step-by-step sums, direct lookups, recall, explain-then-compare), a causal "
           "nano base and each teacher's answers under the families' detailed instructions; per teacher, student "
           "and seed: progressive SFT stages on erased prompts, kept prompts or one strategy for all, then held-out "
           "accuracy and strategy match under the generic and the cautious system message",
    default_time="about 5 minutes for the scripted teacher x 3 students x 3 seeds with a trained base (304 s measured); the real-model teacher not measured yet",
    smoke_time="about 15 s",
    results="runs/orca2/results.json and the table on stdout; students under runs/orca2/<teacher>/seed-N/<variant>/",
))

RECIPES.append(Recipe(
    name="flame",
    module="slm.recipes.flame.pipeline",
    config="slm.recipes.flame.pipeline:FlameRecipeConfig",
    description="FLAME: a small T5 for Excel formulas (repair, completion, retrieval) from formula-aware objectives",
    paper="FLAME (Joshi, Cambronero, Gulwani, Le, Radiček, Verbruggen; AAAI 2024, arXiv 2301.13779)",
    stages="per seed: generated workbooks split by workbook, sketch dedup per workbook (or globally), the formula "
           "tokenizer; per variant (laMSP, plain MSP, global dedup, a same-size decoder): pretraining on the sampled "
           "objectives, one repair + completion fine-tune, then beam-search repair top-1/top-5, completion at "
           "50/75/90% and a retrieval head's Pearson, against identity and rule-based repair",
    default_time="about 23 minutes for 3 seeds x 4 variants (1,382 s measured on the shared 2-core machine)",
    smoke_time="about 15 s",
    results="runs/flame/results.json and the table on stdout; per seed the checkpoints under "
            "runs/flame/seed-N/<variant>/",
))

RECIPES.append(Recipe(
    name="supericl",
    module="slm.recipes.supericl",
    config="slm.recipes.supericl:SuperICLRecipeConfig",
    description="SuperICL: a fine-tuned small encoder's prediction and confidence inside an LLM's prompt",
    paper="SuperICL (Xu et al. 2023, arXiv 2305.08848)",
    stages="per seed: the RoBERTa recipe's encoder fine-tuned on each embedded task (the plug-in), then the LLM "
           "(slm serve on the real model, or any endpoint) on the same test items under ICL, SuperICL and the "
           "three ablations; accuracy, overrides per plug-in confidence bin",
    default_time="not measured at 3 seeds x 60 items; 1 seed x 40 items with the real model took 44 minutes (2,614 s, part of it beside a CI run)",
    smoke_time="about 20 s",
    results="runs/supericl/results.json and the table on stdout",
))
