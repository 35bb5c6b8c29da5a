"""``python -m albatross``: the same command as the ``albatross`` console script."""

import sys

from albatross.cli import main

sys.exit(main())
