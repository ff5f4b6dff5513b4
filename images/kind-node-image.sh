#!/usr/bin/env bash
# Makes a kind node image from parts built on this machine, for `make e2e-kind` where
# kind's own images (kindest/base, kindest/node, and the registry.k8s.io images
# `kind build node-image` pulls) cannot be downloaded. Three steps, each cached as a
# docker image:
#
#  1. the base (kind's kindest/base, rebuilt): Debian bookworm by mmdebstrap with systemd
#     and Debian's containerd, runc and CNI plugins, kind's own files from the kind module
#     (entrypoint, systemd units, containerd config), crictl; what kind's
#     images/base/Dockerfile does to systemd, done the same way.
#  2. the cluster's images, FROM one Debian minbase with iptables and conntrack (what
#     kube-proxy needs): kube-apiserver, kube-controller-manager, kube-scheduler,
#     kube-proxy v1.36.3, etcd v3.6.8 and CoreDNS v1.14.2 from the tool cache, and the
#     pause program, named under modelshield.local/kind (the cluster config sets kubeadm's
#     imageRepository to it; nothing here is an upstream image).
#  3. the node, the steps of kind's `kind build node-image`: kubeadm, kubelet, kubectl in
#     /usr/bin, /kind/version, the images imported into the node's containerd, a
#     bridge CNI config for the single node's pod range (no kindnetd: the cluster config
#     disables kind's default CNI), `docker commit`.
#
# Usage: images/kind-node-image.sh [TAG]      # default modelshield-kind-node:v1.36.3
#   needs e2e/tools/build-tools.sh, build-node-tools.sh and build-kind.sh to have run.
set -euo pipefail

readonly KUBERNETES_VERSION=v1.36.3
readonly TAG="${1:-modelshield-kind-node:${KUBERNETES_VERSION}}"
readonly SUITE=bookworm
readonly IMAGE_REPOSITORY=modelshield.local/kind
readonly PAUSE_IMAGE="${IMAGE_REPOSITORY}/pause:1"
# kind's default podSubnet is 10.244.0.0/16; the only node gets its first /24.
readonly POD_RANGE=10.244.0.0/24
readonly CACHE="${MODELSHIELD_TOOLS_CACHE:-$HOME/.cache/modelshield/tools}"

