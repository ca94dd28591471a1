"""`biasprobe archs [PATTERN]`: list registered architectures with family and description (no torch needed);
``--params`` adds parameter counts and the generator's size multiple (builds every net: slower)."""

from __future__ import annotations

from biasprobe.cli.commands import add_arch_kw_arg, add_arch_module_arg, arch_kwargs, load_arch_modules


def add_parser(sub) -> None:
    p = sub.add_parser("archs", help="list registered architectures", description=__doc__)
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'vit*'")
    add_arch_module_arg(p)
    p.add_argument("--params", action="store_true",
                   help="also count parameters (generator at --size, classifier at 32x32) and give size multiples")
    add_arch_kw_arg(p, "constructor kwargs for the listed architectures (checked; counted with --params)")
    p.add_argument("--size", type=int, default=128, help="with --params: reference generator size (pixels)")
    p.set_defaults(run=run)


def run(args) -> None:
    from biasprobe.archs.registry import get_arch, list_archs

    load_arch_modules(args)
    args.arch = list_archs(args.pattern) or _timm_names(args.pattern)
    if not args.arch:
        print(f"no architecture matches {args.pattern!r}")
        return
    kw = arch_kwargs(args) if args.arch_kw else {}
    rows = []
    for name in args.arch:
        spec = get_arch(name)
        row = {"name": name, "family": spec.family}
        if args.params:
            row.update(_params(name, args.size, kw))
        rows.append({**row, "description": spec.description})
    print(_table(rows))
    note = (f"; generator params at {args.size}x{args.size} with 32 input channels, classifier params at 32x32 "
            f"with 10 classes" if args.params else " (--params for parameter counts)")
    print(f"\n{len(rows)} architecture{'s' * (len(rows) != 1)}{note}. Hybrids: kc+NAME / NAME+kc for any NAME; "
          f"any timm model as timm:NAME (random init; `biasprobe archs 'timm:resnet*'`, or timm.list_models()).")


def _timm_names(pattern: str) -> list[str]:
    """timm:NAME for a pattern starting with timm: (a plain name is checked: unknown -> one line with close names);
    timm is imported only then."""
    from biasprobe.archs import TIMM_PREFIX
    from biasprobe.archs.registry import get_arch

    if not pattern.startswith(TIMM_PREFIX):
        return []
    if not any(c in pattern for c in "*?["):
        get_arch(pattern)
        return [pattern]
    import timm

    return [TIMM_PREFIX + n for n in timm.list_models(pattern[len(TIMM_PREFIX):])]


def _params(name: str, size: int, kw: dict) -> dict:
    from biasprobe.archs.factory import count_params, create_classifier, create_generator
    from biasprobe.archs.registry import get_arch

    gen = create_generator(name, img_size=(size, size), **kw)
    clf = create_classifier(name, num_classes=10, img_size=(32, 32), **kw)
    return {"gen_params": f"{count_params(gen) / 1e6:.2f}M", "clf_params": f"{count_params(clf) / 1e6:.2f}M",
            "multiple": str(get_arch(name).size_multiple((size, size), **kw))}


def _table(rows: list[dict]) -> str:
    """Left-aligned columns with a header (pandas would cost half a second to import)."""
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = [cols] + [[str(r[c]) for c in cols] for r in rows]
    return "\n".join("  ".join(v.ljust(width[c]) for c, v in zip(cols, line)).rstrip() for line in lines)
