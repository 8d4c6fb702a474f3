"""Shared by the demo's tests. Importing it skips the importing module when the demo's
dependencies (the `demo` extra) are not installed."""

import pytest

for _name in ("PIL", "numpy", "aiohttp", "httpx", "aiofiles", "rich"):
    pytest.importorskip(_name)

SMALL = (240, 135)        # 1/8 of 1920x1080: the tutorial's detector takes ~30 ms on it


def settings_for(srv, out_dir, **kw):
    from ferroloop.demo.pipeline import Settings

    kw.setdefault("backoff", 0.05)
    kw.setdefault("timeout", 5.0)
    return Settings(urls=srv.image_urls(), out_dir=out_dir, **kw)


def leftovers(folder):
    """Files in `folder` that are not complete images: temp files of any kind."""
    return sorted(p.name for p in folder.rglob("*")
                  if p.is_file() and (p.name.startswith(".") or not p.name.endswith(".jpg")))
