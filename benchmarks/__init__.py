"""
wslocust's benchmark suite, run on demand (not part of the test suite):
``python -m benchmarks NAME [options]``; see ``benchmarks/README.md``.
"""

__all__: list[str] = []
