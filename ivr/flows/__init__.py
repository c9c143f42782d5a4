"""What a caller hears: one module per flow. ``routes()`` maps FastAGI script names (the
path in ``AGI(agi://host/<script>)``) to the handler that runs the call."""

from __future__ import annotations

from ivr.agi.server import Handler


def routes() -> dict[str, Handler]:
    # Imported here so `import ivr.flows` stays cheap for code that only needs a flow.
    from ivr.flows.demo import demo

    return {"demo": demo, "pay": demo}
