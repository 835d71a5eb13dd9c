"""TinyGSM verifier variants on a finished `slm recipe tinygsm` seed: does any of them rank one question's samples?

    slm recipe tinygsm                                             # runs/tinygsm, 3 seeds
    python benchmarks/tinygsm_verifier.py --run runs/tinygsm --seed 0 --verifier-problems 1500 \\
        --variants likelihood paper balanced balanced+layers balanced+probs paper+probs paper+lm
    python benchmarks/tinygsm_verifier.py --run runs/tinygsm --seed 0 --verifier-problems 1500 --setting seen \\
        --variants likelihood paper balanced
    slm recipe tinygsm --set out_dir=runs/tg-big --set "seeds=[0]" --set model.dim=192 --set model.n_layers=4 \\
        --set model.n_heads=6 --set model.ffn_dim=512 --set generator.lr=0.002 --set generator.steps=1000
    python benchmarks/tinygsm_verifier.py --run runs/tinygsm --seed 0 --verifier-problems 1500 \\
        --base runs/tg-big/seed-0/generator-final --variants paper balanced

The seed's data are rebuilt from the run's settings; the verifier's samples come from the run's generator
checkpoints (4 per question, checkpoint and temperature 0.5 / 0.7, as the recipe), the test samples from its
final generator (greedy and 16 at T = 0.7), and are cached under the run directory. Each variant trains a
verifier on them and is scored on the same test samples, so the rows differ only in the verifier:

    paper         the recipe's verifier: every sample, token-level BCE, last-token score
    balanced      per question, its distinct programs only, as many correct as wrong, and only questions
                  that have both: a question's difficulty then predicts nothing, only the program does
    +layers       two more decoder layers on top of the generator's, initialised as the identity, so a position
                  can read the previous position's next-token prediction
    +probs        the generator's log-probability of each token (and its gap to the top token) added to the
                  token embeddings through a zero-initialised Linear(2, dim)
    +lm           plus next-token cross entropy on the correct samples (Cobbe et al.'s joint objective)
    likelihood    no verifier: each sample ranked by its summed log-probability under the generator

--base starts the verifier from another model with the same tokenizer (e.g. a larger generator trained by
the recipe with other model settings) instead of the final generator. --setting seen takes the verifier and
test questions from the generator's own templates (fresh problems) instead of held-out ones.
The within-question AUC is over test questions that have both correct and wrong samples (0.5 = chance).
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

VARIANT_PARTS = {"paper", "balanced", "layers", "probs", "lm"}


def build_samples(cfg, run: Path, seed: int, setting: str):
    """Verifier samples [(question index, prompt ids, completion ids, correct)], test samples and greedy."""
    import slm
    from slm.recipes.tinygsm import filters, problems
    from slm.recipes.tinygsm import pipeline as P

    data = P.build_data(cfg, seed)
    verifier_qs, test = data["verifier"], data["test"]
    if setting == "seen":
        kept, _ = problems.template_split(problems.all_templates(cfg.data.max_steps), cfg.data.held_out_fraction,
                                          seed)
        known = {p.question for p in data["train"]}

        def fresh(n, tag):
            made, _ = filters.apply_filters(problems.generate(kept, n, seed=f"{seed}:{tag}"), cfg.data.min_words)
            return [p for p in made if p.question not in known]

        verifier_qs = fresh(cfg.data.verifier_problems, "verifier-seen")
        test = fresh(cfg.data.test_problems, "test-seen")
    generator, tokenizer = slm.load(run / f"seed-{seed}" / "generator-final")
    prompts = [P.encode_prompt(tokenizer, p.question) for p in verifier_qs]
    labelled = P.verifier_samples(cfg, seed, run / f"seed-{seed}" / "generator", tokenizer, verifier_qs, None)
    e = cfg.eval
    greedy = P.labelled_samples(generator, tokenizer, test, 1, 0.0, e.max_tokens, seed, e.batch_size, None)
    sampled = P.labelled_samples(generator, tokenizer, test, e.n_samples, e.temperature, e.max_tokens,
                                 seed=seed * 104729 + 1, batch_size=e.batch_size, workers=None)
    rows = []  # per question: (prompt + completion ids, returned value, correct, prompt length)
    for p, row in zip(test, sampled):
        prompt = P.encode_prompt(tokenizer, p.question)
        rows.append([(prompt + c.token_ids, r.value, ok, len(prompt)) for c, r, ok in row])
    return {"train": [(i, prompts[i], c.token_ids, ok) for i, c, ok, _ in labelled], "test": rows,
            "golds": [p.answer for p in test], "greedy": [row[0][2] for row in greedy]}


def balanced(train, rng: random.Random):
    """Each question's distinct programs, as many correct as wrong; questions without both are left out."""
    by_question: dict[int, dict[tuple, tuple]] = {}
    for sample in train:
        by_question.setdefault(sample[0], {}).setdefault(tuple(sample[2]), sample)
    out = []
    for distinct in by_question.values():
        good = [s for s in distinct.values() if s[3]]
        bad = [s for s in distinct.values() if not s[3]]
        k = min(len(good), len(bad))
        out += rng.sample(good, k) + rng.sample(bad, k)
    return out


