"""The Python API (biasprobe.api): the calls README documents."""

from pathlib import Path

import pytest

from biasprobe import BiasprobeError, api

STORE = Path(__file__).resolve().parents[1] / "reports/generative_vs_predictive-standard-2images/store"


def test_load_runs_gives_each_probes_tables():
    runs = api.load_runs(STORE)
    idx = runs["index"]
    assert set(idx.probe) == {"dip", "classify"} and {"dip_summary", "clf_summary", "dip_curves"} <= set(runs)
    done = idx[idx.status == "done"]
    assert set(runs["dip_summary"].run_id) == set(done.run_id[done.probe == "dip"])
    assert set(runs["clf_summary"].run_id) == set(done.run_id[done.probe == "classify"])


def test_build_both_roles_and_a_bad_role():
    assert api.build("vit", "classifier").__class__.__name__
    with pytest.raises(BiasprobeError, match="role must be generator or classifier"):
        api.build("vit", "decoder")
