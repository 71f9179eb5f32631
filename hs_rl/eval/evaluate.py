"""`hs-rl eval`: answer HumanSense benchmark files with a checkpoint and append one JSON line per question.

The run is resumable and kill-safe: each batch's lines are appended, flushed and fsync'ed together, a re-run
skips the ids already in the results file, and a half-written last line (killed mid-write) is cut off and its
question answered again. Existing complete lines are never rewritten.

Prompts of different modalities (video, audio, video+audio) share a batch: `hs_rl.omni.inputs` builds each
row's embeddings and 3-D rope positions itself, so no per-batch `use_audio_in_video` flag is involved. The
prompts are left-padded, prefilled (all but the last column) with those inputs, and then decoded by HF
`generate` from the prefilled cache; during decoding transformers positions a token at
``attention_mask.cumsum() - 1 + rope_deltas``, and the cumsum already skips the left padding, so each row's
``rope_deltas`` is its own unpadded prompt delta (no padding correction).

Video frames follow the benchmark's evaluation rule: 1 fps, 0.5 fps above 300 source frames, 0.2 fps from
600 source frames, at most 24 frames of at most 360x420 pixels.

Prompts: ours by default (`hs_rl.data.prompts`); with `--prompt_source` (the user's HumanSense_bench/src) the
benchmark's own system and user text, audio routing and `--asr` / `--analysis_prompt` (its `--think_omini`)
rules, read from its files at run time (`hs_rl.data.benchmark_prompts`). Every results line records this setting;
`--dump_prompts FILE` writes the exact text of every question without loading a model.

`--engine vllm` answers through a vLLM engine (`hs_rl.omni.vllm_engine.VLLMEngine`) instead of transformers: the
same `PromptMedia` rows (hs-rl's decoded frames and wave, its expanded prompt ids, checked against vLLM's on every
request), greedy unless `--do_sample`, stopping at the same tokens. Its results lines record `engine: vllm` in
their decoding setting, so one file never mixes the two engines' answers.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from hs_rl.atomic_files import atomic_write
from hs_rl.choices import check_choices
from hs_rl.data.answers import extract_answer
from hs_rl.data.arguments import DataArguments
from hs_rl.data.benchmark_prompts import BenchmarkPrompts, NotAsked, load_prompt_source
from hs_rl.data.convert import ConvertError, convert_humansense, load_routing, read_humansense
from hs_rl.data.media import MediaError, VideoArguments, open_video
from hs_rl.data.prompt_media import PromptMedia, PromptTooLongError, prepare_prompt
from hs_rl.data.prompts import DEFAULT_SYSTEM_PROMPT, chat_messages, ours_version, question_text
from hs_rl.data.records import Record, has_video, iter_jsonl
from hs_rl.omni.generation import generate_rows

logger = logging.getLogger(__name__)

EVAL_MAX_FRAMES = 24
EVAL_MAX_PIXELS = 360 * 420


@dataclass(kw_only=True)
class EvalArguments(VideoArguments):
    """Options of `hs-rl eval --model DIR --data FILE.json [FILE.json ...] --out RESULTS.jsonl` (the `video_*`
    options are training's, VideoArguments, with the benchmark's defaults)."""

    data: list[str] = field(metadata={"help": "HumanSense benchmark JSON file(s), e.g. HumanSense_VQA.json."})
    model: str | None = field(default=None, metadata={
        "help": "Local checkpoint folder (full Omni or thinker-only); not needed with --dump_prompts."})
    out: str | None = field(default=None, metadata={
        "help": "Results JSONL (appended to; a re-run answers only missing ids); not needed with --dump_prompts."})
    prompt_source: str | None = field(default=None, metadata={
        "help": "The HumanSense_bench/src folder of the benchmark code: ask every question with the benchmark's "
                "own system and user text, audio routing and --asr/--analysis_prompt rules, read from its files "
                "(the paper's setting: add --no_think). Default: hs-rl's own prompts."})
    audio: bool = field(default=True, metadata={
        "help": "Let the audio tasks hear their video's own track (the benchmark's --audio); --no_audio: frames "
                "only. Audio-only tasks always get their audio file."})
    asr: bool = field(default=False, metadata={
        "help": "The benchmark's --asr: prepend each question's ASR text (asr_en) and ask only the tasks the "
                "benchmark restricts that mode to. Needs --prompt_source."})
    analysis_prompt: bool = field(default=False, metadata={
        "aliases": ["--think_omini"],
        "help": "The benchmark's --think_omini (the paper's training-free prompting): prepend its analysis text "
                "and ask only the tasks it restricts that mode to. Needs --prompt_source."})
    dump_prompts: str | None = field(default=None, metadata={
        "help": "Write one JSON line per question (file, index, system, user, video, audio, use_audio_in_video) "
                "to this file and stop, without loading a model."})
    media_root: str | None = field(default=None, metadata={
        "help": "Folder relative media paths resolve against (default: each data file's folder)."})
    routing: str | None = field(default=None, metadata={
        "help": "YAML task_type -> modality (video|audio|video_audio) merged over the recipe routing."})
    think: bool = field(default=True, metadata={"help": "Ask for <think>…</think><answer>…</answer>."})
    system_prompt: str | None = field(default=DEFAULT_SYSTEM_PROMPT, metadata={"help": "System turn; '' for none."})
    batch_size: int = field(default=4, metadata={"help": "Questions generated together (mixed modalities)."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Generation limit per answer."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float | None = field(default=None, metadata={"help": "Sampling temperature (with --do_sample)."})
    seed: int = field(default=0, metadata={"help": "Random seed (matters only with --do_sample)."})
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU) | bfloat16 | float16 | float32."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "Attention kernel: sdpa | eager | ..."})
    engine: Literal["transformers", "vllm"] = field(default="transformers", metadata={
        "help": "What generates the answers: transformers (hs-rl's batched generate) | vllm (a vLLM engine in this "
                "process; needs vLLM installed and a full Qwen2.5-Omni folder, docs/vllm.md)."})
    vllm_max_model_len: int | None = field(default=None, metadata={
        "help": "--engine vllm: the engine's context, prompt + answer, in tokens (default: the model's "
                "max_position_embeddings, at most 8192); a prompt with no room beside --max_new_tokens gets an "
                "error line, not an answer."})
    device: str | None = field(default=None, metadata={"help": "cuda | cpu (default: cuda when available)."})
    video_fps: float | None = field(default=None, metadata={
        "help": "Fixed sampling fps; default the benchmark rule (1, 0.5 above 300 frames, 0.2 from 600)."})
    video_max_frames: int = field(default=EVAL_MAX_FRAMES, metadata={"help": "Most frames per clip."})
    video_max_pixels: int = field(default=EVAL_MAX_PIXELS, metadata={"help": "Most pixels per frame."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N questions (smoke tests)."})
    label: str | None = field(default=None, metadata={
        "help": "Model name stored in results, the column `hs-rl score` labels them with (default: the model's folder; "
                "for OUTPUT_DIR/final the stage's folder)."})
    num_workers: int = field(default=2, metadata={"help": "Threads decoding media ahead of generation."})

    def __post_init__(self):
        check_choices(self)


@dataclass
class Question:
    """One benchmark question with where it came from (stable id, source file, index within that file) and
    the exact system and user text it is asked with."""

    record: Record
    source: str
    index: int
    system: str | None = None
    user: str = ""

    def messages(self) -> list[dict[str, Any]]:
        """The conversation: system turn, then the media parts and the user text."""
        return chat_messages(self.record, self.system, self.user)


# ---------------------------------------------------------------- questions

def check_prompt_options(args: EvalArguments) -> BenchmarkPrompts | None:
    """The benchmark's prompt source when asked for; flags that only exist in the benchmark's setting need it."""
    if not args.prompt_source:
        needs = [flag for flag, on in (("--asr", args.asr), ("--analysis_prompt", args.analysis_prompt)) if on]
        if needs:
            raise ValueError(f"{' and '.join(needs)} need --prompt_source (the benchmark's wording and task lists "
                             "are read from its code)")
        return None
    if args.system_prompt not in (None, "", DEFAULT_SYSTEM_PROMPT):
        raise ValueError("--system_prompt and --prompt_source both set the system turn; with --prompt_source it "
                         "is the benchmark's")
    return load_prompt_source(args.prompt_source)


def _raw_questions(entries: list[Any]) -> Iterator[dict[str, Any]]:
    """The benchmark's question dicts in the converter's order (one dict or a list per entry)."""
    for entry in entries:
        questions = entry["questions"]
        yield from ([questions] if isinstance(questions, dict) else questions)


def _route(record: Record, args: EvalArguments, source: BenchmarkPrompts | None) -> None:
    """Audio for a video question: the benchmark's --audio task list with a prompt source, else our routing;
    --no_audio gives every video question frames only. Audio-only questions keep their audio file."""
    if record.modality == "audio":
        return
    if source is not None:
        record.modality = "video_audio" if source.audio_in_video(record.task_type, args.audio) else "video"
    elif not args.audio and record.modality == "video_audio":
        record.modality = "video"


def load_questions(args: EvalArguments, skipped: dict[str, int] | None = None) -> list[Question]:
    """The questions this setting asks, in data-file order, with their exact text; an id repeated in a later
    file gets that file's stem prefixed. `skipped` (if given) receives why others were left out, counted."""
    source = check_prompt_options(args)
    routing = load_routing(args.routing)
    skipped = {} if skipped is None else skipped
    questions: list[Question] = []
    seen: set[str] = set()
    for path in args.data:
        path = Path(path)
        root = Path(args.media_root) if args.media_root else path.resolve().parent
        entries = read_humansense(path)
        records = convert_humansense(entries, routing, root, source=str(path))
        for index, (record, raw) in enumerate(zip(records, _raw_questions(entries))):
            if record.id in seen:  # the converter's ids are unique per file only
                record.id = f"{path.stem}:{record.id}"
            seen.add(record.id)
            _route(record, args, source)
            if source is None:
                system, user = args.system_prompt or None, question_text(record, think=args.think)
            elif not source.asked(record.task_type, args.asr, args.analysis_prompt):
                skipped["not asked in this mode (the benchmark's task restriction)"] = \
                    skipped.get("not asked in this mode (the benchmark's task restriction)", 0) + 1
                continue
            else:
                try:
                    system = source.system
                    user = source.user_text(raw, args.think, args.asr, args.analysis_prompt,
                                            where=f"{path}: question {index}")
                except NotAsked as reason:
                    skipped[str(reason)] = skipped.get(str(reason), 0) + 1
                    continue
            questions.append(Question(record, str(path), index, system, user))
    for reason, count in skipped.items():
        logger.warning("%d question(s) not asked: %s", count, reason)
    return questions[:args.limit] if args.limit is not None else questions


