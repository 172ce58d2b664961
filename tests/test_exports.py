"""The public API is small and explicit: every module declares ``__all__``."""

import importlib
import pkgutil

import wslocust

# Every module, subpackages' included (walk_packages imports each package to list it);
# a __main__ module runs a command when imported, so it is left out.
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(wslocust.__path__, "wslocust.")
    if info.name.rpartition(".")[2] != "__main__"
)


def test_every_module_declares_all_and_its_names_exist():
    assert "wslocust.server.reference" in MODULES  # subpackage modules are covered
    for name in MODULES:
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), f"{name} has no __all__"
        missing = [item for item in module.__all__ if not hasattr(module, item)]
        assert not missing, f"{name}.__all__ names missing objects: {missing}"
        assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ repeats a name"


def test_top_level_api_is_the_user_its_states_the_exceptions_and_the_version():
    exceptions = importlib.import_module("wslocust.exceptions")
    shapes = importlib.import_module("wslocust.integration.shapes")
    assert len(set(wslocust.__all__)) == len(wslocust.__all__)
    for name in wslocust.__all__:
        assert hasattr(wslocust, name), name
    expected = {"WebSocketUser", "ConnectionState", "time_scaled", "__version__"}
    assert set(wslocust.__all__) - expected <= set(exceptions.__all__) | set(shapes.__all__)
    assert wslocust.WebSocketUser.abstract is True
    # Locust runs any non-abstract shape a locustfile imports: every library shape is abstract.
    for name in shapes.__all__:
        item = getattr(shapes, name)
        if isinstance(item, type):
            assert item.__dict__.get("abstract") is True or not hasattr(item, "tick"), name
