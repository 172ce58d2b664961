"""
The old command line of the throughput benchmark, kept for the commands and
references that name it: the same as ``python -m benchmarks throughput``,
with the same options (see ``benchmarks/README.md``).

Run: ``.venv/bin/python benchmarks/echo_throughput.py [--duration 10] [--rounds 3]``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.__main__ import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main(["throughput", *sys.argv[1:]]))
