"""Performance measurements of aws-mock-metadata, driven by scripts/bench.

Starts a moto STS server, the app (--headless) and a bare hyper server
(examples/bare_server.rs) on loopback, measures them with wrk and a few
Python clients, and writes every raw figure to a JSON file. `plot` draws the
throughput and p99 chart from that file.

Every process started here is written to a PID file first, so that
scripts/bench can end what is left if this helper itself is killed. All
traffic stays on 127.0.0.1.

Only the Python standard library is needed, except matplotlib for `plot`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
PROFILE = "bench"
MFA_SERIAL = "arn:aws:iam::123456789012:mfa/bench"
REGION = "us-east-1"
ROLE = "local-credentials"
CREDENTIALS_PATH = f"/latest/meta-data/iam/security-credentials/{ROLE}"
TOKEN_PATH = "/latest/api/token"
MANAGE_PATH = "/manage/session"
MFA_NEEDED_LINE = "MFA code needed"
STS_CALL_LINE = "calling STS GetSessionToken"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A loopback port where nothing listens: the app must never reach a metadata service.
UNUSED_METADATA_ENDPOINT = "http://127.0.0.1:9/"


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


class Terminated(Exception):
    """Raised by the SIGTERM and SIGHUP handlers so that clean-up runs."""


def on_signal(signum, _frame):
    raise Terminated(f"signal {signum}")


# ---------------------------------------------------------------- processes


class Processes:
    """Every child process, recorded in a PID file as soon as it starts."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self.children: list[subprocess.Popen] = []

    def start(self, command: list[str], log_path: Path, environment: dict[str, str]) -> subprocess.Popen:
        log_file = log_path.open("ab")
        log_file.write(f"--- start: {' '.join(command)}\n".encode())
        log_file.flush()
        process = subprocess.Popen(
            command, env=environment, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
        log_file.close()
        self.children.append(process)
        with self.pid_file.open("a") as pids:
            pids.write(f"{process.pid}\n")
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 10) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process in self.children:
            self.children.remove(process)
        return process.returncode

    def stop_all(self) -> None:
        for process in list(reversed(self.children)):
            self.stop(process, timeout=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def clean_environment() -> dict[str, str]:
    """Return os.environ without AWS settings, proxies, a display or a D-Bus session bus."""
    drop = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY"}
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("AWS_") and name.upper() not in drop
    }
    environment["NO_PROXY"] = environment["no_proxy"] = "127.0.0.1,localhost"
    environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = UNUSED_METADATA_ENDPOINT
    environment["AWS_EC2_METADATA_DISABLED"] = "true"
    return environment


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def memory_detail(pid: int) -> dict:
    """Return VmRSS split into anonymous and file-backed pages, PSS, and the number of mapped files."""
    detail = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                detail[name] = int(value.split()[0])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty", "Shared_Clean"):
                detail[name] = int(value.split()[0])
        files = set()
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[5].startswith("/"):
                files.add(fields[5])
        detail["mapped_files"] = len(files)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return detail


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of a process, all threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat, and fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------- raw HTTP/1.1


def http_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 5,
) -> tuple[int, dict[str, str], bytes]:
    """Send one request on a new connection to 127.0.0.1:port.

    Returns the status, the headers (lower-case names) and the body.
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as connection:
        connection.sendall(raw)
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return parse_response(b"".join(chunks))


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    head_lines = head.decode("latin-1").split("\r\n")
    status = int(head_lines[0].split()[1])
    headers = {}
    for line in head_lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return status, headers, body


def get_token(port: int) -> str:
    status, _, body = http_request(port, "PUT", TOKEN_PATH, {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
    if status != 200:
        raise RuntimeError(f"PUT {TOKEN_PATH} returned {status}: {body!r}")
    return body.decode()


def post_code(port: int, code: str) -> tuple[int, bytes]:
    status, _, body = http_request(
        port,
        "POST",
        MANAGE_PATH,
        {"Content-Type": "application/x-www-form-urlencoded"},
        f"token={code}".encode(),
        timeout=30,
    )
    return status, body


def wait_for_port(port: int, process: subprocess.Popen, what: str, log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}; see {log_path}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s; see {log_path}")


def count_lines(path: Path, text: str) -> int:
    return sum(text in line for line in path.read_text(errors="replace").splitlines())


def count_moto_sts_calls(path: Path) -> int:
    """Count the POST requests in moto's access log, because every STS query call is a POST to /."""
    return sum(bool(re.search(r'"POST / HTTP/1\.[01]"', line)) for line in path.read_text(errors="replace").splitlines())


