"""HTTPS: a real ``modelhost serve --ssl-certfile --ssl-keyfile`` (2 workers) with a
certificate made here for 127.0.0.1, reached by clients that verify it; and the
certificates a server refuses to start with, each with a clear error and exit 1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tests.serving.server import MODELHOST, ServerProcess, server_env

from modelhost import Client, Settings

pytestmark = pytest.mark.slow


def make_certificate(folder: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its unencrypted key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelhost test")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def trusting(certificate: Path) -> ssl.SSLContext:
    """What a client verifies the server with: this certificate as its only authority."""
    return ssl.create_default_context(cafile=str(certificate))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("tls") / "home"
    bunch = load_iris(as_frame=True)
    X = bunch.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    with Client(Settings(home=home)) as client:
        mv = client.registry.register(LogisticRegression(max_iter=1000).fit(X, bunch.target),
                                      name="iris", input_example=X.head(3))
        client.transition_stage("iris", mv.version, "staging")
        client.transition_stage("iris", mv.version, "production")
    return home


@pytest.fixture(scope="module")
def certificate(home: Path) -> tuple[Path, Path]:
    return make_certificate(home.parent)


@pytest.fixture(scope="module")
def server(home: Path, certificate: tuple[Path, Path]) -> Iterator[ServerProcess]:
    cert, key = certificate
    logs = home.parent / "logs"
    logs.mkdir()
    process = ServerProcess(args=["--workers", "2", "--ssl-certfile", str(cert),
                                  "--ssl-keyfile", str(key)],
                            env=server_env(home), log_dir=logs, scheme="https",
                            verify=trusting(cert))
    process.start()
    try:
        yield process
    finally:
        if process.running:
            assert process.terminate() == 0, process.output()


ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def test_a_verifying_client_predicts_over_https(server: ServerProcess,
                                                certificate: tuple[Path, Path]) -> None:
    assert "modelhost serving on https://127.0.0.1:" in server.output()
    with httpx.Client(base_url=server.base_url, verify=trusting(certificate[0])) as http:
        for _ in range(20):  # both workers: new connections
            answer = http.post("/v1/models/iris/predict", json={"inputs": [ROW]},
                               headers={"Connection": "close"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == [0]
        assert http.get("/healthz").status_code == 200
    # The remote client too, with the certificate as what it trusts.
    with Client(server.base_url, verify=str(certificate[0])) as remote:
        assert remote.deployment("iris").stable == "1.0.0"


def test_clients_that_cannot_verify_it_or_speak_plain_http_get_nothing(
        server: ServerProcess, home: Path) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.base_url}/healthz")  # the system's CAs do not know it
    other, _ = make_certificate(home.parent, "other")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.base_url}/healthz", verify=trusting(other))
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the HTTPS port: no answer
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)


def serve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``modelhost serve`` that is expected to refuse to start."""
    return subprocess.run([str(MODELHOST), "serve", "--port", "0", *args],
                          env=server_env(home), capture_output=True, text=True, timeout=60,
                          check=False)


def test_a_server_refuses_certificates_it_cannot_use(home: Path,
                                                     certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    other_cert, other_key = make_certificate(home.parent, "mismatch")
    encrypted = home.parent / "encrypted.key"
    encrypted.write_bytes(serialization.load_pem_private_key(key.read_bytes(), None)
                          .private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    cases = [
        (["--ssl-certfile", str(cert)], "HTTPS needs both --ssl-certfile and --ssl-keyfile"),
        (["--ssl-certfile", str(cert), "--ssl-keyfile", str(other_key)],
         "the key does not match the certificate"),
        (["--ssl-certfile", str(cert), "--ssl-keyfile", str(encrypted)],
         "unencrypted PEM key"),
        (["--ssl-certfile", str(key), "--ssl-keyfile", str(key)], "not a PEM certificate"),
        (["--ssl-certfile", str(home / "nope.crt"), "--ssl-keyfile", str(key)],
         "no such file"),
    ]
    for args, message in cases:
        done = serve(home, *args)
        assert done.returncode in (1, 3), (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and "BEGIN" not in done.stderr
        assert "modelhost serving on" not in done.stderr
    assert other_cert.exists()
