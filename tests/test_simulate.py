"""The single-process simulation: the real partitioned block, every rank a thread."""

import threading

import pytest

from helixlib import Partition, build_plan, factorisations
from helixlib.plan import MAPPINGS
from helixlib.plan.partition import OUTPUT_MODES, QK_MODES
from helixlib.runtime.simulate import simulate, simulate_ranks
from helixlib.runtime.verify import TOLERANCE
from helixlib.views.softmax_demo import segment_softmax_demo


@pytest.mark.parametrize("nm", factorisations(16), ids=lambda nm: f"{nm[0]}x{nm[1]}")
@pytest.mark.parametrize("qk", QK_MODES)
@pytest.mark.parametrize("out", OUTPUT_MODES)
def test_fp64_matches_dense_forward_and_backward(tiny, nm, qk, out):
    c = simulate(build_plan(tiny, Partition(*nm, qk, out)), dtype="fp64", backward=True)
    assert c.forward_error < 1e-10
    assert set(c.backward_errors) >= {"x", "Wq", "bq", "Wk", "Wv", "Wo", "bo", "W1", "b1", "W2", "b2", "ln1.weight"}
    assert c.backward_error < 1e-10, c.backward_errors
    assert c.ok


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_low_precision_is_as_close_as_the_dense_block_in_that_precision(tiny, dtype):
    c = simulate(build_plan(tiny, Partition(4, 4)), dtype=dtype, backward=True)
    assert c.ok, c.to_dict()
    # the partitioned block is not meaningfully worse than the dense block in the same dtype
    assert c.forward_error <= 3 * c.dense_error + TOLERANCE["fp64"][0]


@pytest.mark.parametrize("qk", QK_MODES)
@pytest.mark.parametrize("out", OUTPUT_MODES)
def test_recorded_collectives_equal_the_plan(tiny, qk, out):
    plan = build_plan(tiny, Partition(2, 8, qk, out))
    _, traces = simulate_ranks(plan, backward=True)
    for r, tr in enumerate(traces):
        assert tr.signatures() == [c.signature() for c in plan.collectives_for_rank(r)]
        assert [o.name for o in tr.ops] == [o.name for o in plan.rank_ops(r)]


def test_a_wrong_backward_mapping_is_detected(tiny, monkeypatch):
    """If the partial-score all-reduce had an identity backward (Megatron's g, right only
    when everything after it is replicated), the gradients would be wrong: the test
    above can fail."""
    from helixlib.runtime import layer, mappings
    monkeypatch.setattr(layer, "all_reduce_sum", mappings.reduce_from_region)
    c = simulate(build_plan(tiny, Partition(4, 4)), backward=True)
    assert c.forward_error < 1e-10  # forward is unchanged
    assert c.backward_errors["Wq"] > 1e-3 and not c.ok


def test_a_forgotten_score_reduction_is_detected(tiny, monkeypatch):
    from helixlib.runtime import layer
    monkeypatch.setattr(layer, "all_reduce_sum", lambda x, *a, **k: x)
    c = simulate(build_plan(tiny, Partition(4, 4)))
    assert c.forward_error > 1e-2 and not c.ok


def test_a_failing_rank_surfaces_its_error(tiny, monkeypatch):
    from helixlib.runtime import layer
    orig = layer.HelixMLP.forward

    def boom(self, x1, h2):
        if self.comm.rank == 5:
            raise ValueError("rank 5 exploded")
        return orig(self, x1, h2)
    monkeypatch.setattr(layer.HelixMLP, "forward", boom)
    with pytest.raises(ValueError, match="rank 5 exploded"):
        simulate(build_plan(tiny, Partition(4, 4)))


def test_every_mapping_but_the_gradient_sync_is_an_autograd_function():
    """grad_sync runs after backward (helixlib.runtime.verify.sync_gradients, tested with the KV shards)."""
    from helixlib.runtime.mappings import FUNCTIONS
    assert set(MAPPINGS) - set(FUNCTIONS) == {"grad_sync"}


@pytest.mark.parametrize("mapping", [m for m in MAPPINGS if m != "grad_sync"])
def test_each_mapping_calls_the_collectives_the_plan_table_names(mapping):
    """Two simulated ranks apply one mapping forward and backward; the kinds their communicator
    recorded must be the Plan's (forward, backward) pair for it."""
    import torch

    from helixlib.runtime.communicator import Rendezvous, ThreadCommunicator
    from helixlib.runtime.mappings import FUNCTIONS

    part, rv = Partition(1, 2), Rendezvous(10)
    recorded = [None, None]

    def rank(r):
        comm = ThreadCommunicator(r, part, rv)
        x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
        fn = FUNCTIONS[mapping]
        y = fn(x, comm, "dim_segment", 1, "probe") if "gather" in mapping else fn(x, comm, "dim_segment", "probe")
        y.sum().backward()
        recorded[r] = [(c.phase, c.kind) for c in comm.trace.collectives]

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(20)
    fwd, bwd = MAPPINGS[mapping]
    want = [(p, k) for p, k in (("forward", fwd), ("backward", bwd)) if k is not None]
    assert recorded[0] == recorded[1] == want


def test_per_segment_softmax_is_wrong_and_summed_scores_are_right():
    demo = segment_softmax_demo(L=6, d=8, m=2)
    assert demo.per_segment_error > 0.1
    assert demo.wrong_scale_error > 0.05
    assert demo.summed_error < 1e-12


def test_the_plans_literal_dataflow_is_wrong(tiny):
    """segment_local: each segment softmaxes its own partial scores, nothing reduced."""
    plan = build_plan(tiny, Partition(4, 4, "segment_local"))
    assert not any("scores" in c.name for c in plan.collectives)
    c = simulate(plan)
    assert c.forward_error > 0.05 and not c.ok
    # with one segment per head there is nothing to reduce: exact again
    assert simulate(build_plan(tiny, Partition(16, 1, "segment_local"))).ok
