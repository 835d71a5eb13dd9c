"""Eval with encoder-decoders: continuation log-likelihoods equal transformers' (context -> encoder, continuation ->
decoder, batched or not), multiple-choice and generate tasks (exact match, Rouge-L), perplexity refused."""
import json

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

import slm
from slm.errors import SlmError
from slm.eval.harness import evaluate
from slm.eval.metrics import rouge_l
from slm.eval.scoring import Scorer
from slm.eval.tasks import TaskSpec
from slm.models import build_model, preset
from slm.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    tok = train_tokenizer(["the cat sat on the mat", "a dog ran in the park", "two plus two is four"] * 30,
                          vocab_size=420, kind="t5-bpe")
    model = build_model(preset("t5-tiny", vocab_size=len(tok), dim=32, n_layers=2, n_heads=2, head_dim=16,
                               ffn_dim=64, dropout=0.0)).init_weights(0)
    path = slm.save(model, tok, tmp_path_factory.mktemp("t5") / "model")
    return slm.load(path) + (path,)


def test_loglikelihoods_equal_transformers_and_do_not_depend_on_batching(t5):
    model, tok, path = t5
    hf = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    pairs = [("the cat sat on", " the mat"), ("a dog", " ran in the park"), ("two plus two is", " four")]
    one = Scorer(model, tok, batch_size=1).loglikelihood(pairs)
    many = Scorer(model, tok, batch_size=8).loglikelihood(pairs)
    for (context, continuation), (ll, _), (ll_batched, _) in zip(pairs, one, many):
        ids, labels = torch.tensor([tok.encode(context)]), torch.tensor([tok.encode(continuation)])
        with torch.no_grad():
            logits = hf(input_ids=ids, labels=labels).logits
        ref = logits.log_softmax(-1).gather(-1, labels[..., None]).sum().item()
        assert abs(ll - ref) < 1e-4 and abs(ll_batched - ref) < 1e-4


def test_generate_and_multiple_choice_tasks_run_on_a_seq2seq_checkpoint(t5, tmp_path):
    model, tok, _ = t5
    docs = [{"input": "the cat", "target": "sat", "choices": ["sat", "ran"], "label": 0},
            {"input": "a dog", "target": "ran", "choices": ["mat", "ran"], "label": 1}]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    tasks = [TaskSpec(name="gen", kind="generate", data=str(data), doc_to_text="{{input}}",
                      doc_to_target="{{target}}", max_tokens=6, stop=[]),
             TaskSpec(name="mc", kind="multiple_choice", data=str(data), doc_to_text="{{input}}",
                      doc_to_target="{{label}}")]
    results = evaluate(model, tok, tasks)
    assert results["gen"]["n"] == 2 and 0 <= results["gen"]["rougeL"] <= 1
    assert results["mc"]["n"] == 2 and 0 <= results["mc"]["acc"] <= 1
    with pytest.raises(SlmError, match="rolling log-likelihood"):
        evaluate(model, tok, [TaskSpec(name="ppl", kind="perplexity", data=str(data), doc_to_text="{{input}}")])


def test_rouge_l_is_the_lcs_f_measure():
    assert rouge_l("the cat sat", "the cat sat") == 1.0
    assert rouge_l("dog", "the cat sat") == 0.0
    # LCS "the sat" = 2 of 3 words each way: precision = recall = F = 2/3
    assert abs(rouge_l("the dog sat", "the cat sat") - 2 / 3) < 1e-9
