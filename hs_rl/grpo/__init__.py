"""GRPO training: the config, the `OmniGRPOTrainer` (TRL subclass with media in every forward), per-row omni inputs,
generation, shared-prefix log-probs, model loading, checkpoints, the epoch-seeded sampler, export and safe
loading of saved shards."""
