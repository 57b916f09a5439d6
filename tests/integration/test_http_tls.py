"""Rally's HTTP clients share one TLS context per process, and it still checks certificates
against the trust the environment names."""

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from config.errors import RallyError
from integrations.http import _tls_context, http_client, tls_context


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def https_server() -> Iterator[tuple[str, trustme.CA]]:
    """A real HTTPS server on loopback whose certificate a private CA signed."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}/", ca
    finally:
        server.shutdown()
        server.server_close()


def test_clients_share_one_context_that_trusts_the_bundle_the_environment_names(
    https_server: tuple[str, trustme.CA], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = https_server
    made = []  # the contexts made: each loads a whole bundle of certificates
    create = ssl.create_default_context

    def counted(**options: Any) -> ssl.SSLContext:
        made.append(options)
        return create(**options)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    _tls_context.cache_clear()
    with http_client() as one, http_client() as other:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            one.get(url)  # the system's trust does not know this CA
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            other.get(url)
    assert len(made) == 1  # one for both clients

    with ca.cert_pem.tempfile() as bundle:
        monkeypatch.setenv("SSL_CERT_FILE", bundle)
        with http_client() as trusting:
            assert trusting.get(url).text == "hello"
        trusted = tls_context()

    monkeypatch.delenv("SSL_CERT_FILE")
    assert tls_context() is not trusted  # the bundle named once does not stay trusted
    with http_client() as again, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY"):
        again.get(url)
    assert len(made) == 2  # the trusting one; the first is used again


def test_a_bundle_that_cannot_be_read_is_named_with_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_pem = tmp_path / "bundle.txt"
    not_pem.write_text("not a certificate\n")
    for bundle, says in [
        (tmp_path / "missing.pem", "No such file or directory"),
        (not_pem, "holds no certificates (PEM)"),
    ]:
        monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
        with pytest.raises(RallyError) as raised:
            http_client()
        assert str(raised.value) == f"SSL_CERT_FILE={bundle}: {says}"