def eval_setting(args: EvalArguments) -> dict[str, Any]:
    """What every results line records about how its question was asked and answered."""
    source = check_prompt_options(args)
    prompts = {"prompts": "benchmark", **source.setting()} if source else {
        "prompts": "hs-rl", "prompt_source": None, "prompt_version": ours_version(args.system_prompt)}
    return {**prompts, "think": args.think, "audio": args.audio, "asr": args.asr,
            "analysis_prompt": args.analysis_prompt,
            "decoding": {"do_sample": args.do_sample, "temperature": args.temperature if args.do_sample else None,
                         "max_new_tokens": args.max_new_tokens,
                         # only when not the default, so files written before the option existed still resume
                         **({"engine": args.engine} if args.engine != "transformers" else {})},
            "frames": {"fps": args.video_fps or "benchmark rule", "max_frames": args.video_max_frames,
                       "max_pixels": args.video_max_pixels}}


def prompt_line(question: Question) -> dict[str, Any]:
    """One --dump_prompts line: the exact text and media of a question."""
    record = question.record
    return {"file": Path(question.source).name, "index": question.index, "system": question.system,
            "user": question.user, "video": record.video if has_video(record.modality) else None,
            "audio": record.audio if record.modality == "audio" else None,
            "use_audio_in_video": record.modality == "video_audio"}


