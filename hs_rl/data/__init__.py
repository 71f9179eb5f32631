"""Data: HumanSense records, conversion and routing, validation, media decoding, prompts, answer keys, a stage's data
options (`DataArguments`), and the record -> `PromptMedia` step shared by training and evaluation. Imports nothing
from the model runtime or the trainer (tests/test_layers.py)."""
