"""Downloading one published file: streamed, checked, written atomically.

`fetch` tries each URL in turn. A file is written to a hidden `.part` beside its target and
renamed onto it only once its size and MD5 are the published ones, so the target is either
absent or complete. An unreachable host, an HTTP error, a truncated body or a wrong MD5 moves
on to the next URL; a full disk (or a file-size limit) stops at once. When no URL gives the
file, one `DataError` line names every URL and what went wrong there.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ffbench.errors import DataError

CHUNK = 1 << 20
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
Progress = Callable[[str, int, "int | None"], None]  # (file name, bytes just written, total bytes or None)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DiskFull(DataError):
    """The file could not be written: no other URL would help."""


def _no_space(folder: Path, name: str, detail: str) -> DiskFull:
    return DiskFull(f"no space to write {name} in {folder} ({detail}); free some space or set FFBENCH_CACHE_DIR")


def _stream(resp, tmp: Path, name: str, progress: Progress | None) -> tuple[int, str]:
    """Copy the response body to `tmp`; (bytes written, md5)."""
    digest, got = hashlib.md5(), 0
    total = int(resp.headers.get("Content-Length") or 0) or None
    with open(tmp, "wb") as f:
        while chunk := resp.read(CHUNK):
            f.write(chunk)
            digest.update(chunk)
            got += len(chunk)
            if progress:
                progress(name, len(chunk), total)
    return got, digest.hexdigest()


def fetch(name: str, urls: list[str], target: Path, md5: str, *, timeout: float = 30.0,
          progress: Progress | None = None) -> None:
    """Put the published file `name` (MD5 `md5`) at `target`, from the first URL that gives it."""
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {folder} for {name} ({exc.strerror})") from None
    errors = []
    for url in urls:
        tmp = folder / f".{target.name}.{os.getpid()}.part"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                if total is not None and shutil.disk_usage(folder).free < total:
                    raise _no_space(folder, name, f"{total:,} bytes needed, {shutil.disk_usage(folder).free:,} free")
                got, digest = _stream(resp, tmp, name, progress)
            if total is not None and got < total:
                errors.append(f"{url}: truncated ({got:,} of {total:,} bytes)")
            elif digest != md5:
                errors.append(f"{url}: md5 {digest[:12]}..., expected {md5[:12]}... (corrupt or not the published file)")
            else:
                os.replace(tmp, target)
                return
        except http.client.IncompleteRead as exc:
            errors.append(f"{url}: truncated ({len(exc.partial):,} bytes, then the connection closed)")
        except (http.client.HTTPException, ValueError) as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
        except OSError as exc:  # URLError, HTTPError, timeouts, refused connections, and writing
            if exc.errno in NO_SPACE:
                raise _no_space(folder, name, exc.strerror) from None
            if isinstance(exc, urllib.error.HTTPError):
                reason = f"HTTP {exc.code} {exc.reason}"
            else:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            errors.append(f"{url}: {reason}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(f"could not download {name} ({'; '.join(errors)})")
