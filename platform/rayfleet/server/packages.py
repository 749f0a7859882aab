"""Uploaded runtime_env packages (``ray job submit --working-dir`` / ``--py-modules``): owned per
team, write-once, content-checked, size-capped, quota'd.

Names. Ray's client names a package before uploading it:
  * ``_ray_pkg_<16 hex>.zip`` -- a directory: Ray's hash of its files (``get_uri_for_directory``:
    the XOR of SHA-1(path relative to the directory [+ contents]) over the directory itself, every
    sub-directory and every file not excluded, truncated to 8 bytes), zipped with paths relative
    to the directory (``working_dir``) or under the directory's own name (``py_modules``);
  * ``_ray_pkg_<40 hex>.zip|.tar.gz|.tar.xz`` -- an archive uploaded as it is: SHA-1 of its bytes
    (``get_uri_for_package``);
  * ``<wheel file name>.whl`` -- a wheel, named by its file name (not by its contents).

Checks. An archive's SHA-1 is always checked (a mismatch is refused). A directory package's hash is
recomputed from the files in the zip (Ray's own per-path hash on an extracted copy, every entry
counted, ignore files not applied); it matches unless a directory whose files were all excluded
was left out of the zip (Ray hashes the directory but zips no entry for it), so a mismatch cannot
be told from tampering: such a package is kept, marked unverified. A wheel cannot be checked.

Isolation does not rest on those hashes (Ray's directory hash is 64 bits of XOR, so files can be
chosen to give any name). Every package is kept per team: a team sees (``GET``) and runs only
packages it uploaded itself; two teams uploading the same name each own their own copy (the bytes
are stored once when they are equal). At launch the job's team's copy is handed to the cluster
under a name derived from the SHA-256 of its bytes (:func:`cluster_uri`), so packages of two
teams never meet under one name there either.

Limits (:class:`PackageLimits`): a size cap per package, caps on what an archive unpacks to, and a
storage quota per team; an upload that would exceed the quota first drops the team's packages no
unfinished job names (:func:`evictable`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..api import JobState
from ..backends.base import Backend
from ..backends.runtime_env import package_uris, with_package_uris
from ..errors import Conflict, FieldProblem, Forbidden, RayfleetError, SpecError
from .shared_bytes import PackageBlobs
from .store import Store

log = logging.getLogger("rayfleet.packages")

MIB = 2**20
_DIRECTORY = re.compile(r"_ray_pkg_(?P<hash>[0-9a-f]{16})\.zip")
_ARCHIVE = re.compile(r"_ray_pkg_(?P<hash>[0-9a-f]{40})(?P<ext>\.zip|\.tar\.gz|\.tar\.xz)")
# PEP 427: {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl
_WHEEL = re.compile(r"(?P<name>[A-Za-z0-9_.+!]+)-(?P<ver>[A-Za-z0-9_.+!]+)(-(?P<build>\d[A-Za-z0-9_.+!]*))?"
                    r"-(?P<tags>[A-Za-z0-9_.+!]+-[A-Za-z0-9_.+!]+-[A-Za-z0-9_.+!]+)\.whl")
MAX_NAME = 200


class PackageTooLarge(RayfleetError):
    """A package over the per-package cap, or one that would take its team over its quota."""

    http_status = 413


@dataclass(frozen=True)
class PackageLimits:
    """Caps on uploads. Defaults, each overridable by an environment variable of the service:
    100 MiB a package (``RAYFLEET_PACKAGE_MAX_MIB``), 1024 MiB of packages a team
    (``RAYFLEET_PACKAGE_QUOTA_MIB``), 1024 MiB unpacked (``RAYFLEET_PACKAGE_MAX_UNPACKED_MIB``)
    and 20000 entries (``RAYFLEET_PACKAGE_MAX_ENTRIES``) in one archive."""

    max_bytes: int = 100 * MIB
    quota_bytes: int = 1024 * MIB
    max_unpacked_bytes: int = 1024 * MIB
    max_entries: int = 20_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PackageLimits:
        source: Mapping[str, str] = os.environ if env is None else env
        d = cls()

        def read(name: str, default: int, unit: int) -> int:
            raw = source.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                value = -1
            if value <= 0:
                raise ValueError(f"{name}={raw!r}: expected a positive whole number")
            return value * unit

        return cls(max_bytes=read("RAYFLEET_PACKAGE_MAX_MIB", d.max_bytes, MIB),
                   quota_bytes=read("RAYFLEET_PACKAGE_QUOTA_MIB", d.quota_bytes, MIB),
                   max_unpacked_bytes=read("RAYFLEET_PACKAGE_MAX_UNPACKED_MIB", d.max_unpacked_bytes, MIB),
                   max_entries=read("RAYFLEET_PACKAGE_MAX_ENTRIES", d.max_entries, 1))


def _mib(n: int) -> str:
    return f"{n / MIB:.4g} MiB"


def _bad(problem: str, field: str = "package_name") -> SpecError:
    return SpecError(FieldProblem(field=field, problem=problem))


def parse_uri(uri: str, field: str = "package_name") -> str:
    """The kind of a package URI -- ``directory``, ``archive`` or ``wheel`` -- or a SpecError
    naming ``field``."""
    scheme, sep, name = uri.partition("://")
    if not sep or scheme != "gcs":
        raise _bad(f"unsupported package protocol {scheme!r}; expected gcs", "protocol" if field == "package_name" else field)
    if len(name) > MAX_NAME:
        raise _bad(f"package name is {len(name)} characters; at most {MAX_NAME}", field)
    if _DIRECTORY.fullmatch(name):
        return "directory"
    if _ARCHIVE.fullmatch(name):
        return "archive"
    if _WHEEL.fullmatch(name):
        return "wheel"
    raise _bad(f"invalid package name {name!r}: expected Ray's _ray_pkg_<hash>.zip (or .tar.gz, .tar.xz) "
               "or a wheel file name <name>-<version>-<python>-<abi>-<platform>.whl", field)


def cluster_uri(uri: str, digest: str) -> str:
    """The name a package is handed to the cluster under: derived from the SHA-256 of its bytes,
    so equal names hold equal bytes. A wheel keeps its file name with the digest as its build tag
    (pip installs a wheel by its file name)."""
    name = uri.partition("://")[2]
    m = _WHEEL.fullmatch(name)
    if m:
        return f"gcs://{m['name']}-{m['ver']}-0rf{digest[:32]}-{m['tags']}.whl"
    ext = next(e for e in (".tar.gz", ".tar.xz", ".zip") if name.endswith(e))
    return f"gcs://rayfleet_pkg_{digest}{ext}"


# ---------------------------------------------------------------------- archive safety


def _check_member(name: str, i: int) -> PurePosixPath:
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise _bad(f"entry {i} of the archive has an unsafe path {name!r}", "(body)")
    path = PurePosixPath(name)
    if any(part == ".." for part in path.parts):
        raise _bad(f"entry {i} of the archive has an unsafe path {name!r} ('..')", "(body)")
    return path


def _zip_entries(data: bytes, limits: PackageLimits) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception as e:  # untrusted bytes: any failure to read them is the uploader's
        raise _bad(f"not a valid zip archive: {e}", "(body)") from None
    if len(infos) > limits.max_entries:
        raise PackageTooLarge(f"the archive has {len(infos)} entries; at most {limits.max_entries} (RAYFLEET_PACKAGE_MAX_ENTRIES)")
    seen: set[str] = set()
    total = 0
    for i, info in enumerate(infos):
        path = _check_member(info.filename, i)
        key = str(path)
        if key in seen:
            raise _bad(f"the archive holds {info.filename!r} twice", "(body)")
        seen.add(key)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type recorded (a plain file)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _bad(f"entry {info.filename!r} is not a regular file or directory (links are not allowed)", "(body)")
        total += info.file_size
        if total > limits.max_unpacked_bytes:
            raise PackageTooLarge(f"the archive unpacks to more than {_mib(limits.max_unpacked_bytes)} (RAYFLEET_PACKAGE_MAX_UNPACKED_MIB)")
    return zf, infos


def _check_tar(data: bytes, limits: PackageLimits) -> None:
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            for i, member in enumerate(tf):
                if i >= limits.max_entries:
                    raise PackageTooLarge(f"the archive has more than {limits.max_entries} entries (RAYFLEET_PACKAGE_MAX_ENTRIES)")
                _check_member(member.name, i)
                if not (member.isfile() or member.isdir()):
                    raise _bad(f"entry {member.name!r} is not a regular file or directory (links are not allowed)", "(body)")
                total += member.size
                if total > limits.max_unpacked_bytes:
                    raise PackageTooLarge(f"the archive unpacks to more than {_mib(limits.max_unpacked_bytes)} (RAYFLEET_PACKAGE_MAX_UNPACKED_MIB)")
    except RayfleetError:
        raise
    except Exception as e:  # untrusted bytes: any failure to read them is the uploader's
        raise _bad(f"not a valid tar archive: {e}", "(body)") from None


def _extract(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], dest: Path, limits: PackageLimits) -> None:
    """Unpack with the unpacked-size cap enforced on the bytes actually read (a header may lie)."""
    total = 0
    for info in infos:
        target = dest.joinpath(*PurePosixPath(info.filename).parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(MIB):
                    total += len(chunk)
                    if total > limits.max_unpacked_bytes:
                        raise PackageTooLarge(f"the archive unpacks to more than {_mib(limits.max_unpacked_bytes)} (RAYFLEET_PACKAGE_MAX_UNPACKED_MIB)")
                    out.write(chunk)
        except RayfleetError:
            raise
        except Exception as e:  # untrusted bytes: any failure to read them is the uploader's
            raise _bad(f"entry {info.filename!r} cannot be read: {e}", "(body)") from None


def tree_hash(root: Path) -> str:
    """Ray's directory hash of ``root`` (the hex in ``_ray_pkg_<hex>.zip``), over every path under
    it, computed with Ray's own per-path function."""
    from ray._private.runtime_env.packaging import _hash_file_content_or_directory_name, _xor_bytes

    value = b"0" * 8  # Ray's seed; its XOR keeps the seed's 8 bytes
    paths = [root] + [Path(d) / n for d, dirs, files in os.walk(root) for n in dirs + files]
    for p in paths:
        value = _xor_bytes(value, _hash_file_content_or_directory_name(p, root))
    return value.hex()


