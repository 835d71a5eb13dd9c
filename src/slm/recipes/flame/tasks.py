"""FLAME's downstream tasks: last-mile repair and completion data, their metrics, the rule-based baseline and the
JSON evaluation files.

    pairs = repair_pairs(formulas, random.Random(0))          # [(buggy, original), ...] by user-inspired noise
    pairs = completion_pairs(formulas, tok, random.Random(0)) # [(prefix + "<mask>", original), ...], 20-80% kept
    ranked = predict(model, tok, [b for b, _ in pairs], beams=5)   # the n-best of each input, Excel's case
    top_k_exact(ranked, truths, 5), top_k_sketch(ranked, truths, 5)

Exact match compares after the paper's normalisation (lexer.normalise: references and identifiers upper case,
whitespace outside strings gone); sketch match compares sketches (constants and references by their type).
Model outputs are lowercase (the tokenizer's); tokenizer.restore_case puts Excel's case back, strings as the input
wrote them. Evaluation files: --eval-repair reads [{"Buggy": ..., "GroundTruth": ...}], --eval-completion
[{"Masked": "PREFIX<mask>", "Completion": ...}] where Completion is the whole formula or, when it does not start
with the prefix, the part after it.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from slm.errors import SlmError
from slm.recipes.flame.lexer import Token, join, lex, normalise, sketch
from slm.recipes.flame.noise import apply_user_noise
from slm.recipes.flame.tokenizer import MASK, restore_case

COMPLETION_FRACTIONS = (0.5, 0.75, 0.9)


# ------------------------------------------------------------------------------------------------ data
def repair_pairs(formulas: list[str], rng: random.Random, two_operators: float = 0.25) -> list[tuple[str, str]]:
    """(buggy, original) for each formula some operator applies to: one operator, two with `two_operators`."""
    out = []
    for formula in formulas:
        buggy, used = apply_user_noise(formula, rng, 2 if rng.random() < two_operators else 1)
        if used:
            out.append((buggy, formula))
    return out


def prefix_at(tokenizer, formula: str, fraction: float) -> str:
    """The formula's first round(fraction x its sub-tokens) sub-tokens (at least one, one fewer than all), as the
    user typed them."""
    enc = tokenizer(formula, return_offsets_mapping=True, add_special_tokens=False)
    offsets = enc["offset_mapping"]
    keep = min(max(1, round(fraction * len(offsets))), max(1, len(offsets) - 1))
    return formula[:offsets[keep - 1][1]]


def completion_pairs(formulas: list[str], tokenizer, rng: random.Random, fractions=(0.2, 0.8)) -> list[tuple[str, str]]:
    """(prefix + <mask>, original) with the prefix a uniform 20-80% of the sub-tokens (the paper's fine-tuning)."""
    return [(prefix_at(tokenizer, f, rng.uniform(*fractions)) + MASK, f) for f in formulas]


def completion_at(formulas: list[str], tokenizer, fraction: float) -> list[tuple[str, str]]:
    return [(prefix_at(tokenizer, f, fraction) + MASK, f) for f in formulas]


# ------------------------------------------------------------------------------------------------ files
def _read_list(path: str | Path, keys: tuple[str, str]) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise SlmError(f"evaluation file not found: {path}")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SlmError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(items, list) or not items:
        raise SlmError(f"{path}: expected a non-empty JSON list of objects with {keys[0]!r} and {keys[1]!r}")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in keys):
            raise SlmError(f"{path}: item {i} needs string fields {keys[0]!r} and {keys[1]!r}")
    return items


def read_repair_file(path: str | Path) -> list[tuple[str, str]]:
    return [(item["Buggy"], item["GroundTruth"]) for item in _read_list(path, ("Buggy", "GroundTruth"))]


def read_completion_file(path: str | Path) -> list[tuple[str, str]]:
    """(prefix + <mask>, the whole formula) for each item."""
    out = []
    for item in _read_list(path, ("Masked", "Completion")):
        prefix = item["Masked"].split(MASK, 1)[0]
        completion = item["Completion"]
        whole = completion if normalise(completion).startswith(normalise(prefix)) else prefix + completion
        out.append((prefix + MASK, whole))
    return out


# ------------------------------------------------------------------------------------------------ metrics
def exact(prediction: str, truth: str) -> bool:
    return normalise(prediction) == normalise(truth)


def sketch_match(prediction: str, truth: str) -> bool:
    return sketch(prediction) == sketch(truth)


def top_k_exact(ranked: list[list[str]], truths: list[str], k: int) -> float:
    return sum(any(exact(p, t) for p in r[:k]) for r, t in zip(ranked, truths)) / max(len(truths), 1)


def top_k_sketch(ranked: list[list[str]], truths: list[str], k: int) -> float:
    return sum(any(sketch_match(p, t) for p in r[:k]) for r, t in zip(ranked, truths)) / max(len(truths), 1)


# ------------------------------------------------------------------------------------------------ baselines
def balance(formula: str) -> str:
    """The rule-based repair baseline: close an unclosed string, drop closing brackets that match nothing, close
    what is still open (brackets and braces, innermost first), and put a missing leading = back."""
    tokens = lex(formula)
    if tokens and tokens[-1].kind == "string" and (len(tokens[-1].text) < 2 or not tokens[-1].text.endswith('"')):
        tokens[-1] = Token("string", tokens[-1].text + '"')
    out, stack = [], []
    for t in tokens:
        if t.kind in ("paren", "brace") and t.text in "({":
            stack.append(")" if t.text == "(" else "}")
        elif t.kind in ("paren", "brace"):
            if not stack or stack[-1] != t.text:
                continue
            stack.pop()
        out.append(t)
    text = join(out) + "".join(reversed(stack))
    return text if text.lstrip().startswith("=") else "=" + text


# ------------------------------------------------------------------------------------------------ models
def predict(model, tokenizer, inputs: list[str], beams: int = 5, max_tokens: int = 96, chunk: int = 16,
            progress: str | None = None) -> list[list[str]]:
    """The `beams`-best outputs of each input (beam search through the engine), in Excel's case. Works for the
    encoder-decoder (the input is encoded) and the decoder baseline (the input, then </s>, is its prompt)."""
    from tqdm import tqdm

    from slm.infer.beam import BeamParams
    from slm.infer.engine import Engine

    engine = Engine(model, tokenizer)
    params = BeamParams(num_beams=beams, num_return_sequences=beams, max_tokens=max_tokens)
    out = []
    chunks = range(0, len(inputs), chunk)
    for start in tqdm(chunks, desc=progress, leave=False, disable=progress is None):
        batch = inputs[start:start + chunk]
        prompts = [tokenizer.encode(text) for text in batch]
        for text, hyps in zip(batch, engine.beam_search(prompts, params)):
            out.append([restore_case(h.text, text.replace(MASK, "")) for h in hyps])
    return out