def dump_prompts(args: EvalArguments) -> Path:
    """Write every asked question's prompt as JSON lines (atomically); no model is loaded."""
    path = Path(args.dump_prompts)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(prompt_line(q), ensure_ascii=False) + "\n" for q in load_questions(args)))
    return path


def benchmark_fps(num_frames: int) -> float:
    """The release's sampling rate for a clip of num_frames source frames."""
    if num_frames >= 600:
        return 0.2
    if num_frames > 300:
        return 0.5
    return 1.0


def count_frames(path: str) -> int:
    """Source frame count from the container index (decord), without decoding the frames."""
    return len(open_video(path))


def data_arguments(args: EvalArguments) -> DataArguments:
    """The prompt and media options shared by every question (fps is set per clip)."""
    return DataArguments(system_prompt=args.system_prompt or None, think=args.think, validate_data=False,
                         **{**args.video_options(), "video_fps": args.video_fps or 1.0})


class LockedProcessor:
    """The processor with its __call__ serialized: a fast tokenizer shared by threads can fail ("Already borrowed")."""

    def __init__(self, processor) -> None:
        self._processor = processor
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            return self._processor(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._processor, name)


def prepare(record: Record, processor, base: DataArguments, fixed_fps: float | None,
            messages: list[dict[str, Any]] | None = None, keep_decoded: bool = False) -> PromptMedia:
    """Decode one question's media and run the processor, with the benchmark's fps rule for its clip;
    `messages` is the conversation to ask (default: built from the record with our prompts); `keep_decoded`
    keeps the decoded frames and wave on the row (the vLLM engine runs its own processor on them)."""
    data_args = base
    if record.video and fixed_fps is None:
        data_args = dataclasses.replace(base, video_fps=benchmark_fps(count_frames(record.video)))
    media, _ = prepare_prompt(record, processor, data_args, messages, keep_decoded=keep_decoded)
    return media


