"""`ragtune app`: the Streamlit command it runs and the arguments the app reads back."""

import sys

import pytest

import builder.app_cli
from builder.app_cli import APP_SCRIPT, app_command, parse_app_args
from builder.cli import main


def test_app_command_serves_on_loopback_without_telemetry(tmp_path):
    command = app_command(tmp_path, 8600, ["retrieval.top_k=3"])
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT)]
    assert APP_SCRIPT.is_file()
    options = dict(zip(command[5 : command.index("--") : 2], command[6 : command.index("--") : 2]))
    assert options["--server.address"] == "127.0.0.1"
    assert options["--server.headless"] == "true"
    assert options["--browser.gatherUsageStats"] == "false"
    assert options["--server.port"] == "8600"
    after = command[command.index("--") + 1 :]
    assert after == [str(tmp_path.resolve()), "--set", "retrieval.top_k=3"]
    assert parse_app_args(after) == (tmp_path.resolve(), ["retrieval.top_k=3"])


@pytest.mark.parametrize(
    ("argv", "reason"),
    [([], "no project folder"), (["p", "--port", "1"], "unexpected argument '--port'")],
)
def test_bad_app_arguments_say_how_to_start_the_app(argv, reason):
    with pytest.raises(ValueError, match=reason) as error:
        parse_app_args(argv)
    assert "ragtune app PROJECT" in str(error.value)


def test_cli_runs_streamlit_for_an_existing_project(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(builder.app_cli.subprocess, "call", lambda c: ran.append(c) or 0)
    assert main(["app", str(tmp_path), "--port", "8700"]) == 0
    assert ran[0][ran[0].index("--server.port") + 1] == "8700"


def test_cli_refuses_a_missing_project_or_bad_port(tmp_path, capsys):
    assert main(["app", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["app", str(tmp_path), "--port", "70000"]) == 2
    assert "--port must be between 1 and 65535" in capsys.readouterr().err
