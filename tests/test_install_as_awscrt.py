"""crtpy.install_as_awscrt() makes `import awscrt` give crtpy, in a fresh interpreter."""
import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_import_awscrt_gives_crtpy():
    r = _run("""
        import crtpy, sys
        crtpy.install_as_awscrt()
        import awscrt
        import awscrt.exceptions
        from awscrt.exceptions import AwsCrtError
        import crtpy.exceptions
        assert AwsCrtError is crtpy.exceptions.AwsCrtError
        assert awscrt.exceptions is crtpy.exceptions
        assert awscrt.__version__ == crtpy.__awscrt_version__
        assert awscrt.NativeResource is crtpy.NativeResource
        assert '_awscrt' not in sys.modules
        crtpy.install_as_awscrt()  # a second call is harmless
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_lazy_submodules():
    r = _run("""
        import crtpy, sys
        crtpy.install_as_awscrt()
        import awscrt
        assert 'crtpy.exceptions' not in sys.modules
        from awscrt import exceptions
        assert 'crtpy.exceptions' in sys.modules
        print("ok")
    """)
    assert r.returncode == 0, r.stderr


def test_refuses_when_real_awscrt_is_loaded():
    r = _run("""
        import awscrt.exceptions
        import crtpy
        try:
            crtpy.install_as_awscrt()
        except RuntimeError as e:
            print("refused:", e)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused:") and "awscrt" in r.stdout
