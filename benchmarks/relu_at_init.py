"""What the convs after a decoder see at init: for each seed, the generator exactly as the DIP probe builds it
(its ``init`` stream) fed its DIP input (its ``input`` stream), and for each ReLU in the ``after`` block (the
``+kc`` convs) how many channels pass any unit and what share of units pass; with the decoder output's mean and sd.

    python benchmarks/relu_at_init.py [--archs 'vit[decoder=bilinear]+3c' 'vit[decoder=pixelshuffle]+3c']
                                     [--seeds 40] [--size 128] [--out relu_at_init.csv]

Written for the zoo's dead vit[decoder=bilinear]+3c fits: a ReLU channel that is off at every unit passes no
gradient, and a layer with every channel off freezes the output to a constant colour.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from biasprobe.probes.dip import DIPConfig
from biasprobe.probes.dip.prepare import build_nets, make_input


def relu_rows(arch: str, seed: int, size: int, input_depth: int = 3) -> list[dict]:
    """One row per ReLU of ``arch``'s ``after`` block at ``seed``'s init and input (the DIP probe's streams)."""
    cfg = DIPConfig(arch=arch, seeds=[seed], input_depth=input_depth)
    (net,) = build_nets(cfg, (size, size), out_chans=3)  # in the probe's own (train) mode: BatchNorm as it fits
    z = make_input("noise", input_depth, (size, size), seed)
    acts: list[torch.Tensor] = []
    relus = [m for m in net.after.modules() if isinstance(m, torch.nn.ReLU)]
    hooks = [m.register_forward_hook(lambda m, i, o: acts.append(o.detach())) for m in relus]
    with torch.no_grad():
        dec = net.backbone(net.before(z))
        net(z)
    for h in hooks:
        h.remove()
    return [dict(arch=arch, seed=seed, relu=k, channels=a.shape[1],
                 channels_alive=int((a > 0).flatten(2).any(-1).sum()), active_share=float((a > 0).float().mean()),
                 decoder_mean=float(dec.mean()), decoder_sd=float(dec.std()))
            for k, a in enumerate(acts)]


def table(archs: list[str], seeds: int, size: int) -> pd.DataFrame:
    return pd.DataFrame([r for arch in archs for s in range(seeds) for r in relu_rows(arch, s, size)])


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per arch: seeds with some ReLU layer fully off at init, and the decoder output's sd over seeds."""
    per_seed = df.groupby(["arch", "seed"]).agg(layer_off=("channels_alive", lambda c: bool((c == 0).any())),
                                                decoder_sd=("decoder_sd", "first"))
    return per_seed.groupby("arch").agg(seeds=("layer_off", "size"), seeds_layer_off=("layer_off", "sum"),
                                        decoder_sd_min=("decoder_sd", "min"),
                                        decoder_sd_max=("decoder_sd", "max")).reset_index()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="+", default=["vit[decoder=bilinear]+3c", "vit[decoder=pixelshuffle]+3c"])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    df = table(a.archs, a.seeds, a.size)
    if a.out:
        df.to_csv(a.out, index=False)
    print(df[df.seed < 6].to_string(index=False))
    print(summary(df).to_string(index=False))


if __name__ == "__main__":
    main()
