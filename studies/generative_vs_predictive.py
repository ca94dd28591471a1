"""The main study: generative (DIP) vs predictive (small-data CIFAR-10) inductive bias on the same architectures.

    python studies/generative_vs_predictive.py [--preset standard] [--out reports/...] [--data DIR] [--jobs N]

Same as ``biasprobe study generative_vs_predictive``; see ``biasprobe study --help`` for every option.
"""

import sys

from biasprobe.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", "generative_vs_predictive", *sys.argv[1:]]))
