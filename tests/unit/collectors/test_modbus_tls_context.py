"""The Modbus/TCP Security SSL contexts, handshaking in memory (MemoryBIO pairs, no sockets)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from collectors.modbus import ModbusClientPool
from collectors.modbus_certs import issue, make_ca, write_modbus_pki, write_pair
from collectors.modbus_tls import (
    ModbusTlsFiles,
    VerifyingClientContext,
    client_context,
    describe_tls_error,
    identity_problems,
    server_context,
)
from config.secret import Secret

PASSWORD = "canary-unit-key-77b1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return write_modbus_pki(tmp_path_factory.mktemp("pki"), host="127.0.0.1", client_key_password=PASSWORD)


def client_files(pki, **changes) -> ModbusTlsFiles:
    values = {"ca_file": pki.ca_file, "server_name": "127.0.0.1", "cert_file": pki.client_cert_file,
              "key_file": pki.client_key_file, "key_password": Secret(PASSWORD)}
    return ModbusTlsFiles(**{**values, **changes})


def server_files(pki, cert: Path | None = None, key: Path | None = None) -> ModbusTlsFiles:
    return ModbusTlsFiles(ca_file=pki.ca_file, server_name="127.0.0.1",
                          server_cert_file=cert or pki.server_cert_file, server_key_file=key or pki.server_key_file)


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, dialled: str = "127.0.0.1") -> None:
    """A full TLS handshake plus one record each way, through memory; raises what either side raises."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=dialled)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {c: False, s: False}
    for _ in range(10):
        for side in (c, s):
            if not done[side]:
                try:
                    side.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    c.write(b"\x00\x01\x00\x00\x00\x06\x01\x04\x00\x01\x00\x02")
    s_in.write(c_out.read())
    s.read(64)  # TLS 1.3: the server checks the client certificate here at the latest
    s.write(b"ok")
    c_in.write(s_out.read())
    assert c.read(64) == b"ok"


def test_client_context_verifies_and_is_at_least_tls_1_2(pki):
    context = client_context(client_files(pki))
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert len(context.get_ca_certs()) == 1


def test_server_context_requires_a_client_certificate(pki):
    context = server_context(server_files(pki))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_server_context_without_simulator_files_says_what_is_missing(pki):
    with pytest.raises(ValueError, match=r"modbus\.tls\.simulator"):
        server_context(ModbusTlsFiles(ca_file=pki.ca_file, server_name="x"))


def test_certificate_is_checked_against_server_name_not_the_dialled_address(pki):
    context = client_context(client_files(pki, server_name="ups.example"))
    ssl_object = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="127.0.0.1")
    assert ssl_object.server_hostname == "ups.example"


def test_mutual_handshake_succeeds_with_the_right_ca_and_name(pki):
    handshake(client_context(client_files(pki)), server_context(server_files(pki)))


def test_wrong_name_fails_and_the_reason_is_kept(pki):
    context = client_context(client_files(pki, server_name="ups.example"))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, server_context(server_files(pki)))
    assert context.last_failure.startswith("certificate verify failed: Hostname mismatch")


def test_server_from_another_ca_fails_and_the_reason_is_kept(pki, tmp_path):
    stranger = issue(make_ca("stranger"), "127.0.0.1", hosts=("127.0.0.1",))
    write_pair(stranger, tmp_path / "s.pem", tmp_path / "s.key")
    context = client_context(client_files(pki))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, server_context(server_files(pki, tmp_path / "s.pem", tmp_path / "s.key")))
    assert context.last_failure == "certificate verify failed: unable to get local issuer certificate"
    context.reset()
    assert context.last_failure is None


def test_server_refuses_a_client_without_certificate(pki):
    with pytest.raises(ssl.SSLError):
        handshake(client_context(client_files(pki, cert_file=None, key_file=None, key_password=None)),
                  server_context(server_files(pki)))


def test_wrong_key_password_is_named_without_the_password(pki):
    problems = identity_problems(client_files(pki, key_password=Secret("wrong-" + PASSWORD)))
    assert problems == [("key_password", "does not decrypt key_file (wrong password?)")]
    assert identity_problems(client_files(pki, key_password=None)) == [
        ("key_file", "is encrypted; give key_password: {env: VARIABLE} or {file: PATH}")]
    assert identity_problems(client_files(pki)) == []


def test_files_never_print_the_key_password(pki):
    files = client_files(pki)
    assert PASSWORD not in repr(files) and PASSWORD not in str(files)


def test_describe_tls_error_reads_like_a_sentence():
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] ...")
    error.verify_message = "certificate has expired"
    assert describe_tls_error(error) == "certificate verify failed: certificate has expired"


class _Client:
    def __init__(self, host, **kwargs):
        self.host, self.kwargs = host, kwargs

    def close(self):
        pass


def test_pool_never_shares_a_plain_client_with_a_tls_device(pki):
    pool = ModbusClientPool(client_factory=_Client, tls_client_factory=_Client)
    files = client_files(pki)
    plain = pool.acquire("127.0.0.1", 802, timeout=1, retries=0)
    secure = pool.acquire("127.0.0.1", 802, timeout=1, retries=0, tls=files)
    assert plain is not secure
    assert "sslctx" not in plain.client.kwargs
    assert isinstance(secure.client.kwargs["sslctx"], VerifyingClientContext)
    assert pool.users("127.0.0.1", 802) == 1 and pool.users("127.0.0.1", 802, files) == 1


def test_poller_refuses_to_poll_a_tls_device_without_its_files(pki):
    from collectors.modbus import ModbusPoller
    from collectors.profile import PROFILE_DIR, load_profile
    from config.schema import Device, ModbusOptions, ModbusTls

    profile = load_profile(PROFILE_DIR / "thsensor/generic_xymd02.yaml", "thsensor/generic_xymd02")
    device = Device(id="inlet", device_class="thsensor", profile=profile.id, room="r1", host="127.0.0.1", port=802,
                    modbus=ModbusOptions(unit_id=1, tls=ModbusTls(ca_file=str(pki.ca_file))))
    with pytest.raises(ValueError, match="no resolved TLS files"):
        ModbusPoller(device, profile, pool=ModbusClientPool(client_factory=_Client, tls_client_factory=_Client))
