"""Sub-commands of `ivr`, one module each; every module defines register(subparsers)."""
