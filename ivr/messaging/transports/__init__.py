"""SMS transports, one module each: base.py (the protocol every one implements), outbox.py
(the embedded default), and later http.py and asterisk.py. ivr/app.py picks one by
``[sms] transport``."""
