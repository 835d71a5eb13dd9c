"""slm recipe phi: prompts are deterministic per (seed, topic, audience, style); dedup and decontamination remove
planted duplicates and contaminated lessons; a random forest on frozen tiny-LM embeddings learns planted labels
(held-out AUC > 0.8) and its top fraction is enriched in positives; the recipe's phi model counts parameters as
transformers does; diversity rises with the topic seeds on planted texts; the smoke recipe runs every stage."""
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from slm.recipes.phi import PhiRecipeConfig, chunks, format_table
from slm.recipes.phi.evaluate import textbook_questions
from slm.recipes.phi.quality import binary_labels, embed, fit_forest, judge_score, top_fraction
from slm.recipes.phi.synth import clean, diversity
from slm.recipes.phi.topics import (AUDIENCES, STYLES, Topic, file_topics, make_prompt, prompt_plan, split_topics,
                                    stdlib_topics, topics_of_source)

ROOT = Path(__file__).resolve().parents[2]

SOURCE = '''"""Tools for counting sheep.

Longer text about sheep and fields, fences and farmers."""

def count(flock):
    """Return how many sheep are in the flock."""
    return len(flock)

def _private():
    """Not a topic."""

class Fence:
    """A fence that keeps sheep in."""
'''


def test_topics_of_a_source_are_the_module_and_its_public_documented_definitions():
    topics = topics_of_source(SOURCE, "sheep")
    assert [t.name for t in topics] == ["sheep", "sheep.count", "sheep.Fence"]
    assert topics[0].description == "Tools for counting sheep."
    assert "def count(flock)" in topics[1].extract and {t.group for t in topics} == {"sheep"}


def test_user_topic_files(tmp_path):
    path = tmp_path / "topics.txt"
    path.write_text("# mine\nphotosynthesis: how plants make sugar from light\n\ngravity\n")
    topics = file_topics(path)
    assert [(t.name, t.description) for t in topics] == [("photosynthesis", "how plants make sugar from light"),
                                                         ("gravity", "")]
    from slm.errors import SlmError

    with pytest.raises(SlmError, match="topic file not found"):
        file_topics(tmp_path / "missing.txt")


def test_prompts_are_deterministic_per_seed_topic_audience_style():
    topic = Topic("json.dumps", "Serialize obj to a JSON formatted str.", "\n".join(f"line {i} of the source"
                                                                                   for i in range(200)), "json")
    first = make_prompt(topic, AUDIENCES[1], "story", seed=3)
    assert make_prompt(topic, AUDIENCES[1], "story", seed=3) == first
    assert first.extract in topic.extract and topic.phrase in first.text and "story" in first.text
    others = [make_prompt(topic, AUDIENCES[1], "story", seed=4), make_prompt(topic, AUDIENCES[2], "story", seed=3),
              make_prompt(topic, AUDIENCES[1], "qa", seed=3)]
    assert all(p.text != first.text for p in others)
    assert len({make_prompt(topic, AUDIENCES[0], "textbook", seed=s).extract for s in range(20)}) > 5


def test_a_plan_with_fewer_topic_seeds_shares_its_first_prompts_with_the_full_plan():
    topics = stdlib_topics(30)
    full = prompt_plan(topics, 12, AUDIENCES, list(STYLES), seed=0)
    few = prompt_plan(topics, 12, AUDIENCES, list(STYLES), seed=0, n_seeds=3)
    assert few[:3] == full[:3] and len({p.topic for p in few}) == 3 and len({p.topic for p in full}) == 12
    assert len({p.text for p in few}) == 12  # a topic seen again quotes another window or audience


def test_topics_are_held_out_by_module():
    topics = stdlib_topics(60)
    seeds, held = split_topics(topics, 0.3)
    assert seeds and held and not {t.group for t in seeds} & {t.group for t in held}
    assert split_topics(list(reversed(topics)), 0.3)[1] == list(reversed(held))


def lesson(text, topic="t"):
    return {"topic": topic, "text": text}


