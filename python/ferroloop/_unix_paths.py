"""A Unix socket's file: the stale file removed before a bind, the listening socket's file
removed when it stops (3.13's cleanup_socket). Once per socket; the stat and unlink are
native (src/unix_paths.rs), asyncio's wording for what goes wrong.
"""

from asyncio.log import logger

from ._ferroloop import path_inode, remove_stale_socket, unlink_if_inode


def is_abstract(path):
    """Linux's abstract namespace (a leading NUL): no file behind the name."""
    return path[0] in (0, "\x00")


def remove_stale(path):
    """Remove the socket file an earlier run left at `path` (only a socket: another kind
    of file stays, and the bind then fails), as asyncio does before it binds; a failure
    to check is logged, not raised."""
    if is_abstract(path):
        return
    try:
        remove_stale_socket(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)


def bound_file(sock):
    """(path, inode) of the file a bound Unix socket made, to remove it later only if it
    is still that file; None when there is none (abstract, unnamed, already gone)."""
    name = sock.getsockname()
    if not name or is_abstract(name):
        return None
    try:
        return name, path_inode(name)
    except FileNotFoundError:
        return None


def remove_bound_file(path, inode):
    """Remove a listening socket's file, unless it was replaced meanwhile (another inode)."""
    try:
        unlink_if_inode(path, inode)
    except FileNotFoundError:
        pass
    except OSError as err:
        logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)
