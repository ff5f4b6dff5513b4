# One image for every modelshield process: `modelshield webhook`, `modelshield operator`,
# `modelshield drift-monitor` and the CLI (`modelshield test`, `modelshield crds`, ...).
#
#   docker build -t modelshield:dev .
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t ... .
#   make image        # the same with BuildKit, on a base made from Debian packages
#
# Needs BuildKit (RUN --mount), which Docker's built-in Dockerfile frontend provides: no
# `# syntax=` line, so nothing is fetched from Docker Hub but the base image, and that one
# can be any Python 3.11 on Debian (--build-arg PYTHON_IMAGE=...; images/base-image.sh makes
# one from Debian's packages). Behind a TLS-inspecting proxy, hand pip the proxy's CA bundle
# as a BuildKit secret: --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt. A
# secret is mounted for one RUN only and is never part of a layer.
#
# Stage 1 builds the modelshield wheel and collects the wheels of its dependencies, pinned
# by constraints.txt; stage 2 installs those wheels, offline, into a fresh slim Python and
# nothing else: no compiler, no source tree, no pip cache.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The dependency list alone, read from pyproject.toml: copied into the build stage by its
# content, so an edit elsewhere in pyproject.toml (tool settings) or in README.md leaves the
# wheel download below cached.
FROM ${PYTHON_IMAGE} AS dependencies
COPY pyproject.toml /src/
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /dependencies.txt

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY --from=dependencies /dependencies.txt /tmp/dependencies.txt
COPY constraints.txt ./
# The dependencies' wheels first: a layer that a change to the sources does not invalidate,
# so a rebuild after an edit downloads nothing.
RUN --mount=type=secret,id=ca-bundle,required=false \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python -m pip wheel --wheel-dir /wheels --constraint constraints.txt --requirement /tmp/dependencies.txt
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY webhooks/ webhooks/
RUN --mount=type=secret,id=ca-bundle,required=false \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python -m pip wheel --wheel-dir /wheels --no-deps .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="modelshield" \
      org.opencontainers.image.description="Kubernetes admission webhook, operator and drift monitor enforcing MLSecOps controls on model deployments" \
      org.opencontainers.image.source="https://github.com/modelshield/modelshield" \
      org.opencontainers.image.url="https://github.com/modelshield/modelshield" \
      org.opencontainers.image.documentation="https://github.com/modelshield/modelshield/tree/main/docs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="modelshield"

# The root filesystem is read-only in the chart; caches (sigstore's trust material) go to
# the /tmp volume.
ENV PATH=/opt/modelshield/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache

# The chart runs everything as 65532:65532; the image says so too, so that a pod spec
# without a securityContext still does not run as root.
RUN groupadd --system --gid 65532 modelshield \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin modelshield

# The wheels are bind-mounted, not copied: they never become a layer of this image.
# Removed after the install, because no modelshield process imports them: pip and
# setuptools; the kubernetes client's asyncio copy (kubernetes/aio, 68 MB; kopf talks to the
# API with aiohttp itself); numpy's, scipy's and h5py's own test suites (51 MB).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/modelshield \
 && /opt/modelshield/bin/pip install --no-index --find-links /wheels --no-cache-dir modelshield \
 && /opt/modelshield/bin/pip uninstall --yes setuptools pip \
 && site=$(/opt/modelshield/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && rm -rf "$site/kubernetes/aio" \
 && find "$site/numpy" "$site/scipy" "$site/h5py" -depth -type d -name tests -exec rm -rf {} + \
 && modelshield --version

USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["modelshield"]
CMD ["--help"]
