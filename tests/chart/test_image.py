"""The Dockerfile the chart's image is built from, by its text (`make image` builds it): a
dependency list, a build stage and a final one, a wheel download that only the dependencies
and their constraints invalidate, a non-root user that matches the chart's, no build tools in the final stage, OCI
labels, the `modelshield` entrypoint, a build context with what the wheel needs, nothing
fetched from Docker Hub but the base, and the CA bundle only as a build secret."""

from __future__ import annotations

import fnmatch
import re
import tomllib

import yaml

from tests.support import chartrendering as rendering

DOCKERFILE = rendering.REPOSITORY / "Dockerfile"
DOCKERIGNORE = rendering.REPOSITORY / ".dockerignore"


def _stages() -> list[list[str]]:
    """The instructions of each stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(stripped)
    return stages


def test_multi_stage_with_a_slim_python_final_stage() -> None:
    stages = _stages()
    assert [stage[0] for stage in stages] == [
        "FROM ${PYTHON_IMAGE} AS dependencies",
        "FROM ${PYTHON_IMAGE} AS build",
        "FROM ${PYTHON_IMAGE}",
    ]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()


def test_final_stage_installs_only_wheels_offline_and_no_build_tools() -> None:
    final = " ".join(_stages()[-1])
    assert "--no-index" in final
    assert "COPY operator" not in final
    assert "COPY webhooks" not in final
    for tool in ("apt-get install", "gcc", "build-essential", "pip wheel", "hatch"):
        assert tool not in final, tool
    # Wheels are bind-mounted for the install, never copied into a layer.
    assert "--mount=type=bind,from=build,source=/wheels" in final


def test_runs_as_the_chart_s_non_root_user_with_the_modelshield_entrypoint() -> None:
    final = _stages()[-1]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users[-1] == "65532:65532"
    values = yaml.safe_load((rendering.CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532
    assert values["podSecurityContext"]["runAsGroup"] == 65532
    assert 'ENTRYPOINT ["modelshield"]' in final


def test_oci_labels() -> None:
    text = DOCKERFILE.read_text()
    for label in ("source", "version", "licenses", "revision", "title"):
        assert f"org.opencontainers.image.{label}=" in text, label
    project = tomllib.loads((rendering.REPOSITORY / "pyproject.toml").read_text())["project"]
    assert f'org.opencontainers.image.licenses="{project["license"]}"' in text
    assert f"ARG VERSION={project['version']}" in text


def test_build_context_holds_what_the_wheel_needs_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    project = tomllib.loads((rendering.REPOSITORY / "pyproject.toml").read_text())
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    needed = {"pyproject.toml", project["project"]["readme"], "constraints.txt"}
    needed |= {package.split("/")[0] for package in packages}
    assert needed <= allowed, needed - allowed
    for copied in re.findall(r"^COPY (?!--)(\S+(?: \S+)*) \S+$", DOCKERFILE.read_text(), re.M):
        for source in copied.split():
            assert any(fnmatch.fnmatch(source.rstrip("/"), entry) for entry in allowed), source


def test_builds_without_fetching_a_frontend_from_docker_hub() -> None:
    # A `# syntax=` directive makes BuildKit pull that frontend image before anything else;
    # Docker's built-in frontend knows RUN --mount, which is all this Dockerfile uses.
    first_lines = DOCKERFILE.read_text().splitlines()
    directives = [line for line in first_lines if re.match(r"#\s*syntax\s*=", line, re.I)]
    assert directives == []


def test_the_ca_bundle_is_a_build_secret_of_the_download_step_only() -> None:
    dependencies, build, final = (" ".join(stage) for stage in _stages())
    assert "--mount=type=secret,id=ca-bundle,required=false" in build
    assert "PIP_CERT=/run/secrets/ca-bundle" in build
    # The final stage installs offline: no secret, and no certificate copied in.
    assert "secret" not in final
    assert "secret" not in dependencies
    assert not re.search(r"^(COPY|ADD) .*\.(pem|crt)\b", DOCKERFILE.read_text(), re.M | re.I)


def test_only_the_dependency_list_and_constraints_come_before_the_wheel_download() -> None:
    """An edit to README.md, to pyproject.toml's tool settings or to the sources leaves the
    download of the dependencies' wheels cached: what is copied before it is the list the
    dependencies stage reads from pyproject.toml (copied by content) and constraints.txt."""
    dependencies, build, _ = _stages()
    assert dependencies[1:] == [
        "COPY pyproject.toml /src/",
        next(line for line in dependencies if line.startswith("RUN ")),
    ]
    download = next(i for i, line in enumerate(build) if "--requirement" in line)
    copies = [line for line in build[:download] if line.startswith(("COPY", "ADD"))]
    assert copies == [
        "COPY --from=dependencies /dependencies.txt /tmp/dependencies.txt",
        "COPY constraints.txt ./",
    ]
    assert "/tmp/dependencies.txt" in build[download]
