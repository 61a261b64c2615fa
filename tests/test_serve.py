"""The HTTP service, over real HTTP against a real uvicorn process and real databases.

One synced stack (and one service, plus a second one for the settings that fail closed)
is shared by the tests of this file that run in the same process (an xdist worker builds
its own), so each test stands alone whatever ran before it, and leaves no run going. The expected metric names are listed here,
independently of the product.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    _cli_process,
    free_port,
    kimai_exec,
    mariadb_connect,
    pg_query,
    run_cli,
    wait_for,
)
from tests.metric_families import ALL_FAMILIES, parse
from tests.replica_check import assert_replica_equals_kimai
from tests.stack import Stack, make_stack

REPLICA = "kimai_replica"
TABLE_NAMES = (
    "users",
    "customers",
    "projects",
    "activities",
    "tags",
    "timesheets",
    "timesheet_tags",
    "teams",
    "users_teams",
    "user_preferences",
    "configuration",
)
# the textfile's metric names (docs/operations.md, "Metrics"), as Prometheus sample names
TEXTFILE_METRICS = {
    "kimai_atlas_sync_last_run_success",
    "kimai_atlas_sync_last_run_duration_seconds",
    "kimai_atlas_sync_last_run_timestamp_seconds",
    "kimai_atlas_sync_audit_readable",
    "kimai_atlas_sync_bi_build_published_timestamp_seconds",
    "kimai_atlas_sync_last_build_success",
    "kimai_atlas_sync_errors_total",
    "kimai_atlas_sync_upserts_total",
    "kimai_atlas_sync_lag_seconds",
    "kimai_atlas_sync_replica_rows",
    "kimai_atlas_sync_kimai_rows",
}


@dataclass
class Service:
    stack: Stack
    env: dict[str, str]
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    admin: str  # sync:execute + sync:read
    reader: str  # sync:read
    scraper: str  # metrics:read

    def client(self, token: str | None = None, basic: bool = False) -> httpx.Client:
        headers = {}
        if token is not None and basic:
            pair = base64.b64encode(f"anyone:{token}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def _start_service(env: dict[str, str], log: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.run", "serve", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            **_cli_process(env, None, None),
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, "the service to answer", timeout=60)
    return proc, url


def _token(env: dict[str, str], name: str, *scopes: str) -> str:
    args = [a for s in scopes for a in ("--scope", s)]
    out = run_cli("token", "create", name, *args, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("serve")
    with make_stack(tmp, timesheets=2_000, seed=17) as stack:
        env = {**stack.env, "ATLAS_API_TOKENS_FILE": str(tmp / "tokens")}
        admin = _token(env, "atlas-admin", "sync:execute", "sync:read")
        reader = _token(env, "dashboard", "sync:read")
        scraper = _token(env, "prometheus", "metrics:read")
        log = tmp / "serve.log"
        proc, url = _start_service(env, log)
        try:
            yield Service(stack, env, url, proc, log, admin, reader, scraper)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def _run_finished(svc: Service, run_id: str, timeout: float = 300) -> dict[str, Any]:
    with svc.client(svc.reader) as http:

        def ended() -> dict[str, Any] | None:
            record = http.get(f"/runs/{run_id}").json()
            return record if record["status"] != "running" else None

        return wait_for(ended, f"run {run_id} to end", timeout)


@contextmanager
def _timesheets_held(kimai_db: str) -> Iterator[None]:
    """Hold Kimai's timesheets: a run started meanwhile waits in its first read of them."""
    blocker = mariadb_connect(kimai_db)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLES kimai2_timesheet WRITE")
        yield
    finally:
        with blocker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        blocker.close()


def _status_of(svc: Service, run_id: str) -> str:
    with svc.client(svc.reader) as http:
        return http.get(f"/runs/{run_id}").json()["status"]


# -- tokens and the refusals of `serve`, no database ----------------------------------------


