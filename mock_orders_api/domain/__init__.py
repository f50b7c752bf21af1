"""The mock's domain: orders, Changes, invoices and hook configs, with no web framework
and no event loop (state.py and timers.py put them on the loop, routes/ on HTTP)."""
