"""GRPO training: the trainer's options, the `OmniGRPOTrainer` (TRL subclass with media in every forward) and its
TRL contract, shared-prefix log-probs, the reference model's shared frozen tensors, checkpoints, the epoch-seeded
sampler, the progress record and safe loading of saved shards. The model runtime it drives is hs_rl.omni."""
