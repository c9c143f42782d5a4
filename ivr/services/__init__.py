"""The business: plain async classes and functions over storage and gateways."""
