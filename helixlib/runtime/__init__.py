"""The real partitioned block in torch: the layer and its Megatron-style paired collectives
(``layer``, ``mappings``), the communicator with named groups and its trace, the dense reference
and the comparison (``dense``, ``verify``), the one-process simulation (``simulate``), one rank's
lifecycle (``session``), a distributed run (``spec``, ``run``) and the launchers (``launch``).
Needs torch; the Plan does not."""

from helixlib.runtime.launch import DistributedRunError, launch_local, run_torchrun, torchrun_env
from helixlib.runtime.run import RunResult, match_collectives, rank_main
from helixlib.runtime.session import RankSession, rank_session
from helixlib.runtime.simulate import simulate, simulate_ranks
from helixlib.runtime.spec import Fault, RunSpec

__all__ = ["DistributedRunError", "Fault", "RankSession", "RunResult", "RunSpec", "launch_local", "match_collectives",
           "rank_main", "rank_session", "run_torchrun", "simulate", "simulate_ranks", "torchrun_env"]
