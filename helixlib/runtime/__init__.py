"""The real partitioned block in torch: the layer and its Megatron-style paired collectives
(``layer``, ``mappings``), the communicator with named groups and its trace, the dense reference
and the comparison (``dense``, ``verify``), the one-process simulation (``simulate``), one rank's
lifecycle (``session``), a distributed run (``spec``, ``run``) and the launchers (``launch``).
Needs torch; the Plan does not. The names below are imported on first use, so that
``helixlib.runtime.spec`` (what a run is asked to do, and its checks) loads without torch: the
command line refuses bad input before paying for it."""

import importlib

#: exported name -> the module of this package that defines it
_EXPORTS = {"DistributedRunError": "launch", "launch_local": "launch", "run_torchrun": "launch",
            "torchrun_env": "launch", "RunResult": "run", "match_collectives": "run", "rank_main": "run",
            "RankSession": "session", "rank_session": "session", "simulate": "simulate", "simulate_ranks": "simulate",
            "Fault": "spec", "RunSpec": "spec"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'helixlib.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"helixlib.runtime.{_EXPORTS[name]}"), name)
