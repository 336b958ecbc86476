"""The command line as a user meets it: quiet runs, one line per failure, exact ids, one flag style, exit codes
and pipes. Output, pipe and exit-code tests run the installed `leaf-dagster` in a subprocess on a shipped sample;
the rest call `main` in this process (the descriptor-level quieting works the same under pytest's capfd)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from leaf_dagster import cli, config
from leaf_dagster.cli import main, parser
from leaf_dagster.storage import DATA_DIR_ENV, Storage

from .conftest import REPO

SMS = REPO / "data" / "samples" / "sms-yield-csv-victoria.zip"  # an SMS CSV that names no crop
SMS_FILE = "area2_yield_ISO-8859-1"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# what Dagster writes to stderr when it is let through (its log lines, tracebacks, warnings, the banner)
NOISE = ("Traceback", " - ERROR - ", "STEP_FAILURE", "Stack Trace", "Warning", "Telemetry", "dagster.yaml",
         "BrokenPipeError")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("leaf-dagster")
    return [str(script)] if script.exists() else [sys.executable, "-m", "leaf_dagster.cli"]


def _env(data: Path, dagster_home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {DATA_DIR_ENV: str(data)}
    return env | ({"DAGSTER_HOME": str(dagster_home)} if dagster_home else {})


def _cli(data: Path, *args: str, dagster_home: Path | None = None, **options) -> subprocess.CompletedProcess:
    options.setdefault("capture_output", True)
    return subprocess.run([*_command(), *args], text=True, env=_env(data, dagster_home), timeout=600, cwd=REPO,
                          **options)


def _sms_rows() -> int:
    """Data rows of the sample's CSV, counted with the csv module (every row has a position and a yield)."""
    with zipfile.ZipFile(SMS) as zf:
        text = zf.read(f"{SMS_FILE}.csv").decode("latin-1")
    header, *rows = csv.reader(io.StringIO(text))
    lon, lat = header.index("Longitude"), header.index("Latitude")
    return sum(1 for row in rows if row and float(row[lon]) != 0 and float(row[lat]) != 0)


@dataclass
class Processed:
    data: Path
    home: Path
    done: subprocess.CompletedProcess
    verbose: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Processed:
    """The SMS sample processed by the real CLI with a fresh DAGSTER_HOME (no dagster.yaml: Dagster's first
    use), then once more with --verbose into another data directory."""
    root = tmp_path_factory.mktemp("cli")
    home = root / "dagster_home"
    home.mkdir()
    args = ("process", str(SMS), "--leaf-user-id", "grower-1", "--provider", "AgLeader")
    done = _cli(root / "data", *args, dagster_home=home)
    verbose = _cli(root / "verbose", *args, "--verbose")
    return Processed(root / "data", home, done, verbose)


def test_expected_failure_is_one_table_line_without_dagster_output(processed: Processed) -> None:
    done = processed.done
    (record,) = Storage(processed.data).records.many("files")
    assert done.returncode == 1
    # stderr holds the progress lines and nothing else: no log lines, tracebacks, warnings or telemetry banner
    assert done.stderr.splitlines() == [f"batch {record['batchId']}: extracting {SMS.name}", f"[1/1] CSV {SMS_FILE}"]
    assert not any(noise in done.stderr for noise in NOISE)
    assert not (processed.home / ".telemetry").exists()
    batch_line, header, _rule, *rows = done.stdout.splitlines()
    assert batch_line.startswith(f"batch {record['batchId']}  {SMS.name}  FAILED")
    assert header.split() == ["id", "format", "operation", "points", "status", "file", "failure"]
    (row,) = rows
    assert row.split() == [record["id"], "CSV", "harvested", "failed", SMS_FILE, "standardGeojson:", "no", "points",
                           "passed", "the", "filter"]
    assert record["steps"]["standardGeojson"]["message"] == "no points passed the filter"


def test_verbose_lets_dagster_speak(processed: Processed) -> None:
    """The quiet output above is the CLI's doing: with --verbose the same run shows Dagster's log and traceback."""
    verbose = processed.verbose
    assert verbose.returncode == 1 and "batchFiles" in verbose.stderr
    assert f"{SMS_FILE} " in verbose.stderr and "standardGeojson failed: no points passed the filter" in verbose.stderr
    assert "no points passed the filter" in verbose.stdout


