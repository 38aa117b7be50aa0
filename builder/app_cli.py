"""`ragtune app PROJECT`: start the Streamlit app, and read its arguments back inside it.

The app's pages live in apps/ and are run by Streamlit, never imported: this module only knows
where the entry script is.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape

from builder.console import err

DEFAULT_PORT = 8501
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# apps/ sits beside builder/ in the source tree and in site-packages alike.
APP_SCRIPT = Path(__file__).resolve().parents[1] / "apps" / "chat.py"


def app_command(
    project: Path,
    port: int | None = None,
    overrides: Sequence[str] = (),
    script: Path = APP_SCRIPT,
) -> list[str]:
    """`streamlit run apps/chat.py -- PROJECT [--set ...]`, bound to loopback, no telemetry.

    The app can upload, delete, rebuild and tune, so no other web page may drive it: the
    safe values are set explicitly rather than trusted to Streamlit's defaults or to a
    `.streamlit/config.toml` in the working folder. XSRF protection guards uploads, CORS
    protection refuses other origins, and `server.allowedHosts` refuses a WebSocket (the
    channel every button uses) under a Host that is not a loopback name: DNS rebinding.

    Args:
        project: the project folder.
        port: the port to serve on (None: Streamlit's default, 8501).
        overrides: `section.key=value` settings for this run, passed on to the app.
        script: the entry script (tests run the app through a wrapper that swaps the models).
    """
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.address",
        "127.0.0.1",
        "--server.enableXsrfProtection",
        "true",
        "--server.enableCORS",
        "true",
        # No "Deploy" button: the app runs on the user's machine.
        "--client.toolbarMode",
        "minimal",
    ]
    for host in LOOPBACK_HOSTS:
        command += ["--server.allowedHosts", host]
    if port is not None:
        command += ["--server.port", str(port)]
    command += ["--", str(Path(project).resolve())]
    for override in overrides:
        command += ["--set", override]
    return command


def parse_app_args(argv: Sequence[str]) -> tuple[Path, list[str]]:
    """Read back what `app_command` passed after `--`: the project folder and the overrides.

    Raises:
        ValueError: the arguments are not `PROJECT [--set SECTION.KEY=VALUE ...]`.
    """
    usage = "expected PROJECT [--set SECTION.KEY=VALUE ...]; start it with `ragtune app PROJECT`"
    args = list(argv)
    if not args or args[0].startswith("-"):
        raise ValueError(f"no project folder given: {usage}")
    overrides = []
    rest = args[1:]
    while rest:
        flag = rest.pop(0)
        if flag != "--set" or not rest:
            raise ValueError(f"unexpected argument {flag!r}: {usage}")
        overrides.append(rest.pop(0))
    return Path(args[0]), overrides


def cmd_app(args: argparse.Namespace) -> int:
    from builder.project import open_project

    root: Path = args.project
    if not root.is_dir():
        err.print(
            f"[red]error:[/] project folder {escape(str(root))} not found: create one with "
            f"`ragtune build {escape(str(root))} --docs DIR`, or make an empty folder and add "
            "documents in the app"
        )
        return 2
    if not 1 <= args.port <= 65535:
        err.print(f"[red]error:[/] --port must be between 1 and 65535, got {args.port}")
        return 2
    open_project(root, args.set)  # settings problems are reported here, not in the browser
    err.print(f"ragtune app: http://127.0.0.1:{args.port} (Ctrl+C stops it)")
    try:
        return subprocess.call(app_command(root, args.port, args.set))
    except KeyboardInterrupt:
        return 0  # Streamlit got the same Ctrl+C and has stopped


def add_commands(add) -> None:
    """Register `app` with the CLI's `add(name, help, handler)` helper."""
    app = add("app", "Open the app: chat, documents, tuning, evaluation.", cmd_app)
    app.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1 (default: 8501)"
    )
