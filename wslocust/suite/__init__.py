"""
``wslocust suite``: the original suite's scenarios in sequence against one target, with one summary and one
exit code (:mod:`wslocust.suite.command`). Its layers: the scenarios (:mod:`~wslocust.suite.scenarios`), one
Locust run and its outputs (:mod:`~wslocust.suite.runs`), the tables (:mod:`~wslocust.suite.tables`).
"""

__all__: list[str] = []