def sentence(rng, words=40):
    vocab = ["sheep", "field", "river", "stone", "number", "loop", "value", "list", "tree", "graph", "queue",
             "string", "byte", "file", "path", "error", "class", "method", "object", "module", "test", "cloud"]
    return " ".join(rng.choice(vocab) + str(rng.randrange(50)) for _ in range(words))


def test_clean_removes_planted_near_duplicates_and_contaminated_lessons():
    rng = random.Random(0)
    originals = [sentence(rng) for _ in range(10)]
    question = "In Python, what is json.dumps? Serialize obj to a JSON formatted str and return it now"
    records = [lesson(t) for t in originals]
    records.append(lesson(originals[2] + " extra"))                       # a near-duplicate of lesson 2
    records.append(lesson(originals[5].upper()))                          # the same words in other case
    records.append(lesson(sentence(rng) + " " + question))                # contaminated with an eval question
    records.append(lesson("too short"))
    kept, counts = clean(records, [question], threshold=0.7)
    assert [r["text"] for r in kept] == originals
    assert counts == {"generated": 14, "too_short": 1, "near_duplicates": 2, "contaminated": 1, "kept": 10}


def test_diversity_rises_when_planted_texts_come_from_more_seeds():
    rng = random.Random(1)
    bases = [sentence(rng, 60) for _ in range(8)]
    one_seed = [bases[0] + " " + sentence(rng, 6) for _ in range(8)]   # the same lesson, lightly varied
    eight_seeds = [b + " " + sentence(rng, 6) for b in bases]
    few, many = diversity(one_seed), diversity(eight_seeds)
    assert many["distinct_2"] > few["distinct_2"] and many["distinct_3"] > few["distinct_3"]
    assert few["near_duplicate_rate"] == 7 / 8 and many["near_duplicate_rate"] == 0


def test_random_forest_on_frozen_embeddings_learns_planted_labels_and_enriches_the_kept_part():
    from slm.data.sources import iter_stdlib_texts
    from slm.models import build_model, preset
    from slm.tokenizer import train_tokenizer

    code = [c for text in iter_stdlib_texts(30) for c in chunks(text, 300)][:120]
    rng = random.Random(2)
    prose = [" ".join(sentence(rng, 40).split()) + "." for _ in range(120)]
    texts = code + prose
    labels = np.array([0] * len(code) + [1] * len(prose))  # planted: prose is "educational"
    order = np.random.default_rng(0).permutation(len(texts))
    texts, labels = [texts[i] for i in order], labels[order]
    tok = train_tokenizer(texts, vocab_size=300, kind="byte-bpe")
    torch.manual_seed(0)
    model = build_model(preset("nano-phi", vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, ffn_dim=64))
    model.init_weights(0)
    features = embed(texts, model, tok, max_tokens=32)
    assert features.shape == (240, 32)
    labelled, rest = slice(0, 120), slice(120, 240)
    forest, auc = fit_forest(features[labelled], labels[labelled], seed=0, trees=50)
    assert auc > 0.8
    kept = top_fraction(forest.predict_proba(features[rest])[:, 1], 0.3)
    assert labels[rest][kept].mean() > labels[rest].mean() + 0.2


def test_labels_scores_and_top_fraction():
    assert binary_labels([0.1, 3.0, -2.0, 1.0]).tolist() == [0, 1, 0, 1]
    assert top_fraction([0.2, 0.9, 0.1, 0.5], 0.5) == [1, 3]
    from slm.errors import ConfigError

    with pytest.raises(ConfigError):
        top_fraction([1.0], 0)

    class A:
        def __init__(self, text, logprobs):
            self.text, self.logprobs = text, logprobs

    tops = {"content": [{"token": "No", "logprob": -0.5,
                         "top_logprobs": [{"token": "No", "logprob": -0.5}, {"token": " yes", "logprob": -1.5},
                                          {"token": "Yes", "logprob": -1.5}]}]}
    assert judge_score(A("No", [tops])) == pytest.approx(np.log(2 * np.exp(-1.5)) + 0.5)
    assert judge_score(A("Yes, it does", [None])) == 1.0 and judge_score(A("Nope", [])) == -1.0


