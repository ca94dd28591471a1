"""Architecture registry, in timm's manner: registration, listing and lookup only. It imports no model code;
the factory that builds networks from it is :mod:`biasprobe.archs.factory`.

An architecture is one decorated call on its generator (a class or a function), carrying all its properties::

    @register_arch("mynet", family="cnn", description="one line for `biasprobe archs`",
                   trunk=MyEncoder,                                  # the classifier trunk (see below)
                   size_multiple=lambda img_size, depth, **_: 2**depth,  # H and W must be multiples of this
                   min_size=lambda depth, **_: 2 ** (depth + 1),     # the smallest H, W the generator accepts
                   hybrids=("mynet+1c",))                           # hybrid names `biasprobe archs` lists
    class MyNet(nn.Module):
        def __init__(self, in_chans, out_chans, depth=4, width=64): ...

- The generator is called with ``in_chans``, ``out_chans``, ``img_size`` (H, W) -- the last only if its signature
  has it -- and the user's keyword arguments; it maps (B, in_chans, H, W) to (B, out_chans, H, W) before the sigmoid
  the factory adds.
- ``trunk`` is called likewise with ``in_chans`` and ``img_size``; it maps an image to (B, D, h, w) features and
  has an attribute ``num_features`` (D).
- Keyword arguments are the architecture's: each net gets those its signature names (all of them if it takes
  ``**kw``), so a decoder-only setting reaches the generator and not the trunk; a keyword neither names is an
  error listing the accepted ones (see :func:`biasprobe.archs.factory.check_arch_kwargs`).
- ``size_multiple`` and ``min_size`` are ints or callables; the callables get the keyword arguments over the
  generator's defaults (so they need no defaults of their own). Both default to 1.

Put this in your own file and pass it with ``--arch-module path/to/mine.py`` to any command that takes ``--arch``
(see ``archs/skipnet.py`` for a full example). Any registered name also works as a hybrid: ``kc+NAME`` puts k conv
layers on the backbone's input, ``NAME+kc`` k conv layers on its output (the image for a generator, the feature
map for a classifier); ``kc+NAME+jc`` does both.

The built-in architectures (``biasprobe/archs/nets/*.py``) are read from their source without importing them, so that
listing them needs no torch: their ``register_arch`` calls give ``name``, ``family``, ``description`` and
``hybrids`` as literals. A module is imported when one of its nets is first built.

Names outside the registry can be resolved by a plug-in: ``register_resolver(prefix, fn)`` makes a lookup of a
name starting with ``prefix`` call ``fn(name)``, which registers it (``register_arch``) or raises a one-line
BiasprobeError. The timm adapter plugs in this way (``biasprobe/archs/__init__.py``): ``timm:NAME`` is any timm model
(:mod:`biasprobe.archs.timm_adapter`, which imports timm), registered when first looked up, with a ``classifier``
builder (a whole classifier, timm's head included) instead of a trunk. The registry imports no adapter.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from biasprobe.errors import BiasprobeError
from biasprobe.literal import parse_literal

FAMILIES = ("cnn", "vit", "swin", "hybrid", "timm", "other")
STANDARD_ARGS = ("in_chans", "out_chans", "img_size")  # what the factory passes every builder that names it
CONV_KWARGS = ("conv_width", "conv_norm", "stem_norm")  # the hybrid conv layers' settings, kept from the backbone


@dataclass(frozen=True)
class Builders:
    """What the registration's decorator carries besides the listing fields."""

    generator: Callable
    trunk: Callable | None
    size_multiple: Callable | int = 1
    min_size: Callable | int = 1
    classifier: Callable | None = None  # a whole classifier (in_chans, img_size, num_classes, **kw), used over trunk


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture (or a hybrid on one): how it is listed, and where its builders are."""

    name: str
    family: str
    description: str
    module: str  # the module whose import runs its register_arch call
    builders: Builders | None = None  # None until that module is imported
    hybrids: tuple[str, ...] = ()  # hybrid names listed with it
    backbone: str | None = None  # for hybrids: the registered backbone name
    convs_before: int = 0
    convs_after: int = 0
    kwargs: tuple = ()  # ((key, value), ...) given in the name: ``NAME[key=value,...]``

    def base(self) -> ArchSpec:
        """The registered (backbone) spec with its builders, importing its module on first use."""
        name = split_kwargs(self.backbone or self.name)[0]
        spec = _REGISTRY[name]
        if spec.builders is None:
            importlib.import_module(spec.module)
            spec = _REGISTRY[name]
            if spec.builders is None:
                raise RuntimeError(f"importing {spec.module} did not register {name!r}")
        return spec

    def defaults(self) -> dict:
        """The generator's keyword arguments with defaults (beyond in_chans, out_chans, img_size)."""
        params, _ = keyword_params(self.base().builders.generator)
        return {k: v for k, v in params.items() if v is not inspect.Parameter.empty}

    def size_multiple(self, img_size=(128, 128), **kw) -> int:
        """H and W of the generator's images must be multiples of this."""
        return int(self._call(self.base().builders.size_multiple, as_hw(img_size), **kw))

    def min_size(self, **kw) -> int:
        """The smallest H, W the generator accepts."""
        return int(self._call(self.base().builders.min_size, **kw))

    def _call(self, fn, *args, **kw):
        if not callable(fn):
            return fn
        backbone_kw = {k: v for k, v in {**dict(self.kwargs), **kw}.items() if k not in CONV_KWARGS}
        return fn(*args, **{**self.defaults(), **backbone_kw})


