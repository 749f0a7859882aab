"""Uploaded runtime_env packages: owned per team, write-once, checked against Ray's hash, capped.

Packages are built and uploaded by Ray 2.60's own client code (``JobSubmissionClient``, the code
``ray job submit --working-dir`` runs), with its HTTP calls sent to rayfleet through TestClient.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import stat
import zipfile
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename
from ray._private.runtime_env.packaging import get_uri_for_directory, get_uri_for_package
from ray.job_submission import JobSubmissionClient

from rayfleet.backends.runtime_env import package_uris, with_package_uris
from rayfleet.server.packages import EVICT_AFTER_S, MIB, PackageLimits, cluster_uri, evictable, parse_uri
from rayfleet.server.store import Store


def ray_client(api, headers) -> JobSubmissionClient:
    """Ray's JobSubmissionClient, unchanged except that its requests go to the TestClient."""

    class Client(JobSubmissionClient):
        def _do_request(self, method, endpoint, *, data=None, json_data=None, **kwargs):
            return api.request(method, endpoint, content=data, json=json_data, headers=headers)

    return Client("http://testserver")


def project(root: Path, text: str = "print('hello')") -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "main.py").write_text(text)
    (root / "sub" / "util.py").write_text("X = 1\n")
    (root / "empty").mkdir()
    (root / ".gitignore").write_text("*.log\n")
    (root / "run.log").write_text("ignored")
    return root


def library(root: Path) -> Path:
    lib = root / "mylib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("VALUE = 42\n")
    return lib


def submit(client: JobSubmissionClient, queue: str, **runtime_env) -> str:
    return client.submit_job(entrypoint="python main.py", runtime_env=runtime_env, metadata={"queue": queue},
                             entrypoint_num_cpus=0.5)


def rows(fleet, team: str):
    return fleet.store._q("SELECT uri, digest, size, verified FROM packages WHERE team=? ORDER BY uri", (team,))


def name_of(uri: str) -> str:
    return uri.partition("://")[2]


