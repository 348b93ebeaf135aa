"""The files of deploy/ say only what is true (issue 16, item 3): the systemd units pass
``systemd-analyze verify``; the compose file, the Kubernetes manifests and the alert rules
parse; every ``leakguard`` command they run exists and parses as the CLI would; every
setting they set is one Leakguard or gunicorn reads; the Containerfile's commands are
the ones deploy/README.md gives."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from flask import Flask

from service.cli import cli
from service.clients import Scope
from service.config import Settings
from service.notices.smtp_url import parse_smtp_url
from tests.support.factories import make_api_key
from tests.support.http import bearer

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
SETTINGS = {f"LEAKGUARD_{name.upper()}" for name in Settings.model_fields}
GUNICORN_CONFIG = (DEPLOY / "gunicorn.conf.py").read_text()


def command_problem(args: list[str]) -> str | None:
    """Why ``leakguard ARGS`` would not run as written (unknown command, bad option), or
    None. Parses as click does, without running anything."""
    command: click.Command = cli
    context = click.Context(cli, info_name="leakguard")
    path: list[str] = []
    rest = list(args)
    while isinstance(command, click.Group):
        if not rest:
            return f"{' '.join(path)}: no subcommand"
        found = command.get_command(context, rest[0])
        path.append(rest.pop(0))
        if found is None:
            return f"no command {' '.join(path)}"
        command = found
        context = click.Context(command, parent=context, info_name=path[-1])
    try:
        command.make_context(path[-1], rest, parent=context)
    except click.ClickException as exc:
        return f"leakguard {' '.join(args)}: {exc.format_message()}"
    return None


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container spec anywhere in a manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"containers", "initContainers"} and isinstance(value, list):
                yield from value
            else:
                yield from containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers(item)


def assert_known_variables(names: set[str], where: str) -> None:
    for name in names:
        if name.startswith("LEAKGUARD_"):
            assert name in SETTINGS, f"{where}: {name} is no Leakguard setting"
        elif name.startswith("GUNICORN_"):
            assert f'"{name}"' in GUNICORN_CONFIG, f"{where}: gunicorn.conf.py never reads {name}"


# --- systemd ---------------------------------------------------------------------------


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze missing: tests/system-packages.sh installs it")
    units = sorted((DEPLOY / "systemd").iterdir())
    assert {unit.name for unit in units} >= {
        "leakguard-web.service",
        "leakguard-worker@.service",
        "leakguard-housekeeping.service",
        "leakguard-housekeeping.timer",
    }
    for unit in units:
        # The units name the install prefix of deploy/README.md; here it is this checkout.
        text = unit.read_text().replace("/opt/leakguard/venv/bin/", f"{BIN}/")
        text = text.replace("/opt/leakguard/deploy/", f"{DEPLOY}/")
        (tmp_path / unit.name).write_text(text)
    from jobs.queues import ALL_QUEUES

    workers = [f"leakguard-worker@{queue.value}.service" for queue in ALL_QUEUES]
    for name in workers:
        shutil.copy(tmp_path / "leakguard-worker@.service", tmp_path / name)
    names = [u.name for u in units if "@." not in u.name] + workers
    verified = subprocess.run(
        [analyze, "verify", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout + verified.stderr == ""


def test_systemd_units_run_commands_and_settings_that_exist() -> None:
    for unit in (DEPLOY / "systemd").iterdir():
        for line in unit.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.startswith("Exec") and "/bin/leakguard" in value:
                args = shlex.split(value)[1:]
                args = [arg.replace("%i", "high") for arg in args]
                assert command_problem(args) is None, (unit.name, command_problem(args))
            if key == "Environment":
                assert_known_variables({value.split("=", 1)[0]}, unit.name)
    timer = (DEPLOY / "systemd" / "leakguard-housekeeping.timer").read_text()
    assert "Unit=leakguard-housekeeping.service" in timer


# --- containers --------------------------------------------------------------------------


def test_containerfile_runs_leakguard_as_a_user_and_its_commands_are_the_readmes() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert 'ENTRYPOINT ["leakguard"]' in text
    users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert users
    assert all(not user.startswith(("0", "root")) for user in users)
    [cmd] = re.findall(r"^CMD (\[.*\])$", text, flags=re.MULTILINE)
    assert command_problem(yaml.safe_load(cmd)) is None
    readme = (DEPLOY / "README.md").read_text()
    commands = [line.lstrip("# ").split("  (")[0].strip() for line in text.splitlines()]
    shown = [c for c in commands if c.startswith(("podman ", "docker "))]
    assert shown, "the Containerfile shows no command"
    for command in shown:
        assert command in readme, f"deploy/README.md lacks: {command}"
        if " run " in command:
            args = shlex.split(command.split(" leakguard ", 1)[1])
            assert command_problem(args) is None


def test_compose_parses_and_names_commands_and_settings_that_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "mailpit", "web", "worker"} <= services.keys()
    ours = {
        name: s for name, s in services.items() if s.get("image", "").endswith("leakguard:latest")
    }
    assert {"web", "worker", "migrate"} <= ours.keys()
    for name, service in ours.items():
        assert command_problem(service["command"]) is None, name
        assert_known_variables(set(service["environment"]), f"compose {name}")


def test_compose_mails_its_catcher_without_starttls() -> None:
    """mailpit offers no STARTTLS unless given a certificate, and smtp:// to a host other
    than this one requires it: the first try's worker retried every warning until it
    failed ("the server does not offer STARTTLS") and the catcher showed none."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    url = compose["x-leakguard"]["environment"]["LEAKGUARD_SMTP_URL"]
    assert not any(
        name.startswith("MP_SMTP_TLS")
        for name in compose["services"]["mailpit"].get("environment", {})
    )
    settings = parse_smtp_url(url)
    assert (settings.host, settings.implicit_tls, settings.starttls) == ("mailpit", False, "off")


