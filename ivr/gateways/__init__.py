"""Payment processors behind one interface (see base.py): sandbox (embedded) and Stripe."""

from __future__ import annotations

from ivr.gateways.base import Gateway


def from_config(payments: object) -> Gateway:
    """Build the gateway named by PaymentsConfig.gateway."""
    name = getattr(payments, "gateway", "sandbox")
    if name == "stripe":
        from ivr.gateways.stripe_gateway import StripeGateway
        return StripeGateway(api_key=payments.stripe_api_key,  # type: ignore[attr-defined]
                             api_base=payments.stripe_api_base or None)  # type: ignore[attr-defined]
    from ivr.gateways.sandbox import SandboxGateway
    return SandboxGateway(getattr(payments, "sandbox_path", "var/sandbox-gateway.db"))
