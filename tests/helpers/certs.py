"""Test PKI: a generated CA, server and client certificates, PKCS#12 and an unrelated CA.

``pki`` is a session-scoped fixture; import it into a test module with
``from helpers.certs import pki``.  Each attribute (``pki.ca_cert``, ``pki.server_key``,
...) is a path string that also carries the file's bytes in ``.pem``.
"""
from __future__ import annotations

import pytest

from crtpy._pki import PemFile, Pki, make_pki

__all__ = ["PemFile", "Pki", "make_pki", "pki"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(str(tmp_path_factory.mktemp("pki")))
