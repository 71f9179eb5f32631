"""Offline tools: the tiny random Omni model, sample data in the HumanSense formats, and the end-to-end demo."""