log() { printf 'kind-node-image: %s\n' "$*" >&2; }
die() { printf 'kind-node-image: %s\n' "$*" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
docker="$("$here/docker-engine.sh")"
for env_file in env.sh node-env.sh kind-env.sh; do
  [[ -f "$CACHE/$env_file" ]] || die "$CACHE/$env_file is missing: run e2e/tools/build-tools.sh, build-node-tools.sh and build-kind.sh"
  # shellcheck source=/dev/null
  source "$CACHE/$env_file"
done
readonly BASE_TAG="modelshield-kind-base:${MODELSHIELD_KIND_VERSION}-${SUITE}"
readonly COMPONENTS_BASE_TAG="modelshield-kind-components:${SUITE}"
bin_of() { printf '%s/%s-%s/%s' "$CACHE" "$1" "$KUBERNETES_VERSION" "$1"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/modelshield-kind-node.XXXXXX")"
build_container=""
cleanup() {
  [[ -z "$build_container" ]] || "$docker" rm -f -v "$build_container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

have_image() { "$docker" image inspect "$1" >/dev/null 2>&1; }
size_of() { "$docker" image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }

# debian_rootfs NAME PACKAGES [HOOK...]: a Debian minbase root filesystem as $work/NAME.tar.
debian_rootfs() {
  local name="$1" packages="$2"; shift 2
  local hooks=() hook
  for hook in "$@"; do hooks+=(--customize-hook="$hook"); done
  # shellcheck disable=SC2016  # "$1" is the root directory, expanded by mmdebstrap's hook
  mmdebstrap --variant=minbase --mode=auto --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "${hooks[@]}" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
    "$SUITE" "$work/$name.tar" >"$work/$name.log" 2>&1 \
    || { tail -n 30 "$work/$name.log" >&2; die "mmdebstrap of $name failed (log above)"; }
}

# --- 1. the base -----------------------------------------------------------------------
build_base() {
  local started=$SECONDS files="$work/kind-files"
  cp -r "$MODELSHIELD_KIND_MODULE/images/base/files" "$files"
  chmod -R u+w "$files"
  find "$files" -type d -exec chmod 0755 {} +
  find "$files" -type f -exec chmod 0644 {} +
  chmod 0755 "$files"/usr/local/bin/* "$files"/kind/bin/*
  cp "$MODELSHIELD_CRICTL" "$files/usr/local/bin/crictl"
  # kind's units and scripts run containerd from /usr/local/bin; Debian installs it in
  # /usr/bin, its CNI plugins in /usr/lib/cni (kind's containerd looks in /opt/cni/bin).
  # The pause image is the local one.
  cat >"$work/customize-base.sh" <<SH
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/*
rm -f /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/basic.target.wants/*
rm -f /lib/systemd/system/sockets.target.wants/*udev* /lib/systemd/system/sockets.target.wants/*initctl*
echo ReadKMsg=no >> /etc/systemd/journald.conf
ln -sf /usr/lib/systemd/systemd /sbin/init
for b in containerd containerd-shim-runc-v2 ctr; do ln -sf /usr/bin/\$b /usr/local/bin/\$b; done
mkdir -p /opt/cni /etc/kubernetes/manifests /etc/cni/net.d
ln -sfn /usr/lib/cni /opt/cni/bin
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
ctr oci spec \
  | jq '.hooks.createContainer[.hooks.createContainer|length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
  | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
sed -i 's|sandbox_image = .*|sandbox_image = "$PAUSE_IMAGE"|' /etc/containerd/config.toml
SH
  # shellcheck disable=SC2016  # $1 is mmdebstrap's root directory, expanded by its hook
  debian_rootfs kind-base \
    systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,e2fsprogs,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins \
    "cp -a $files/. \"\$1\"/" \
    "cp $work/customize-base.sh \"\$1\"/tmp/ && chroot \"\$1\" sh -eux /tmp/customize-base.sh && rm \"\$1\"/tmp/customize-base.sh"
  "$docker" import \
    --change 'ENV container=docker' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
    --message "kind ${MODELSHIELD_KIND_VERSION} node base on Debian $SUITE, made by images/kind-node-image.sh" \
    "$work/kind-base.tar" "$BASE_TAG" >/dev/null
  # systemd stops on SIGRTMIN+3 (SIGTERM makes it re-execute); `docker import` cannot set
  # a stop signal, a one-line build can. The imported image it replaces is removed.
  local imported
  imported="$("$docker" image inspect --format '{{.Id}}' "$BASE_TAG")"
  printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$BASE_TAG" \
    | DOCKER_BUILDKIT=1 "$docker" build -q -t "$BASE_TAG" - >/dev/null
  "$docker" image rm "$imported" >/dev/null
  log "$BASE_TAG: $(size_of "$BASE_TAG") in $((SECONDS - started)) s"
}

# --- 2. the cluster's images -------------------------------------------------------------
component_images=()
build_component_images() {
  local started=$SECONDS name binary
  if ! have_image "$COMPONENTS_BASE_TAG"; then
    debian_rootfs components iptables,conntrack,ca-certificates
    "$docker" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --message "Debian $SUITE minbase with iptables, made by images/kind-node-image.sh" \
      "$work/components.tar" "$COMPONENTS_BASE_TAG" >/dev/null
  fi
  # name=binary; the tags are the ones kubeadm asks for under IMAGE_REPOSITORY.
  local -A binaries=(
    [kube-apiserver]="$(bin_of kube-apiserver)"
    [kube-controller-manager]="$(bin_of kube-controller-manager)"
    [kube-scheduler]="$(bin_of kube-scheduler)"
    [kube-proxy]="$(bin_of kube-proxy)"
    [etcd]="$MODELSHIELD_KIND_ETCD"
    [coredns]="$MODELSHIELD_COREDNS"
    [pause]="$MODELSHIELD_PAUSE"
  )
  local -A tags=([pause]="$PAUSE_IMAGE")
  local image
  while read -r image; do
    name="${image##*/}"; name="${name%%:*}"
    [[ "$name" == pause ]] || tags[$name]="$image"
  done < <("$MODELSHIELD_KUBEADM" config images list --kubernetes-version "$KUBERNETES_VERSION" \
    --image-repository "$IMAGE_REPOSITORY")
  for name in "${!binaries[@]}"; do
    binary="${binaries[$name]}"
    [[ -x "$binary" && -n "${tags[$name]:-}" ]] || die "no binary or tag for $name ($binary)"
    mkdir -p "$work/$name"
    cp "$binary" "$work/$name/$name"
    printf 'FROM %s\nCOPY %s /usr/local/bin/%s\n' "$COMPONENTS_BASE_TAG" "$name" "$name" >"$work/$name/Dockerfile"
    if [[ "$name" == kube-proxy ]]; then
      # kube-proxy must write its rules with the iptables the node uses (legacy or nft),
      # picked the way kind's entrypoint and upstream's iptables-wrapper pick it.
      mv "$work/$name/$name" "$work/$name/$name.real"
      cat >"$work/$name/$name" <<'SH'
#!/bin/sh
legacy=$( (iptables-legacy-save; ip6tables-legacy-save) 2>/dev/null | grep -c '^-')
nft=$( (timeout 5 sh -c 'iptables-nft-save; ip6tables-nft-save') 2>/dev/null | grep -c '^-')
mode=nft
[ "$legacy" -lt "$nft" ] || mode=legacy
update-alternatives --set iptables "/usr/sbin/iptables-$mode" >/dev/null
update-alternatives --set ip6tables "/usr/sbin/ip6tables-$mode" >/dev/null
exec /usr/local/bin/kube-proxy.real "$@"
SH
      chmod 0755 "$work/$name/$name"
      printf 'COPY %s.real /usr/local/bin/%s.real\n' "$name" "$name" >>"$work/$name/Dockerfile"
    fi
    # pause and CoreDNS run without a command of their own (kubeadm gives CoreDNS args).
    [[ "$name" != pause && "$name" != coredns ]] \
      || printf 'ENTRYPOINT ["/usr/local/bin/%s"]\n' "$name" >>"$work/$name/Dockerfile"
    DOCKER_BUILDKIT=1 "$docker" build -q -t "${tags[$name]}" "$work/$name" >/dev/null
    component_images+=("${tags[$name]}")
  done
  log "images ${component_images[*]}: $((SECONDS - started)) s"
}

# --- 3. the node -------------------------------------------------------------------------
build_node() {
  local started=$SECONDS binary
  build_container="modelshield-kind-build-$$"
  "$docker" run -d --name "$build_container" --entrypoint=sleep \
    --security-opt seccomp=unconfined "$BASE_TAG" infinity >/dev/null
  for binary in "$MODELSHIELD_KUBEADM" "$(bin_of kubelet)" "$(bin_of kubectl)"; do
    "$docker" cp "$binary" "$build_container:/usr/bin/$(basename "$binary")"
  done
  "$docker" exec -i "$build_container" sh -euc "
    chown root:root /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
    chmod 0755 /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
    echo $KUBERNETES_VERSION > /kind/version
    cat > /etc/cni/net.d/10-modelshield-bridge.conflist"  <<JSON
{
  "cniVersion": "1.0.0",
  "name": "modelshield-kind",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_RANGE"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  # What kind's image importer does: a containerd of the build container's own, the
  # images imported without unpacking (kind's containerd config discards unpacked layers).
  "$docker" exec "$build_container" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &'
  # shellcheck disable=SC2016  # expanded in the build container
  "$docker" exec "$build_container" bash -c \
    'for i in $(seq 50); do [[ -S /run/containerd/containerd.sock ]] && ctr version >/dev/null 2>&1 && exit 0; sleep 0.2; done; cat /tmp/containerd.log; exit 1' \
    || die "containerd did not start in the build container"
  "$docker" save "${component_images[@]}" \
    | "$docker" exec -i "$build_container" ctr --namespace=k8s.io images import --all-platforms --no-unpack - >/dev/null
  "$docker" exec "$build_container" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' | sort >&2
  "$docker" exec "$build_container" sh -c 'pkill containerd; rm -f /tmp/containerd.log'
  sleep 1
  local previous
  previous="$("$docker" image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
  "$docker" commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    "$build_container" "$TAG" >/dev/null
  # The node image this one replaces (~1 GB) goes, unless a container still uses it.
  [[ -z "$previous" ]] || "$docker" image rm "$previous" >/dev/null 2>&1 || true
  log "$TAG: $(size_of "$TAG") in $((SECONDS - started)) s"
}

have_image "$BASE_TAG" || build_base
build_component_images
build_node
