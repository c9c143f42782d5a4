"""Tools for an admin's Asterisk: check our dialplan, install it into /etc/asterisk, reload.

(ivr/asterisk/ runs StarPay's own local Asterisk; this package is for a PBX someone else runs.)
"""
