"""Fork safety: after os.fork() the child does real TLS work with new objects, and
objects made before the fork raise instead of hanging.  Runs in a subprocess so the
fork never happens inside pytest's own process."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

SCRIPT = textwrap.dedent(r'''
    import gc, os, signal, sys, tempfile, traceback
    sys.path.insert(0, TESTS_DIR)
    import crtpy, crtpy.common
    from crtpy import io
    from crtpy._pki import make_pki
    from crtpy._demo import LocalTlsServer
    from crtpy.exceptions import AwsCrtError
    from helpers.certs import tls_exchange

    pki = make_pki(tempfile.mkdtemp())
    server = LocalTlsServer(pki, alpn=["h2"]).start()

    def conn_opts():
        o = io.TlsContextOptions()
        o.override_default_trust_store(pki.ca_cert.pem)
        o.alpn_list = ["h2"]
        return io.ClientTlsContext(o).new_connection_options()

    def new_bootstrap():
        elg = io.EventLoopGroup(1)
        return io.ClientBootstrap(elg, io.DefaultHostResolver(elg))

    pre_bootstrap = new_bootstrap()
    pre_opts = conn_opts()
    pre_static = io.ClientBootstrap.get_or_create_static_default()
    assert tls_exchange("localhost", server.port, pre_opts, pre_bootstrap) == ("h2", b"ping")
    assert tls_exchange("localhost", server.port, pre_opts, None) == ("h2", b"ping")

    def expect_invalid_state(fn, what):
        try:
            fn()
        except AwsCrtError as e:
            assert e.name == "AWS_ERROR_INVALID_STATE", (what, e)
            assert "fork" in e.message, e.message
        else:
            raise AssertionError(f"{what} did not raise in the child")

    def child_work():
        # objects from before the fork raise (no hang: alarm kills us if they did)
        expect_invalid_state(lambda: tls_exchange("localhost", server.port, conn_opts(), pre_bootstrap),
                             "pre-fork bootstrap")
        expect_invalid_state(lambda: pre_opts._ssl_context(), "pre-fork TLS options")
        expect_invalid_state(lambda: io.DefaultHostResolver(pre_bootstrap._event_loop_group), "pre-fork group")
        expect_invalid_state(lambda: pre_static._host_resolver._resolve("localhost"), "pre-fork resolver")
        # new objects work: a real TLS connection, new group, resolver, context
        bootstrap = new_bootstrap()
        payload = os.urandom(200_000)
        assert tls_exchange("localhost", server.port, conn_opts(), bootstrap, payload=payload) == ("h2", payload)
        # the static defaults are fresh in the child
        static = io.ClientBootstrap.get_or_create_static_default()
        assert static is not pre_static
        assert tls_exchange("localhost", server.port, conn_opts(), None) == ("h2", b"ping")
        del bootstrap, static
        io.ClientBootstrap.release_static_default()
        io.DefaultHostResolver.release_static_default()
        io.EventLoopGroup.release_static_default()
        gc.collect()
        assert crtpy.common.join_all_native_threads(timeout_sec=20), "threads left in the child"

    def run_child():
        signal.alarm(60)
        try:
            child_work()
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        sys.stdout.flush()
        os._exit(0)

    pid = os.fork()
    if pid == 0:
        run_child()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"fork child failed: {status}"

    # multiprocessing with the fork start method
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=run_child)
    proc.start()
    proc.join(90)
    assert proc.exitcode == 0, f"multiprocessing child failed: {proc.exitcode}"

    # the parent is unaffected
    assert tls_exchange("localhost", server.port, pre_opts, pre_bootstrap) == ("h2", b"ping")
    server.stop()
    print("FORK-OK")
''')


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_does_real_tls_and_prefork_objects_raise():
    code = f"TESTS_DIR = {TESTS_DIR!r}\n" + SCRIPT
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "FORK-OK" in proc.stdout, proc.stdout + proc.stderr
    # no traceback from a daemon thread at interpreter exit
    assert "Traceback" not in proc.stderr, proc.stderr
