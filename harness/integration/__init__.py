"""Integration mode: the team's service is the subject; the harness triggers it and judges what it sent."""
