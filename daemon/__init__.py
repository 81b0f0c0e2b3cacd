"""mmd: a live paper market-making daemon for Bybit V5."""

__version__ = "0.1.0"


def _check_compiled() -> None:
    """Refuse a mypyc-compiled module whose Python source changed after it was compiled (an
    editable install that was not rebuilt would otherwise silently run old code)."""
    try:
        from daemon._compiled import SOURCES
    except ImportError:  # not compiled (MMD_NO_COMPILE=1, no compiler) or a plain checkout
        return
    import glob
    import hashlib
    import os

    base = os.path.dirname(os.path.abspath(__file__))
    for mod, sha in SOURCES.items():
        rel = os.path.join(*mod.split(".")[1:])
        if not glob.glob(os.path.join(base, rel + ".*.so")) and not glob.glob(os.path.join(base, rel + ".*.pyd")):
            continue  # that module was not built: its source runs
        try:
            with open(os.path.join(base, rel + ".py"), "rb") as f:
                now = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            continue  # a wheel without sources: nothing to compare
        if now != sha:
            raise ImportError(
                f"{mod} was compiled from an older {rel}.py: rebuild with `bash scripts/install.sh` "
                "(or `MMD_NO_COMPILE=1 bash scripts/install.sh` to run it uncompiled)"
            )


_check_compiled()
