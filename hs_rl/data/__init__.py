"""Data: HumanSense records, conversion and routing, validation, media decoding, prompts, answer keys, and the
record -> model-input step shared by training and evaluation."""
