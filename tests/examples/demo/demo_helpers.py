"""Shared by the demo's tests. Importing it skips the importing module when the demo's
dependencies (examples/demo/requirements.txt) are not installed."""

import os

import pytest

from . import DEMO_DIR

for _name in ("PIL", "numpy", "aiohttp", "httpx", "aiofiles", "rich"):
    pytest.importorskip(_name)

SMALL = (240, 135)  # 1/8 of 1920x1080: the tutorial's detector takes ~30 ms on it


def demo_env():
    """The environment for a child process that imports the demo (it is not installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(DEMO_DIR), env.get("PYTHONPATH")) if p)
    return env


def settings_for(srv, out_dir, **kw):
    from ferroloop_demo.pipeline import Settings

    kw.setdefault("backoff", 0.05)
    kw.setdefault("timeout", 5.0)
    return Settings(urls=srv.image_urls(), out_dir=out_dir, **kw)


def leftovers(folder):
    """Files in `folder` that are not complete images: temp files of any kind."""
    return sorted(
        p.name
        for p in folder.rglob("*")
        if p.is_file() and (p.name.startswith(".") or not p.name.endswith(".jpg"))
    )
