"""`biasprobe archs [PATTERN]`: list registered architectures with family, parameter counts and description."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("archs", help="list registered architectures", description=__doc__)
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'vit*'")
    p.add_argument("--arch-module", action="append", default=[], metavar="PATH_OR_MODULE",
                   help="a .py file or module that registers more architectures")
    p.add_argument("--size", type=int, default=128, help="reference generator size (pixels)")
    p.set_defaults(run=run)


def run(args) -> None:
    import pandas as pd

    from biasprobe.commands import load_arch_modules
    from biasprobe.registry import count_params, create_classifier, create_generator, get_arch, list_archs

    load_arch_modules(args)
    rows = []
    for name in list_archs(args.pattern):
        spec = get_arch(name)
        gen = create_generator(name, img_size=(args.size, args.size))
        clf = create_classifier(name, num_classes=10, img_size=(32, 32))
        rows.append(dict(name=name, family=spec.family, gen_params=f"{count_params(gen) / 1e6:.2f}M",
                         clf_params=f"{count_params(clf) / 1e6:.2f}M",
                         multiple=spec.size_multiple((args.size, args.size)), description=spec.description))
    if not rows:
        print(f"no architecture matches {args.pattern!r}")
        return
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(pd.DataFrame(rows).to_string(index=False))
    print(f"\n{len(rows)} architectures; generator params at {args.size}x{args.size} with 32 input channels, "
          f"classifier params at 32x32 with 10 classes. Hybrids: kc+NAME / NAME+kc for any NAME.")
