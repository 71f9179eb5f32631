"""Make vLLM 0.32's Qwen2.5-Omni thinker compute M-RoPE positions with transformers' own get_rope_index
(the function hs-rl's trainer uses), instead of vLLM's reimplementation, which for audio-in-video rows
gives <|audio_bos|> the first interleaved position (HF gives <|vision_bos|> and <|audio_bos|> one shared
position, and likewise the two eos tokens), so every token after it is shifted.

Apply in the process that builds the engine (VLLM_ENABLE_V1_MULTIPROCESSING=0), before LLM(...).
"""
import torch
from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni as hq
from vllm.model_executor.models import qwen2_5_omni_thinker as vq

_HF = hq.Qwen2_5OmniPreTrainedModelForConditionalGeneration


class _RopeShim:
    get_rope_index = _HF.get_rope_index
    get_llm_pos_ids_for_vision = _HF.get_llm_pos_ids_for_vision
    get_chunked_index = _HF.get_chunked_index

    def __init__(self, config):
        self.config = config
        self.spatial_merge_size = config.vision_config.spatial_merge_size


def _t(f, key):
    return vq._get_feature_tensor(f, key)


def hf_get_mrope_input_positions(self, input_tokens, mm_features):
    feats = sorted(mm_features, key=lambda f: f.mm_position.offset)
    videos = [f for f in feats if f.modality == "video"]
    audios = [f for f in feats if f.modality == "audio"]
    images = [f for f in feats if f.modality == "image"]
    aiv = any(f.data.get("use_audio_in_video") is not None and bool(_t(f, "use_audio_in_video").item())
              for f in videos)
    ids = torch.tensor([input_tokens], dtype=torch.long)
    vgrid = torch.stack([_t(f, "video_grid_thw").reshape(3) for f in videos]) if videos else None
    igrid = torch.stack([_t(f, "image_grid_thw").reshape(3) for f in images]) if images else None
    spg = (torch.tensor([float(_t(f, "second_per_grid_ts").item()) if f.data.get("second_per_grid_ts") is not None
                         else 1.0 for f in videos]) if videos else None)
    alen = torch.tensor([int(_t(f, "audio_feature_lengths").item()) for f in audios]) if audios else None
    shim = _RopeShim(self.config)
    if vgrid is None and igrid is None:  # text / audio only: HF (and hs-rl) use plain sequential positions
        n = len(input_tokens)
        return torch.arange(n).expand(3, n).clone(), 0
    pos, delta = shim.get_rope_index(ids, igrid, vgrid, torch.ones_like(ids), aiv, alen, spg)
    return pos[:, 0].to(torch.long), int(delta.reshape(-1)[0])


def apply():
    vq.Qwen2_5OmniThinkerForConditionalGeneration.get_mrope_input_positions = hf_get_mrope_input_positions
