"""What the secured clusters (``up --cluster --secure``) share: a throwaway CA (openssl)
under <state>/secure, one certificate for every node (SAN 127.0.0.1 and localhost,
serverAuth and clientAuth), and one random password per user in
<state>/secure/users/<name>.password (mode 600). The same users exist on the secured Kafka
cluster (SCRAM-SHA-512) and the secured Redis Cluster (ACL):

    admin      Kafka super user, Redis +@all: creates topics and ACLs, runs the stack's checks
    worker     the product's worker: least privilege (agents/admin.worker_acls; on Redis its key prefix)
    messaging  a downstream consumer of actions.push only (Kafka)

(Redis also gets ``replication``, the replicas' user on their primaries; not for clients.)
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from .common import Config, StackError, say

if TYPE_CHECKING:
    import ssl

SECURE_USERS = ("admin", "worker", "messaging")
#: the subject of every node's certificate: brokers and controllers know each other by it
#: on the controller listener (mutual TLS), where it is a super user
NODE_CN = "intentstream-stack-node"
SCRAM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 4096


def secure_dir(cfg: Config) -> Path:
    return cfg.state / "secure"


def secure_ca(cfg: Config) -> Path:
    return secure_dir(cfg) / "ca.pem"


def password_file(cfg: Config, user: str) -> Path:
    return secure_dir(cfg) / "users" / f"{user}.password"


def secure_password(cfg: Config, user: str) -> str:
    """The user's password, made (random) the first time it is asked for."""
    path = password_file(cfg, user)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.urlsafe_b64encode(os.urandom(18)).decode() + "\n")
    return path.read_text().strip()


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if not openssl:
        raise StackError("openssl is not installed; `up --secure` needs it for its throwaway CA (apt-get install openssl)")
    out = subprocess.run([openssl, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if out.returncode != 0:
        raise StackError(f"openssl {args[0]} failed:\n{out.stdout}{out.stderr}")


def ensure_tls_material(cfg: Config) -> dict[str, Path]:
    """The CA and the nodes' certificate (PEM), made once; paths by role."""
    d = secure_dir(cfg)
    files = {"ca": d / "ca.pem", "ca_key": d / "ca.key", "cert": d / "node.crt", "key": d / "node.key",
             "keystore": d / "node-keystore.pem"}  # fmt: skip
    if all(f.exists() for f in files.values()):
        return files
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    say(f"secure: making a throwaway CA and the nodes' certificate in {d}")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(files["ca_key"]), "-out", str(files["ca"]),
             "-days", "365", "-subj", "/CN=intentstream-stack-ca",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    csr, ext = d / "node.csr", d / "node.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(files["key"]), "-out", str(csr), "-subj", f"/CN={NODE_CN}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(files["ca"]), "-CAkey", str(files["ca_key"]), "-CAcreateserial",
             "-out", str(files["cert"]), "-days", "365", "-extfile", str(ext))  # fmt: skip
    # Kafka's PEM key store: the (PKCS#8, unencrypted) key, then the certificate chain
    files["keystore"].write_text(files["key"].read_text() + files["cert"].read_text())
    for f in (files["ca_key"], files["key"], files["keystore"]):
        f.chmod(0o600)
    files["ca"].chmod(0o644)
    return files


def tls_context(cfg: Config) -> ssl.SSLContext:
    """A client's TLS context that trusts the stack's CA (imported late: most commands need no TLS)."""
    import ssl

    return ssl.create_default_context(cafile=str(secure_ca(cfg)))


def scram_format_args(cfg: Config) -> list[str]:
    """``--add-scram`` for every user, as salted passwords (the same salts on every node,
    kept in <state>/secure/scram.args)."""
    path = secure_dir(cfg) / "scram.args"
    if not path.exists():
        args = []
        for user in SECURE_USERS:
            salt = os.urandom(16)
            salted = hashlib.pbkdf2_hmac("sha512", secure_password(cfg, user).encode(), salt, SCRAM_ITERATIONS)
            args += ["--add-scram", f'{SCRAM}=[name={user},iterations={SCRAM_ITERATIONS},'
                     f'salt="{base64.b64encode(salt).decode()}",saltedpassword="{base64.b64encode(salted).decode()}"]']
        path.touch(mode=0o600)
        path.write_text("\n".join(args) + "\n")
    return path.read_text().splitlines()
