import pytest
from xray_cli import SEED


@pytest.fixture
def seed():
    return SEED
