"""Reference integrations: real clients that run against the mock Orders API.

They are deliberately self-contained (stdlib + their HTTP library, no harness
imports) so integration teams can read one as an example of what their own
ERP/OMS connector should do, and the harness can start one as a black box.
"""