@pytest.mark.unit
def test_a_token_is_stored_only_as_its_hash(tmp_path: Path) -> None:
    from pipelines.serve import tokens

    path = tmp_path / "tokens"
    made = tokens.create(path, "ops", ["sync:read", "metrics:read"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert made not in text
    assert hashlib.sha256(made.encode()).hexdigest() in text
    assert len(base64.urlsafe_b64decode(made + "=")) == 32
    [entry] = tokens.load(path)
    assert (entry.name, entry.scopes) == ("ops", frozenset({"sync:read", "metrics:read"}))
    assert tokens.find(tokens.load(path), made) == entry
    assert tokens.find(tokens.load(path), made[:-1] + "x") is None
    with pytest.raises(tokens.ConfigError, match="already"):
        tokens.create(path, "ops", ["sync:read"])
    with pytest.raises(tokens.ConfigError, match="unknown scope"):
        tokens.create(path, "other", ["sync:everything"])
    with pytest.raises(tokens.ConfigError, match="token name"):
        tokens.create(path, "other\n", ["sync:read"])  # a name ending in a line break
    with pytest.raises(tokens.ConfigError, match="line 1"):
        tokens.parse("ops sha256:abc sync:read")


@pytest.mark.unit
def test_the_tokens_file_setting(tmp_path: Path) -> None:
    from pipelines.config import load_settings
    from pipelines.errors import ConfigError

    assert load_settings({}, dotenv=False).api_tokens_file is None
    path = tmp_path / "tokens"
    given = load_settings({"ATLAS_API_TOKENS_FILE": str(path)}, dotenv=False)
    assert given.api_tokens_file == path
    with pytest.raises(ConfigError, match="ATLAS_API_TOKENS_FILE"):
        load_settings({"ATLAS_API_TOKENS_FILE": str(tmp_path)}, dotenv=False)


@pytest.mark.unit
def test_the_host_names_the_service_answers_to() -> None:
    from pipelines.config import load_settings
    from pipelines.errors import ConfigError
    from pipelines.serve.guard import host_name
    from pipelines.serve.server import allowed_hosts

    assert host_name("Sync.Example.org:8000") == "sync.example.org"
    assert host_name("sync.example.org.") == "sync.example.org"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("[::1]") == "::1"
    assert host_name("::1") is None  # an IPv6 address is bracketed in a Host header
    assert host_name("") is None and host_name(None) is None
    loopback = {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts("127.0.0.1", ()) == loopback
    assert allowed_hosts("0.0.0.0", ("a.example",)) == loopback | {"a.example"}
    assert allowed_hosts("[::]", ()) == loopback
    assert allowed_hosts("10.1.2.3", ()) == loopback | {"10.1.2.3"}
    names = load_settings(
        {"ATLAS_API_ALLOWED_HOSTS": " Sync.Example.org., [2001:db8::1] ,,intranet"}, dotenv=False
    ).api_allowed_hosts
    assert names == ("sync.example.org", "2001:db8::1", "intranet")
    for wrong in ("https://sync.example.org", "sync.example.org/x", "a b", "*.example.org"):
        with pytest.raises(ConfigError, match="ATLAS_API_ALLOWED_HOSTS"):
            load_settings({"ATLAS_API_ALLOWED_HOSTS": wrong}, dotenv=False)


@pytest.mark.unit
def test_serve_refuses_to_start_without_tokens_or_on_a_remote_address(tmp_path: Path) -> None:
    env = {"ATLAS_SYNC_STATE_DIR": str(tmp_path / "state")}
    unset = run_cli("serve", env=env, timeout=60)
    assert unset.returncode == 2
    assert unset.stderr.count("\n") == 1 and "ATLAS_API_TOKENS_FILE" in unset.stderr

    env["ATLAS_API_TOKENS_FILE"] = str(tmp_path / "tokens")
    missing = run_cli("serve", env=env, timeout=60)
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "no tokens file" in missing.stderr

    out = run_cli("token", "create", "ops", "--scope", "sync:read", env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    printed = out.stdout.strip()
    assert printed and printed not in (tmp_path / "tokens").read_text()
    assert stat.S_IMODE((tmp_path / "tokens").stat().st_mode) == 0o600

    remote = run_cli("serve", "--host", "0.0.0.0", env=env, timeout=60)
    assert remote.returncode == 2
    assert remote.stderr.count("\n") == 1 and "--allow-remote" in remote.stderr

    # a tokens file that cannot be trusted: no start, one line naming what is wrong
    tokens = tmp_path / "tokens"
    good = tokens.read_text()
    bad = [("chmod", 0o666, "writable by group or others"), ("chmod", 0o620, "mode 0620")]
    bad.append(("line", "ops sha256:abc sync:read\n", "line 2"))
    if os.geteuid() == 0:  # only root can give a file away
        bad.append(("chown", 65534, "owned by uid 65534"))
    for kind, value, said in bad:
        if kind == "chmod":
            tokens.chmod(value)
        elif kind == "line":
            tokens.write_text(good + value)
        else:
            os.chown(tokens, value, value)
        refused = run_cli("serve", env=env, timeout=60)
        assert refused.returncode == 2, (kind, refused.stderr)
        assert refused.stderr.count("\n") == 1 and said in refused.stderr, refused.stderr
        tokens.write_text(good)
        tokens.chmod(0o600)
        os.chown(tokens, os.geteuid(), os.getegid())


# -- the service --------------------------------------------------------------------------


def test_the_auth_matrix(service: Service) -> None:
    svc = service
    with svc.client() as anonymous:
        assert anonymous.get("/healthz").json() == {"ok": True}
        for method, path in (("GET", "/status"), ("GET", "/metrics"), ("POST", "/sync")):
            answer = anonymous.request(method, path)
            assert answer.status_code == 401, (method, path)
            assert answer.headers["www-authenticate"].startswith("Basic realm=")
    for wrong in (svc.admin[:-2] + "xy", "not-a-token"):
        for basic in (False, True):
            with svc.client(wrong, basic=basic) as http:
                assert http.get("/status").status_code == 401
                assert http.post("/sync").status_code == 401
    with svc.client(svc.reader) as http:
        refused = http.post("/sync")
        assert refused.status_code == 403 and "sync:execute" in refused.json()["detail"]
        assert http.post("/reconcile").status_code == 403
        assert http.get("/metrics").status_code == 403
        assert http.get("/status").status_code == 200
    with svc.client(svc.scraper, basic=True) as http:
        assert http.get("/status").status_code == 403
        assert http.get("/metrics").status_code == 200
    for basic in (False, True):
        with svc.client(svc.admin, basic=basic) as http:
            assert http.get("/status").status_code == 200
            assert http.get("/").status_code == 200
            assert http.post("/sync/no_such_table").status_code == 404
            assert http.get("/runs/" + "0" * 32).status_code == 404
            # a page of another site cannot make a logged-in browser start a run
            cross = http.post("/sync", headers={"Origin": "http://elsewhere.example"})
            assert cross.status_code == 403
    log = svc.log.read_text()
    for token in (svc.admin, svc.reader, svc.scraper):
        assert token not in log


def test_a_run_started_over_http_syncs_and_is_audited_as_api(service: Service) -> None:
    svc, stack = service, service.stack
    kimai_exec(
        stack.kimai_db,
        "UPDATE kimai2_timesheet SET description = 'changed for the API',"
        " modified_at = UTC_TIMESTAMP() WHERE id <= 40",
    )
    with svc.client(svc.admin) as http:
        started = http.post("/sync/timesheets")
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    record = _run_finished(svc, run_id)
    assert record["status"] == "success", record
    assert (record["exit_code"], record["error"]) == (0, None)
    assert (record["trigger"], record["started_by"]) == ("api", "atlas-admin")
    assert record["started_at"] and record["finished_at"]
    assert record["build_status"] == "published"
    [table] = record["tables"]
    assert table["table_name"] == "timesheets" and table["updated"] >= 40
    audit = pg_query(
        stack.atlas_db,
        f"SELECT command, trigger, started_by, status FROM {REPLICA}.sync_runs WHERE run_id = %s",
        (run_id,),
    )
    assert audit == [("run", "api", "atlas-admin", "success")]
    assert_replica_equals_kimai(stack.kimai_db, stack.atlas_db)

    # /status is the JSON of `status --json`
    with svc.client(svc.reader) as http:
        served = http.get("/status").json()
    cli = run_cli("status", "--json", env=svc.env, timeout=120)
    printed = json.loads(cli.stdout)
    assert served.keys() == printed.keys()
    assert [r["run_id"] for r in served["runs"]] == [r["run_id"] for r in printed["runs"]]
    assert served["runs"][0]["run_id"] == run_id
    assert [t["table_name"] for t in served["tables"]] == [
        t["table_name"] for t in printed["tables"]
    ]


def test_a_second_post_while_a_run_goes_is_refused_naming_the_holder(service: Service) -> None:
    svc, stack = service, service.stack
    with _timesheets_held(stack.kimai_db), svc.client(svc.admin) as http:
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: http.post("/sync"), range(2)))
        codes = sorted(a.status_code for a in answers)
        assert codes == [202, 409], [a.text for a in answers]
        run_id = next(a for a in answers if a.status_code == 202).json()["run_id"]
        refused = next(a for a in answers if a.status_code == 409).json()["detail"]
        assert run_id in refused and "atlas-admin" in refused, refused
        wait_for(lambda: _status_of(svc, run_id) == "running", "the run's audit row", 120)
        # the service answers while the run waits on Kimai
        t0 = time.monotonic()
        assert http.get("/healthz").status_code == 200
        assert time.monotonic() - t0 < 2
        assert http.post("/reconcile").status_code == 409
        assert http.post("/sync/projects").status_code == 409
        # a run of the command line meets the same lock
        cli = run_cli("sync", env=svc.env, timeout=120)
        assert cli.returncode == 3 and "another run holds the lock" in cli.stderr
    assert _run_finished(svc, run_id)["status"] == "success"


def test_metrics_parse_and_have_the_textfile_names(service: Service, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with service.client(service.scraper, basic=True) as http:
        answer = http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = [s for f in text_string_to_metric_families(answer.text) for s in f.samples]
    names = {s.name for s in samples}
    assert not TEXTFILE_METRICS - names, TEXTFILE_METRICS - names
    assert {s.name: s.value for s in samples}["kimai_atlas_sync_audit_readable"] == 1
    lag = {s.labels["table"] for s in samples if s.name == "kimai_atlas_sync_lag_seconds"}
    assert lag == set(TABLE_NAMES)
    assert parse(answer.text).families == ALL_FAMILIES

    # a run's textfile and /metrics right after it: the same families, samples and values,
    # but for the time that passed between the two
    textfile = tmp_path / "kimai.prom"
    out = run_cli("sync", "--metrics-file", str(textfile), env=service.env, timeout=300)
    assert out.returncode == 0, out.stderr
    with service.client(service.scraper) as http:
        served = parse(http.get("/metrics").text)
    written = parse(textfile.read_text())
    assert written.families == served.families == ALL_FAMILIES
    assert written.values.keys() == served.values.keys()
    assert written.value("kimai_atlas_sync_last_run_success") == 1
    moving = ("lag_seconds", "last_run_duration_seconds", "last_run_timestamp_seconds")
    for key, value in written.values.items():
        if key[0].removeprefix("kimai_atlas_sync_") in moving:
            assert abs(served.values[key] - value) < 10, (key, value, served.values[key])
        else:
            assert served.values[key] == value, (key, value, served.values[key])


def _chromium(tmp: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1100",
        f"--user-data-dir={tmp / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(options=options, service=DriverService(executable_path=driver_path))


def _login(driver: Any, token: str) -> None:
    # Basic auth with the token as password, as a browser sends it after its login prompt
    pair = base64.b64encode(f"browser:{token}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {pair}"}}
    )


def test_the_health_page_in_chromium(service: Service, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    svc = service
    driver = _chromium(tmp_path)
    try:
        _login(driver, svc.reader)
        driver.get(svc.url + "/")
        assert "Kimai" in driver.title
        assert not driver.find_element(By.ID, "sync-now").is_enabled()

        _login(driver, svc.admin)
        driver.get(svc.url + "/")
        rows = driver.find_elements(By.CSS_SELECTOR, "#tables tr[data-table]")
        assert {r.get_attribute("data-table") for r in rows} == set(TABLE_NAMES)
        before = {
            r.get_attribute("data-run-id")
            for r in driver.find_elements(By.CSS_SELECTOR, "tr.run-row")
        }
        chart = driver.find_element(By.CSS_SELECTOR, "svg#runs-chart")
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.run")) == len(before)
        audit_rows = pg_query(svc.stack.atlas_db, f"SELECT count(*) FROM {REPLICA}.sync_runs")

        button = driver.find_element(By.ID, "sync-now")
        assert button.is_enabled()
        button.click()
        WebDriverWait(driver, 60).until(
            lambda d: (
                "started" in d.find_element(By.ID, "sync-result").text
                or "HTTP" in d.find_element(By.ID, "sync-result").text
            )
        )
        message = driver.find_element(By.ID, "sync-result").text
        assert message.startswith("run ") and message.endswith(" started"), message
        run_id = message.split()[1]
        # the page reloads itself and lists the new run
        WebDriverWait(driver, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, f'tr.run-row[data-run-id="{run_id}"]')
        )
        assert run_id not in before
        after = pg_query(svc.stack.atlas_db, f"SELECT count(*) FROM {REPLICA}.sync_runs")
        assert after[0][0] == audit_rows[0][0] + 1
        record = _run_finished(svc, run_id)
        assert (record["status"], record["started_by"]) == ("success", "atlas-admin")

        driver.get(svc.url + "/")
        chart = driver.find_element(By.CSS_SELECTOR, "svg#runs-chart")
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.run")) == len(before) + 1
        assert "BI reads the build published" in driver.find_element(By.ID, "served-build").text
        shot = tmp_path / "health-page.png"
        assert driver.save_screenshot(str(shot))
        shutil.copyfile(shot, "/tmp/health-page.png")
    finally:
        driver.quit()


def test_the_health_page_escapes_what_the_audit_recorded(service: Service) -> None:
    """A failing run's message is shown escaped, never as markup.

    No text of Kimai's rows reaches the page (it shows table names, counts, times and the
    audit's texts); a run's error message does, and it quotes what the run met: here the
    Kimai database name it could not open.
    """
    svc = service
    planted = "<script>alert(1)</script>"
    failed = run_cli("sync", env={**svc.env, "KIMAI_DB_DATABASE": planted}, timeout=120)
    assert failed.returncode == 2, failed.stderr
    [(run_id,)] = pg_query(
        svc.stack.atlas_db,
        f"SELECT run_id FROM {REPLICA}.sync_runs WHERE status = 'failed' AND error LIKE %s",
        (f"%{planted}%",),
    )
    with svc.client(svc.reader) as http:
        answer = http.get("/")
    assert answer.status_code == 200
    page = answer.text
    assert f'data-run-id="{run_id}"' in page
    row = page[page.index(f'data-run-id="{run_id}"') :].split("</tr>", 1)[0]
    assert "Unknown database" in row and "&lt;script&gt;alert(1)&lt;/script&gt;" in row, row
    assert planted not in page
    assert page.count("<script") == 1  # the page's own, with its nonce
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")


def _start_held_run(svc: Service, url: str) -> str:
    """POST /sync while Kimai's timesheets are held; the run's id once its audit row exists."""
    started = httpx.post(
        f"{url}/sync", headers={"Authorization": f"Bearer {svc.admin}"}, timeout=60
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    wait_for(lambda: _status_of(svc, run_id) == "running", "the run's audit row", 120)
    return run_id


def test_sigterm_waits_for_the_running_run(service: Service, tmp_path: Path) -> None:
    svc, stack = service, service.stack
    proc, url = _start_service(svc.env, tmp_path / "serve.log", "--drain-seconds", "300")
    try:
        with _timesheets_held(stack.kimai_db):
            run_id = _start_held_run(svc, url)
            proc.send_signal(signal.SIGTERM)

            def refused() -> bool:
                try:
                    httpx.get(f"{url}/healthz", timeout=2)
                except httpx.TransportError:
                    return True
                return False

            wait_for(refused, "the service to stop accepting", timeout=30)
            time.sleep(1.0)
            assert proc.poll() is None, "the service did not wait for its run"
            assert _status_of(svc, run_id) == "running"
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    # uvicorn re-raises the signal once shut down: a clean SIGTERM exit, or 0
    assert code in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()
    record = _run_finished(svc, run_id, timeout=10)
    assert record["status"] == "success", record
    assert "waiting up to 300 s for run" in (tmp_path / "serve.log").read_text()


def test_a_service_killed_mid_run_leaves_it_crashed_and_the_next_run_repairs(
    service: Service, tmp_path: Path
) -> None:
    svc, stack = service, service.stack
    kimai_exec(
        stack.kimai_db,
        "UPDATE kimai2_timesheet SET description = 'before the kill',"
        " modified_at = UTC_TIMESTAMP() WHERE id BETWEEN 100 AND 130",
    )
    proc, url = _start_service(svc.env, tmp_path / "serve.log")
    try:
        with _timesheets_held(stack.kimai_db):
            killed = _start_held_run(svc, url)
            proc.kill()
            proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _status_of(svc, killed) == "running"  # nothing recorded its end
    with svc.client(svc.admin) as http:
        # the lock died with the killed service: the next run starts at once
        again = http.post("/reconcile")
    assert again.status_code == 202, again.text
    record = _run_finished(svc, again.json()["run_id"])
    assert (record["command"], record["status"]) == ("reconcile", "success"), record
    assert _status_of(svc, killed) == "crashed"
    assert_replica_equals_kimai(stack.kimai_db, stack.atlas_db)


# -- failing closed ----------------------------------------------------------------------

# the tests of the second service share the first one's stack: one group, one worker
SHARED_STACK = pytest.mark.xdist_group("test_serve.service")
EXTRA_HOST = "sync.example.org"
LIMIT = 4
DOCS = ("/docs", "/redoc", "/openapi.json")


@dataclass
class Guarded:
    """A second service on the same stack: --docs, a small --limit-concurrency, its own tokens."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    tokens: Path
    admin: str
    reader: str


@pytest.fixture(scope="module")
def guarded(service: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    tmp = tmp_path_factory.mktemp("guarded")
    env = {
        **service.env,
        "ATLAS_API_TOKENS_FILE": str(tmp / "tokens"),
        "ATLAS_API_ALLOWED_HOSTS": f"{EXTRA_HOST.upper()}.",
    }
    admin = _token(env, "guard-admin", "sync:execute", "sync:read", "metrics:read")
    reader = _token(env, "guard-reader", "sync:read")
    log = tmp / "serve.log"
    proc, url = _start_service(env, log, "--docs", "--limit-concurrency", str(LIMIT))
    try:
        yield Guarded(url, proc, log, tmp / "tokens", admin, reader)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@contextmanager
def _lock_held(svc: Service) -> Iterator[None]:
    """Hold the run lock as another run would: a POST that reaches its handler answers 409."""
    from pipelines.config import load_settings
    from pipelines.lock import run_lock

    with run_lock(load_settings(svc.env, dotenv=False)):
        yield


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _upload(url: str, path: str, headers: dict[str, str], size: int, chunked: bool) -> int:
    """POST `size` bytes as fast as the service takes them; its answer's status code.

    A raw socket: the answer may come (and the connection close) long before the body is
    sent, which an HTTP client would report as a failed write instead of the answer.
    """
    netloc = url.split("//", 1)[1]
    host, port = netloc.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    head = [f"POST {path} HTTP/1.1", f"Host: {netloc}", *(f"{k}: {v}" for k, v in headers.items())]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    block = b"{" * 65536
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        while sent < size:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:  # answered already
                break
            sock.sendall(b"%x\r\n%b\r\n" % (len(block), block) if chunked else block)
            sent += len(block)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the service closed the connection: its answer is in the receive buffer
    answer = b""
    try:
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 "), answer
    return int(answer.split()[1])


def test_the_token_is_checked_before_the_body_is_read(service: Service) -> None:
    svc = service
    with svc.client() as anonymous:
        bad = anonymous.post(
            "/sync", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 401, bad.text  # not 422: the body was never parsed
        assert anonymous.get("/healthz").status_code == 200
    before = _rss_kib(svc.proc.pid)
    json_type = {"Content-Type": "application/json"}
    bearer = {**json_type, "Authorization": f"Bearer {svc.admin}"}
    big = 100 * 1024 * 1024
    answers = [
        _upload(svc.url, "/sync", json_type, big, chunked=False),
        _upload(svc.url, "/sync", json_type, big, chunked=True),
        _upload(svc.url, "/sync", bearer, big, chunked=False),
        _upload(svc.url, "/sync", bearer, big, chunked=True),
    ]
    after = _rss_kib(svc.proc.pid)
    print(f"service RSS before {before} KiB, after four 100 MB POSTs {after} KiB")
    assert answers == [401, 401, 413, 413]
    assert after - before < 5 * 1024, (before, after)
    # a token without the route's scope: refused before the (malformed) body is parsed
    with svc.client(svc.reader) as http:
        scoped = http.post("/sync", content=b"{not json", headers=json_type)
        assert scoped.status_code == 403, scoped.text  # not 422
        assert scoped.json()["detail"] == "token 'dashboard' lacks the sync:execute scope"
    # just past the cap, with a token: refused before the body reaches the application
    with svc.client(svc.admin) as http:
        over = http.post("/sync", content=b" " * (8 * 1024 + 1), headers=json_type)
        assert over.status_code == 413, over.text
        assert http.get("/healthz").status_code == 200


def test_a_post_needs_json_from_the_same_site(service: Service) -> None:
    svc = service
    # the lock is held: a POST that passes every check reaches its handler and gets 409
    with _lock_held(svc), svc.client(svc.admin) as http:
        # an HTML form with no fields, posted by another site's page without an Origin
        # header (older browsers): it used to start a run
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        empty_form = http.post("/sync", headers=form_type)
        assert empty_form.status_code == 415, empty_form.text
        form = http.post("/sync", content=b"a=b", headers=form_type)
        assert form.status_code == 415, form.text
        text = http.post("/reconcile", content=b"{}", headers={"Content-Type": "text/plain"})
        assert text.status_code == 415, text.text
        untyped = http.post("/reconcile", content=b"{}", headers={"Content-Type": ""})
        assert untyped.status_code == 415, untyped.text
        # what the command line's curl sends (no body, no type), and JSON, reach the handler
        held = http.post("/sync/projects")
        assert held.status_code == 409, held.text
        # it names the holder, but not Atlas DB's role or the holder's address
        assert "another run holds the lock: kimai-atlas-sync pid=" in held.json()["detail"]
        assert "postgres" not in held.text and "127.0.0.1" not in held.text, held.text
        assert http.post("/sync", json={"tables": ["projects"]}).status_code == 409
        typed = {"Content-Type": "application/json; charset=utf-8"}
        assert http.post("/reconcile", content=b"{}", headers=typed).status_code == 409
        same = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
        assert http.post("/sync", json={}, headers=same).status_code == 409
        # a browser marks what another site makes it send
        cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
        assert http.post("/sync", headers=cross).status_code == 403
        assert http.get("/status", headers={**cross, "Sec-Fetch-Mode": "cors"}).status_code == 403
        # following a link from elsewhere only reads: it shows the page
        link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
        assert http.get("/", headers=link).status_code == 200
        assert http.post("/sync", headers=link).status_code == 403


def test_host_names_redirects_and_bad_parameters_tell_nothing(service: Service) -> None:
    svc = service
    port = svc.url.rsplit(":", 1)[1]
    atlas = (svc.stack.atlas_db, "5432", "postgres", "127.0.0.1")
    with svc.client(svc.admin) as http:
        for name in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
            assert http.get("/healthz", headers={"Host": name}).status_code == 400, name
            assert http.get("/status", headers={"Host": name}).status_code == 400, name
        assert http.get("/healthz", headers={"Host": f"localhost:{port}"}).status_code == 200
        assert http.get("/healthz", headers={"Host": f"[::1]:{port}"}).status_code == 200
        # no redirect from /sync/ to /sync: it would be built from the Host header
        slash = http.post("/sync/", json={})
        assert (slash.status_code, slash.headers.get("location")) == (404, None)
        assert http.get("/status/").status_code == 404
        refused = []
        for query in ("runs=1e20", "runs=0", "runs=1001", "runs=x", "max_lag=nan", "max_lag=inf"):
            answer = http.get(f"/status?{query}")
            assert answer.status_code == 422, (query, answer.text)
            refused.append(answer.text)
        assert http.get("/status?runs=1000&max_lag=0.5").status_code == 200
        for run_id in ("%00", "x" * 32, "0" * 33, "'; SELECT 1 --"):
            answer = http.get(f"/runs/{run_id}")
            assert answer.status_code == 422, (run_id, answer.text)
            refused.append(answer.text)
        assert http.get("/runs/" + "0" * 32).status_code == 404
        # Atlas DB refusing connections: 503, without saying where Atlas DB is
        pg_query("postgres", f'ALTER DATABASE "{svc.stack.atlas_db}" ALLOW_CONNECTIONS false')
        try:
            down = [http.get("/status"), http.get("/"), http.post("/reconcile")]
        finally:
            pg_query("postgres", f'ALTER DATABASE "{svc.stack.atlas_db}" ALLOW_CONNECTIONS true')
        assert [a.status_code for a in down] == [503, 503, 503], [a.text for a in down]
        refused += [a.text for a in down]
        for body in refused:
            assert not [part for part in atlas if part in body], body
        # the details are in the log, for the operator
        assert "is not currently accepting connections" in svc.log.read_text()
        assert http.get("/status").status_code == 200
    # the schema and its pages are off without --docs
    with svc.client() as anonymous:
        for path in DOCS:
            assert anonymous.get(path).status_code == 401, path
    with svc.client(svc.admin) as http:
        for path in DOCS:
            assert http.get(path).status_code == 404, path


@SHARED_STACK
def test_the_allowed_hosts_the_docs_and_the_connection_limit(guarded: Guarded) -> None:
    port = guarded.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=guarded.url, timeout=60) as anonymous:
        for path in DOCS:
            assert anonymous.get(path).status_code == 200, path
        for name in (EXTRA_HOST, f"{EXTRA_HOST}:{port}", f"{EXTRA_HOST.upper()}:443"):
            assert anonymous.get("/healthz", headers={"Host": name}).status_code == 200, name
        assert anonymous.get("/healthz", headers={"Host": "other.example.org"}).status_code == 400
    # as many idle connections as the limit: the next request is refused at once
    idle = [socket.create_connection(("127.0.0.1", int(port))) for _ in range(LIMIT)]
    try:
        wait_for(
            lambda: httpx.get(f"{guarded.url}/healthz", timeout=10).status_code == 503,
            "uvicorn to count the idle connections",
        )
    finally:
        for sock in idle:
            sock.close()
    wait_for(
        lambda: httpx.get(f"{guarded.url}/healthz", timeout=10).status_code == 200,
        "the idle connections to be gone",
    )


def _line(name: str, token: str, scopes: str) -> str:
    return f"{name} sha256:{hashlib.sha256(token.encode()).hexdigest()} {scopes}\n"


@SHARED_STACK
def test_the_tokens_file_fails_closed(guarded: Guarded) -> None:
    path, good = guarded.tokens, guarded.tokens.read_text()

    def code(token: str) -> int:
        answer = httpx.get(
            f"{guarded.url}/status",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        if answer.status_code == 503:
            assert "tokens file is unusable" in answer.json()["detail"]
            assert str(path) not in answer.text
        return answer.status_code

    def restore() -> None:
        path.write_text(good)
        path.chmod(0o600)
        os.chown(path, os.geteuid(), os.getegid())

    assert code(guarded.admin) == 200
    try:
        path.unlink()  # revoking every token at once
        assert code(guarded.admin) == 503
        restore()
        assert code(guarded.admin) == 200

        path.write_text(good + "a line that is no token\n")
        assert code(guarded.admin) == 503
        restore()
        assert code(guarded.reader) == 200

        newcomer = "a-token-added-while-the-file-was-open-to-all"
        for mode in (0o666, 0o620):
            path.chmod(mode)
            assert code(guarded.admin) == 503, oct(mode)
            with path.open("a") as handle:
                handle.write(_line("intruder", newcomer, "sync:read"))
            assert code(newcomer) == 503, oct(mode)
            assert code(guarded.admin) == 503, oct(mode)
            path.chmod(0o600)
            assert code(newcomer) == 200, oct(mode)  # its owner made it private again
            restore()
            assert code(newcomer) == 401

        if os.geteuid() == 0:  # only root can give a file away
            os.chown(path, 65534, 65534)
            assert code(guarded.admin) == 503
            restore()
    finally:
        restore()
    assert code(guarded.admin) == 200  # no restart
    log = guarded.log.read_text()
    refusals = [line for line in log.splitlines() if "refusing every token" in line]
    reasons = ("no tokens file", "line 3", "writable by group or others", "owned by uid")
    for reason in reasons[: 4 if os.geteuid() == 0 else 3]:
        assert [line for line in refusals if reason in line], (reason, refusals)
    assert "usable again" in log
    for token in (guarded.admin, guarded.reader, newcomer):
        assert token not in log


@SHARED_STACK
def test_fuzzing_the_openapi_schema(service: Service, guarded: Guarded, tmp_path: Path) -> None:
    """Requests generated from the schema get documented answers, never a 5xx.

    Schemathesis derives valid and invalid requests (paths, queries, bodies) from
    /openapi.json and checks every answer against it: a documented status code, content
    type and body. It sends a token that holds every scope, so the requests reach the
    handlers (and read the stack's Atlas DB), while the test holds the run lock as another
    run would: a well-formed POST answers 409 and starts nothing, so the fuzz cannot set off
    a sync and dbt build per example on a 2-core machine; a malformed one still meets the
    body's validation (422).
    """
    started = pg_query(service.stack.atlas_db, f"SELECT count(*) FROM {REPLICA}.sync_runs")
    checks = (
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_headers_conformance,response_schema_conformance"
    )
    with _lock_held(service):
        fuzz = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{guarded.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {guarded.admin}",
                "--checks",
                checks,
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "15",
                "--seed",
                "26",
                "--workers",
                "1",
                "--request-timeout",
                "30",
                "--output-sanitize",
                "true",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            **_cli_process({}, None, tmp_path),
        )
    summary = fuzz.stdout[fuzz.stdout.rfind("=== SUMMARY") :] if "SUMMARY" in fuzz.stdout else ""
    print(summary or fuzz.stdout[-3000:])
    assert fuzz.returncode == 0, fuzz.stdout[-6000:] + fuzz.stderr[-2000:]
    assert pg_query(service.stack.atlas_db, f"SELECT count(*) FROM {REPLICA}.sync_runs") == started
    assert guarded.admin not in fuzz.stdout
