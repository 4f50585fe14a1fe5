"""pytest setup for this repository's plugin tests: the SDK and the test helpers on the path, as
``edgewarden plugins test`` arranges for plugins anywhere (see testing/edgewarden_pytest.py)."""

import pathlib
import sys

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE / "sdk"))
sys.path.insert(0, str(HERE / "testing"))

from edgewarden_pytest import clean_settings, load_plugin  # noqa: E402, F401
