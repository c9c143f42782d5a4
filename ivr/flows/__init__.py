"""What a caller hears: one module per flow or step. ``routes()`` maps FastAGI script names
(the path in ``AGI(agi://host/<script>)``) to the handler that runs the call."""

from __future__ import annotations

from ivr.agi.server import Handler
from ivr.agi.session import AGISession
from ivr.flows.context import FlowContext


def routes(ctx: FlowContext) -> dict[str, Handler]:
    """The route table; ``ctx`` is the pay flow's dependencies (ivr.app builds it)."""
    # Imported here so `import ivr.flows` stays cheap for code that only needs a flow.
    from ivr.flows.demo import demo
    from ivr.flows.pay import pay

    async def pay_handler(session: AGISession) -> None:
        await pay(session, ctx)

    return {"demo": demo, "pay": pay_handler}
