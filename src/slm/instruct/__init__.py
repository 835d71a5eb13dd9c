"""Instruction tuning data as FLAN builds it: tasks phrased by templates (slm.instruct.tasks), the embedded
stdlib collection (slm.instruct.collection), examples-proportional mixtures (slm.instruct.mixture) and
held-out-cluster splits (slm.instruct.splits). `slm recipe flan` trains and evaluates with them."""
