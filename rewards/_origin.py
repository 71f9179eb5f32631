"""Refuse to load as another copy's `hs_rl.rewards`: this folder belongs to the hs_rl beside it.

It is hs_rl's own only as `hs_rl/rewards/` (a wheel) or as `rewards/` beside `hs_rl/` (a source tree installed
editable). A checkout put first on sys.path (a launch script does so) while another checkout is installed
editable would otherwise score with the other checkout's rewards, silently.
"""
from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_HS_RL = Path(sys.modules["hs_rl"].__file__).resolve().parent
if _HERE not in (_HS_RL / "rewards", _HS_RL.parent / "rewards"):
    raise ImportError(f"hs_rl.rewards comes from {_HERE} but hs_rl from {_HS_RL}: two copies of hs-rl are mixed; "
                      f"install the one you run: pip install -e {_HS_RL.parent}")
