"""Tracking endpoints under load: requests per second, p99 latency, and nothing lost.

Runs `newsletter serve` on a workspace with one sent campaign, loads the open
pixel and the click redirect with wrk (10 s each, 32 connections on loopback),
then stops the server cleanly and checks that the events stored equal the
requests answered. The ceiling is a do-nothing endpoint on the same framework
and server, measured in the same run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _local import free_port, wait

DURATION = "10s"
CONNECTIONS = 32
THREADS = 2


def wrk(url: str) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", DURATION, "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {
        "requests": requests_done,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99_ms": float(p99.group(1)) * scale,
        "bad": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


BASELINE = textwrap.dedent(
    """
    import sys
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    from newsletter.tracking import PIXEL_GIF
    from newsletter.web.server import listen, make_server

    async def nothing(request):
        return Response(PIXEL_GIF, media_type="image/gif")

    app = Starlette(routes=[Route("/o/{token}.gif", nothing)])
    try:
        make_server(app).run(sockets=[listen("127.0.0.1", int(sys.argv[1]))])
    except KeyboardInterrupt:
        pass
    """
)


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench/track.py needs wrk (Debian package wrk); `make bench` installs it")
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="bench-track-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_WEB__PORT=str(port), NEWSLETTER_SITE__BASE_URL=f"http://127.0.0.1:{port}")
    cli = [python, "-m", "newsletter", "--workspace", str(work / "ws")]

    def run(*args: str) -> str:
        return subprocess.run(
            [*cli, *args], capture_output=True, text=True, env=env, check=True, cwd=work / "ws"
        ).stdout

    subprocess.run([*cli, "init"], check=True, env=env, capture_output=True)
    run("fetch")
    run("subscribers", "import", "subscribers/example.csv")
    run("campaign", "create", "--subject", "Bench")
    run("campaign", "send", "1")
    message = next((work / "ws" / "outbox").glob("*.eml")).read_bytes().decode()
    message = re.sub(r"=\r?\n", "", message).replace("=3D", "=")
    pixel = re.search(rf"http://127\.0\.0\.1:{port}/o/[\w-]+\.gif", message).group(0)
    click = re.search(rf"http://127\.0\.0\.1:{port}/c/[\w-]+", message).group(0)

    base_port = free_port()
    baseline = subprocess.Popen([python, "-c", BASELINE, str(base_port)], env=env)
    wait(f"http://127.0.0.1:{base_port}/o/x.gif", baseline)
    ceiling = wrk(f"http://127.0.0.1:{base_port}/o/x.gif")
    baseline.send_signal(signal.SIGINT)
    baseline.wait(timeout=30)

    server = subprocess.Popen(
        [*cli, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait(f"http://127.0.0.1:{port}/healthz", server)
    results = {"pixel": wrk(pixel), "click": wrk(click)}
    server.send_signal(signal.SIGINT)
    server.wait(timeout=120)

    db = sqlite3.connect(work / "ws" / "newsletter.db")
    stored = dict(db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind").fetchall())
    db.close()
    answered_opens = results["pixel"]["requests"] - results["pixel"]["bad"]
    answered_clicks = results["click"]["requests"] - results["click"]["bad"]

    print(
        f"ceiling (do-nothing endpoint, same server): {ceiling['rps']:.0f} req/s, "
        f"p99 {ceiling['p99_ms']:.1f} ms"
    )
    for name, r in results.items():
        print(
            f"{name:<6} {r['rps']:.0f} req/s = {r['rps'] / ceiling['rps']:.2f} x ceiling, "
            f"p99 {r['p99_ms']:.1f} ms, {r['bad']} non-2xx/3xx"
            + (f", socket errors {r['socket_errors']}" if r["socket_errors"] else "")
        )
    # wrk counts only the responses it read before its time was up; the server
    # also answered (and stored) the requests still in flight then, at most one
    # per connection. So stored may exceed wrk's count by up to CONNECTIONS.
    lost = 0
    for kind, answered in (("open", answered_opens), ("click", answered_clicks)):
        extra = stored.get(kind, 0) - answered
        lost += max(0, -extra)
        print(
            f"{kind} events stored: {stored.get(kind, 0)} for {answered} responses wrk read "
            f"({extra:+d}: requests in flight when wrk stopped, at most {CONNECTIONS})"
        )
        if extra > CONNECTIONS:
            sys.exit(f"{kind}: more events stored than requests sent")
    print(f"lost events: {lost}")
    shutil.rmtree(work, ignore_errors=True)
    if lost:
        sys.exit(1)


if __name__ == "__main__":
    main()