def check_content(uri: str, data: bytes, limits: PackageLimits) -> bool:
    """Check an upload's bytes against its name; True where the name's hash was recomputed and
    matches. Raises SpecError (bad archive, archive hash mismatch) or PackageTooLarge."""
    kind = parse_uri(uri)
    name = uri.partition("://")[2]
    if kind == "archive":
        m = _ARCHIVE.fullmatch(name)
        assert m is not None
        actual = hashlib.sha1(data).hexdigest()  # noqa: S324 - Ray names archives by SHA-1
        if actual != m["hash"]:
            raise _bad(f"package {name} does not match its name: its bytes hash to _ray_pkg_{actual}{m['ext']}")
        if m["ext"] == ".zip":
            _zip_entries(data, limits)
        else:
            _check_tar(data, limits)
        return True
    zf, infos = _zip_entries(data, limits)
    if kind == "wheel":
        return False
    m = _DIRECTORY.fullmatch(name)
    assert m is not None
    with tempfile.TemporaryDirectory(prefix="rayfleet-pkg-") as tmp:
        root = Path(tmp)
        _extract(zf, infos, root, limits)
        if tree_hash(root) == m["hash"]:
            return True  # a working_dir: paths relative to the directory
        top = list(root.iterdir())
        if len(top) == 1 and top[0].is_dir() and tree_hash(top[0]) == m["hash"]:
            return True  # a py_modules directory: zipped under its own name, hashed relative to it
    return False


