"""Where scenarios run: base.py (the Runner both targets share), emulator.py (FakeAsterisk,
no PBX) and asterisk.py (a real Asterisk)."""
