"""Reward functions (TRL signature) and the spec resolver."""
from __future__ import annotations

import pytest

from hs_rl.rewards import REGISTRY, get_reward, get_rewards
from hs_rl.rewards.format import format_reward
from hs_rl.rewards.think_length import make_think_length_reward

OPTS = ["A. happy", "B. sad", "C. angry", "D. calm"]

# (completion, key, question_type, accuracy, format)
CASES = [
    ("<think>she cries</think><answer>B</answer>", "B", "single_choice", 1.0, 1.0),
    ("\n<think>x</think>\n\n<answer>B. sad</answer>\n", "B", "single_choice", 1.0, 1.0),
    ("<think>x</think><answer>A</answer><answer>B</answer>", "B", "single_choice", 1.0, 0.0),  # last wins
    ("<think>x</think><answer>B</answer><answer>A</answer>", "B", "single_choice", 0.0, 0.0),
    ("<think><think>x</think></think><answer>B</answer>", "B", "single_choice", 1.0, 0.0),    # nested
    ("<think>x</think><answer><answer>B</answer></answer>", "B", "single_choice", 1.0, 0.0),
    ("Sure! <think>x</think><answer>B</answer>", "B", "single_choice", 1.0, 0.0),            # text outside
    ("<think>x</think> so <answer>B</answer>", "B", "single_choice", 1.0, 0.0),
    ("<think>x</think><answer>B</answer> done", "B", "single_choice", 1.0, 0.0),
    ("<answer>B</answer><think>x</think>", "B", "single_choice", 1.0, 0.0),                  # wrong order
    ("<think>x</think><answer></answer>", "B", "single_choice", 0.0, 0.0),
    ("<think>x</think><answer>A B C D</answer>", "B", "single_choice", 0.0, 1.0),
    ("<think>x</think><answer>ABCD</answer>", "B", "single_choice", 0.0, 1.0),
    ("<think>x</think><answer>C</answer>", "B", "single_choice", 0.0, 1.0),                  # wrong letter
    ("<think>x</think><answer>E</answer>", "B", "single_choice", 0.0, 1.0),                  # not an option
    ("<think>x</think><answer>Both are sad</answer>", "B", "single_choice", 0.0, 1.0),
    ("<think>x</think><answer>A and C</answer>", "AC", "multi_choice", 1.0, 1.0),
    ("<think>x</think><answer>C</answer>", "AC", "multi_choice", 0.5, 1.0),                  # subset
    ("<think>x</think><answer>A, D</answer>", "AC", "multi_choice", 0.0, 1.0),
    ("<think>x</think><answer>10</answer>", "10", "number", 1.0, 1.0),
    ("<think>x</think><answer>1</answer>", "10", "number", 0.0, 1.0),
    ("<think>x</think><answer> Yes. </answer>", "yes", "yes_no", 1.0, 1.0),
    (" Yes. ", "Yes", "yes_no", 1.0, 0.0),                                                   # bare answer
    ("B", "B", "single_choice", 1.0, 0.0),
]


def _kwargs(rows):
    return {"answer": [r[1] for r in rows], "question_type": [r[2] for r in rows],
            "options": [OPTS if "choice" in r[2] else [] for r in rows]}


def test_accuracy_and_format_table():
    completions = [[{"role": "assistant", "content": r[0]}] for r in CASES]
    assert REGISTRY["accuracy"](completions, **_kwargs(CASES)) == [r[3] for r in CASES]
    assert REGISTRY["format"](completions, **_kwargs(CASES)) == [r[4] for r in CASES]


def test_plain_string_completions_and_parts():
    rows = CASES[:2]
    assert REGISTRY["accuracy"]([r[0] for r in rows], **_kwargs(rows)) == [1.0, 1.0]
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": rows[0][0]}]}]]
    assert format_reward(parts) == [1.0]


def test_not_applicable_rows_give_none():
    out = REGISTRY["accuracy"](["B", "B"], answer=["B", None], question_type=["essay", "single_choice"],
                               options=[OPTS, OPTS])
    assert out == [None, None]


def test_strict_accuracy_and_answer_format():
    kw = {"answer": ["B", "B", "B"], "question_type": ["single_choice"] * 3, "options": [OPTS] * 3}
    comps = ["B", "<answer>B</answer>", "<answer>Both</answer>"]
    assert REGISTRY["accuracy_strict"](comps, **kw) == [0.0, 1.0, 0.0]
    assert REGISTRY["answer_format"](comps, **kw) == [0.0, 1.0, 0.0]


def test_think_length():
    reward = make_think_length_reward(2, 4)
    assert reward.__name__ == "think_length_2_4"
    assert reward(["<think>a b c</think>", "<think>a</think>", "no think", "<think>a b c d e f</think>"]) == [
        1.0, 0.5, 0.0, 0.5]
    assert REGISTRY["think_length"](["<think>" + "w " * 100 + "</think><answer>A</answer>"]) == [1.0]


def test_get_reward_name_module_and_file(tmp_path, monkeypatch):
    assert get_reward("accuracy") is REGISTRY["accuracy"]
    fn = get_reward("rewards.accuracy:accuracy_reward")
    assert fn.__name__ == "accuracy_reward"
    (tmp_path / "my_reward.py").write_text(
        "def shout(completions, **kwargs):\n    return [1.0 if '!' in str(c) else 0.0 for c in completions]\n")
    monkeypatch.chdir(tmp_path)
    user = get_reward("my_reward.py:shout")
    assert user.__name__ == "shout" and user(["a!", "b"]) == [1.0, 0.0]
    monkeypatch.chdir("/")
    assert get_reward("my_reward.py:shout", base_dir=tmp_path)(["!"]) == [1.0]
    assert [f.__name__ for f in get_rewards(["format", str(tmp_path / "my_reward.py") + ":shout"])] == [
        "format_reward", "shout"]