def keyword_params(fn: Callable) -> tuple[dict, bool]:
    """A builder's keyword parameters beyond STANDARD_ARGS (name -> default, ``inspect.Parameter.empty`` where it
    has none), and whether it takes ``**kw``."""
    params, var_kw = {}, False
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in STANDARD_ARGS:
            params[p.name] = p.default
    return params, var_kw


_REGISTRY: dict[str, ArchSpec] = {}
_RESOLVERS: dict[str, Callable[[str], None]] = {}  # name prefix -> fn(name) that registers such a name
MAX_CONVS = 16  # the most conv layers a kc+NAME / NAME+kc hybrid may add on one side
_HYBRID = re.compile(r"^(?:(\d+)c\+)?(.+?)(?:\+(\d+)c)?$")


def register_arch(name: str, *, family: str, description: str, trunk: Callable | None = None,
                  size_multiple: Callable | int = 1, min_size: Callable | int = 1,
                  hybrids: tuple[str, ...] = (), classifier: Callable | None = None) -> Callable:
    """Decorator on an architecture's generator (a class or function): register it under ``name`` with its
    classifier trunk and size requirements (see the module docstring)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def wrap(obj):
        builders = Builders(obj, trunk, size_multiple, min_size, classifier)
        _REGISTRY[name] = ArchSpec(name=name, family=family, description=description, module=obj.__module__,
                                   builders=builders, hybrids=tuple(hybrids))
        return obj

    return wrap


def register_resolver(prefix: str, fn: Callable[[str], None]) -> None:
    """Resolve names starting with ``prefix`` (e.g. ``"timm:"``) that are not registered yet by calling ``fn(name)``
    on first lookup: it registers ``name`` with :func:`register_arch`, or raises a one-line BiasprobeError (an
    unknown model). How an adapter for another model library plugs in."""
    _RESOLVERS[prefix] = fn


def _top_level(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        depth += (ch in "[(") - (ch in "])")
        if ch == sep and depth == 0:
            parts.append(text[start:k])
            start = k + 1
    return parts + [text[start:]]


def split_kwargs(name: str) -> tuple[str, dict]:
    """``NAME[key=value,...]`` -> (NAME, {key: value}): keyword arguments written into an architecture's name, so
    that one grid can hold the same backbone with different settings (``timm:resnet18[decoder=bilinear]+3c``,
    ``timm:swin_tiny_patch4_window7_224[depths=[1,1,2,1]]``) and every table tells them apart by name. Values are
    Python literals (numbers, True/False, lists) or else text. Keywords given apart (``--arch-kw``, a preset's
    ``arch_kwargs``) win over the name's."""
    start = name.find("[")
    if start < 0:
        return name, {}
    depth = 0
    for end in range(start, len(name)):
        depth += (name[end] == "[") - (name[end] == "]")
        if depth == 0:
            break
    else:
        raise BiasprobeError(f"architecture {name!r}: unclosed '[' (write NAME[key=value,...])")
    rest = name[:start] + name[end + 1:]
    if "[" in rest:
        raise BiasprobeError(f"architecture {name!r}: give its keyword arguments in one [key=value,...]")
    kw = {}
    for item in filter(None, (x.strip() for x in _top_level(name[start + 1:end]))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise BiasprobeError(f"architecture {name!r}: {item!r} is not key=value (write NAME[key=value,...])")
        kw[key.strip()] = parse_literal(value.strip())
    return rest, kw


def with_kwargs(name: str, **kw) -> str:
    """``name`` with ``kw`` written into it (merged over the keywords it has): the inverse of
    :func:`split_kwargs`; on a hybrid name (``3c+NAME+1c``) they go on the backbone."""
    plain, have = split_kwargs(name)
    have.update(kw)
    m = _HYBRID.match(plain)
    before, base, after = (m.group(1), m.group(2), m.group(3)) if m else (None, plain, None)
    inner = ",".join(f"{k}={v!r}" if not isinstance(v, str) else f"{k}={v}" for k, v in have.items())
    inner = inner.replace(" ", "")
    return f"{before + 'c+' if before else ''}{base}[{inner}]{'+' + after + 'c' if after else ''}"


def get_arch(name: str) -> ArchSpec:
    """The spec for ``name``, including hybrid names built on any registered backbone and names carrying keyword
    arguments (:func:`split_kwargs`; the spec's ``kwargs``)."""
    _declare_builtins()
    plain, kw = split_kwargs(name)
    if kw:
        return replace(get_arch(plain), name=name, kwargs=tuple(kw.items()))
    if name in _REGISTRY:
        return _REGISTRY[name]
    m = _HYBRID.match(name)
    base_name = m.group(2) if m else name
    for k in (m.group(1), m.group(3)) if m else ():
        if k is not None and not 1 <= int(k) <= MAX_CONVS:
            raise BiasprobeError(f"{name}: k in kc+NAME / NAME+kc must be 1 to {MAX_CONVS} conv layers, got {int(k)}")
    resolver = next((fn for prefix, fn in _RESOLVERS.items() if base_name.startswith(prefix)), None)
    if resolver is not None and base_name not in _REGISTRY:
        resolver(base_name)  # registers it, or one line (e.g. timm has no such model)
        if name == base_name:
            return _REGISTRY[name]
    if m and (m.group(1) or m.group(3)) and m.group(2) in _REGISTRY:
        base = _REGISTRY[m.group(2)]
        before, after = int(m.group(1) or 0), int(m.group(3) or 0)
        where = " and ".join(
            s for s in (f"{before} conv before" * bool(before), f"{after} conv after" * bool(after)) if s
        )
        return replace(base, name=name, family="hybrid", builders=None, hybrids=(), backbone=base.name,
                       description=f"{base.name} with {where} (3x3, reflection pad, ReLU between)",
                       convs_before=before, convs_after=after)
    close = difflib.get_close_matches(name, list_archs(), n=5, cutoff=0.4)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise BiasprobeError(
        f"unknown architecture {name!r}{hint} (list them with `biasprobe archs`; "
        f"hybrids are kc+NAME or NAME+kc)"
    )


def list_archs(pattern: str = "*") -> list[str]:
    """Registered names and their listed hybrids matching an fnmatch pattern, sorted."""
    _declare_builtins()
    names = set(_REGISTRY).union(*(spec.hybrids for spec in _REGISTRY.values()))
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def load_arch_module(path_or_module: str) -> None:
    """Import a user's module (a .py path or a dotted name) so its @register_arch calls run."""
    path = Path(path_or_module)
    try:
        if path.suffix == ".py" or path.exists():
            if not path.is_file():
                raise BiasprobeError(f"--arch-module {path_or_module}: no such file")
            spec = importlib.util.spec_from_file_location(f"biasprobe_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(path_or_module)
    except ImportError as exc:
        raise BiasprobeError(f"--arch-module {path_or_module}: cannot import it ({exc})") from exc


# ----------------------------------------------------------------------------------------------
# The built-ins, declared from their source


_NETS_DIR = Path(__file__).with_name("nets")
_declared = False


def _declare_builtins() -> None:
    """List each built-in architecture from its module's ``register_arch`` call, without importing the module
    (one whose call is not all literals is imported instead). A module imported already keeps its full specs."""
    global _declared
    if _declared:
        return
    _declared = True
    for path in sorted(p for p in _NETS_DIR.glob("*.py") if not p.name.startswith("_")):
        module = f"biasprobe.archs.nets.{path.stem}"
        calls = _register_calls(path)
        if calls is None:
            importlib.import_module(module)
            continue
        for fields in calls:
            if fields["name"] not in _REGISTRY:
                _REGISTRY[fields["name"]] = ArchSpec(module=module, **fields)


def _register_calls(path: Path) -> list[dict] | None:
    """name, family, description, hybrids of each ``@register_arch(...)`` in a source file; None when one of them
    is not a literal."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        func = getattr(node, "func", None)
        if "register_arch" not in (getattr(func, "id", None), getattr(func, "attr", None)):
            continue
        try:
            kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords
                  if k.arg in ("family", "description", "hybrids")}
            calls.append(dict(name=ast.literal_eval(node.args[0]), family=kw["family"],
                              description=kw["description"], hybrids=tuple(kw.get("hybrids", ()))))
        except (ValueError, KeyError, IndexError):
            return None
    return calls


def as_hw(img_size) -> tuple[int, int]:
    """An int or (H, W) as a pair of ints."""
    if isinstance(img_size, int):
        return (img_size, img_size)
    h, w = img_size
    return (int(h), int(w))