#: A package is not dropped for quota room in its first hour: Ray's client checks that it exists
#: (GET) and then submits the job that names it.
EVICT_AFTER_S = 3600.0


def evictable(packages: list[tuple[str, str, int, float]], in_use: set[str], needed: int, now: float) -> list[tuple[str, str]]:
    """Which of a team's packages (``(uri, digest, size, created_at)``) to drop to free ``needed``
    bytes: those no unfinished job names and older than :data:`EVICT_AFTER_S`, oldest first.
    Empty when they cannot free enough (then nothing is dropped)."""
    out, freed = [], 0
    for uri, digest, size, created in sorted(packages, key=lambda p: (p[3], p[0])):
        if freed >= needed:
            break
        if uri in in_use or now - created < EVICT_AFTER_S:
            continue
        out.append((uri, digest))
        freed += size
    return out if freed >= needed else []


# ---------------------------------------------------------------------- the packages of a fleet


class Packages:
    """A fleet's uploaded packages: ownership rows and their bytes (by SHA-256) in the store, so
    every replica of the control service reads what any of them took (:mod:`.shared_bytes`).
    ``directory``: where a data directory from before store migration 9 kept the bytes as files
    (``<data_dir>/packages/<sha256>``), still read."""

    def __init__(self, store: Store, directory: Path, limits: PackageLimits | None = None):
        self.store = store
        self.directory = Path(directory)
        self.limits = limits or PackageLimits.from_env()
        self.blobs = PackageBlobs(store)

    def _legacy_blob(self, digest: str) -> Path:
        return self.directory / digest

    def bytes_of(self, digest: str) -> bytes | None:
        """The bytes of the package(s) with SHA-256 ``digest``, or None."""
        data = self.blobs.get(digest)
        if data is None and self._legacy_blob(digest).is_file():
            data = self._legacy_blob(digest).read_bytes()
        return data

    @staticmethod
    def _team(team: str | None) -> str:
        if not team:
            raise Forbidden("packages belong to a team: upload them with a team's token")
        return team

    def exists(self, team: str | None, uri: str) -> bool:
        """Whether ``team`` uploaded ``uri`` (another team's upload of that name does not count)."""
        parse_uri(uri)
        return bool(team) and self.store.package(uri, team or "") is not None

    def upload(self, team: str | None, uri: str, data: bytes) -> bool:
        """Keep ``data`` as ``team``'s package ``uri``. Write-once: the same bytes again are a no-op
        (returns False), other bytes are a Conflict. Returns True when stored."""
        owner = self._team(team)
        parse_uri(uri)
        name = uri.partition("://")[2]
        if len(data) > self.limits.max_bytes:
            raise PackageTooLarge(f"package {name} is {_mib(len(data))}; a package may be at most "
                                  f"{_mib(self.limits.max_bytes)} (RAYFLEET_PACKAGE_MAX_MIB)")
        digest = hashlib.sha256(data).hexdigest()
        mine = self.store.package(uri, owner)
        if mine is not None:
            if mine[0] == digest:
                return False
            raise Conflict(f"package {name} was already uploaded by team {owner!r} with other contents; packages are write-once", field="package_name")
        verified = check_content(uri, data, self.limits)
        # the bytes are stored with the ownership row, in its transaction: a refused upload leaves none
        outcome, used = self.store.add_package(uri, owner, digest, len(data), verified, quota_bytes=self.limits.quota_bytes, data=data)
        if outcome == "over_quota" and self._evict(owner, used + len(data) - self.limits.quota_bytes, self.store.clock()):
            outcome, used = self.store.add_package(uri, owner, digest, len(data), verified, quota_bytes=self.limits.quota_bytes, data=data)
        if outcome == "different":
            raise Conflict(f"package {name} was already uploaded by team {owner!r} with other contents; packages are write-once", field="package_name")
        if outcome == "over_quota":
            raise PackageTooLarge(f"package {name} ({_mib(len(data))}) would take team {owner!r} over its package quota: "
                                  f"{_mib(used)} of {_mib(self.limits.quota_bytes)} used (RAYFLEET_PACKAGE_QUOTA_MIB)")
        if outcome == "created" and not verified:
            log.info("package %s of team %s kept unverified (its name is not a hash of its files)", uri, owner)
        return outcome == "created"

    def _evict(self, team: str, needed: int, now: float) -> bool:
        """Make room for ``needed`` bytes in ``team``'s quota by dropping its packages no unfinished
        job of the team names, oldest first (see :func:`evictable`). Returns whether it made room."""
        unfinished = [s.value for s in JobState if not s.terminal]
        in_use = {uri for rec in self.store.list("TrainJob", team=team, states=unfinished)
                  for _, uri in package_uris(rec.doc.spec.runtime_env)}  # type: ignore[attr-defined]
        victims = evictable(self.store.team_packages(team), in_use, needed, now)
        for uri, digest in victims:
            self.store.delete_package(uri, team)   # (its bytes with it, unless another package has them)
            if not self.store.package_digest_used(digest):
                self._legacy_blob(digest).unlink(missing_ok=True)
            log.info("package %s of team %s dropped to make room in the team's package quota", uri, team)
        return bool(victims)

    def check_owned(self, team: str | None, runtime_env: dict[str, Any] | None, prefix: str) -> None:
        """Refuse a runtime_env naming a package ``team`` did not upload; fields are named
        ``<prefix>.working_dir`` / ``<prefix>.py_modules[i]``."""
        problems = []
        for field, uri in package_uris(runtime_env):
            where = f"{prefix}.{field}"
            try:
                parse_uri(uri, where)
            except SpecError as e:
                problems += e.problems
                continue
            if not team or self.store.package(uri, team) is None:
                problems.append(FieldProblem(field=where, problem=f"package {uri} was not uploaded by team {team!r}: "
                                             "upload it with that team's token (ray job submit --working-dir does)"))
        if problems:
            raise SpecError(problems)

    def for_launch(self, team: str | None, runtime_env: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The runtime_env a launch of ``team``'s job hands the cluster (its package URIs replaced
        by :func:`cluster_uri` of the team's own copies) and ``(cluster uri, digest)`` to upload."""
        mapping: dict[str, str] = {}
        uploads: list[tuple[str, str]] = []
        for field, uri in package_uris(runtime_env):
            row = self.store.package(uri, team) if team else None
            if row is None:
                row = self._adopt_legacy(team, uri)
            if row is None:
                raise SpecError(FieldProblem(field=f"spec.runtimeEnv.{field}", problem=f"package {uri} was not uploaded by team {team!r}"))
            mapping[uri] = cluster_uri(uri, row[0])
            uploads.append((mapping[uri], row[0]))
        return with_package_uris(runtime_env, mapping), uploads

    def hand_over(self, team: str | None, runtime_env: dict[str, Any], backend: Backend) -> dict[str, Any]:
        """Upload the team's own copy of every package the runtime_env names to the backend's
        cluster; returns the runtime_env naming those copies (see :meth:`for_launch`)."""
        env, uploads = self.for_launch(team, runtime_env)
        for target, digest in uploads:
            data = self.bytes_of(digest)
            if data is None:
                raise RayfleetError(f"the bytes of package {target} (sha256 {digest}) are not in the store")
            backend.upload_package(target, data)
        return env

    def _adopt_legacy(self, team: str | None, uri: str) -> tuple[str, int, bool] | None:
        """A job stored before packages had owners names an upload of that time: its team adopts
        it (new submissions are checked, so only such jobs reach a launch with an unowned URI)."""
        path = self.store.legacy_package_path(uri)
        if not team or path is None or not Path(path).is_file():
            return None
        data = Path(path).read_bytes()
        try:
            verified = check_content(uri, data, self.limits)
        except (SpecError, PackageTooLarge) as e:
            log.warning("upload %s from before packages had owners is not adopted: %s", uri, e.message)
            return None
        digest = hashlib.sha256(data).hexdigest()
        self.store.add_package(uri, team, digest, len(data), verified, quota_bytes=2**62, data=data)
        return self.store.package(uri, team)
