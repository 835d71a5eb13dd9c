from pathlib import Path

import pytest

from slm.models import preset
from slm.train.pretrain import PretrainConfig, load_config

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("pretrain-*.yaml"))


def test_there_are_pretrain_recipes():
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_pretrain_recipe_builds(path):
    cfg = load_config(path, ["train.max_steps=7"])
    assert isinstance(cfg, PretrainConfig) and cfg.train.max_steps == 7
    model_cfg = preset(cfg.model.preset, **cfg.model.config)
    assert cfg.data.seq_len <= model_cfg.max_seq_len
    if cfg.train.batch_tokens:
        assert cfg.train.batch_tokens % (cfg.data.batch_size * cfg.data.seq_len) == 0


def test_tinyllama_recipe_has_the_published_hyperparameters():
    cfg = load_config(Path(__file__).parents[2] / "recipes" / "pretrain-tinyllama-1.1b.yaml").train
    assert (cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.weight_decay, cfg.grad_clip) == (4e-4, 4e-5, 2000, 0.1, 1.0)
    assert tuple(cfg.betas) == (0.9, 0.95) and cfg.batch_tokens == 2048 * 1024