# ---------------------------------------------------------------- results file

def _model_label(args: EvalArguments) -> str:
    """The label stored in each line: --label, else the folder name (parent-prefixed for checkpoint-N)."""
    if args.label:
        return args.label
    folder = Path(args.model).resolve()
    if folder.name == "final":  # a stage's exported model: the stage's folder names it (stage1_video, not final)
        return folder.parent.name
    return f"{folder.parent.name}-{folder.name}" if folder.name.startswith("checkpoint-") else folder.name


def read_done(path: Path) -> dict[str, dict[str, Any]]:
    """Ids already answered in `path`; a partial last line (no newline) is truncated away so appends stay valid."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        logger.warning("%s: dropping a partially written last line (%d bytes); it is answered again",
                       path, len(data) - end)
        os.truncate(path, end)
    done: dict[str, dict[str, Any]] = {}
    for number, row in iter_jsonl(path):  # only complete lines are left
        if "id" not in row:
            raise ValueError(f"{path}:{number}: not a results line (no 'id')")
        done[str(row["id"])] = row
    return done


def _check_same_run(done: dict[str, dict[str, Any]], label: str, think: bool, path: Path,
                    setting: dict[str, Any] | None = None) -> None:
    """Refuse to mix two models', prompt styles' or settings' answers in one file."""
    for row in done.values():
        if row.get("model") != label or row.get("think") != think:
            raise ValueError(f"{path} already holds answers of model {row.get('model')!r} (think="
                             f"{row.get('think')}); this run is {label!r} (think={think}). Use another --out.")
        if setting is not None and "setting" in row and row["setting"] != setting:
            diff = sorted(k for k in {*setting, *row["setting"]} if setting.get(k) != row["setting"].get(k))
            raise ValueError(f"{path} already holds answers asked in another setting (differs in "
                             f"{', '.join(diff)}). Use another --out.")


def result_line(question: Question, prediction: str, label: str, think: bool, error: str | None = None,
                setting: dict[str, Any] | None = None) -> dict:
    """The JSON object written for one question (fields read by `hs-rl score`, plus provenance)."""
    record = question.record
    row = {"id": record.id, "task_type": record.task_type, "question_type": record.question_type,
           "modality": record.modality, "question": record.question, "options": list(record.options),
           "answer": record.answer, "prediction": prediction, "extracted": extract_answer(prediction),
           "model": label, "think": think, "source": question.source, "index": question.index,
           "media": record.video or record.audio}
    if setting is not None:
        row["setting"] = setting
    if error is not None:
        row["error"] = error
    return row


def append_lines(handle, rows: list[dict]) -> None:
    """Append a batch's lines in one write and force them to disk, so a kill loses at most this batch."""
    if not rows:
        return
    handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    handle.flush()
    os.fsync(handle.fileno())


# ---------------------------------------------------------------- generation

