"""Shared fixtures (the real machine files beside the repo, a data directory, a Dagster instance) and the
Hypothesis profile of CI."""

from __future__ import annotations

import os
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import settings

from leaf_dagster.instance import PG_URL_SCHEME
from leaf_dagster.records import RECORDS_URL_ENV
from leaf_dagster.storage import DATA_DIR_ENV, Storage

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "samples"  # the sample uploads kept in the repository
REAL = Path(os.environ.get("LEAF_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
# The second corpus (AGPL sets among them: read in place as test fixtures, never copied into the repo).
REAL2 = Path(os.environ.get("LEAF_REAL2_DATA", REAL.parent / "real2"))
# In CI every property test runs the same examples each time (explicit @example cases first): a CI run cannot
# fail on a case it never saw before, and a failure prints the blob that replays it. Local runs keep exploring
# new cases and keep those that failed in .hypothesis/. (Recent Hypothesis loads a like profile by itself when
# it sees CI; this one holds for every version the project allows.)
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
# Tests use the local catalog and the SQLite record store unless they name a DuckLake or a PostgreSQL record store
# themselves: a LEAF_CATALOG or LEAF_RECORDS_URL of the shell that runs them would otherwise send every test's
# catalog or records to that database.
for _variable in ("LEAF_CATALOG", "LEAF_CATALOG_DATA_PATH", "LEAF_RECORDS_URL"):
    os.environ.pop(_variable, None)

# Real files several test modules use (paths relative to REAL).
MONTANA = "ofpe-msu-montana-jd-case/data-raw"
JD_WHEAT = "FarmerB Farms Inc.-FarmerB Family LLC-sec 1 west-Wheat (Hrd Rd Wtr)-1"
JD_WHEAT_ZIP = f"{JD_WHEAT}.zip"
JD_OATS = "FarmerC Hill Farms-FarmerC Hill Farms-Millview-Oats"


def require(missing: str | None) -> None:
    """What a test needs (real files, a service) is there, or the test stops: failing loudly in CI, which must have
    it, and skipped elsewhere. `missing` says what is not there and why (None: everything is)."""
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)


def _corpus(folder: Path, variable: str) -> Path:
    """A folder of real machine files."""
    require(None if folder.is_dir() else f"real machine files not found at {folder} (set {variable})")
    return folder


@pytest.fixture(scope="session")
def real() -> Path:
    return _corpus(REAL, "LEAF_REAL_DATA")


@pytest.fixture(scope="session")
def real2() -> Path:
    return _corpus(REAL2, "LEAF_REAL2_DATA")


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(data))
    return Storage(data)


def records_url_of(scratch_url: str) -> str:
    """The libpq URL (LEAF_RECORDS_URL's form) of a scratch database, whose URL names SQLAlchemy's driver."""
    return "postgresql" + scratch_url.removeprefix(PG_URL_SCHEME)


RECORD_STORES = ["sqlite", "postgresql"]


@contextmanager
def records_in(store: str) -> Iterator[str | None]:
    """For the block, the records in SQLite (yields None) or in a PostgreSQL database of their own, named by
    LEAF_RECORDS_URL and dropped after it (yields that URL). SQLite is the single machine's default, so the
    block runs without LEAF_RECORDS_URL even inside a PostgreSQL block (a module fixture's, say)."""
    if store == "sqlite":
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv(RECORDS_URL_ENV, raising=False)
            yield None
        return
    from benchmarks import postgres

    require(postgres.reachable())
    with postgres.scratch_database("leaf_records") as url, pytest.MonkeyPatch.context() as patch:
        patch.setenv(RECORDS_URL_ENV, records_url_of(url))
        yield records_url_of(url)


@pytest.fixture(params=RECORD_STORES)
def records_store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Run a test once with the records in SQLite and once in PostgreSQL (`records_in`)."""
    with records_in(request.param) as url:
        yield url


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free port of this machine, for the module's tests."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        require("moto's server is not installed (pip install -e '.[dev]')")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket; returns its name. Endpoint, keys and region come from the environment, as on a real host."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    name = f"leaf-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def bucket_objects(bucket: str) -> dict[str, bytes]:
    """Every object of the bucket, by its full key."""
    import boto3

    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def make_zip(target: Path, members: dict[str, Path | bytes | str]) -> Path:
    """A zip whose entries are named by the keys; values are files to copy or content to write."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, value in members.items():
            if isinstance(value, Path):
                zf.write(value, name)
            else:
                zf.writestr(name, value)
    return target


def samples_zip(target: Path, samples: Iterable[str], in_folders: bool = False) -> Path:
    """One upload holding the files of several sample uploads (macOS resource forks left out), each sample's in a
    folder named after it when `in_folders`."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for sample in samples:
            with zipfile.ZipFile(SAMPLES / sample) as source:
                for member in source.namelist():
                    if not member.startswith("__MACOSX/"):
                        out.writestr(f"{Path(sample).stem}/{member}" if in_folders else member, source.read(member))
    return target
