import pytest

from helixlib import Partition, build_plan, load_model


@pytest.fixture(scope="session")
def big():
    return load_model("helix-70b")


@pytest.fixture(scope="session")
def tiny():
    return load_model("helix-tiny")


@pytest.fixture(scope="session")
def plan_4x4(big):
    return build_plan(big, Partition(4, 4))
