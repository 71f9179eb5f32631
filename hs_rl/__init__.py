"""hs-rl: multi-stage GRPO training of Qwen2.5-Omni on video, audio and video+audio (HumanSense recipe)."""

__version__ = "0.1.0"
