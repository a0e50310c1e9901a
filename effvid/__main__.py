"""``python -m effvid``: the same entry point as the ``effvid`` command."""

import sys

from effvid.cli import main

sys.exit(main())
