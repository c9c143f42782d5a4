"""What a caller hears: one module per flow or step. ``routes()`` maps FastAGI script names
(the path in ``AGI(agi://host/<script>)``) to the handler that runs the call."""

from __future__ import annotations

from ivr.agi.server import Handler
from ivr.agi.session import AGISession
from ivr.config import Config
from ivr.flows.context import FlowContext


def routes(ctx: FlowContext | None = None, *, cfg: Config | None = None
           ) -> dict[str, Handler]:
    """The route table. ``ctx`` is the pay flow's dependencies; without it they are built
    from ``cfg`` (or the configuration file) when the first *PAY call arrives, so
    `ivr serve` starts at once even before the database is reachable."""
    # Imported here so `import ivr.flows` stays cheap for code that only needs a flow.
    from ivr.flows.demo import demo

    return {"demo": demo, "pay": pay_handler(ctx, cfg=cfg)}


def pay_handler(ctx: FlowContext | None = None, *, cfg: Config | None = None) -> Handler:
    from ivr.flows.pay import pay

    built: list[FlowContext] = [ctx] if ctx is not None else []

    async def handle(session: AGISession) -> None:
        if not built:
            from ivr.config import load
            from ivr.flows.wiring import build_context

            built.append(build_context(cfg or load()))
        await pay(session, built[0])

    return handle
