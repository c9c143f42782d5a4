"""StarPay: pay a bill by phone (*PAY) or by text, at any hour."""

__version__ = "0.1.0"
