"""``python -m wslocust.server``: the same as ``wslocust serve``."""

import sys

from .command import main

sys.exit(main())