def pick_device(requested: str | None) -> torch.device:
    """cuda when available unless told otherwise."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def stop_token_ids(processor, text_config) -> list[int]:
    """The ids an answer ends at: <|im_end|>, the tokenizer's and the text model's eos (both engines alike)."""
    tokenizer = processor.tokenizer
    eos = {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    for value in (tokenizer.eos_token_id, text_config.eos_token_id):
        eos |= set(value if isinstance(value, list) else [value])
    eos.discard(None)
    eos.discard(tokenizer.unk_token_id)
    return sorted(eos)


def generation_config(thinker, processor, args: EvalArguments):
    """Greedy (or sampled) decoding that stops at <|im_end|> or the model's eos."""
    from transformers import GenerationConfig

    tokenizer = processor.tokenizer
    eos = set(stop_token_ids(processor, thinker.config.get_text_config()))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    sampling = {"do_sample": True, "temperature": args.temperature or 1.0} if args.do_sample else \
        {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return GenerationConfig(max_new_tokens=args.max_new_tokens, eos_token_id=sorted(eos), pad_token_id=pad,
                            **sampling)


@torch.no_grad()
def generate_batch(thinker, rows: list[PromptMedia], gen_config) -> list[torch.Tensor]:
    """New tokens (up to, not including, the first stop token) for each prompt of a mixed-modality batch."""
    stops = set(gen_config.eos_token_id)
    return [torch.tensor(tokens[:-1] if tokens and tokens[-1] in stops else tokens, dtype=torch.long)
            for tokens in generate_rows(thinker, rows, gen_config, stops)]


class VLLMAnswers:
    """`--engine vllm`: one engine in this process answering batches of rows, greedy unless --do_sample."""

    def __init__(self, args: EvalArguments, processor):
        from transformers import AutoConfig

        from hs_rl.omni.loading import check_model_dir, resolve_dtype
        from hs_rl.omni.vllm_engine import VLLMEngine, require_vllm

        require_vllm()  # before any weights load: a missing vLLM is one line naming the install command
        folder = check_model_dir(args.model)
        config = AutoConfig.from_pretrained(folder)
        text_config = getattr(config, "thinker_config", config).get_text_config()
        on_gpu = torch.cuda.is_available() and args.device != "cpu"
        dtype = resolve_dtype(args.dtype, torch.device("cuda" if on_gpu else "cpu"))
        self.max_model_len = args.vllm_max_model_len or min(8192, text_config.max_position_embeddings)
        self.stops = stop_token_ids(processor, text_config)
        self.args = args
        self.engine = VLLMEngine(folder, dtype=str(dtype).removeprefix("torch."), max_model_len=self.max_model_len,
                                 seed=args.seed, max_num_seqs=args.batch_size)

    def too_long(self, media: PromptMedia) -> str | None:
        """Why the engine cannot answer this prompt in full (None: it can): prompt and --max_new_tokens must fit its
        context, else vLLM refuses the prompt or cuts the answer short where transformers would not."""
        length, room = media.input_ids.numel(), self.max_model_len - self.args.max_new_tokens
        if length <= room:
            return None
        return (f"prompt is {length} tokens with its media, over the {room} the vLLM engine leaves beside "
                f"--max_new_tokens={self.args.max_new_tokens} (raise --vllm_max_model_len={self.max_model_len}, or "
                "give fewer frames: --video_max_frames / --video_max_pixels)")

    def __call__(self, rows: list[PromptMedia]) -> list[torch.Tensor]:
        """New tokens (up to, not including, the first stop token) for each row, like `generate_batch`."""
        args = self.args
        temperature = (args.temperature or 1.0) if args.do_sample else 0.0
        samples = self.engine.generate(rows, n=1, temperature=temperature, max_tokens=args.max_new_tokens,
                                       stop_token_ids=self.stops, seed=args.seed)
        stops = set(self.stops)
        out = []
        for row_samples in samples:  # one sample per row: (token ids, their log-probs)
            tokens = row_samples[0][0]
            out.append(torch.tensor(tokens[:-1] if tokens and tokens[-1] in stops else tokens, dtype=torch.long))
        return out


def _prefetch(questions: list[Question], work, workers: int, ahead: int) -> Iterator[tuple[Question, Future]]:
    """Yield (question, future of its prepared prompt) in order, keeping `ahead` preparations in flight."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: list[tuple[Question, Future]] = []
        it = iter(questions)
        for question in it:
            pending.append((question, pool.submit(work, question)))
            if len(pending) >= ahead:
                break
        while pending:
            yield pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(work, nxt)))


def _batches(items: Iterator[tuple[Question, Future]], size: int) -> Iterator[list[tuple[Question, Future]]]:
    """Consecutive groups of `size` in question order."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


_MEDIA_FAILURES = (MediaError, OSError, RuntimeError, ValueError)


def _failure_message(question: Question, err: Exception) -> str:
    """The error stored in a result line: always names the media file."""
    media = str(question.record.video or question.record.audio)
    text = str(err) if isinstance(err, MediaError) else f"{type(err).__name__}: {err}"
    return text if media in text else f"{media}: {text}"


def _generate_safely(thinker, rows: list[PromptMedia], gen_config) -> list[torch.Tensor]:
    """Generate a batch; on a CUDA out-of-memory error retry its prompts one at a time."""
    try:
        return generate_batch(thinker, rows, gen_config)
    except torch.OutOfMemoryError:
        if len(rows) == 1:
            raise
        logger.warning("out of memory on a batch of %d prompts; answering them one at a time", len(rows))
        for row in rows:
            row.cache.clear()
        torch.cuda.empty_cache()
        return [generate_batch(thinker, [row], gen_config)[0] for row in rows]


def evaluate(args: EvalArguments) -> Path:
    """Answer every missing question of args.data and append the lines to args.out; returns that path."""
    from tqdm.auto import tqdm

    from hs_rl.omni.loading import load_processor, load_thinker, resolve_dtype

    if not args.data:
        raise ValueError("hs-rl eval: at least one --data benchmark file is required")
    if args.dump_prompts:
        return dump_prompts(args)
    if not args.model or not args.out:
        raise ValueError("hs-rl eval: --model and --out are required (unless --dump_prompts)")
    if args.batch_size < 1:
        raise ValueError("--batch_size must be at least 1")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    label = _model_label(args)
    questions = load_questions(args)
    setting = eval_setting(args)
    done = read_done(out)
    _check_same_run(done, label, args.think, out, setting)
    todo = [q for q in questions if q.record.id not in done]
    answered = len(questions) - len(todo)
    if not todo:
        logger.info("%s: all %d questions already answered", out, len(questions))
        return out

    processor = load_processor(args.model)
    vllm = VLLMAnswers(args, processor) if args.engine == "vllm" else None
    if vllm is None:
        device = pick_device(args.device)
        thinker = load_thinker(args.model, resolve_dtype(args.dtype, device),
                               args.attn_implementation).to(device).eval()
        gen_config = generation_config(thinker, processor, args)
    base = data_arguments(args)
    torch.manual_seed(args.seed)

    locked = LockedProcessor(processor)

    def work(question: Question) -> PromptMedia:
        media = prepare(question.record, locked, base, args.video_fps, question.messages(),
                        keep_decoded=vllm is not None)
        problem = vllm.too_long(media) if vllm is not None else None
        if problem is not None:
            raise PromptTooLongError(f"question {question.record.id}: {problem}")
        return media

    bar = tqdm(total=len(questions), initial=answered, desc="eval", unit="q")
    with open(out, "a", encoding="utf-8") as handle:
        for batch in _batches(_prefetch(todo, work, args.num_workers, 2 * args.batch_size), args.batch_size):
            ready: list[tuple[Question, PromptMedia]] = []
            lines: dict[str, dict] = {}
            for question, future in batch:
                try:
                    ready.append((question, future.result()))
                except _MEDIA_FAILURES as err:
                    message = _failure_message(question, err)
                    logger.warning("question %s: %s", question.record.id, message,
                                   exc_info=not isinstance(err, (MediaError, PromptTooLongError)))
                    lines[question.record.id] = result_line(question, "", label, args.think, error=message,
                                                           setting=setting)
            if ready:
                rows = [media for _, media in ready]
                tokens = vllm(rows) if vllm is not None else _generate_safely(thinker, rows, gen_config)
                texts = processor.batch_decode(tokens, skip_special_tokens=True)
                for (question, _), text in zip(ready, texts):
                    lines[question.record.id] = result_line(question, text, label, args.think, setting=setting)
            append_lines(handle, [lines[q.record.id] for q, _ in batch])
            bar.update(len(batch))
    bar.close()
    return out


def run_eval(args: EvalArguments) -> int:
    """CLI body: evaluate, then say where the results are and how to score them."""
    from hs_rl.logs import show_our_logs

    show_our_logs()
    try:
        out = evaluate(args)
    except (ConvertError, FileNotFoundError, ValueError) as err:  # PromptSourceError is a ValueError
        print(f"hs-rl eval: {err}")
        return 1
    if args.dump_prompts:
        print(f"prompts written to {out} (no model loaded)")
        return 0
    print(f"results written to {out}")
    print(f"score them with: hs-rl score {out} --out {out.with_suffix('')}_scores")
    return 0
