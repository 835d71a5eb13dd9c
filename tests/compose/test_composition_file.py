"""Composition files: loading, relative paths, one load per directory, and one-line errors."""
import pytest
import torch

import slm
from slm.compose import EFTModel, is_composition, load_composition
from slm.errors import SlmError
from slm.infer import Engine, SamplingParams
from slm.models import Decoder, ModelConfig

TEXTS = ["Q: what is the color of zorvak?\nA: teal.", "the city of mirel is oslo."] * 30


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tok = slm.train_tokenizer(TEXTS, vocab_size=300, kind="byte-bpe")
    for i, (name, layers) in enumerate((("large", 2), ("small", 1), ("small-ft", 1))):
        cfg = ModelConfig(vocab_size=len(tok), dim=32, n_layers=layers, n_heads=2, ffn_dim=64, max_seq_len=64)
        slm.save(Decoder(cfg).init_weights(i), tok, root / name)
    other = slm.train_tokenizer(TEXTS + ["xyzzy plugh qwerty"] * 50, vocab_size=300, kind="byte-bpe")
    cfg = ModelConfig(vocab_size=len(other), dim=32, n_layers=1, n_heads=2, ffn_dim=64, max_seq_len=64)
    slm.save(Decoder(cfg).init_weights(9), other, root / "foreign")
    return root


def write(path, text):
    path.write_text(text)
    return path


def test_load_composition_resolves_paths_next_to_the_file(model_dirs):
    path = write(model_dirs / "up.yaml", "kind: eft\nbase: large\nreference: small\n"
                                         "experts:\n  - {model: small-ft, weight: 1.0}\n")
    assert is_composition(path) and not is_composition(model_dirs / "large")
    model, tok = load_composition(path)
    assert isinstance(model, EFTModel) and len(model.members) == 3 and model.vocab_size == len(tok)
    large, _ = slm.load(model_dirs / "large")
    small, _ = slm.load(model_dirs / "small")
    ft, _ = slm.load(model_dirs / "small-ft")
    ids = torch.tensor([tok.encode("Q: what is the color")])
    with torch.no_grad():
        expected = torch.log_softmax(sum(torch.log_softmax(m(ids), -1) * s for m, s in ((large, 1), (ft, 1), (small, -1))), -1)
        torch.testing.assert_close(model(ids), expected, atol=1e-5, rtol=1e-5)
    [out] = Engine(model, tok).generate(["Q: what is"], SamplingParams(max_tokens=5))
    assert len(out.token_ids) >= 1


def test_a_directory_named_twice_is_loaded_once(model_dirs):
    path = write(model_dirs / "same.yaml", "base: large\nreference: small\nexperts: [{model: small}]\n")
    model, _ = load_composition(path)
    assert len(model.members) == 2


@pytest.mark.parametrize("text, message", [
    ("base: large\nreference: small\nexperts: [{model: small-ft}]\nlambda: 1\n", "unknown key"),
    ("kind: soup\nbase: large\nreference: small\nexperts: [{model: small-ft}]\n", "not supported"),
    ("base: large\nreference: small\nexperts: []\n", "at least one expert"),
    ("base: nowhere\nreference: small\nexperts: [{model: small-ft}]\n", "not a model directory"),
    ("base: large\nreference: small\nexperts: [{model: foreign}]\n", "share one tokenizer"),
    ("- just\n- a list\n", "mapping"),
    ("base: [unclosed\n", "not valid YAML"),
])
def test_bad_compositions_fail_with_one_line(model_dirs, text, message):
    with pytest.raises(SlmError, match=message):
        load_composition(write(model_dirs / "bad.yaml", text))


def test_generate_and_serve_accept_a_composition(model_dirs, capsys):
    """`slm generate` / `slm serve` load models through Engine.from_pretrained, which takes a composition file."""
    from fastapi.testclient import TestClient

    from slm.cli import main
    from slm.infer.server import create_app

    path = write(model_dirs / "serve.yaml", "base: large\nreference: small\nexperts: [{model: small-ft}]\n")
    engine = Engine.from_pretrained(path)
    assert isinstance(engine.model, EFTModel)
    [expected] = engine.generate(["Q: what is"], SamplingParams(max_tokens=6))
    assert main(["generate", str(path), "--prompt", "Q: what is", "--max-tokens", "6", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["text"] == expected.text
    with TestClient(create_app(engine, model_name="upscaled")) as client:
        reply = client.post("/v1/completions", json={"model": "upscaled", "prompt": "Q: what is", "max_tokens": 6,
                                                     "temperature": 0}).json()
    assert reply["choices"][0]["text"] == expected.text