# ----------------------------------------------------------------- the run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work_dir)
        self.processes = Processes(self.work / "pids")
        self.results: dict = {}
        self.moto_port = 0
        self.moto_log = self.work / "moto.log"

    # ---- set-up

    def write_profile(self) -> dict[str, str]:
        config_dir = self.work / "aws"
        config_dir.mkdir(exist_ok=True)
        (config_dir / "config").write_text(f"[profile {PROFILE}]\nregion = {REGION}\nmfa_serial = {MFA_SERIAL}\n")
        credentials = config_dir / "credentials"
        credentials.write_text(
            f"[{PROFILE}]\n"
            "aws_access_key_id = AKIAIOSFODNN7BENCHKEY\n"
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYBENCHMARKKEY\n"
        )
        credentials.chmod(0o600)
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        environment = clean_environment()
        environment.update(
            {
                "HOME": str(home),
                "AWS_CONFIG_FILE": str(config_dir / "config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
                "AWS_ENDPOINT_URL_STS": f"http://{LOOPBACK}:{self.moto_port}",
            }
        )
        environment.pop("RUST_LOG", None)
        return environment

    def start_moto(self) -> None:
        self.moto_port = free_port()
        process = self.processes.start(
            [self.args.moto_python, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.moto_port)],
            self.moto_log,
            clean_environment(),
        )
        wait_for_port(self.moto_port, process, "moto", self.moto_log)
        log(f"moto STS on http://{LOOPBACK}:{self.moto_port}")

    def app_command(self, port: int, state_dir: Path, headless: bool = True) -> list[str]:
        command = [self.args.app, "--listen", f"{LOOPBACK}:{port}", "--profile", PROFILE]
        command += ["--state-dir", str(state_dir), "--prompt", "none"]
        if headless:
            command.insert(1, "--headless")
        return command

    def start_app(self, name: str, environment: dict[str, str]) -> tuple[subprocess.Popen, int, Path]:
        port = free_port()
        state_dir = self.work / f"state-{name}"
        state_dir.mkdir(exist_ok=True)
        log_path = self.work / f"app-{name}.log"
        process = self.processes.start(self.app_command(port, state_dir), log_path, environment)
        wait_for_port(port, process, f"aws-mock-metadata ({name})", log_path)
        return process, port, log_path

    def start_baseline(
        self, binary: str, name: str, body_file: Path, credentials: bytes, app_headers: dict[str, str]
    ) -> tuple[subprocess.Popen, int]:
        """Start a baseline server of examples/ with the app's credentials body, and check that it sends the app's response."""
        port = free_port()
        log_path = self.work / f"{name}.log"
        process = self.processes.start(
            [binary, "--listen", f"{LOOPBACK}:{port}", "--body-file", str(body_file)],
            log_path,
            clean_environment(),
        )
        wait_for_port(port, process, name, log_path)
        status, headers, body = http_request(port, "GET", CREDENTIALS_PATH)
        same_headers = sorted(app_headers) == sorted(headers) and all(
            app_headers[header] == headers[header] for header in app_headers if header != "date"
        )
        if status != 200 or body != credentials or not same_headers:
            raise RuntimeError(f"the response of {name} differs from the app's: {status} {headers} vs {app_headers}")
        return process, port

    # ---- wrk

    def wrk(self, port: int, mode: str, connections: int, duration: int, token: str = "", pid: int | None = None) -> dict:
        threads = min(connections, self.args.wrk_threads)
        command = [
            self.args.wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "5s",
            "-s",
            str(Path(__file__).resolve().parent / "wrk.lua"),
            f"http://{LOOPBACK}:{port}{CREDENTIALS_PATH}",
        ]
        environment = dict(os.environ, WRK_MODE=mode, WRK_TOKEN=token)
        cpu_before = cpu_seconds(pid) if pid else 0.0
        wrk_cpu_before = children_cpu_seconds()
        log_path = self.work / "wrk.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=log_file)
            with self.processes.pid_file.open("a") as pids:
                pids.write(f"{process.pid}\n")
            try:
                output, _ = process.communicate(timeout=duration + 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise RuntimeError(f"wrk did not stop within {duration + 30} s")
            except BaseException:
                process.kill()
                process.wait()
                raise
            log_file.write(output)
        if process.returncode != 0:
            raise RuntimeError(f"wrk exited with code {process.returncode}; see {log_path}")
        line = next(
            (line for line in output.decode().splitlines() if line.startswith("BENCH_JSON ")), None
        )
        if line is None:
            raise RuntimeError(f"wrk printed no BENCH_JSON line; see {log_path}")
        figures = json.loads(line.removeprefix("BENCH_JSON "))
        seconds = figures["duration_us"] / 1e6
        figures["requests_per_second"] = figures["requests"] / seconds
        figures["wrk_threads"] = threads
        figures["connections"] = connections
        figures["wrk_cpu_seconds"] = round(children_cpu_seconds() - wrk_cpu_before, 2)
        if pid:
            server_cpu = cpu_seconds(pid) - cpu_before
            figures["server_cpu_seconds"] = round(server_cpu, 2)
            figures["server_cpu_us_per_request"] = round(server_cpu * 1e6 / max(figures["requests"], 1), 2)
        errors = figures["errors"]
        figures["socket_errors"] = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
        figures["non_2xx"] = errors["status"]
        return figures

    # ---- measurements

    def measure_throughput(self, servers: dict[str, tuple[int, int, str]]) -> None:
        """Measure cached credential GETs on the app and the reference servers, interleaved per repetition."""
        runs: dict[str, dict[int, list[dict]]] = {name: {c: [] for c in self.args.connections} for name in servers}
        names = list(servers)
        for repetition in range(self.args.reps):
            for connections in self.args.connections:
                # Alternate which server goes first, so neither always runs on a warmer machine.
                order = names if repetition % 2 == 0 else list(reversed(names))
                for name in order:
                    port, pid, token = servers[name]
                    figures = self.wrk(port, "get", connections, self.args.duration, token, pid)
                    runs[name][connections].append(figures)
                    log(
                        f"GET {name:4} c={connections:<3} rep {repetition + 1}: "
                        f"{figures['requests_per_second']:9.0f} req/s  p50 {figures['latency_us']['p50']} us  "
                        f"p99 {figures['latency_us']['p99']} us  errors {figures['socket_errors']}+{figures['non_2xx']}"
                    )
        self.results["cached_get"] = {
            name: {str(c): summarize(runs[name][c]) for c in self.args.connections} for name in servers
        }

    def measure_sequence(self, port: int, pid: int) -> None:
        """Measure PUT token + GET credentials, as SDKs do it, on the app."""
        out = {}
        for connections in self.args.connections:
            runs = []
            for repetition in range(self.args.reps):
                figures = self.wrk(port, "sequence", connections, self.args.duration, pid=pid)
                runs.append(figures)
                log(
                    f"PUT+GET app c={connections:<3} rep {repetition + 1}: "
                    f"{figures['requests_per_second']:9.0f} req/s  p99 {figures['latency_us']['p99']} us  "
                    f"errors {figures['socket_errors']}+{figures['non_2xx']}"
                )
            summary = summarize(runs)
            summary["sequences_per_second"] = summary["requests_per_second"] / 2
            out[str(connections)] = summary
        self.results["imdsv2_sequence"] = {"app": out}

    def measure_soak(self, port: int, pid: int) -> None:
        """Run the IMDSv2 sequence for a long time and sample the app's RSS every second."""
        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        start = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                value = rss_kib(pid)
                if value is not None:
                    samples.append((round(time.monotonic() - start, 2), value))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(2)
        figures = self.wrk(port, "sequence", self.args.soak_connections, self.args.soak_seconds, pid=pid)
        time.sleep(2)
        stop.set()
        sampler.join()
        values = [kib for _, kib in samples]
        load = [(t, kib) for t, kib in samples if 2 <= t <= 2 + self.args.soak_seconds]
        slope = linear_slope(load) if len(load) >= 2 else 0.0
        half = len(load) // 2
        self.results["soak"] = {
            "connections": self.args.soak_connections,
            "seconds": self.args.soak_seconds,
            "wrk": figures,
            "rss_kib_samples": samples,
            "rss_kib_first": values[0],
            "rss_kib_last": values[-1],
            "rss_kib_max": max(values),
            "rss_kib_min": min(values),
            "rss_kib_per_minute_trend_under_load": round(slope * 60, 1),
            "rss_kib_max_first_half": max(kib for _, kib in load[:half]) if half else None,
            "rss_kib_max_second_half": max(kib for _, kib in load[half:]) if half else None,
        }
        log(
            f"soak: {figures['requests_per_second']:.0f} req/s, errors {figures['socket_errors']}+"
            f"{figures['non_2xx']}, RSS first {values[0]} KiB last {values[-1]} KiB max {max(values)} KiB"
        )

    def measure_many_callers(self, environment: dict[str, str]) -> None:
        """Check that 1,000 concurrent callers without a session raise one MFA request and no STS call."""
        process, port, log_path = self.start_app("callers", environment)
        sts_before = count_moto_sts_calls(self.moto_log)
        callers = self.args.callers
        first = asyncio.run(concurrent_callers(port, callers))
        time.sleep(1)
        after_first = {
            "mfa_requests": count_lines(log_path, MFA_NEEDED_LINE),
            "app_sts_calls": count_lines(log_path, STS_CALL_LINE),
            "moto_sts_calls": count_moto_sts_calls(self.moto_log) - sts_before,
        }
        status, body = post_code(port, "654321")
        if status != 200:
            raise RuntimeError(f"POST {MANAGE_PATH} returned {status}: {body!r}")
        second = asyncio.run(concurrent_callers(port, callers))
        time.sleep(1)
        after_code = {
            "mfa_requests": count_lines(log_path, MFA_NEEDED_LINE),
            "app_sts_calls": count_lines(log_path, STS_CALL_LINE),
            "moto_sts_calls": count_moto_sts_calls(self.moto_log) - sts_before,
        }
        exit_code = self.processes.stop(process)
        self.results["concurrent_callers_without_session"] = {
            "callers": callers,
            "before_code": {"responses": first, **after_first},
            "after_code": {"responses": second, **after_code},
            "exit_code": exit_code,
        }
        log(f"{callers} callers without a session: {first}, then {after_first}")
        log(f"{callers} callers after the code: {second}, then {after_code}")

    def measure_startup(self, environment: dict[str, str]) -> None:
        """Measure the time from process start to the first 200 of PUT /latest/api/token."""
        state_dir = self.work / "state-startup"
        state_dir.mkdir(exist_ok=True)
        log_path = self.work / "app-startup.log"
        times_ms = []
        # The first start creates the token key, so it is not counted.
        for attempt in range(self.args.starts + 1):
            port = free_port()
            started = time.monotonic()
            process = self.processes.start(self.app_command(port, state_dir), log_path, environment)
            deadline = started + 30
            elapsed = None
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"the app exited with code {process.returncode}; see {log_path}")
                try:
                    status, _, _ = http_request(
                        port, "PUT", TOKEN_PATH, {"X-aws-ec2-metadata-token-ttl-seconds": "60"}, timeout=1
                    )
                    if status == 200:
                        elapsed = time.monotonic() - started
                        break
                except OSError:
                    pass
                time.sleep(0.002)
            self.processes.stop(process)
            if elapsed is None:
                raise RuntimeError(f"the app did not respond within 30 s; see {log_path}")
            if attempt > 0:
                times_ms.append(round(elapsed * 1000, 1))
        self.results["startup_to_first_200_ms"] = {
            "samples": times_ms,
            "median": statistics.median(times_ms),
            "min": min(times_ms),
            "max": max(times_ms),
        }
        log(f"start to first 200: median {statistics.median(times_ms)} ms of {times_ms}")

    def measure_headless_only(self, environment: dict[str, str]) -> None:
        """Measure the idle RSS of the build without the tray feature, which maps no GTK libraries."""
        port = free_port()
        state_dir = self.work / "state-headless-only"
        state_dir.mkdir(exist_ok=True)
        log_path = self.work / "app-headless-only.log"
        command = [self.args.app_headless_only, *self.app_command(port, state_dir)[1:]]
        process = self.processes.start(command, log_path, environment)
        wait_for_port(port, process, "aws-mock-metadata (headless-only build)", log_path)
        time.sleep(self.args.idle_seconds)
        rss = rss_kib(process.pid)
        self.results["headless_only_build_idle_rss"] = {"kib": rss, "memory": memory_detail(process.pid)}
        log(f"idle RSS of the headless-only build: {rss} KiB")
        self.processes.stop(process)

    def measure_tray(self, environment: dict[str, str]) -> None:
        """Measure the idle RSS with the tray on a private Xvfb display, or record why it was skipped."""
        xvfb = shutil.which("Xvfb")
        if xvfb is None:
            self.results["tray_idle_rss"] = {"skipped": "Xvfb is not installed"}
            return
        display = None
        for number in range(90, 120):
            if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
                display = f":{number}"
                break
        if display is None:
            self.results["tray_idle_rss"] = {"skipped": "no free X display number in :90..:119"}
            return
        xvfb_process = self.processes.start(
            [xvfb, display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"], self.work / "xvfb.log", environment
        )
        try:
            socket_path = Path(f"/tmp/.X11-unix/X{display[1:]}")
            deadline = time.monotonic() + 10
            while not socket_path.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not socket_path.exists():
                self.results["tray_idle_rss"] = {"skipped": "Xvfb did not start"}
                return
            tray_environment = dict(environment, DISPLAY=display)
            port = free_port()
            state_dir = self.work / "state-tray"
            state_dir.mkdir(exist_ok=True)
            log_path = self.work / "app-tray.log"
            process = self.processes.start(
                self.app_command(port, state_dir, headless=False), log_path, tray_environment
            )
            wait_for_port(port, process, "aws-mock-metadata (tray)", log_path)
            time.sleep(self.args.idle_seconds)
            headless_line = count_lines(log_path, "running headless")
            rss = rss_kib(process.pid)
            detail = memory_detail(process.pid)
            exit_code = self.processes.stop(process)
            self.results["tray_idle_rss"] = {
                "rss_kib": rss,
                "memory_detail": detail,
                "display": "Xvfb without a panel or StatusNotifier host",
                "fell_back_to_headless": headless_line > 0,
                "exit_code": exit_code,
            }
            log(f"idle RSS with the tray: {rss} KiB (fell back to headless: {headless_line > 0})")
        finally:
            self.processes.stop(xvfb_process)

    # ---- the whole run

    def run(self) -> dict:
        started_at = datetime.datetime.now(datetime.timezone.utc)
        self.start_moto()
        environment = self.write_profile()

        app, app_port, app_log = self.start_app("main", environment)
        time.sleep(self.args.idle_seconds)
        rss_after_start = rss_kib(app.pid)
        memory_after_start = memory_detail(app.pid)
        log(f"app idle RSS after start: {rss_after_start} KiB")

        status, body = post_code(app_port, "123456")
        if status != 200:
            raise RuntimeError(f"POST {MANAGE_PATH} token=123456 returned {status}: {body!r}")
        token = get_token(app_port)
        status, app_headers, credentials = http_request(
            app_port, "GET", CREDENTIALS_PATH, {"X-aws-ec2-metadata-token": token}
        )
        if status != 200:
            raise RuntimeError(f"GET {CREDENTIALS_PATH} returned {status}: {credentials!r}")
        body_file = self.work / "credentials.json"
        body_file.write_bytes(credentials)
        time.sleep(1)
        rss_after_seed = rss_kib(app.pid)

        bare, bare_port = self.start_baseline(self.args.bare, "bare_server", body_file, credentials, app_headers)
        # Both servers get the same request bytes, token header included.
        self.results["response"] = {
            "path": CREDENTIALS_PATH,
            "body_bytes": len(credentials),
            "headers": sorted(app_headers),
        }
        rss_bare_idle = rss_kib(bare.pid)
        memory_bare_idle = memory_detail(bare.pid)
        servers = {"app": (app_port, app.pid, token), "bare": (bare_port, bare.pid, token)}

        warp_floor = None
        if self.args.warp_floor:
            warp_floor, warp_port = self.start_baseline(
                self.args.warp_floor, "warp_floor", body_file, credentials, app_headers
            )
            servers["warp"] = (warp_port, warp_floor.pid, token)

        self.measure_throughput(servers)
        self.processes.stop(bare)
        if warp_floor is not None:
            self.processes.stop(warp_floor)
        self.measure_sequence(app_port, app.pid)
        self.measure_soak(app_port, app.pid)
        time.sleep(self.args.idle_seconds)
        rss_after_load = rss_kib(app.pid)
        memory_after_load = memory_detail(app.pid)
        mfa_lines_main = count_lines(app_log, MFA_NEEDED_LINE)
        app_exit = self.processes.stop(app)
        self.results["rss_kib"] = {
            "app_headless_after_start": rss_after_start,
            "app_headless_after_session": rss_after_seed,
            "app_headless_after_load": rss_after_load,
            "bare_idle": rss_bare_idle,
        }
        # All figures are in KiB, except Threads and mapped_files.
        self.results["memory_detail"] = {
            "app_headless_after_start": memory_after_start,
            "app_headless_after_load": memory_after_load,
            "bare_idle": memory_bare_idle,
        }
        self.results["main_app"] = {"exit_code": app_exit, "mfa_requests_logged": mfa_lines_main}
        log(f"app idle RSS after the load: {rss_after_load} KiB; exit code {app_exit}")

        self.measure_many_callers(environment)
        self.measure_startup(environment)
        if self.args.app_headless_only:
            self.measure_headless_only(environment)
        if self.args.tray:
            self.measure_tray(environment)
        else:
            self.results["tray_idle_rss"] = {"skipped": "--no-tray given"}

        self.results["settings"] = {
            "started_at": started_at.isoformat(timespec="seconds"),
            "seconds_per_run": self.args.duration,
            "repetitions": self.args.reps,
            "connections": self.args.connections,
            "wrk_threads_max": self.args.wrk_threads,
            "wrk_version": wrk_version(self.args.wrk),
            "soak_connections": self.args.soak_connections,
            "soak_seconds": self.args.soak_seconds,
            "app_log_level": "default (aws_mock_metadata=info,warn)",
            "python": platform.python_version(),
        }
        self.results["targets"] = evaluate_targets(self.results)
        return self.results


async def concurrent_callers(port: int, callers: int) -> dict[str, int]:
    """Open `callers` connections, then on all of them at once PUT a token and GET the credentials."""
    all_connected = asyncio.Event()
    connected = 0
    statuses: dict[str, int] = {}

    async def exchange(reader, writer, request: bytes) -> tuple[int, dict[str, str], bytes]:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers, _ = parse_response(head)
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def caller() -> None:
        nonlocal connected
        try:
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            statuses["connect_error"] = statuses.get("connect_error", 0) + 1
            connected += 1
            if connected == callers:
                all_connected.set()
            return
        connected += 1
        if connected == callers:
            all_connected.set()
        await all_connected.wait()
        try:
            put = (
                f"PUT {TOKEN_PATH} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
                "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            status, _, token = await exchange(reader, writer, put)
            if status != 200:
                key = f"token_{status}"
            else:
                get = (
                    f"GET {CREDENTIALS_PATH} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
                    f"X-aws-ec2-metadata-token: {token.decode()}\r\nConnection: close\r\n\r\n"
                ).encode()
                status, _, _ = await exchange(reader, writer, get)
                key = str(status)
        except (OSError, asyncio.IncompleteReadError) as error:
            key = type(error).__name__
        finally:
            writer.close()
        statuses[key] = statuses.get(key, 0) + 1

    await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(callers))), timeout=60)
    return dict(sorted(statuses.items()))


