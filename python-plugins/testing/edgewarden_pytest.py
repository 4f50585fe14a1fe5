"""pytest support for policy plugins in plain CPython, wherever they live.

``edgewarden plugins test`` loads this module as a pytest plugin (``-p edgewarden_pytest``) with
the SDK on the path; inside this repository ``python-plugins/conftest.py`` does the same. It gives
each plugin module its own name (every plugin's file is called plugin.py) and clean settings and
limits for every test.
"""

import importlib.util
import pathlib
import tomllib

import pytest

import edgewarden
from edgewarden import _wire


def load_plugin(test_file: str, policy=None):
    """Import the plugin.py beside ``test_file`` as a uniquely named module.

    ``policy``: a policy file running this plugin. When it has a ``[cache]`` table, the module's
    ``handle_request`` receives each request as the gateway would pass it to that policy: only the
    declared inputs, everything else absent. A plugin that reads an input its policy does not
    declare then fails its own tests, as its remembered decisions would be wrong in the gateway.
    """
    path = pathlib.Path(test_file).parent / "plugin.py"
    name = f"plugin_{path.parent.name}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    inputs = _cache_inputs(pathlib.Path(test_file).parent / policy) if policy else None
    if inputs:
        handle = module.handle_request
        module.handle_request = lambda request: handle(_wire.view(request, inputs))
    return module


def _cache_inputs(policy_file: pathlib.Path):
    with open(policy_file, "rb") as f:
        table = tomllib.load(f)
    return (table.get("cache") or {}).get("inputs")


@pytest.fixture(autouse=True)
def clean_settings():
    edgewarden.settings.clear()
    edgewarden.local_limits.reset()
    yield
    edgewarden.settings.clear()
    edgewarden.local_limits.reset()