def test_get_reward_errors(tmp_path):
    with pytest.raises(ValueError) as err:
        get_reward("acuracy")
    message = str(err.value)
    assert "'acuracy'" in message and "Did you mean 'accuracy'" in message and "format" in message
    with pytest.raises(FileNotFoundError, match="missing.py"):
        get_reward("missing.py:f", base_dir=tmp_path)
    with pytest.raises(AttributeError, match="accuracy_reward"):
        get_reward("rewards.accuracy:accuracy_rewrd")
    with pytest.raises(ModuleNotFoundError, match="no_such_pkg"):
        get_reward("no_such_pkg.mod:f")


def test_callable_without_name_gets_one(tmp_path):
    (tmp_path / "obj.py").write_text(
        "class R:\n    def __call__(self, completions, **kw):\n        return [0.0] * len(completions)\n"
        "scorer = R()\n")
    fn = get_reward(str(tmp_path / "obj.py") + ":scorer")
    assert fn.__name__ == "scorer" and fn(["x"]) == [0.0]


def test_reward_settings_build_the_reward(tmp_path):
    fmt, length = get_rewards(["format", "think_length"], settings={"think_length": {"min_words": 1, "max_words": 2}})
    assert fmt is REGISTRY["format"] and length.__name__ == "think_length_1_2"
    assert length(["<think>a b</think>", "<think>a b c d</think>"]) == [1.0, 0.0]
    (tmp_path / "extra.py").write_text(
        "def make_brevity(max_chars):\n"
        "    def brevity(completions, **kw):\n"
        "        return [1.0 if len(c) <= max_chars else 0.0 for c in completions]\n"
        "    return brevity\n")
    [brevity] = get_rewards([f"{tmp_path}/extra.py:make_brevity"], settings={"make_brevity": {"max_chars": 3}})
    assert brevity(["abc", "abcd"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="takes no settings"):
        get_rewards(["format"], settings={"format": {"x": 1}})
    with pytest.raises(ValueError, match="think_lenght"):
        get_rewards(["think_length"], settings={"think_lenght": {"max_words": 8}})
    with pytest.raises(TypeError, match="max_word"):
        get_rewards(["think_length"], settings={"think_length": {"max_word": 8}})


def test_builtin_reward_examples_hold():
    """Each built-in reward's docstring example is run as written (doctest)."""
    import doctest

    from hs_rl.rewards import accuracy, format, format_partial, think_length

    for module in (accuracy, format, format_partial, think_length):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_one_settings_rule_for_every_spec(tmp_path):
    """A spec with settings names a factory, a spec without names the reward: each mistake is refused when the
    spec resolves, not at the first training step (a factory named without settings was handed to TRL as a
    reward, and failed only when TRL called it with the completions)."""
    from hs_rl.rewards import registry

    assert registry.REGISTRY is REGISTRY and registry.FACTORIES["think_length"] is make_think_length_reward
    (tmp_path / "extra.py").write_text(
        "def make_brevity(max_chars):\n"
        "    def brevity(completions, **kw):\n"
        "        return [1.0 if len(c) <= max_chars else 0.0 for c in completions]\n"
        "    return brevity\n"
        "def brevity(completions, **kw):\n"
        "    return [1.0] * len(completions)\n")
    factory, reward = f"{tmp_path}/extra.py:make_brevity", f"{tmp_path}/extra.py:brevity"
    assert get_rewards([factory], settings={"make_brevity": {"max_chars": 3}})[0](["abc", "abcd"]) == [1.0, 0.0]
    assert get_rewards([reward])[0](["abcd"]) == [1.0]
    with pytest.raises(TypeError, match=r"make_brevity\(max_chars\) cannot take `completions`.*reward_kwargs"):
        get_rewards([factory])
    with pytest.raises(ValueError, match="takes no settings: brevity takes `completions`"):
        get_rewards([reward], settings={"brevity": {"max_chars": 3}})


def test_rewards_come_from_the_install_not_an_import_finder():
    """hs_rl.rewards is the top-level rewards/ folder by setup.py's package_dir alone (an editable install maps
    it), with no import hook of hs_rl's own that static tools cannot follow."""
    import sys
    from pathlib import Path

    import hs_rl.rewards

    root = Path(__file__).resolve().parent.parent
    assert Path(hs_rl.rewards.__file__).resolve() == root / "rewards" / "__init__.py"
    assert not [f for f in sys.meta_path if type(f).__module__.split(".")[0] == "hs_rl"]


def test_another_checkouts_rewards_are_refused(tmp_path):
    """A copy of hs_rl first on sys.path while this checkout is installed: its `hs_rl.rewards` would be this
    checkout's rewards folder, silently; it is refused in one line naming both."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import hs_rl

    (tmp_path / "hs_rl").mkdir()
    shutil.copy(Path(hs_rl.__file__), tmp_path / "hs_rl" / "__init__.py")
    result = subprocess.run([sys.executable, "-c", "import hs_rl.rewards"], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=60)
    assert result.returncode != 0
    assert f"but hs_rl from {tmp_path / 'hs_rl'}: two copies of hs-rl are mixed" in result.stderr, result.stderr