def test_textbook_questions_are_checked():
    held = [Topic(f"mod{i}.f{i}", f"does thing number {i} with care", "x", f"mod{i}") for i in range(6)]
    held.append(Topic("mod9.parse", "parse the input", "x", "mod9"))         # names itself: dropped
    held.append(Topic("mod8.g", "does thing number 0 with care", "x", "mod8"))  # a copy of another's gold
    training = ["the docs say it does thing number 3 with care always, so we read it here"]
    questions, counts = textbook_questions(held, training, n=10, ngram=5)
    assert counts["names_itself"] == 1 and counts["contaminated"] >= 1
    for q in questions:
        assert len({c for c in q["choices"]}) == 4 and "3 with care" not in " ".join(q["choices"])
        topic = next(t for t in held if t.name == q["topic"])
        assert q["choices"][q["label"]] == topic.description


def test_the_recipe_phi_model_counts_parameters_as_transformers_does(tmp_path):
    import slm
    from slm.config import build, load_recipe
    from slm.models import build_model, preset
    from slm.tokenizer import train_tokenizer
    from transformers import PhiForCausalLM

    cfg = build(PhiRecipeConfig, load_recipe(ROOT / "recipes" / "phi.yaml"))
    tok = train_tokenizer(["a small corpus of words for a tokenizer"] * 20, vocab_size=300, kind="byte-bpe")
    model = build_model(preset("nano-phi", vocab_size=cfg.vocab_size, **cfg.model)).init_weights(0)
    theirs = PhiForCausalLM.from_pretrained(slm.save(model, tok, tmp_path / "phi"))
    assert theirs.config.model_type == "phi"
    assert model.num_parameters() == theirs.num_parameters() == sum(p.numel() for p in theirs.parameters())


@pytest.mark.slow
def test_phi_smoke_recipe_runs_every_stage(tmp_path, capsys):
    from slm.cli import main

    out = tmp_path / "run"
    assert main(["recipe", "phi", "--config", str(ROOT / "recipes" / "phi-smoke.yaml"), "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert list(summary["table"]) == ["raw", "filtered", "synthetic", "synthetic+filtered"]
    for row in summary["table"].values():
        assert 0 <= row["mc_acc"][0] <= 1 and row["heldout_bpb"][0] > 0 and "smoke/trivia-mc" in row
    assert 0 <= summary["filter"]["auc"] <= 1 and summary["generation"]["requests"] > 0
    assert set(summary["diversity"]) == {"1", "8"}
    tokens = summary["sets"]["tokens"]
    assert tokens["filtered"]["train"] < tokens["raw"]["train"]
    assert format_table(summary) in capsys.readouterr().out
    # the questions are about held-out topics only, and their modules gave no raw training text
    seeds = {json.loads(line)["topic"] for line in (out / "synthetic.jsonl").read_text().splitlines()}
    topics = {json.loads(line)["topic"] for line in (out / "textbook-mc.jsonl").read_text().splitlines()}
    assert topics and not seeds & topics
    # a rerun reuses the lessons, labels and embeddings on disk: the teacher is not asked again
    lessons = (out / "teacher.json").read_text()
    assert main(["recipe", "phi", "--config", str(ROOT / "recipes" / "phi-smoke.yaml"), "--out", str(out)]) == 0
    assert (out / "teacher.json").read_text() == lessons


def test_user_topic_and_raw_files_join_the_corpus(tmp_path):
    from slm.recipes.phi import corpus

    topics = tmp_path / "topics.txt"
    topics.write_text("photosynthesis: how plants make sugar from light\n")
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n" + "A line of the user's own notes about loops.\n" * 60)
    cfg = PhiRecipeConfig(corpus_files=10, topic_files=[str(topics)], raw_files=[str(notes)], held_out_fraction=0.0,
                          chunk_chars=500, max_raw_chunks=10_000)
    data = corpus(cfg)
    assert "photosynthesis" in {t.name for t in data["seeds"]} and not data["held_out"]
    user_chunks = [c for c in data["raw"] if "user's own notes" in c]
    assert user_chunks == chunks(notes.read_text(), 500) and len(user_chunks) > 1
    assert "".join(user_chunks) == notes.read_text()
