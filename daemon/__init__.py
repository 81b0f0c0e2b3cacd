"""mmd: a live paper market-making daemon for Bybit V5."""

__version__ = "0.1.0"


def _use_source_if_stale() -> None:
    """Run the Python source of the mypyc-compiled modules when any of them changed after the
    build (an editable install that was not rebuilt), with one warning on stderr.

    Editing a ``.py`` file must never stop ``import daemon``. The compiled modules form one mypyc
    group whose modules call each other natively, so a stale one cannot be swapped out alone: if
    any compiled source changed, a finder placed first on ``sys.meta_path`` loads *every* module of
    the group from its source (same results, several times slower) until ``bash scripts/install.sh``
    rebuilds. The hand-written C accelerators (``_fastbook``, ``_fastmodels``) are separate
    extensions with their own Python references and are not affected."""
    try:
        from daemon._compiled import SOURCES
    except ImportError:  # not compiled (MMD_NO_COMPILE=1, no compiler) or a plain checkout
        return
    import glob
    import hashlib
    import importlib.abc
    import importlib.util
    import os
    import sys
    import warnings

    base = os.path.dirname(os.path.abspath(__file__))
    sources: dict[str, str] = {}
    stale: list[str] = []
    for mod, sha in SOURCES.items():
        rel = os.path.join(*mod.split(".")[1:])
        if not glob.glob(os.path.join(base, rel + ".*.so")) and not glob.glob(os.path.join(base, rel + ".*.pyd")):
            continue  # that module was not built: its source runs anyway
        path = os.path.join(base, rel + ".py")
        try:
            with open(path, "rb") as f:
                now = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            continue  # a wheel without sources: nothing to compare
        sources[mod] = path
        if now != sha:
            stale.append(mod)
    if not stale:
        return

    class _SourceFirst(importlib.abc.MetaPathFinder):
        """Loads the compiled group's modules from their ``.py`` files."""

        def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
            p = sources.get(fullname)
            return importlib.util.spec_from_file_location(fullname, p) if p is not None else None

    sys.meta_path.insert(0, _SourceFirst())
    warnings.warn(
        f"mmd: {', '.join(stale)} changed since the build: running the compiled modules from source "
        "(slower); rebuild with `bash scripts/install.sh`",
        RuntimeWarning,
        stacklevel=2,
    )


_use_source_if_stale()
