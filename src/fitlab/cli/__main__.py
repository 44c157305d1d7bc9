"""``python -m fitlab.cli``: the same as the ``fitlab`` console script."""

import sys

from fitlab.cli import main

sys.exit(main())
