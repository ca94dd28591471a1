"""Smoke test of benchmarks/bench_dip.py's pieces: the reference loop, the biasprobe side, FLOP count, table."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_dip  # noqa: E402

TINY = dict(channels_down=8, channels_up=8, channels_skip=2, num_scales=3)


def test_reference_and_biasprobe_fit_the_same_seed_alike():
    ref = bench_dip.reference_fit("skipnet", [0], 32, 30, arch_kwargs=TINY)
    assert ref["seconds"] > 0 and ref["image_steps_per_s"] > 0
    curve = ref["psnr_gt"][0]
    assert len(curve) == 30 and curve[-1] > curve[0]  # the reference really fits
    bp = bench_dip.biasprobe_fit("skipnet", [0, 1], 32, 3, arch_kwargs=TINY, spectral=False)
    assert bp["image_steps_per_s"] > 0 and len(bp["result"].summary) == 2


def test_flops_and_table():
    assert bench_dip.step_flops("skipnet", 64) > 1e9  # the full skip-net: ~7 GFLOP per step at 64 px
    table = bench_dip.markdown_table(pd.DataFrame({"a": [1.23456, 2.0], "b": ["x", "y"]}))
    assert table.splitlines()[0] == "| a | b |" and "1.23" in table


def test_bf16_accuracy_rows_compare_with_the_float32_rounding_floor(monkeypatch):
    real = bench_dip.DIPConfig
    monkeypatch.setattr(bench_dip, "DIPConfig", lambda **kw: real(arch_kwargs=TINY, **kw))
    rows = bench_dip.bf16_accuracy(size=32, iters=4)
    assert [(r["compared"], r["metric"]) for r in rows] == [
        ("bf16 vs fp32@1t", "psnr_gt"), ("bf16 vs fp32@1t", "psnr_gt_ema"),
        ("fp32@2t vs fp32@1t", "psnr_gt"), ("fp32@2t vs fp32@1t", "psnr_gt_ema")]
    assert all(r["max_abs_diff_db"] >= r["mean_abs_diff_db"] >= 0 for r in rows)
    assert rows[0]["max_abs_diff_db"] > 0  # bf16 really ran (it rounds differently)
    assert bench_dip.torch.get_num_threads() == 1  # put back


def test_bare_fit_runs_the_seeds_on_threads_and_puts_the_thread_count_back():
    bare = bench_dip.bare_fit("skipnet", [0, 1, 2], 32, 2, groups=2, arch_kwargs=TINY)
    assert bare["seconds"] > 0 and bare["image_steps_per_s"] > 0
    assert bench_dip.torch.get_num_threads() == 1


def test_relu_at_init_reads_the_after_block_of_the_probes_own_init():
    import relu_at_init

    df = relu_at_init.table(["vit[decoder=bilinear]+3c", "vit[decoder=pixelshuffle]+3c"], seeds=2, size=32)
    assert len(df) == 2 * 2 * 2  # 2 archs x 2 seeds x the 2 ReLUs between the 3 convs after
    assert ((df.channels_alive >= 0) & (df.channels_alive <= df.channels)).all()
    assert ((df.channels_alive == 0) == (df.active_share == 0)).all() and df.active_share.between(0, 1).all()
    again = relu_at_init.table(["vit[decoder=bilinear]+3c"], seeds=2, size=32)
    pd.testing.assert_frame_equal(again, df[df.arch == "vit[decoder=bilinear]+3c"].reset_index(drop=True))
    s = relu_at_init.summary(df)
    assert list(s.seeds) == [2, 2] and (s.seeds_layer_off <= s.seeds).all()
    assert (s.decoder_sd_min <= s.decoder_sd_max).all()