# --- Kubernetes ----------------------------------------------------------------------------


def test_kubernetes_manifests_parse_and_name_what_exists() -> None:
    folder = DEPLOY / "kubernetes"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (folder / resource).is_file(), resource
    kinds: dict[str, list[dict[str, Any]]] = {}
    readme = (DEPLOY / "README.md").read_text()
    for path in folder.glob("*.yaml"):
        for doc in yaml_documents(path):
            kinds.setdefault(doc["kind"], []).append(doc)
            if doc["kind"] == "ConfigMap":
                assert_known_variables(set(doc["data"]), path.name)
            for container in containers(doc):
                assert container["image"] == "leakguard", path.name
                args = [a.replace("LEAK_FILE", "x.txt") for a in container["args"]]
                assert command_problem(args) is None, (path.name, command_problem(args))
                assert container["resources"]["requests"], path.name
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                names = {item["name"] for item in container.get("env", [])}
                assert_known_variables(names, path.name)
                for item in container.get("env", []):
                    reference = item["valueFrom"]["secretKeyRef"]
                    # The Secret is made by hand from the README's command, with these keys.
                    assert f"--from-literal={reference['key']}=" in readme, reference
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe in container:
                        assert container[probe]["httpGet"]["path"] in {"/healthz", "/readyz"}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "Job",
        "CronJob",
        "PodDisruptionBudget",
    } <= kinds.keys()
    [web] = [d for d in kinds["Deployment"] if d["metadata"]["name"] == "leakguard-web"]
    [web_container] = web["spec"]["template"]["spec"]["containers"]
    assert web_container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web_container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    workers = {
        tuple(d["spec"]["template"]["spec"]["containers"][0]["args"])
        for d in kinds["Deployment"]
        if d["metadata"]["name"].startswith("leakguard-worker-")
    }
    from jobs.queues import ALL_QUEUES

    assert workers == {("worker", "--queue", queue.value) for queue in ALL_QUEUES}


# --- alerts ------------------------------------------------------------------------------


@pytest.mark.redis
def test_alert_rules_parse_and_name_only_metrics_the_app_exposes(
    make_app: Callable[..., Flask], runtime: Any, redis_url: str
) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yaml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert all(
        rule["alert"] and rule["annotations"]["summary"]
        for g in rules["groups"]
        for rule in g["rules"]
    )
    client = make_app(redis_url=redis_url).test_client()
    key = make_api_key(runtime, Scope.METRICS_READ, Scope.RISK_CHECK)
    client.post("/v1/risk/check", json={"account_id": "someone"}, headers=bearer(key))
    scraped = client.get("/metrics", headers=bearer(key)).get_data(as_text=True)
    exposed = set(re.findall(r"^(leakguard_\w+)", scraped, flags=re.MULTILINE))
    named = {name for expr in expressions for name in re.findall(r"leakguard_\w+", expr)}
    # Counters of what has not happened yet have no sample; their family is declared.
    declared = set(re.findall(r"^# TYPE (leakguard_\w+)", scraped, flags=re.MULTILINE))
    counters = {f"{name}_total" for name in declared} | {
        f"{name}_{suffix}" for name in declared for suffix in ("bucket", "count", "sum")
    }
    assert named <= exposed | declared | counters, named - (exposed | declared | counters)
