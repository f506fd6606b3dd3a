"""Does a service answer? Each probe speaks the service's own protocol with the standard
library, so that ``up`` and ``status`` work before the virtualenv exists: Kafka's wire
protocol (ApiVersions, Metadata; SaslHandshake and SaslAuthenticate with SCRAM-SHA-512 on
the secured cluster) and Redis's RESP (PING)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct

from .common import KAFKA_SECURE, Config
from .secure import SCRAM, secure_password, tls_context


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def _kafka_request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client_id = b"intentstream-stack"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    data = _recv_exact(sock, size)
    (got_corr,) = struct.unpack(">i", data[:4])
    if got_corr != corr:
        raise ConnectionError("correlation id mismatch")
    return data[4:]


def kafka_answers(port: int, timeout: float = 2.0, min_brokers: int = 1) -> tuple[bool, str]:
    """ApiVersions then Metadata v4: True once the broker answers and lists itself (and
    ``min_brokers`` in all)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            resp = _kafka_request(sock, 18, 0, 1, b"")  # ApiVersions v0
            (err,) = struct.unpack(">h", resp[:2])
            if err:
                return False, f"ApiVersions error {err}"
            # Metadata v4: topics = [] (none), allow_auto_topic_creation = false
            resp = _kafka_request(sock, 3, 4, 2, struct.pack(">i?", 0, False))
            _throttle, n_brokers = struct.unpack(">ii", resp[:8])
            if n_brokers < min_brokers:
                return False, f"{n_brokers} of {min_brokers} broker(s) registered"
            return True, f"{n_brokers} broker(s)"
    except (OSError, struct.error) as exc:
        return False, str(exc) or type(exc).__name__


def redis_answers(port: int, timeout: float = 2.0) -> tuple[bool, str]:
    """PING in RESP; True on +PONG (not while it still -LOADING the AOF)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            line = b""
            while not line.endswith(b"\r\n"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                line += chunk
            reply = line.decode(errors="replace").strip()
            return reply == "+PONG", reply or "no reply"
    except OSError as exc:
        return False, str(exc) or type(exc).__name__


def _scram_authenticate(sock: socket.socket, user: str, password: str) -> None:
    """SaslHandshake + SaslAuthenticate (RFC 5802 SCRAM-SHA-512) on a Kafka connection."""
    import hmac

    resp = _kafka_request(sock, 17, 1, 3, struct.pack(">h", len(SCRAM)) + SCRAM.encode())  # SaslHandshake v1
    if struct.unpack(">h", resp[:2])[0]:
        raise ConnectionError(f"SaslHandshake error {struct.unpack('>h', resp[:2])[0]}")

    def authenticate(corr: int, data: bytes) -> bytes:
        resp = _kafka_request(sock, 36, 0, corr, struct.pack(">i", len(data)) + data)  # SaslAuthenticate v0
        (err,) = struct.unpack(">h", resp[:2])
        (msg_len,) = struct.unpack(">h", resp[2:4])
        rest = resp[4 + max(msg_len, 0):]
        if err:
            raise ConnectionError(f"authentication failed (error {err})")
        (n,) = struct.unpack(">i", rest[:4])
        return rest[4:4 + n]

    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={user},r={nonce}"
    server_first = authenticate(4, f"n,,{first_bare}".encode()).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha512").digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(hashlib.sha512(client_key).digest(), auth_message, "sha512").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    authenticate(5, f"{without_proof},p={proof}".encode())


def kafka_secure_answers(cfg: Config, port: int, timeout: float = 2.0, min_brokers: int = 1) -> tuple[bool, str]:
    """TLS, SCRAM as admin, then Metadata v4 (``kafka_answers`` over SASL_SSL)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with tls_context(cfg).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                sock.settimeout(timeout)
                _scram_authenticate(sock, "admin", secure_password(cfg, "admin"))
                resp = _kafka_request(sock, 3, 4, 6, struct.pack(">i?", 0, False))
                _throttle, n_brokers = struct.unpack(">ii", resp[:8])
                if n_brokers < min_brokers:
                    return False, f"{n_brokers} of {min_brokers} broker(s) registered"
                return True, f"{n_brokers} broker(s), SASL_SSL"
    except (OSError, struct.error, KeyError, ValueError) as exc:
        return False, str(exc) or type(exc).__name__


def answers(cfg: Config, service: str) -> tuple[bool, str]:
    """The probe of this service (by its name), on its client port."""
    if service.startswith(KAFKA_SECURE):
        return kafka_secure_answers(cfg, cfg.port(service))
    return (kafka_answers if service.startswith("kafka") else redis_answers)(cfg.port(service))
