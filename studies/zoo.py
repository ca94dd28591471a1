"""The zoo study: generative vs predictive bias across 20 architectures in 6 families, and a decoder ablation.

    python studies/zoo.py [--preset zoo] [--out reports/...]

Same as ``biasprobe study zoo``.
"""

import sys

from biasprobe.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", "zoo", *sys.argv[1:]]))
