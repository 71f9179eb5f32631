"""A LoRA stage (`use_peft: true`): final/ is a full Qwen2.5-Omni model with the adapters merged into the thinker,
its checkpoints resume exactly, and a re-run with final/ missing completes the export from the last checkpoint."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.grpo.test_resume import assert_same_run, metrics, resume_from_copy, run, train_command

LORA = ("--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--max_steps", "2", "--save_steps", "1",
        "--keep_adapter", "true")


@pytest.mark.slow
def test_lora_stage_exports_merged_model_resumes_and_reruns(tiny_model, sample_data, tmp_path):
    from peft import PeftModel
    from transformers import Qwen2_5OmniForConditionalGeneration

    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records
    from hs_rl.omni.loading import load_thinker

    dataset = tmp_path / "video.jsonl"
    write_records([r for r in convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
                   if r.modality == "video"], dataset)
    reference = tmp_path / "reference"
    run(train_command(tiny_model["full"], dataset, reference, *LORA))

    # final/: a complete Omni model, loadable as such, talker and token2wav untouched, thinker = base + merged LoRA
    final, base_dir = reference / "final", tiny_model["full"]
    model = Qwen2_5OmniForConditionalGeneration.from_pretrained(final)
    assert load_file(final / "model.safetensors").keys() == load_file(base_dir / "model.safetensors").keys()
    assert (final / "spk_dict.pt").is_file() and model.talker is not None and model.token2wav is not None
    base = Qwen2_5OmniForConditionalGeneration.from_pretrained(base_dir)
    trained, initial = model.state_dict(), base.state_dict()
    assert all(torch.equal(trained[k], initial[k]) for k in trained if not k.startswith("thinker."))
    changed = [k for k in trained if k.startswith("thinker.") and not torch.equal(trained[k], initial[k])]
    from tests.grpo.trainer_helpers import parameter_parts

    language = {f"thinker.{n}" for n, part in parameter_parts(model.thinker).items() if part == "language"}
    assert changed and all(k in language and "_proj." in k for k in changed), changed[:5]
    assert not any("lora" in k for k in trained)  # merged: no adapter weights left in the model
    # the adapter kept beside final/ (keep_adapter) merges into the input thinker to the same weights
    merged = PeftModel.from_pretrained(load_thinker(base_dir), str(reference / "final_adapter")).merge_and_unload()
    for key, value in merged.state_dict().items():
        torch.testing.assert_close(model.thinker.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    load_thinker(final)  # what the pipeline's next stage loads

    # killed after checkpoint-1, then the same command: the same final weights and metrics
    resumed = tmp_path / "resumed"
    command = train_command(tiny_model["full"], dataset, resumed, *LORA)
    resume_from_copy(reference, 1, command, resumed)
    assert_same_run(reference, resumed)

    # the last checkpoint saved, final/ lost: the same command only exports (no step trained again)
    shutil.rmtree(resumed / "final")
    shutil.rmtree(resumed / "final_adapter")
    run(command)
    assert_same_run(reference, resumed)
    assert [h["step"] for h in metrics(resumed) if "loss" in h] == [1, 2]
    assert json.loads((resumed / "final" / "hs_rl_export.json").read_text())["kind"] == "full"
    assert load_file(resumed / "final_adapter" / "adapter_model.safetensors").keys() == \
        load_file(reference / "final_adapter" / "adapter_model.safetensors").keys()


def test_default_targets_train_on_each_family(omni_model, sample_data, tmp_path):
    """`use_peft` with TRL's defaults (lora_dropout 0.05) and no targets: each family's LoRA targets
    (Family.lora_targets: Qwen2.5-Omni every attention and MLP projection, Qwen3-Omni the attention projections,
    not the fused MoE experts) get adapters in the language model only, and a real step moves every one."""
    from hs_rl.omni.families import family_of, family_of_dir
    from hs_rl.omni.inputs import thinker_of
    from hs_rl.train import build_trainer
    from tests.grpo.trainer_helpers import sample_records, stage_args

    records = [r for r in sample_records(sample_data) if r.modality == "video"][:2]
    trainer = build_trainer(*stage_args(omni_model["full"], records, tmp_path, use_peft=True, lora_r=4))
    assert trainer.model.peft_config["default"].lora_dropout == 0.05
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    adapted = {n.split(".lora_B")[0] for n in before if ".lora_B." in n}
    targets = family_of_dir(omni_model["full"]).lora_targets
    thinker = thinker_of(trainer.model)
    language = {id(m) for m in family_of(thinker).language_model(thinker).modules()}
    expected = {n for n, m in trainer.model.named_modules() if id(m) in language
                and n.rpartition(".")[2] in targets and not any(x in n for x in (".lora_", ".base_layer"))}
    assert adapted == expected and expected, sorted(adapted ^ expected)[:5]
    assert all("lora_" in n for n in before), [n for n in before if "lora_" not in n][:5]
    trainer.train()
    moved = {n.split(".lora_B")[0] for n, p in trainer.model.named_parameters()
             if ".lora_B." in n and not torch.equal(p, before[n])}
    assert moved == adapted, sorted(adapted - moved)[:5]
