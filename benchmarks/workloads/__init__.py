"""
The workloads of ``python -m benchmarks``, one module each: ``add_arguments(parser)``,
``run(args, context) -> results``, ``VARIANTS`` (valid ``--variants``) and the module
docstring as its ``--help``.
"""

__all__: list[str] = []
