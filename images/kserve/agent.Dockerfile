# KServe v0.17.0's agent (the payload logger sidecar KServe's pod mutator injects when an
# InferenceService has spec.predictor.logger), on the Debian-made base, for the node tests
# (images/kserve-agent-image.sh). The binary is `go build` of cmd/agent from KServe's Go
# module at that exact version, built on the host as KServe's agent.Dockerfile builds it
# (CGO_ENABLED=0: a static binary), and copied in; the build context is the directory
# holding it. KServe's own image puts it at /ko-app/agent on distroless/static:nonroot.

ARG BASE_IMAGE=modelshield-python:3.11-bookworm
FROM ${BASE_IMAGE}
RUN useradd kserve -m -u 1000 -d /home/kserve
WORKDIR /ko-app
COPY agent /ko-app/agent
USER 1000
ENTRYPOINT ["/ko-app/agent"]
