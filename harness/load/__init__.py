"""Load mode: the invoice/Change race of ticket 1348894 under Locust load.

    locust -f scenarios/locustfile.py --host http://127.0.0.1:8080 [--scenario scenarios/guard-regression.toml]

Each iteration of a trial user's task is one trial on a fresh order, driving
the same guards as the asyncio core (`harness.core.guards`) on gevent
(`users`). `ReaderUser` only reads orders, to add load.

Live: every finished trial is a Locust request entry of type TRIAL named
"<guard> <outcome>" (e.g. "none race"), response time = the trial's duration.
At test stop the master (or the single process) reads the mock's audit of
every trial's order and writes a run folder in the core's format (summary.json,
trials.csv, plots, report.html) under --report-dir, then gates: the scenario's
race thresholds (the report's three-verdict gate) and --max-error-rate on the
mock's requests: exit code 1 on FAIL, 3 on INCONCLUSIVE, with one line per
threshold (`listeners`, `judge`).

Distributed (--processes N, or --master / --worker): workers send each
trial's record (`records`) to the master (Locust messages); only the master
writes, each order once. At stop the master asks the workers to drain (finish
the trials in flight, start none) before it writes.

Weights: --weight-none, --weight-finished-check, --weight-serialized,
--weight-reader (0 leaves a class out); or name the user classes on the
command line as usual.

`users`, `listeners` and `state` import gevent and Locust: import them only
under Locust (the locustfile). `records` and `judge` are plain Python. No
module here imports the asyncio drivers (harness.live, harness.sim,
harness.integration): tests/test_layout.py checks it.
"""
