"""One set of numbers: the deployment's headline figures (notebooks 04 and 07) for both output
variants, equal to the audit's own checks, with the three memory figures labelled and consistent."""

import numpy as np
import pytest

from helixlib.audit import audit, load_claims
from helixlib.audit.checks_cost import communication_share, memory_reduction, speedup
from helixlib.audit.context import AuditContext
from helixlib.audit.headline import headline_figures
from helixlib.views.audit_views import headline_html, plain, verdict_rows, with_unit, wrong_claims_html


@pytest.fixture(scope="module")
def headlines():
    return headline_figures()


def test_both_variants_and_the_audited_one(headlines):
    assert set(headlines.variants) == {"allreduce", "concat"}
    assert headlines.audited == load_claims().context["output"] == "concat"
    # concat adds the segment and group gathers and the final gather to the same compute
    a, c = headlines["allreduce"], headlines["concat"]
    assert a.compute_per_layer_s == pytest.approx(c.compute_per_layer_s, rel=1e-6)
    assert c.communication_per_layer_s > a.communication_per_layer_s


def test_headline_equals_the_audit_checks(headlines):
    for out, h in headlines.variants.items():
        ctx = AuditContext(dict(load_claims().context, output=out))
        assert h.communication_over_compute == pytest.approx(communication_share(ctx).value, rel=1e-12)
        assert h.speedup == pytest.approx(speedup(ctx).value, rel=1e-12)
        assert h.memory_reduction == pytest.approx(memory_reduction(ctx).value, rel=1e-12)
        assert h.forward_per_layer_s == pytest.approx(h.compute_per_layer_s + h.communication_per_layer_s, rel=1e-9)


def test_the_three_memory_figures_add_up_and_differ_for_a_reason(headlines):
    for h in headlines.variants.values():
        assert sum(h.plan_inventory_terms.values()) == pytest.approx(h.plan_inventory_bytes)
        assert sum(h.per_gpu_terms.values()) == pytest.approx(h.per_gpu_peak_bytes)
        # the inventory holds every tensor once; the forward peak only the largest op's working set
        assert h.plan_inventory_bytes > h.per_gpu_peak_bytes
        assert h.per_gpu_terms["working"] == max(h.per_gpu_terms.values())
        assert h.one_gpu_peak_bytes > h.per_gpu_peak_bytes > h.device_bytes  # does not fit at the full batch


def test_the_audit_details_name_their_variant():
    verdicts = {v.claim.id: v for v in audit(load_claims(), only="perf.")}
    assert "output=concat" in verdicts["perf.comm_overhead"].explanation
    assert "output=concat" in verdicts["perf.speedup"].explanation


def test_headline_table_marks_the_audited_variant(headlines):
    text = headline_html(headlines)
    assert "output = concat (audited)" in text and "output = allreduce<" in text
    assert f"×{headlines['allreduce'].speedup:.3g}" in text


def test_values_read_with_units():
    assert with_unit("flops", np.float64(2.58e14)) == "258 TFLOP"
    assert with_unit("communication_share", np.float64(1.418)) == "142 %"
    assert with_unit("speedup", 4.83) == "×4.83"
    assert with_unit("corrected_runtime", 16.7) == "16.7 s"
    assert plain(np.float64(3.0)) == "3" and plain([1, 2]) == "[1, 2]" and plain(True) == "yes"
    assert "np.float64" not in plain({"a": np.float64(1.5)})


def test_wrong_claims_lead_with_units():
    from helixlib.audit.claims import Claim, judge
    from helixlib.audit.registry import Computed

    v = [judge(Claim("x.flops", "S", "q", "flops", claimed=42.9e12), Computed(np.float64(257.7e12), "why")),
         judge(Claim("y", "S", "q", "flops", claimed=1.0), Computed(1.0, ""))]
    text = wrong_claims_html(v)
    assert "x.flops" in text and "42.9 TFLOP" in text and "258 TFLOP" in text and "y</b>" not in text
    assert all("np.float64" not in c for row in verdict_rows(v) for c in row)
