"""Quality tools: the fake Asterisk (a FastAGI client) and helpers for driving test calls."""