def test_listed_ids_are_full_and_taken_back(processed: Processed) -> None:
    listing = _cli(processed.data, "files", "list")
    (record,) = Storage(processed.data).records.many("files")
    assert listing.returncode == 0 and UUID.fullmatch(listing.stdout.splitlines()[2].split()[0])
    for given in (record["id"], record["id"][:8], record["id"][:13]):
        shown = _cli(processed.data, "files", "show", given, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["id"] == record["id"]
    status = json.loads(_cli(processed.data, "files", "status", record["id"][:8], "--json").stdout)
    assert status == {step: {"status": s["status"], "message": s["message"]} for step, s in record["steps"].items()}
    batch = json.loads(_cli(processed.data, "batch", "show", record["batchId"][:8], "--json").stdout)
    assert batch["leafFiles"] == [record["id"]]


def test_pipes_to_head(processed: Processed, tmp_path: Path) -> None:
    """`| head -1` as a shell runs it, then a reader that is gone before the first byte (the write must fail)."""
    file_id = Storage(processed.data).records.many("files")[0]["id"]
    for args in (["files", "list"], ["batch", "list"], ["files", "status", file_id, "--json"]):
        piped = subprocess.run(["bash", "-o", "pipefail", "-c", " ".join([*_command(), *args, "| head -1"])],
                               capture_output=True, text=True, env=_env(processed.data), timeout=300, cwd=REPO)
        assert piped.returncode == 0 and piped.stderr == "" and len(piped.stdout.splitlines()) == 1
    upload = ("process", str(SMS), "--leaf-user-id", "grower-2", "--provider", "AgLeader")
    for data, args, code in ((processed.data, ("files", "list"), 0), (tmp_path, upload, 1)):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            closed = _cli(data, *args, stdout=write_end, stderr=subprocess.PIPE, capture_output=False)
        finally:
            os.close(write_end)
        assert closed.returncode == code  # the command's own outcome, not the pipe's
        assert not any(noise in closed.stderr for noise in NOISE), closed.stderr


def test_usage_errors_exit_2_and_unexpected_errors_are_one_line(tmp_path: Path) -> None:
    missing = _cli(tmp_path, "process", str(SMS), "--leaf-user-id", "g")
    assert missing.returncode == 2 and "--provider" in missing.stderr
    assert _cli(tmp_path, "files", "frobnicate").returncode == 2
    unknown = _cli(tmp_path, "process", str(SMS), "--leaf-user-id", "g", "--provider", "Deere")
    assert unknown.returncode == 2 and "provider must be one of Other, Leaf," in unknown.stderr
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    args = ("process", str(SMS), "--leaf-user-id", "g", "--provider", "AgLeader")
    broken = _cli(not_a_dir, *args)
    assert broken.returncode == 1 and broken.stdout == ""
    assert broken.stderr.splitlines()[-1].startswith("error: FileExistsError: [Errno 17] File exists")
    assert broken.stderr.rstrip().endswith("(--verbose shows the traceback)")
    assert len(broken.stderr.splitlines()) == 1  # it fails registering the upload, before any progress line
    told = _cli(not_a_dir, *args, "--verbose")
    assert told.returncode == 1 and "Traceback (most recent call last)" in told.stderr
    assert broken.stderr.splitlines()[-1] == told.stderr.splitlines()[-1] + " (--verbose shows the traceback)"


def _run(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return tmp_path / "data"


def test_reprocess_applies_a_changed_configuration(data_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capfd, "process", str(SMS), "--leaf-user-id", "grower-3", "--provider", "AgLeader")
    storage = Storage(data_dir)
    (record,) = storage.records.many("files")
    assert code == 1 and err.splitlines()[-1] == f"[1/1] CSV {SMS_FILE}" and len(err.splitlines()) == 2
    # a retry and a reprocess with the same configuration fail the same way, each in a new throwaway instance
    code, out, _ = _run(capfd, "batch", "retry", record["batchId"][:8])
    assert code == 1 and "standardGeojson: no points passed the filter" in out
    # the file names no crop, so Leaf's cleanup (crop NE unknown) removes every point; without cleanup all stay
    config.save(storage, {"cleanupStandardGeojson": False})
    code, out, err = _run(capfd, "files", "reprocess", record["id"][:8])
    assert code == 0, err
    assert err == f"[1/1] CSV {SMS_FILE}\n"
    (row,) = out.splitlines()[2:]
    assert row.split() == [record["id"], "CSV", "harvested", str(_sms_rows()), "processed", SMS_FILE]
    assert storage.records.get("files", record["id"])["pointCount"] == _sms_rows() == 1543
    assert storage.records.get("batches", record["batchId"])["status"] == "PROCESSED"
    code, out, _ = _run(capfd, "files", "summary", record["id"][:8], "--json")
    assert code == 0 and json.loads(out)["properties"]["totalDistance"]["value"] > 0


def test_reprocess_refuses_unknown_and_ambiguous_ids(data_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    storage = Storage(data_dir)
    for file_id in ("0123abcd-0000-4000-8000-000000000001", "0123abcd-0000-4000-8000-000000000002"):
        storage.records.put_facts("files", file_id, {"id": file_id})
    code, _, err = _run(capfd, "files", "reprocess", "0123abcd")
    assert code == 2 and err == ("error: file id prefix 0123abcd is ambiguous: it starts 2 ids "
                                 "(0123abcd-0000-4000-8000-000000000001, 0123abcd-0000-4000-8000-000000000002)\n")
    code, _, err = _run(capfd, "files", "show", "0123abc")
    assert code == 1 and err == "error: file 0123abc not found (give the full id or at least 8 characters of it)\n"
    code, _, err = _run(capfd, "batch", "status", "fedcba98")
    assert code == 1 and err == "error: batch fedcba98 not found\n"
    code, out, _ = _run(capfd, "files", "show", "0123abcd-0000-4000-8000-000000000002", "--json")
    assert code == 0 and json.loads(out)["id"] == "0123abcd-0000-4000-8000-000000000002"


def test_an_interrupt_is_one_line(data_dir: Path, capfd: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the middle of a command: one line and the shell's code for SIGINT, no traceback."""
    def interrupted(args: argparse.Namespace, storage: Storage) -> int:
        print("Traceback-like noise from a run", file=sys.stderr)  # what the run had written: quieted
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_batch_list", interrupted)
    assert _run(capfd, "batch", "list") == (130, "", "interrupted: run the command again to finish its work\n")
    code, _, err = _run(capfd, "batch", "list", "--verbose")
    assert code == 130 and "Traceback (most recent call last)" in err and "KeyboardInterrupt" in err


def _commands(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser under `p`, itself included."""
    found = [p]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += _commands(child)
    return found


def test_one_flag_style_with_camel_case_aliases() -> None:
    commands = _commands(parser())
    flags = [flag for command in commands for action in command._actions for flag in action.option_strings]
    assert "--leaf-user-id" in flags and "--operation-type" in flags and "--provider-file-id" in flags
    for command in commands:
        shown = command.format_help()
        for action in command._actions:
            visible = [flag for flag in action.option_strings if flag == flag.lower()]
            assert visible or not action.option_strings
            for alias in set(action.option_strings) - set(visible):  # Leaf's camelCase spelling, not shown
                assert alias.lower() in {"--" + flag[2:].replace("-", "") for flag in visible}
                assert not re.search(rf"{alias}\b", shown)
    by_kebab = parser().parse_args(["files", "list", "--leaf-user-id", "g", "--operation-type", "harvested",
                                    "--min-area", "2"])
    by_camel = parser().parse_args(["files", "list", "--leafUserId", "g", "--operationType", "harvested",
                                    "--minArea", "2"])
    assert vars(by_kebab) == vars(by_camel) and by_kebab.leafUserId == "g" and by_kebab.minArea == "2"
    assert parser().parse_args(["process", "x.zip", "--leafUserId", "g", "--provider", "agleader"]).provider == "AgLeader"


def test_a_file_that_cannot_be_read_says_why_on_its_line(tmp_path: Path) -> None:
    """Leaf's "Failed to convert file" names no cause: the line adds the reason the reader gave."""
    with zipfile.ZipFile(SMS) as zf:
        header, *rows = csv.reader(io.StringIO(zf.read(f"{SMS_FILE}.csv").decode("latin-1")))
    lon, lat = header.index("Longitude"), header.index("Latitude")
    for row in rows:
        row[lon:lon + 1], row[lat:lat + 1] = [""], [""]  # the positions the monitor did not log
    text = io.StringIO()
    csv.writer(text).writerows([header, *rows])
    upload = tmp_path / "no-positions.zip"
    with zipfile.ZipFile(upload, "w") as zf:
        zf.writestr(f"{SMS_FILE}.csv", text.getvalue().encode("latin-1"))

    done = _cli(tmp_path / "data", "process", str(upload), "--leaf-user-id", "grower-1", "--provider", "AgLeader")

    assert done.returncode == 1
    (row,) = [line for line in done.stdout.splitlines() if SMS_FILE in line]
    assert row.endswith(f"rawGeojson: Failed to convert file on provider batch processing ({SMS_FILE}.csv: no row "
                        "has a valid position in 'Longitude'/'Latitude')"), row
