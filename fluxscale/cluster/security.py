"""TLS for the Dask cluster: the config's certificates as a ``distributed.Security`` and as
``dask.config`` keys (:func:`security`, :func:`tls_dask_config`), and a throwaway
certificate authority for testing.

:func:`make_test_certificates` writes a self-signed CA and one certificate (signed by it)
for the scheduler, the workers and the client, valid for the given hosts. Point the
``[cluster]`` section's ``tls_ca_file``, ``tls_cert_file``, ``tls_key_file`` (or ``dask
scheduler/worker --tls-ca-file --tls-cert --tls-key``) at them. Dask then requires every
peer to present a certificate signed by that CA: a client without one is refused.

For production use certificates from your site's CA; these are for tests and trials.
The keys are written with mode 0600 and never printed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import Any

from fluxscale.config import ClusterConfig
from fluxscale.errors import ConfigError, FluxscaleError

__all__ = ["make_test_certificates", "security", "tls_dask_config"]


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_test_certificates(out: str | Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                           days: int = 7, name: str = "fluxscale") -> dict[str, Path]:
    """Write ``ca.pem`` (the CA certificate), ``cert.pem`` and ``key.pem`` (a certificate for
    ``hosts``, signed by the CA, for server and client use) into ``out``; the CA's own key is
    not kept, so nothing else can be signed with it. Returns the paths."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise FluxscaleError("making certificates needs cryptography: pip install 'fluxscale[tls]'") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} throwaway CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt = []
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": out / "ca.pem", "cert": out / "cert.pem", "key": out / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["key"], key)
    return paths


def security(cfg: ClusterConfig):
    """A ``distributed.Security`` from the config's TLS files (None without TLS): the same
    certificate for scheduler, workers and client, encryption required."""
    if not cfg.tls:
        return None
    from distributed.security import Security

    for what in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        p = getattr(cfg, what)
        if not Path(p).is_file():
            raise ConfigError(f"cluster config {what}: {p} not found")
    return Security(tls_ca_file=cfg.tls_ca_file, tls_client_cert=cfg.tls_cert_file,
                    tls_client_key=cfg.tls_key_file, tls_scheduler_cert=cfg.tls_cert_file,
                    tls_scheduler_key=cfg.tls_key_file, tls_worker_cert=cfg.tls_cert_file,
                    tls_worker_key=cfg.tls_key_file, require_encryption=True)


def tls_dask_config(cfg: ClusterConfig) -> dict[str, Any]:
    """The ``dask.config`` keys that make every ``Client``/``Security()`` of this process
    use the config's certificates (empty without TLS)."""
    if not cfg.tls:
        return {}
    return {"distributed.comm.require-encryption": True, "distributed.comm.tls.ca-file": cfg.tls_ca_file,
            "distributed.comm.tls.client.cert": cfg.tls_cert_file, "distributed.comm.tls.client.key": cfg.tls_key_file,
            "distributed.comm.tls.scheduler.cert": cfg.tls_cert_file,
            "distributed.comm.tls.scheduler.key": cfg.tls_key_file,
            "distributed.comm.tls.worker.cert": cfg.tls_cert_file, "distributed.comm.tls.worker.key": cfg.tls_key_file}