def token_logprobs(model, ids, position_ids=None, attention_mask=None):
    """[B, T, 2]: log p(token t | before) under the model and its gap to the most likely token (0 at t = 0)."""
    logp = torch.log_softmax(model(ids, position_ids, attention_mask).float(), -1)[:, :-1]
    chosen = logp.gather(-1, ids[:, 1:, None])[..., 0]
    return F.pad(torch.stack([chosen, chosen - logp.max(-1).values], -1), (0, 0, 1, 0))


def make_verifier(base, extra_layers: int, generator_probs):
    from slm.models import Decoder
    from slm.recipes.tinygsm.verifier import Verifier

    decoder = copy.deepcopy(base)
    if extra_layers:
        deeper = Decoder(base.config.replace(n_layers=base.config.n_layers + extra_layers)).init_weights(0)
        deeper.load_state_dict(base.state_dict(), strict=False)
        for block in deeper.layers[base.config.n_layers:]:  # identity at the start: the base model's function
            torch.nn.init.zeros_(block.attn.o_proj.weight)
            torch.nn.init.zeros_(block.mlp.down_proj.weight)
        decoder = deeper
    verifier = Verifier(decoder)
    if generator_probs is not None:
        frozen = copy.deepcopy(generator_probs).eval().requires_grad_(False)
        verifier.probs = torch.nn.Linear(2, decoder.config.dim)
        torch.nn.init.zeros_(verifier.probs.weight)
        torch.nn.init.zeros_(verifier.probs.bias)
        added = {}
        decoder.embed.register_forward_hook(lambda module, args, out: out + added["x"])

        def forward(input_ids, position_ids=None, attention_mask=None):
            with torch.no_grad():
                feats = token_logprobs(frozen, input_ids, position_ids, attention_mask).clamp(min=-20) / 5
            added["x"] = verifier.probs(feats)
            return Verifier.forward(verifier, input_ids, position_ids, attention_mask)

        verifier.forward = forward
    return verifier


def lm_joint_loss(model, batch):
    """The verifier's BCE plus next-token cross entropy on the completions of correct samples."""
    from slm.finetune import IGNORE
    from slm.train import model_inputs

    ids, labels = batch["input_ids"], batch["labels"]
    hidden = model.decoder.hidden_states(ids, **model_inputs(batch))
    logits = model.head(hidden).squeeze(-1)
    mask = labels != IGNORE
    bce = F.binary_cross_entropy_with_logits(logits[mask].float(), labels[mask].float(), reduction="sum")
    positive = labels[:, 1:] == 1
    ce = F.cross_entropy(model.decoder.lm_head(hidden[:, :-1][positive]).float(), ids[:, 1:][positive],
                         reduction="sum")
    return bce + ce, mask.sum()


def within_question_auc(per_question) -> float:
    aucs = []
    for samples in per_question:
        good = [s.score for s in samples if s.correct]
        bad = [s.score for s in samples if not s.correct and s.value is not None]
        if good and bad:
            aucs.append(sum((g > b) + 0.5 * (g == b) for g in good for b in bad) / (len(good) * len(bad)))
    return statistics.fmean(aucs) if aucs else float("nan")


def evaluate(cached, scores):
    from slm.recipes.tinygsm.selection import Sample, selection_metrics

    per_question, k = [], 0
    for row in cached["test"]:
        per_question.append([Sample(value, ok, scores[k + i]) for i, (_, value, ok, _) in enumerate(row)])
        k += len(row)
    metrics = selection_metrics(per_question, cached["golds"], cached["greedy"])
    return metrics, within_question_auc(per_question)


