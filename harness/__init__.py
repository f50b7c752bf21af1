"""race-harness: reproduce VTEX known issue 1348894, judge each trial, gate CI on the race rate.

Layout by role (dependencies point down this list, never up; tests/test_layout.py checks it):
  core/         pure data and decisions (scenario, plan, bodies, history, oracle, trials.csv rows)
  analysis/     pandas/numpy statistics over trials.csv: rates, model, gate, summary.json
  live/         the asyncio driver against a real server
  sim/          the live runner on a virtual clock with an in-process transport
  integration/  integration mode: a team's service is the subject
  report/       report.md/.html, junit.xml and plots from a run folder
  connectors/   reference integrations (no harness imports)
Nothing is imported eagerly here.
"""
