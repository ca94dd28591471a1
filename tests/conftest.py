import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Small nets on a loaded 2-core machine run several times faster on one thread; results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _this_checkouts_code():
    """Every biasprobe module the tests import is this checkout's (an editable install of another checkout would
    otherwise serve a module this one no longer has, and a test would pass on old code)."""
    from pathlib import Path
    import sys

    yield
    root = Path(__file__).resolve().parents[1]
    foreign = sorted(name for name, mod in list(sys.modules.items()) if name.split(".")[0] == "biasprobe"
                     and getattr(mod, "__file__", None) and root not in Path(mod.__file__).resolve().parents)
    assert not foreign, f"imported from outside this checkout: {foreign}"
