"""Training: the run (claim the folder, build, fit), the loop, its state, validation,
checkpointed snapshots, DDP, TensorBoard."""
