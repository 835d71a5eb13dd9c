"""`slm pretrain` with objective ul2: a decoder continued as a prefix LM and an encoder-decoder on denoiser pairs,
the mode tokens and sentinels added to the saved tokenizer, and the continuation reading shards made before."""
import json

import pytest
import yaml

import slm
from slm.cli import main
from slm.data.shards import prepare
from slm.data.sources import iter_stdlib_texts, stdlib_documents

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("ul2-data")
    out = {}
    for kind in ("byte-bpe", "t5-bpe"):
        tok = slm.train_tokenizer(iter_stdlib_texts(15), vocab_size=400, kind=kind)
        tok.save_pretrained(str(root / kind))
        prepare(stdlib_documents(15), root / kind, root / f"data-{kind}", val_fraction=0.2, workers=1, progress=False)
        out[kind] = root / f"data-{kind}"
    return out


def _run(tmp_path, name, recipe):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["pretrain", str(path)]) == 0
    return tmp_path / name


TRAIN = {"max_steps": 3, "lr": 3e-3, "warmup_steps": 1, "log_every": 1, "eval_batches": 1, "progress": False}


def test_a_causal_checkpoint_continues_as_a_prefix_lm_on_ul2r(tmp_path, shards):
    tiny = {"dim": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 2, "ffn_dim": 64, "max_seq_len": 64}
    data = {"dir": str(shards["byte-bpe"]), "seq_len": 64, "batch_size": 4}
    base = _run(tmp_path, "base", {"model": {"preset": "nano", "config": tiny}, "data": data, "train": TRAIN,
                                   "out": str(tmp_path / "base")})
    base_ckpt = base / "checkpoints" / "step-000003"
    run = _run(tmp_path, "ul2", {"model": {"init_from": str(base_ckpt), "preset": None}, "data": data,
                                 "objective": "ul2", "ul2": {"mixture": "ul2r"}, "train": TRAIN,
                                 "out": str(tmp_path / "ul2")})
    model, tok = slm.load(run / "checkpoints" / "step-000003")
    vocab = tok.get_vocab()
    assert {"[NLU]", "[NLG]", "[S2S]", "<extra_id_0>", "<extra_id_99>"} <= set(vocab)
    assert model.config.vocab_size == len(tok) == 400 + 3 + 100
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 3 and all(0 < x < 20 for x in losses)
    # The grown checkpoint continues again (its tokenizer extends the shards'), causally this time.
    again = _run(tmp_path, "again", {"model": {"init_from": str(run / "checkpoints" / "step-000003"), "preset": None},
                                     "tokenizer": str(run / "checkpoints" / "step-000003"), "data": data,
                                     "train": TRAIN, "out": str(tmp_path / "again")})
    assert (again / "checkpoints" / "step-000003" / "model.safetensors").is_file()


def test_an_encoder_decoder_trains_on_denoiser_pairs(tmp_path, shards):
    tiny = {"dim": 32, "n_layers": 1, "n_heads": 2, "head_dim": 16, "ffn_dim": 64, "dropout": 0.0}
    run = _run(tmp_path, "t5", {"model": {"preset": "t5-tiny", "config": tiny},
                                "data": {"dir": str(shards["t5-bpe"]), "seq_len": 48, "batch_size": 4},
                                "objective": "ul2", "ul2": {"mixture": "ul2"}, "train": TRAIN,
                                "out": str(tmp_path / "t5")})
    model, tok = slm.load(run / "checkpoints" / "step-000003")
    # The t5 tokenizer's own sentinels are kept; only the three mode tokens are new.
    assert len(tok) == 403 and model.config.vocab_size >= len(tok)
    assert tok.convert_tokens_to_ids("[S2S]") >= 400


def test_ul2_on_an_encoder_only_model_is_a_clear_error(tmp_path, shards, capsys):
    recipe = {"model": {"preset": "roberta-tiny", "config": {"dim": 32, "n_layers": 1, "n_heads": 2, "ffn_dim": 64}},
              "data": {"dir": str(shards["byte-bpe"]), "seq_len": 32, "batch_size": 4}, "objective": "ul2",
              "train": TRAIN, "out": str(tmp_path / "enc")}
    path = tmp_path / "enc.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["pretrain", str(path)]) == 2
    assert "objective ul2 needs a decoder or an encoder-decoder" in capsys.readouterr().err
