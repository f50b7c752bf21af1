"""Load mode entry point: the user classes and listeners of `harness.load` (its docstring is the manual).

    locust -f scenarios/locustfile.py --host http://127.0.0.1:8080 [--scenario scenarios/guard-regression.toml]

Users: NoGuardUser, FinishedCheckUser, SerializedUser (one per guard) and
ReaderUser; weights --weight-none/--weight-finished-check/--weight-serialized/
--weight-reader. Single process, --processes N, or --master / --worker.
"""

from __future__ import annotations

import sys
from pathlib import Path

from locust import events

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from harness.load import listeners, users  # noqa: E402
from harness.load.state import LoadState  # noqa: E402
from harness.load.users import NoGuardUser, FinishedCheckUser, SerializedUser, ReaderUser  # noqa: E402, I001

__all__ = ["NoGuardUser", "FinishedCheckUser", "SerializedUser", "ReaderUser"]  # Locust's user classes, in this order

_state = LoadState()  # this process's: handed to the user classes and the listeners, reached by nothing else
users.bind(_state)
listeners.register(events, _state)
