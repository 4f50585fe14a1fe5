"""pytest setup for plugin tests in plain CPython: the SDK on the path, a loader that gives each
plugin module its own name (every plugin's file is called plugin.py), and clean settings."""

import importlib.util
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE / "sdk"))
sys.path.insert(0, str(HERE))

import edgewarden  # noqa: E402


def load_plugin(test_file: str):
    """Import the plugin.py beside ``test_file`` as a uniquely named module."""
    path = pathlib.Path(test_file).parent / "plugin.py"
    name = f"plugin_{path.parent.name}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def clean_settings():
    edgewarden.settings.clear()
    edgewarden.local_limits.reset()
    yield
    edgewarden.settings.clear()
    edgewarden.local_limits.reset()
