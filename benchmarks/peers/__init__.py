"""
The other load generators the ``peers`` workload runs beside wslocust:
Tsung (:mod:`.tsung`, Debian's package) and Artillery (:mod:`.artillery`,
npm). Each module writes the tool's configuration for a workload, gives its
command line, and says whether the tool is installed and how to install it.
:mod:`.runs` measures one run of any tool the same way.
"""

from types import ModuleType

from . import artillery, tsung

__all__ = ["PEER_TOOLS", "artillery", "tsung"]

PEER_TOOLS: dict[str, ModuleType] = {"tsung": tsung, "artillery": artillery}
"""The installable peers by variant name: ``installed()``, ``install(log)``, ``missing_line()``, ``version()``."""
