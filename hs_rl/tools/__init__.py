"""Offline tools: the tiny random Omni models (one builder per family), sample data in the HumanSense formats, the
learnable curriculum, the format warm-up and the end-to-end demo."""
