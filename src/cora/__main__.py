"""``python -m cora``: the same command line as ``cora``."""

import sys

from cora.cli.main import main

sys.exit(main())
