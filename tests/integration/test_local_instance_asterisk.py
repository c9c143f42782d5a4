"""The local Asterisk instance: loopback only, secrets of its own, the demo softphone."""

from __future__ import annotations

import re

import pytest

from ivr.asterisk.local import LocalAsterisk

pytestmark = pytest.mark.asterisk


def test_ami_and_sip_listen_on_loopback_only(asterisk: LocalAsterisk) -> None:
    ami = asterisk.cli("manager show settings")
    assert re.search(rf"TCP Bindaddress:\s+127\.0\.0\.1:{asterisk.ami_port}\b", ami), ami
    transports = asterisk.cli("pjsip show transports")
    assert f"127.0.0.1:{asterisk.ports.sip}" in transports
    assert "0.0.0.0" not in transports


def test_demo_softphone_endpoint_dials_into_starpay(asterisk: LocalAsterisk) -> None:
    out = asterisk.cli("pjsip show endpoint softphone")
    assert re.search(r"context\s*:\s*starpay\b", out), out
    assert "softphone-auth" in out


def test_every_instance_gets_its_own_secrets(asterisk: LocalAsterisk, tmp_path) -> None:
    other = LocalAsterisk("secret-probe", base_dir=tmp_path) if asterisk.root is None \
        else LocalAsterisk(f"{asterisk.name}-secret-probe")
    try:
        other.prepare()
        assert {other.ami_secret, other.qa_secret, other.sip_secret}.isdisjoint(
            {asterisk.ami_secret, asterisk.qa_secret, asterisk.sip_secret})
        manager = (other.host_dir / "etc" / "manager.conf").read_text()
        assert f"secret = {other.ami_secret}" in manager
        assert (other.state_file.stat().st_mode & 0o077) == 0  # secrets: owner only
    finally:
        other.remove()
