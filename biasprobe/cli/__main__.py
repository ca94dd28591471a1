"""``python -m biasprobe.cli``: the ``biasprobe`` command."""

import sys

from biasprobe.cli import main

sys.exit(main())
