"""Training objectives: batch transforms (CPU side, seeded, resumable) and the losses that go with them.

    loader = MLMBlockLoader("runs/data", "train", seq_len=128, batch_size=32, packing="full", masking="dynamic")
    mask = MaskTokens(tokenizer, MaskingConfig(mask_prob=0.15, seed=0))
    Trainer(model, cfg, loader, batch_transform=mask, loss_fn=mlm_loss).fit()

The contract every objective keeps:
  - A transform is a function of the batch alone (and its own fixed settings): the same rows give the same
    output whatever the batch size, the number of processes, or whether the run was resumed. Randomness comes
    from keys the loader puts in each row (for MLM: `sample_index` and `mask_epoch`, seeded as fairseq seeds
    (seed, epoch, index)), never from a generator that advances with the batches.
  - A loss follows the Trainer's loss_fn contract: (model, batch) -> (summed loss over targets, target count).
  - A loader that feeds an objective is a slm.data.PackedLoader (or a subclass), so order, ranks and exact
    resumption are the loader's, unchanged.
Objectives here: masked-LM (fairseq's MaskTokensDataset, with whole-word masking, FULL-/DOC-SENTENCES blocks and
the static-masking baseline), T5's span corruption (slm.objectives.span_corruption, with its loss
slm.models.seq2seq.seq2seq_loss) and UL2's mixture of denoisers (slm.objectives.denoisers: seq2seq pairs, or a
prefix LM for decoders). The causal LM objective is the Trainer's default loss (slm.train.causal_lm_loss).
"""
from slm.objectives.blocks import MLMBlockLoader
from slm.objectives.mlm import IGNORE, MaskingConfig, MaskTokens, fairseq_seed, mlm_loss, word_begin_table
from slm.objectives.span_corruption import RawWindowLoader, SpanCorruption, SpanCorruptionConfig, SpanCorruptionLoader

__all__ = ["IGNORE", "MLMBlockLoader", "MaskTokens", "MaskingConfig", "fairseq_seed", "mlm_loss", "word_begin_table",
           "RawWindowLoader", "SpanCorruption", "SpanCorruptionConfig", "SpanCorruptionLoader"]
