"""The Omni model runtime: families, per-row inputs, generation, model loading, export, rollout engines."""
