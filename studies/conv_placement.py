"""The conv-placement study: PSNR vs iteration for T, 3c+T, T+1c, T+3c (T = vit, swin), DIP only.

    python studies/conv_placement.py [--preset standard] [--out reports/...]

Same as ``biasprobe study conv_placement``; it shares its runs with the main study's results store.
"""

import sys

from biasprobe.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", "conv_placement", *sys.argv[1:]]))
