"""pytest support for policy plugins in plain CPython, wherever they live.

``edgewarden plugins test`` loads this module as a pytest plugin (``-p edgewarden_pytest``) with
the SDK on the path; inside this repository ``python-plugins/conftest.py`` does the same. It gives
each plugin module its own name (every plugin's file is called plugin.py) and clean settings and
limits for every test.
"""

import importlib.util
import pathlib

import pytest

import edgewarden


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