def main() -> None:
    import slm
    from slm.config import build
    from slm.io import atomic_write_text
    from slm.recipes.tinygsm import pipeline as P
    from slm.recipes.tinygsm.verifier import score, verifier_example, verifier_loss

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/tinygsm", help="a finished `slm recipe tinygsm` output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verifier-problems", type=int, help="verifier questions (default: the run's)")
    parser.add_argument("--setting", choices=("held-out", "seen"), default="held-out")
    parser.add_argument("--variants", nargs="+", default=["paper", "balanced"])
    parser.add_argument("--base", help="start the verifier from this model directory instead of the generator")
    parser.add_argument("--steps", type=int, help="verifier training steps (default: the run's)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    for variant in args.variants:
        parts = set(variant.split("+"))
        if variant != "likelihood" and (not parts & {"paper", "balanced"} or parts - VARIANT_PARTS):
            parser.error(f"unknown variant {variant!r}: 'likelihood', or 'paper' or 'balanced' with any of "
                         "+layers, +probs, +lm")
        if {"lm", "probs"} <= parts:  # the joint loss reads the decoder's hidden states, without the probs input
            parser.error(f"{variant!r}: +lm and +probs do not combine")
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Path(args.run)
    summary = run / "results.json"
    if not summary.is_file():
        raise SystemExit(f"{summary} not found: run `slm recipe tinygsm --set out_dir={run}` first")
    settings = json.loads(summary.read_text())["config"]
    if args.verifier_problems:
        settings["data"]["verifier_problems"] = args.verifier_problems
    cfg = build(P.TinyGSMConfig, settings)
    cache = run / f"seed-{args.seed}" / f"verifier-variants-{args.setting}-{cfg.data.verifier_problems}.json"
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    if cached.get("settings") != settings:  # none yet, or from an earlier run in the same directory
        cached = {"settings": settings, **build_samples(cfg, run, args.seed, args.setting)}
        atomic_write_text(cache, json.dumps(cached))
    generator, tokenizer = slm.load(run / f"seed-{args.seed}" / "generator-final")
    base = generator
    if args.base:
        base, base_tokenizer = slm.load(args.base)
        if base_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise SystemExit(f"{args.base} has another tokenizer than the run's generator: the samples' token ids "
                             "would mean other text to it")
    test_samples = [sample for row in cached["test"] for sample in row]
    sequences = [ids for ids, *_ in test_samples]
    v = cfg.verifier
    print(f"seed {args.seed}, {args.setting} templates: {len(cached['train'])} verifier samples "
          f"({statistics.fmean(s[3] for s in cached['train']):.1%} correct), {len(cached['test'])} test questions")
    print("| variant | examples | greedy | majority@N | verifier@N | pass@N | within-question AUC |")
    print("|---|---|---|---|---|---|---|")
    for variant in args.variants:
        parts = set(variant.split("+"))
        if variant == "likelihood":
            with torch.inference_mode():
                scores = [float(token_logprobs(generator, torch.tensor([ids]))[0, prompt_len:, 0].sum())
                          for ids, _, _, prompt_len in test_samples]
            examples = 0
        else:
            chosen = balanced(cached["train"], random.Random(args.seed)) if "balanced" in parts else cached["train"]
            examples = len(chosen)
            verifier = make_verifier(base, 2 if "layers" in parts else 0, generator if "probs" in parts else None)
            with tempfile.TemporaryDirectory() as out:
                P._train(verifier, tokenizer, [verifier_example(p, c, ok) for _, p, c, ok in chosen],
                         args.steps or v.steps, v.batch_size, v.seq_len, v.lr, v.min_lr, v.warmup_steps,
                         v.weight_decay, out, args.seed, False,
                         loss_fn=lm_joint_loss if "lm" in parts else verifier_loss)
            scores = score(verifier.eval(), sequences, pad_id=tokenizer.pad_token_id)
        metrics, auc = evaluate(cached, scores)
        print(f"| {variant} | {examples} | {metrics['greedy']:.3f} | {metrics['majority@N']:.3f} | "
              f"{metrics['verifier@N']:.3f} | {metrics['pass@N']:.3f} | {auc:.3f} |", flush=True)


if __name__ == "__main__":
    main()