def zip_bytes(entries: dict[str, bytes], **modes: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return buf.getvalue()


# ---------------------------------------------------------------- Ray's own client, end to end


def test_ray_client_uploads_are_verified_and_submit(api, fleet, team_a, team_b, tmp_path):
    wd, lib = project(tmp_path / "wd"), library(tmp_path / "libs")
    client = ray_client(api, team_a)
    sid = submit(client, "team-a", working_dir=str(wd), py_modules=[str(lib)])
    job = fleet.store.get("TrainJob", sid).doc
    env = job.spec.runtime_env
    wd_uri, lib_uri = env["working_dir"], env["py_modules"][0]
    # Ray named both packages by its directory hash (the excluded run.log left out).
    assert wd_uri == get_uri_for_directory(str(wd), include_gitignore=True, excludes=[".git", ".venv", "venv", "__pycache__"])
    assert lib_uri == get_uri_for_directory(str(lib), include_gitignore=True, excludes=[".git", ".venv", "venv", "__pycache__"])
    # Both hashes were recomputed from the uploaded files: the working_dir layout and the
    # py_modules layout (zipped under the directory's name).
    assert {(r[0], r[3]) for r in rows(fleet, "team-a")} == {(wd_uri, 1), (lib_uri, 1)}
    assert rows(fleet, "team-b") == []
    # Team a sees its packages; team b does not (and cannot tell whether they exist).
    assert api.get(f"/api/packages/gcs/{name_of(wd_uri)}", headers=team_a).status_code == 200
    assert api.get(f"/api/packages/gcs/{name_of(wd_uri)}", headers=team_b).status_code == 404
    assert api.get("/api/packages/gcs/_ray_pkg_0123456789abcdef.zip", headers=team_b).status_code == 404


def test_same_directory_from_two_teams_gives_each_its_own_copy(api, fleet, team_a, team_b, tmp_path):
    wd = project(tmp_path / "wd")
    sid_a = submit(ray_client(api, team_a), "team-a", working_dir=str(wd))
    sid_b = submit(ray_client(api, team_b), "team-b", working_dir=str(wd))  # GET 404 -> uploads -> owns it
    uri = fleet.store.get("TrainJob", sid_a).doc.spec.runtime_env["working_dir"]
    assert fleet.store.get("TrainJob", sid_b).doc.spec.runtime_env["working_dir"] == uri
    (a,), (b,) = rows(fleet, "team-a"), rows(fleet, "team-b")
    assert a[0] == b[0] == uri and a[3] == b[3] == 1
    assert fleet.packages.bytes_of(a[1])[:2] == b"PK"


def test_archive_uploaded_as_is_is_checked_by_its_sha1(api, fleet, team_a, tmp_path):
    archive = tmp_path / "code.zip"
    archive.write_bytes(zip_bytes({"main.py": b"print('zip')"}))
    sid = submit(ray_client(api, team_a), "team-a", working_dir=str(archive))
    uri = fleet.store.get("TrainJob", sid).doc.spec.runtime_env["working_dir"]
    assert uri == get_uri_for_package(archive) and len(name_of(uri)) == len("_ray_pkg_.zip") + 40
    assert rows(fleet, "team-a")[0][3] == 1
    # Other bytes under a name that is the SHA-1 of different bytes: refused, named.
    tampered = zip_bytes({"main.py": b"import os; os.system('evil')"})
    other = api.put("/api/packages/gcs/_ray_pkg_" + "ab" * 20 + ".zip", content=tampered, headers=team_a)
    assert other.status_code == 400 and "_ray_pkg_" + "ab" * 20 + ".zip does not match its name" in other.text


# ---------------------------------------------------------------- tampering, write-once, isolation


def test_tampered_zip_under_a_taken_name(api, fleet, team_a, team_b, tmp_path):
    wd = project(tmp_path / "wd")
    sid = submit(ray_client(api, team_a), "team-a", working_dir=str(wd))
    uri = fleet.store.get("TrainJob", sid).doc.spec.runtime_env["working_dir"]
    name = name_of(uri)
    good = fleet.packages.bytes_of(rows(fleet, "team-a")[0][1])
    evil = zip_bytes({"main.py": b"import os; os.system('steal')", "sub/util.py": b"X = 1\n"})
    # The owner: write-once, the same bytes again are a no-op.
    assert api.put(f"/api/packages/gcs/{name}", content=good, headers=team_a).status_code == 200
    again = api.put(f"/api/packages/gcs/{name}", content=evil, headers=team_a)
    assert again.status_code == 409 and name in again.text and "write-once" in again.text
    # Another team: its upload goes to its own name space, unverified (the files do not hash to
    # the name) -- team a's package is untouched and team a's launch gets team a's bytes.
    assert api.put(f"/api/packages/gcs/{name}", content=evil, headers=team_b).status_code == 200
    (a,), (b,) = rows(fleet, "team-a"), rows(fleet, "team-b")
    assert a[3] == 1 and b[3] == 0 and a[1] == hashlib.sha256(good).hexdigest() != b[1]
    env_a, uploads_a = fleet.packages.for_launch("team-a", {"working_dir": uri, "env_vars": {"K": "v"}})
    env_b, uploads_b = fleet.packages.for_launch("team-b", {"working_dir": uri})
    assert env_a == {"working_dir": cluster_uri(uri, a[1]), "env_vars": {"K": "v"}}
    assert env_b["working_dir"] == cluster_uri(uri, b[1]) != env_a["working_dir"]
    assert fleet.packages.bytes_of(uploads_a[0][1]) == good and fleet.packages.bytes_of(uploads_b[0][1]) == evil
    with pytest.raises(Exception, match="was not uploaded by team 'team-c'"):
        fleet.packages.for_launch("team-c", {"working_dir": uri})


def test_submission_naming_another_teams_package_is_refused_on_both_apis(api, fleet, team_a, team_b, tmp_path):
    wd, lib = project(tmp_path / "wd"), library(tmp_path / "libs")
    sid = submit(ray_client(api, team_a), "team-a", working_dir=str(wd), py_modules=[str(lib)])
    env = fleet.store.get("TrainJob", sid).doc.spec.runtime_env
    ray_body = {"entrypoint": "python main.py", "metadata": {"queue": "team-b"},
                "runtime_env": {"working_dir": env["working_dir"], "py_modules": ["s3://bucket/x.zip", env["py_modules"][0]]}}
    r = api.post("/api/jobs/", json=ray_body, headers=team_b)
    assert r.status_code == 422
    assert "runtime_env.working_dir: package " + env["working_dir"] in r.text
    assert "runtime_env.py_modules[1]: package " + env["py_modules"][0] in r.text
    rest = api.post("/api/v1/jobs", headers=team_b, json={
        "metadata": {"name": "steal"},
        "spec": {"queue": "team-b", "entrypoint": "python main.py", "runtimeEnv": {"working_dir": env["working_dir"]}}})
    assert rest.status_code == 422 and "spec.runtimeEnv.working_dir" in rest.text
    assert fleet.store.find("TrainJob", "steal") is None
    # A malformed package URI in a runtime_env is named too.
    bad = api.post("/api/jobs/", json={**ray_body, "runtime_env": {"working_dir": "gcs://../../etc.zip"}}, headers=team_b)
    assert bad.status_code == 422 and "runtime_env.working_dir: invalid package name" in bad.text


# ---------------------------------------------------------------- names and archives


@pytest.mark.parametrize("name", [
    "_ray_pkg_0123456789abcdef%00.zip",          # NUL
    "_ray_pkg_" + "a" * 300 + ".zip",             # longer than a file name may be
    "x" * 5000,
    "_ray_pkg_0123456789ABCDEF.zip",              # not Ray's lower-case hex
    "_ray_pkg_0123456789abcdef.tar.gz",           # a directory package is a zip
    ".hidden.zip",
    "evil;rm -rf.zip",
    "_ray_pkg_%2e%2e.zip",
])
def test_bad_package_names_are_400_naming_the_field(api, team_a, name):
    for r in (api.get(f"/api/packages/gcs/{name}", headers=team_a),
              api.put(f"/api/packages/gcs/{name}", content=b"PK", headers=team_a)):
        assert r.status_code == 400, (name, r.status_code, r.text)
        assert r.text.startswith("package_name:")


def test_slash_and_protocol(api, team_a):
    for name in ("a%2Fb.zip", "..", "%2e%2e"):
        assert api.put(f"/api/packages/gcs/{name}", content=b"x", headers=team_a).status_code in (400, 404)
    r = api.put("/api/packages/s3/_ray_pkg_0123456789abcdef.zip", content=b"x", headers=team_a)
    assert r.status_code == 400 and r.text.startswith("protocol:")


def test_admin_token_has_no_package_name_space(api, admin):
    r = api.put("/api/packages/gcs/_ray_pkg_0123456789abcdef.zip", content=zip_bytes({"a": b"1"}), headers=admin)
    # Forbidden is answered 400 on the Ray Jobs API: Ray's CLI reads a 403 as a bad token
    assert r.status_code == 400 and "team's token" in r.text


def test_unsafe_archives_are_refused(api, fleet, team_a):
    fleet.packages.limits = PackageLimits(max_unpacked_bytes=MIB, max_entries=50)
    name = "/api/packages/gcs/_ray_pkg_0123456789abcdef.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("a.py", b"1")
        zf.writestr("a.py", b"2")
    dup = buf.getvalue()
    cases = {
        "../escape": (zip_bytes({"../evil.py": b"x"}), 400, "unsafe path"),
        "absolute": (zip_bytes({"/etc/cron.d/x": b"x"}), 400, "unsafe path"),
        "symlink": (zip_bytes({"link": b"/etc/passwd"}, link=stat.S_IFLNK | 0o777), 400, "links are not allowed"),
        "duplicate": (dup, 400, "twice"),
        "not a zip": (b"not a zip at all", 400, "not a valid zip"),
        "entries": (zip_bytes({f"f{i}": b"" for i in range(51)}), 413, "RAYFLEET_PACKAGE_MAX_ENTRIES"),
        "bomb": (zip_bytes({"zeros": bytes(2 * MIB)}), 413, "RAYFLEET_PACKAGE_MAX_UNPACKED_MIB"),
    }
    for label, (data, status, text) in cases.items():
        r = api.put(name, content=data, headers=team_a)
        assert r.status_code == status and text in r.text, (label, r.status_code, r.text)
    assert len(cases["bomb"][0]) < 20_000  # compressed, it is tiny
    assert rows(fleet, "team-a") == []


def test_zip_whose_header_lies_about_its_size_is_refused(api, team_a):
    data = bytearray(zip_bytes({"zeros": bytes(3 * MIB)}))
    # Patch the declared uncompressed size (central directory) down to 10 bytes: the reader stops
    # at the declared size, so the entry fails its CRC instead of unpacking 3 MiB.
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (10).to_bytes(4, "little")
    r = api.put("/api/packages/gcs/_ray_pkg_0123456789abcdef.zip", content=bytes(data), headers=team_a)
    assert r.status_code == 400 and "cannot be read" in r.text


def test_directory_with_only_excluded_files_is_kept_unverified(api, fleet, team_a, tmp_path):
    # Ray hashes a directory whose files are all excluded but zips no entry for it: the hash
    # cannot be recomputed from the zip, so the package is kept in the team's name space only.
    wd = project(tmp_path / "wd")
    (wd / "logs").mkdir()
    (wd / "logs" / "train.log").write_text("ignored")
    submit(ray_client(api, team_a), "team-a", working_dir=str(wd))
    (row,) = rows(fleet, "team-a")
    assert row[3] == 0


# ---------------------------------------------------------------- size cap and quota


def test_size_cap_and_team_quota(api, fleet, team_a, team_b):
    assert PackageLimits().max_bytes == 100 * MIB and PackageLimits().quota_bytes == 1024 * MIB
    fleet.packages.limits = PackageLimits(max_bytes=MIB, quota_bytes=int(1.5 * MIB))

    def wheel(n: int, size: int) -> tuple[str, bytes]:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("blob.bin", hashlib.sha256(str(n).encode()).digest() * (size // 32))
        return f"/api/packages/gcs/pkg{n}-1.0-py3-none-any.whl", buf.getvalue()

    url, big = wheel(0, 2 * MIB)
    r = api.put(url, content=big, headers=team_a)
    assert r.status_code == 413 and "at most 1 MiB" in r.text and "RAYFLEET_PACKAGE_MAX_MIB" in r.text
    url1, first = wheel(1, 900 * 1024)
    url2, second = wheel(2, 900 * 1024)
    assert api.put(url1, content=first, headers=team_a).status_code == 200
    r = api.put(url2, content=second, headers=team_a)
    assert r.status_code == 413 and "package quota" in r.text and "of 1.5 MiB used" in r.text and "RAYFLEET_PACKAGE_QUOTA_MIB" in r.text
    # A refused upload leaves no bytes behind (the store holds only what quotas count).
    assert [r[0] for r in fleet.store._q("SELECT digest FROM package_blobs")] == [hashlib.sha256(first).hexdigest()]
    assert api.put(url2, content=second, headers=team_b).status_code == 200  # team b's quota is its own
    assert [r[0] for r in rows(fleet, "team-a")] == ["gcs://pkg1-1.0-py3-none-any.whl"]


def test_limits_from_the_environment():
    limits = PackageLimits.from_env({"RAYFLEET_PACKAGE_MAX_MIB": "5", "RAYFLEET_PACKAGE_QUOTA_MIB": "50"})
    assert limits.max_bytes == 5 * MIB and limits.quota_bytes == 50 * MIB and limits.max_entries == 20_000
    with pytest.raises(ValueError, match="RAYFLEET_PACKAGE_QUOTA_MIB"):
        PackageLimits.from_env({"RAYFLEET_PACKAGE_QUOTA_MIB": "lots"})


# ---------------------------------------------------------------- names on the cluster


def test_cluster_names_derive_from_the_bytes():
    digest = hashlib.sha256(b"x").hexdigest()
    assert cluster_uri("gcs://_ray_pkg_0123456789abcdef.zip", digest) == f"gcs://rayfleet_pkg_{digest}.zip"
    assert cluster_uri("gcs://_ray_pkg_" + "a" * 40 + ".tar.gz", digest).endswith(".tar.gz")
    wheel = cluster_uri("gcs://my_lib-1.2.0-7-py3-none-any.whl", digest)
    name, version, build, tags = parse_wheel_filename(name_of(wheel))
    assert (str(name), str(version), build[0]) == ("my-lib", "1.2.0", 0) and build[1] == "rf" + digest[:32]
    assert {str(t) for t in tags} == {"py3-none-any"}
    assert parse_uri(wheel) == "wheel"


def test_runtime_env_walk():
    env = {"working_dir": "gcs://a.zip", "py_modules": ["s3://b/c.zip", "gcs://d.whl", 3], "pip": ["x"]}
    assert package_uris(env) == [("working_dir", "gcs://a.zip"), ("py_modules[1]", "gcs://d.whl")]
    assert package_uris({"working_dir": "/local/dir"}) == [] and package_uris(None) == []
    out = with_package_uris(env, {"gcs://a.zip": "gcs://A.zip", "gcs://d.whl": "gcs://D.whl"})
    assert out == {**env, "working_dir": "gcs://A.zip", "py_modules": ["s3://b/c.zip", "gcs://D.whl", 3]}
    assert env["working_dir"] == "gcs://a.zip"  # a copy


# ---------------------------------------------------------------- the schema change


def test_uploads_from_before_owners_are_adopted_only_by_a_stored_job_at_launch(tmp_path):
    db = tmp_path / "rayfleet.db"
    blob = tmp_path / "packages" / "_ray_pkg_0123456789abcdef.zip"
    blob.parent.mkdir()
    data = zip_bytes({"main.py": b"print(1)"})
    blob.write_bytes(data)
    old = sqlite3.connect(db)
    from rayfleet.server.store import MIGRATIONS

    old.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);"
        + MIGRATIONS[0] +  # schema 1 whole: objects, events, tokens and the owner-less packages table
        f"INSERT INTO packages VALUES ('gcs://_ray_pkg_0123456789abcdef.zip', {json.dumps(str(blob))}, {len(data)}, 0);")
    old.close()
    store = Store(db)
    try:
        assert store.schema_version >= 2
        from rayfleet.server.packages import Packages

        pk = Packages(store, tmp_path / "packages")
        uri = "gcs://_ray_pkg_0123456789abcdef.zip"
        assert not pk.exists("team-a", uri)  # nobody owns it: a new upload is needed to submit
        env, uploads = pk.for_launch("team-a", {"working_dir": uri})
        assert pk.bytes_of(uploads[0][1]) == data and env["working_dir"] == cluster_uri(uri, hashlib.sha256(data).hexdigest())
        assert pk.exists("team-a", uri) and not pk.exists("team-b", uri)
    finally:
        store.close()


# ---------------------------------------------------------------- quota room


def test_evictable_is_oldest_unused_first_and_all_or_nothing():
    pkgs = [("gcs://c", "dc", 30, 300.0), ("gcs://a", "da", 10, 100.0), ("gcs://b", "db", 20, 200.0), ("gcs://new", "dn", 50, 9000.0)]
    now = 5000.0
    assert evictable(pkgs, set(), 15, now) == [("gcs://a", "da"), ("gcs://b", "db")]
    assert evictable(pkgs, {"gcs://a"}, 15, now) == [("gcs://b", "db")]
    assert evictable(pkgs, set(), 61, now) == []            # the recent one is kept: not enough room
    assert evictable(pkgs, set(), 61, 9000.0 + EVICT_AFTER_S) == [("gcs://a", "da"), ("gcs://b", "db"), ("gcs://c", "dc"), ("gcs://new", "dn")]


def test_full_quota_drops_old_packages_no_unfinished_job_names(api, fleet, team_a, tmp_path):
    wd = project(tmp_path / "wd")
    sid = submit(ray_client(api, team_a), "team-a", working_dir=str(wd))  # QUEUED: its package is in use
    used_uri = fleet.store.get("TrainJob", sid).doc.spec.runtime_env["working_dir"]
    idle = zip_bytes({"main.py": b"print('old')"})
    idle_uri = "gcs://_ray_pkg_" + hashlib.sha1(idle).hexdigest() + ".zip"
    assert api.put(f"/api/packages/gcs/{name_of(idle_uri)}", content=idle, headers=team_a).status_code == 200
    fleet.store._db.execute("UPDATE packages SET created_at = created_at - ?", (2 * EVICT_AFTER_S,))
    held = sum(r[2] for r in rows(fleet, "team-a"))
    fleet.packages.limits = PackageLimits(quota_bytes=held + 100)
    new = zip_bytes({"main.py": b"print('new')" * 20})
    new_uri = "gcs://_ray_pkg_" + hashlib.sha1(new).hexdigest() + ".zip"
    assert api.put(f"/api/packages/gcs/{name_of(new_uri)}", content=new, headers=team_a).status_code == 200
    assert {r[0] for r in rows(fleet, "team-a")} == {used_uri, new_uri}  # the idle one made room
    assert fleet.packages.bytes_of(hashlib.sha256(idle).hexdigest()) is None   # its bytes went with it
    # What is left is in use or new: a package that needs more room is refused.
    more = zip_bytes({"x.bin": hashlib.sha256(b"m").digest() * 64})
    r = api.put("/api/packages/gcs/_ray_pkg_" + hashlib.sha1(more).hexdigest() + ".zip", content=more, headers=team_a)
    assert r.status_code == 413 and "package quota" in r.text
    assert used_uri in {r[0] for r in rows(fleet, "team-a")}


def _wheel(path: Path) -> Path:
    """A minimal pure-Python wheel, my_lib 1.2.0, built by hand (PEP 427 layout)."""
    import base64

    files = {"my_lib/__init__.py": b"VALUE = 42\n",
             "my_lib-1.2.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: my-lib\nVersion: 1.2.0\n",
             "my_lib-1.2.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}

    def line(name: str, data: bytes) -> str:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return f"{name},sha256={digest},{len(data)}"

    wheel = path / "my_lib-1.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("my_lib-1.2.0.dist-info/RECORD", "\n".join(line(n, d) for n, d in files.items()) + "\nmy_lib-1.2.0.dist-info/RECORD,,\n")
    return wheel


@pytest.mark.slow  # runs pip as a process
def test_wheel_is_kept_per_team_and_pip_installs_its_cluster_name(api, fleet, team_a, tmp_path):
    import subprocess
    import sys

    wheel = _wheel(tmp_path)
    sid = submit(ray_client(api, team_a), "team-a", py_modules=[str(wheel)])
    uri = fleet.store.get("TrainJob", sid).doc.spec.runtime_env["py_modules"][0]
    assert uri == "gcs://my_lib-1.2.0-py3-none-any.whl" and rows(fleet, "team-a")[0][3] == 0  # a wheel cannot be checked
    env, [(target, blob)] = fleet.packages.for_launch("team-a", {"py_modules": [uri]})
    assert env == {"py_modules": [target]} and target != uri
    # The renamed wheel is what Ray's py_modules plugin pip-installs on the cluster.
    staged = tmp_path / "staged" / name_of(target)
    staged.parent.mkdir()
    staged.write_bytes(fleet.packages.bytes_of(blob))
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(tmp_path / "site"), str(staged)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "my_lib" / "__init__.py").read_text() == "VALUE = 42\n"


def test_corrupted_archives_are_4xx_never_5xx(api, team_a):
    import tarfile

    good = zip_bytes({"main.py": b"print('x')" * 200, "sub/a.py": b"A = 1\n" * 100})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("main.py")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"x=1\n"))
    tgz = buf.getvalue()
    variants = [good[: len(good) // 2], good[:-10]]
    for pos in range(30, len(good) - 30, max(1, len(good) // 40)):
        broken = bytearray(good)
        broken[pos] ^= 0xFF
        variants.append(bytes(broken))
    for data in variants:
        for name in ("_ray_pkg_0123456789abcdef.zip", "_ray_pkg_" + hashlib.sha1(data).hexdigest() + ".zip",
                     "broken-1.0-py3-none-any.whl"):
            r = api.put(f"/api/packages/gcs/{name}", content=data, headers=team_a)
            assert r.status_code < 500, (name, r.status_code, r.text)
    for data in (tgz[: len(tgz) // 2], tgz[:-4], tgz[:20] + bytes(len(tgz) - 20)):
        r = api.put("/api/packages/gcs/_ray_pkg_" + hashlib.sha1(data).hexdigest() + ".tar.gz", content=data, headers=team_a)
        assert r.status_code < 500, r.text
    garbage = b"\x1f\x8b" + bytes(200)
    r = api.put("/api/packages/gcs/_ray_pkg_" + hashlib.sha1(garbage).hexdigest() + ".tar.gz", content=garbage, headers=team_a)
    assert r.status_code == 400 and "not a valid tar archive" in r.text, r.text
    ok = api.put("/api/packages/gcs/_ray_pkg_" + hashlib.sha1(tgz).hexdigest() + ".tar.gz", content=tgz, headers=team_a)
    assert ok.status_code == 200
