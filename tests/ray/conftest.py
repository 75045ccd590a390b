"""The Ray tests need the optional extra (`make install-ray`); `make test` deselects them (marker `ray`) and,
where Ray is not installed, does not even import them. `make test-ray` installs the extra and runs them."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("ray") is None:
    collect_ignore_glob = ["test_*.py"]
