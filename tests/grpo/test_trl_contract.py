"""The TRL / transformers API OmniGRPOTrainer is written against (hs_rl.grpo.trl_contract) is the installed one.

No model is built: signatures, defining classes and source text only, so a TRL upgrade fails here in a second.
"""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
import transformers
from trl import GRPOTrainer

from hs_rl.grpo import trl_contract
from hs_rl.grpo.trainer import OmniGRPOTrainer


def _plain(fn) -> str:
    """A signature without annotations (they differ in spelling between versions, the parameters are the API)."""
    signature = inspect.signature(fn)
    return str(signature.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                             for p in signature.parameters.values()],
                                 return_annotation=inspect.Signature.empty))


def _class(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _module_text(cls: type) -> str:
    """The source file defining `cls` (read whole: inspect.getsource of a class parses its module, seconds here)."""
    return Path(inspect.getsourcefile(cls)).read_text(encoding="utf-8")


def _base_classes() -> list[type]:
    return [c for c in GRPOTrainer.__mro__ if c is not object]


@pytest.mark.parametrize("name", list(trl_contract.OVERRIDES))
def test_each_override_matches_the_installed_method(name):
    owner, signature = trl_contract.OVERRIDES[name]
    defined_by = next((c for c in _base_classes() if name in c.__dict__), None)
    assert defined_by is not None, f"{name}: no TRL/transformers class defines it any more"
    assert f"{defined_by.__module__}.{defined_by.__qualname__}" == owner, (
        f"{name} is now defined by {defined_by.__module__}.{defined_by.__qualname__}, not {owner}: read the new "
        "method before updating hs_rl/grpo/trl_contract.py")
    assert _plain(defined_by.__dict__[name]) == signature, f"{name}: the installed signature changed"


def test_the_trainer_overrides_exactly_the_listed_methods():
    """A method of OmniGRPOTrainer with a TRL/transformers name replaces theirs: each must be listed (so an
    override is a decision, written down), and each listed one must still be overridden."""
    bases = _base_classes()
    overridden = {name for name, value in vars(OmniGRPOTrainer).items()
                  if (inspect.isfunction(value) or isinstance(value, (property, staticmethod, classmethod)))
                  and any(name in c.__dict__ for c in bases)}
    assert overridden == set(trl_contract.OVERRIDES), (
        f"not listed in trl_contract.OVERRIDES: {sorted(overridden - set(trl_contract.OVERRIDES))}; "
        f"listed but no longer overridden: {sorted(set(trl_contract.OVERRIDES) - overridden)}")


@pytest.mark.parametrize("name", list(trl_contract.PRIVATE_CALLS))
def test_private_calls_match(name):
    owner, signature = trl_contract.PRIVATE_CALLS[name]
    method = name.rpartition(".")[2]
    cls = _class(owner)
    assert method in cls.__dict__, f"{owner} has no {method} any more"
    assert _plain(cls.__dict__[method]) == signature
    if "." not in name:  # called on the trainer: the Trainer it inherits from must be where the contract says
        assert issubclass(GRPOTrainer, cls)


@pytest.mark.parametrize("name", list(trl_contract.FUNCTIONS))
def test_functions_called_match(name):
    module, _, function = name.rpartition(".")
    assert _plain(getattr(importlib.import_module(module), function)) == trl_contract.FUNCTIONS[name]


def test_the_create_model_patch_still_reaches_trl():
    """The patched name must be the one GRPOTrainer.__init__ calls for its reference model, looked up in its
    module at call time; the patch is in place only while that __init__ runs."""
    from hs_rl.grpo.trainer import _thinker_reference_models

    module_name, function, signature = trl_contract.CREATE_MODEL_PATCH
    module = importlib.import_module(module_name)
    original = getattr(module, function)
    assert _plain(original) == signature
    assert f"self.ref_model = {function}(" in inspect.getsource(GRPOTrainer.__init__)
    with _thinker_reference_models():
        assert getattr(module, function) is not original
    assert getattr(module, function) is original


def test_the_vllm_generation_patch_still_reaches_trl():
    """With use_vllm, GRPOTrainer.__init__ must still build its engine from the module global hs-rl replaces (else
    TRL would start its own engine, with images only, beside hs-rl's); replaced only while that __init__ runs."""
    from hs_rl.grpo.trainer import _no_trl_vllm_engine

    module_name, name = trl_contract.VLLM_GENERATION_PATCH
    module = importlib.import_module(module_name)
    original = getattr(module, name)
    assert f"self.vllm_generation = {name}(" in inspect.getsource(GRPOTrainer.__init__)
    with _no_trl_vllm_engine():
        assert getattr(module, name) is not original
    assert getattr(module, name) is original


def test_the_trainer_imports_without_vllm_and_trl_still_sees_it():
    """A fresh process importing the trainer leaves vLLM unimported (it is installed by the set-up on these machines),
    TRL's own `is_vllm_available` answers truly afterwards, and the gated modules are the only ones that ask it at
    import: a TRL release that imports vLLM from another module fails here, not as a slower start."""
    import subprocess
    import sys

    script = ("import sys, hs_rl.grpo.trainer, trl.import_utils as u, importlib.util as iu\n"
              "print('vllm' in sys.modules, u.is_vllm_available() == (iu.find_spec('vllm') is not None))")
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.split() == ["False", "True"], result.stderr[-2000:]
    trl_root = Path(importlib.import_module("trl").__file__).parent
    import_time_askers = sorted(
        ".".join(("trl", *path.relative_to(trl_root).with_suffix("").parts)).removesuffix(".__init__")
        for path in (trl_root / "generation").glob("*.py")
        if any(isinstance(node, ast.If) and "is_vllm_available" in ast.unparse(node.test)
               for node in ast.parse(path.read_text()).body))
    assert import_time_askers == sorted(trl_contract.VLLM_IMPORT_GATES)


def test_trl_attributes_read_are_still_trls():
    source = _module_text(GRPOTrainer)
    missing = [name for name in trl_contract.TRL_ATTRIBUTES if f"self.{name} =" not in source]
    assert not missing, f"GRPOTrainer no longer sets {missing}"


def test_the_trainers_own_attributes_shadow_none_of_theirs():
    """An attribute OmniGRPOTrainer sets under a name TRL or transformers' Trainer also sets would silently
    replace theirs (a new TRL attribute can collide with one of ours)."""
    tree = ast.parse(Path(inspect.getsourcefile(OmniGRPOTrainer)).read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "OmniGRPOTrainer")
    targets = [target for node in ast.walk(cls) if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign))
               for target in (node.targets if isinstance(node, ast.Assign) else [node.target])]
    targets += [element for target in targets if isinstance(target, ast.Tuple) for element in target.elts]
    # `self.NAME = …` only: `self.args.x = …` and `self._metrics[k] = …` set a value inside theirs, on purpose
    ours = {t.attr for t in targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
            and t.value.id == "self"}
    assert ours, "found no attribute of OmniGRPOTrainer: the parse above is broken"
    theirs = _module_text(GRPOTrainer) + _module_text(transformers.Trainer)
    assert not sorted(name for name in ours if f"self.{name} =" in theirs)
