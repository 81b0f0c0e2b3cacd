"""Build the configured quoter: ``make_quoter(settings) -> Quoter``.

Kinds (``[quoter] kind``):

* ``avellaneda``: :class:`daemon.models.avellaneda.AvellanedaStoikov` with ``gamma``, ``horizon_s``
  and ``horizon_mode`` (``rolling``: ``T - t = horizon_s`` always; ``session``: counts down, see
  :class:`daemon.models.quoting.SessionClock`);
* ``glft``: :class:`daemon.models.glft.GLFT` with ``gamma`` (``xi = gamma``, order size ``Delta = 1``
  because ``q`` is already in order-size units);
* ``rl``: ``daemon.models.rl.RLQuoter.load(rl_policy, gamma=gamma, horizon_s=horizon_s)`` (the live
  ``gamma`` and horizon scale the policy's unit-free actions), imported lazily so the RL code (and
  its dependencies) is only loaded when used.
"""

from __future__ import annotations

import importlib
from typing import Any

from daemon.models.base import Quoter


class QuoterBuildError(RuntimeError):
    """The configured quoter cannot be built (one line: what and why)."""


def make_quoter(settings: Any) -> Quoter:
    """The quoter named by ``settings.quoter.kind`` (``settings`` is :class:`daemon.config.Settings`,
    or anything with a ``quoter`` section)."""
    qc = settings.quoter
    kind = qc.kind
    if kind == "avellaneda":
        from daemon.models.avellaneda import AvellanedaStoikov

        return AvellanedaStoikov(qc.gamma, horizon_s=qc.horizon_s, mode=qc.horizon_mode)
    if kind == "glft":
        from daemon.models.glft import GLFT

        return GLFT(qc.gamma)
    if kind == "rl":
        if not qc.rl_policy:
            raise QuoterBuildError("quoter.kind = 'rl' needs quoter.rl_policy (a policy file from mmd train-rl)")
        try:
            mod = importlib.import_module("daemon.models.rl")
        except ModuleNotFoundError as e:
            if e.name in ("daemon.models.rl", "daemon.models"):
                raise QuoterBuildError(
                    "quoter.kind = 'rl' but the RL quoter module daemon.models.rl is not available in this build"
                ) from None
            raise QuoterBuildError(f"quoter.kind = 'rl': daemon.models.rl needs a missing module: {e.name}") from e
        cls = getattr(mod, "RLQuoter", None)
        if cls is None or not hasattr(cls, "load"):
            raise QuoterBuildError("daemon.models.rl has no RLQuoter.load(path)")
        try:
            return cls.load(qc.rl_policy, gamma=qc.gamma, horizon_s=qc.horizon_s)
        except FileNotFoundError:
            raise QuoterBuildError(f"quoter.rl_policy {qc.rl_policy!r}: file not found") from None
        except (ValueError, KeyError, TypeError) as e:
            # the RL module's PolicyLoadError (a ValueError) already names the file and the problem
            raise QuoterBuildError(f"quoter.rl_policy: {e}") from e
    raise QuoterBuildError(f"quoter.kind {kind!r}: allowed 'avellaneda', 'glft', 'rl'")
