"""``python -m wslocust``: the same as the ``wslocust`` command."""

import sys

from wslocust.cli import main

sys.exit(main())
