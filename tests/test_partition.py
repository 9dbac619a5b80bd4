import pytest

from helixlib import HelixInputError, Partition, factorisations
from helixlib.plan.partition import valid_partitions


def test_factorisations():
    assert factorisations(16) == [(1, 16), (2, 8), (4, 4), (8, 2), (16, 1)]
    assert factorisations(1) == [(1, 1)]


def test_row_major_layout():
    p = Partition(4, 4)
    assert p.coords(6) == (1, 2) and p.rank(1, 2) == 6
    assert [p.coords(r) for r in range(4)] == [(0, 0), (0, 1), (0, 2), (0, 3)]


def test_groups_match_device_mesh_semantics():
    # mesh (n, m) = (2, 4): the "dim_segment" group is a row, "head_group" a column
    p = Partition(2, 4)
    assert p.groups("dim_segment") == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert p.groups("head_group") == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert p.group_ranks("world", 3) == list(range(8))


@pytest.mark.parametrize("n,m,field,rule", [
    (3, 4, "head_groups", "must divide heads (16)"),
    (4, 3, "dim_segments", "must divide head_dim (512)"),
    (32, 1, "head_groups", "must divide heads (16)"),
    (1, 1024, "dim_segments", "must divide head_dim (512)"),
])
def test_partition_must_fit_model(big, n, m, field, rule):
    with pytest.raises(HelixInputError) as e:
        Partition(n, m).validate(big)
    assert e.value.field == field and rule in str(e.value)


def test_world_size_mismatch(big):
    with pytest.raises(HelixInputError, match=r"world_size: must equal head_groups x dim_segments = 4x4 = 16, got 8"):
        Partition(4, 4).validate(big, world_size=8)
    Partition(4, 4).validate(big, world_size=16)


@pytest.mark.parametrize("kw,field", [
    (dict(head_groups=0, dim_segments=4), "head_groups"),
    (dict(head_groups=4, dim_segments=-2), "dim_segments"),
    (dict(head_groups=2.5, dim_segments=4), "head_groups"),
    (dict(head_groups="four", dim_segments=4), "head_groups"),
    (dict(head_groups=True, dim_segments=4), "head_groups"),
    (dict(head_groups=4, dim_segments=4, qk_mode="flash"), "qk_mode"),
    (dict(head_groups=4, dim_segments=4, output="scatter"), "output"),
])
def test_bad_partition_values(kw, field):
    with pytest.raises(HelixInputError) as e:
        Partition(**kw)
    assert e.value.field == field


def test_mlp_must_split_over_all_ranks(tiny):
    with pytest.raises(HelixInputError, match=r"mlp_hidden: must be divisible by world size 16 .*got 1000"):
        Partition(4, 4).validate(tiny.replace(mlp_hidden=1000))


def test_valid_partitions_skips_what_does_not_fit(big):
    # d = 512 admits every m | 16; H = 16 admits n <= 16, so 32 ranks allow (2,16)...(16,2) and (1,32)
    got = [(p.head_groups, p.dim_segments) for p in valid_partitions(big, 32)]
    assert got == [(1, 32), (2, 16), (4, 8), (8, 4), (16, 2)]