def summarize(runs: list[dict]) -> dict:
    """Return the median of each figure over the repetitions, with the raw runs kept."""

    def median(key_path: tuple[str, ...]) -> float:
        values = []
        for run in runs:
            value = run
            for key in key_path:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    return {
        "requests_per_second": round(median(("requests_per_second",)), 1),
        "p50_us": median(("latency_us", "p50")),
        "p90_us": median(("latency_us", "p90")),
        "p99_us": median(("latency_us", "p99")),
        "p999_us": median(("latency_us", "p999")),
        "server_cpu_us_per_request": median(("server_cpu_us_per_request",)),
        "socket_errors": sum(run["socket_errors"] for run in runs),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "runs": runs,
    }


def linear_slope(points: list[tuple[float, int]]) -> float:
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    numerator = sum((t - mean_t) * (v - mean_v) for t, v in points)
    denominator = sum((t - mean_t) ** 2 for t, _ in points)
    return numerator / denominator if denominator else 0.0


def wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    return (result.stdout + result.stderr).splitlines()[0].strip() if (result.stdout + result.stderr) else "unknown"


# 12 MB is read as 12,000,000 bytes, the stricter of the two readings.
RSS_TARGET_KIB = 12_000_000 / 1024


def evaluate_targets(results: dict) -> dict:
    targets = {}
    get = results["cached_get"]
    for connections in ("16", "64"):
        if connections in get["app"]:
            ratio = get["app"][connections]["requests_per_second"] / get["bare"][connections]["requests_per_second"]
            targets[f"throughput_ratio_c{connections}"] = {"value": round(ratio, 3), "target": ">= 0.9", "met": ratio >= 0.9}
    for connections, app in get["app"].items():
        ratio = app["p99_us"] / get["bare"][connections]["p99_us"]
        targets[f"p99_ratio_c{connections}"] = {"value": round(ratio, 3), "target": "<= 1.2", "met": ratio <= 1.2}
    if "1" in get["app"]:
        p99 = get["app"]["1"]["p99_us"]
        targets["p99_c1_us"] = {"value": p99, "target": "< 1000", "met": p99 < 1000}
    rss = results["rss_kib"]["app_headless_after_start"]
    targets["idle_rss_headless_kib"] = {"value": rss, "target": f"< {RSS_TARGET_KIB:.0f} (12 MB)", "met": rss < RSS_TARGET_KIB}
    if "headless_only_build_idle_rss" in results:
        rss = results["headless_only_build_idle_rss"]["kib"]
        targets["idle_rss_headless_only_build_kib"] = {
            "value": rss,
            "target": f"< {RSS_TARGET_KIB:.0f} (12 MB)",
            "met": rss < RSS_TARGET_KIB,
        }
    callers = results["concurrent_callers_without_session"]
    before, after = callers["before_code"], callers["after_code"]
    ok = (
        before["mfa_requests"] == 1
        and before["app_sts_calls"] == 0
        and before["moto_sts_calls"] == 0
        and after["app_sts_calls"] == 1
        and after["moto_sts_calls"] == 1
    )
    targets["one_mfa_request_one_sts_call"] = {
        "value": {key: (before[key], after[key]) for key in ("mfa_requests", "app_sts_calls", "moto_sts_calls")},
        "target": "1 MFA request and 0 STS calls before the code, 1 STS call after it",
        "met": ok,
    }
    soak = results["soak"]
    errors = soak["wrk"]["socket_errors"] + soak["wrk"]["non_2xx"]
    targets["soak_zero_errors"] = {"value": errors, "target": "0", "met": errors == 0}
    return targets


# ---------------------------------------------------------------- the plot


def plot(results_path: Path, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(results_path.read_text())
    get = results["cached_get"]
    levels = list(get["app"])
    x = range(len(levels))
    series = [("app", "aws-mock-metadata", "#1f77b4"), ("bare", "bare hyper (ceiling)", "#bbbbbb")]
    if "warp" in get:
        series.insert(1, ("warp", "warp, no app logic", "#ff7f0e"))
    width = 0.8 / len(series)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for offset, (name, label, color) in enumerate(series):
        shift = [i + (offset - (len(series) - 1) / 2) * width for i in x]
        medians_rps = [get[name][c]["requests_per_second"] / 1000 for c in levels]
        runs_rps = [[r["requests_per_second"] / 1000 for r in get[name][c]["runs"]] for c in levels]
        medians_p99 = [get[name][c]["p99_us"] / 1000 for c in levels]
        runs_p99 = [[r["latency_us"]["p99"] / 1000 for r in get[name][c]["runs"]] for c in levels]
        left.bar(shift, medians_rps, width, label=label, color=color,
                 yerr=spread(medians_rps, runs_rps), capsize=3)
        right.bar(shift, medians_p99, width, label=label, color=color,
                  yerr=spread(medians_p99, runs_p99), capsize=3)
    for axis, title, unit in (
        (left, "Throughput, cached credential GET", "thousand requests/s"),
        (right, "p99 latency, cached credential GET", "ms"),
    ):
        axis.set_xticks(list(x))
        axis.set_xticklabels([f"{c} conn." for c in levels])
        axis.set_title(title)
        axis.set_ylabel(unit)
        axis.grid(axis="y", alpha=0.3)
        axis.legend()
    settings = results.get("settings", {})
    figure.suptitle(
        f"median of {settings.get('repetitions', '?')} wrk runs of {settings.get('seconds_per_run', '?')} s; "
        "bars show min..max; wrk and the server share 2 cores",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    log(f"plot written to {output}")


def spread(medians: list[float], runs: list[list[float]]) -> list[list[float]]:
    # The medians are rounded, so clamp at zero.
    lower = [max(0.0, m - min(r)) for m, r in zip(medians, runs)]
    upper = [max(0.0, max(r) - m) for m, r in zip(medians, runs)]
    return [lower, upper]


# ---------------------------------------------------------------- tables


def tables(results_path: Path) -> str:
    """Return the Markdown tables of BENCHMARKS.md for a results file."""
    results = json.loads(results_path.read_text())
    get = results["cached_get"]
    out = [
        "| connections | app req/s | bare req/s | ratio | app p50 | bare p50 | app p99 | bare p99 | p99 ratio "
        "| app CPU/req | bare CPU/req |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    if "warp" in get:
        out = [
            "| connections | app req/s | warp-only req/s | bare req/s | app/bare | warp-only/bare | app p99 "
            "| warp-only p99 | bare p99 | p99 app/bare | app CPU/req | warp-only CPU/req | bare CPU/req |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    for c in get["app"]:
        app, bare = get["app"][c], get["bare"][c]
        if "warp" in get:
            warp = get["warp"][c]
            out.append(
                f"| {c} | {app['requests_per_second']:,.0f} | {warp['requests_per_second']:,.0f} "
                f"| {bare['requests_per_second']:,.0f} "
                f"| {app['requests_per_second'] / bare['requests_per_second']:.2f} "
                f"| {warp['requests_per_second'] / bare['requests_per_second']:.2f} "
                f"| {app['p99_us']:,.0f} µs | {warp['p99_us']:,.0f} µs | {bare['p99_us']:,.0f} µs "
                f"| {app['p99_us'] / bare['p99_us']:.2f} "
                f"| {app['server_cpu_us_per_request']:.1f} µs | {warp['server_cpu_us_per_request']:.1f} µs "
                f"| {bare['server_cpu_us_per_request']:.1f} µs |"
            )
            continue
        out.append(
            f"| {c} | {app['requests_per_second']:,.0f} | {bare['requests_per_second']:,.0f} "
            f"| {app['requests_per_second'] / bare['requests_per_second']:.2f} "
            f"| {app['p50_us']:.0f} µs | {bare['p50_us']:.0f} µs | {app['p99_us']:,.0f} µs | {bare['p99_us']:,.0f} µs "
            f"| {app['p99_us'] / bare['p99_us']:.2f} "
            f"| {app['server_cpu_us_per_request']:.1f} µs | {bare['server_cpu_us_per_request']:.1f} µs |"
        )
    out += ["", "| connections | requests/s | PUT+GET pairs/s | p50 | p99 | errors |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c, row in results["imdsv2_sequence"]["app"].items():
        out.append(
            f"| {c} | {row['requests_per_second']:,.0f} | {row['sequences_per_second']:,.0f} "
            f"| {row['p50_us']:.0f} µs | {row['p99_us']:,.0f} µs | {row['socket_errors'] + row['non_2xx']} |"
        )
    out += ["", "| target | measured | wanted | met |", "| --- | --- | --- | --- |"]
    for name, target in results["targets"].items():
        out.append(f"| {name} | {target['value']} | {target['target']} | {'yes' if target['met'] else '**no**'} |")
    return "\n".join(out)


# ------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="measure, and write the JSON results")
    run.add_argument("--app", required=True, help="the release binary of aws-mock-metadata")
    run.add_argument("--bare", required=True, help="the release binary of examples/bare_server.rs")
    run.add_argument("--warp-floor", help="the release binary of examples/warp_floor.rs (warp with no app logic)")
    run.add_argument("--moto-python", required=True, help="a Python with moto[server]")
    run.add_argument("--wrk", default="wrk")
    run.add_argument("--work-dir", required=True, help="logs, state and the PID file go here")
    run.add_argument("--output", required=True, type=Path)
    run.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    run.add_argument("--reps", type=int, default=3, help="repetitions of every wrk run")
    run.add_argument("--connections", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16, 64])
    run.add_argument("--wrk-threads", type=int, default=2, help="wrk threads, at most one per connection")
    run.add_argument("--soak-seconds", type=int, default=60)
    run.add_argument("--soak-connections", type=int, default=64)
    run.add_argument("--callers", type=int, default=1000)
    run.add_argument("--starts", type=int, default=7, help="starts timed to the first 200")
    run.add_argument("--idle-seconds", type=float, default=3, help="wait before reading an idle RSS")
    run.add_argument("--no-tray", dest="tray", action="store_false", help="skip the idle RSS with the tray")
    run.add_argument(
        "--app-headless-only",
        help="a release binary built with --no-default-features (no tray), for its idle RSS",
    )

    draw = commands.add_parser("plot", help="draw the PNG from the JSON results")
    draw.add_argument("--input", required=True, type=Path)
    draw.add_argument("--output", required=True, type=Path)

    table = commands.add_parser("tables", help="print the Markdown tables of BENCHMARKS.md")
    table.add_argument("--input", required=True, type=Path)

    args = parser.parse_args()
    if args.command == "tables":
        print(tables(args.input))
        return 0
    if args.command == "plot":
        plot(args.input, args.output)
        return 0

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(args.callers, args.soak_connections) * 2 + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    try:
        results = bench.run()
    finally:
        bench.processes.stop_all()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    log(f"results written to {args.output}")
    # Missed targets are reported but do not fail the run, because this is a measurement.
    for name, target in results["targets"].items():
        log(f"target {name}: {target['value']} (want {target['target']}): {'met' if target['met'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
