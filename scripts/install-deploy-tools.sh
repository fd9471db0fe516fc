#!/usr/bin/env bash
# Install the deployment checkers (helm, kubernetes-validate, checkov, python-hcl2, terraform/tofu)
# into a cache outside the repository. Idempotent: a second run only checks what is there.
#
# Everything comes from package registries: helm is built from the Go module proxy, the Python
# checkers go into their own venv (their dependency pins clash with the app's Poetry env).
# On success the last lines on stdout are KEY=path, one per tool, for tests and Make to read
# (TERRAFORM= is empty when neither terraform nor tofu could be found or built):
#   HELM=... TERRAFORM=... KUBERNETES_VALIDATE=... CHECKOV=... TOOLS_PYTHON=...
# Progress goes to stderr. Exit 1 (with the reason) when helm or the checkers cannot be installed.
set -euo pipefail

HELM_VERSION="v3.21.4"
# Kubernetes minor version helm assumes offline (helm's Makefile derives it from its client-go v0.36).
HELM_KUBE_MINOR="36"
TOFU_VERSION="v1.10.6"
# Pinned together: checkov pulls many libraries, so the whole set lives in its own venv.
PY_REQUIREMENTS=(
    "kubernetes-validate==1.37.0"
    "checkov==3.3.30"
    "python-hcl2==8.1.4"
)

TOOLS_DIR="${VIGIL_TOOLS_DIR:-${HOME}/.cache/vigil/tools}"
BIN_DIR="${TOOLS_DIR}/bin"
VENV_DIR="${TOOLS_DIR}/venv"
mkdir -p "${BIN_DIR}"

log() { printf 'install-deploy-tools: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Several engineers (and parallel pytest sessions) may call this at once: one installs, others
# wait. flock releases by itself if the installer dies.
exec 9>"${TOOLS_DIR}/.install.lock"
flock -w 1800 9 || die "timed out waiting for another install (${TOOLS_DIR}/.install.lock)"

# --- helm -----------------------------------------------------------------------------------
helm_bin=""
if [[ -x "${BIN_DIR}/helm" ]] && "${BIN_DIR}/helm" version --short 2>/dev/null | grep -q "^${HELM_VERSION}"; then
    helm_bin="${BIN_DIR}/helm"
elif command -v helm >/dev/null 2>&1 && helm version --short 2>/dev/null | grep -q '^v3\.'; then
    helm_bin="$(command -v helm)"
else
    command -v go >/dev/null 2>&1 || die "helm is missing and Go is not installed to build it (need Go >= 1.26)"
    log "building helm ${HELM_VERSION} from the Go module proxy (a few minutes on 2 cores)"
    # The same ldflags as helm's Makefile: without them `helm version` says "v3.21" and
    # `helm template` assumes Kubernetes 1.20.
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=${HELM_KUBE_MINOR}"
    done
    GOBIN="${BIN_DIR}" CGO_ENABLED=0 go install -trimpath -ldflags "${ldflags}" \
        "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2 || die "go install helm failed"
    helm_bin="${BIN_DIR}/helm"
fi

# --- Python checkers in their own venv --------------------------------------------------------
stamp="${VENV_DIR}/.vigil-requirements"
wanted="$(printf '%s\n' "${PY_REQUIREMENTS[@]}")"
if [[ ! -x "${VENV_DIR}/bin/python" ]] || [[ "$(cat "${stamp}" 2>/dev/null)" != "${wanted}" ]]; then
    python="$(command -v python3.11 || command -v python3 || true)"
    [[ -n "${python}" ]] || die "python3 is needed for the checkers venv"
    log "creating ${VENV_DIR} with ${PY_REQUIREMENTS[*]}"
    rm -rf "${VENV_DIR}"
    "${python}" -m venv "${VENV_DIR}"
    "${VENV_DIR}/bin/pip" install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}" >&2 \
        || die "pip install of ${PY_REQUIREMENTS[*]} failed"
    printf '%s' "${wanted}" >"${stamp}"
fi

# --- terraform or OpenTofu (only `fmt` and parsing are used: no provider download) -------------
tf_bin=""
for candidate in terraform tofu; do
    if command -v "${candidate}" >/dev/null 2>&1; then
        tf_bin="$(command -v "${candidate}")"
        break
    fi
done
if [[ -z "${tf_bin}" && -x "${BIN_DIR}/tofu" ]]; then
    tf_bin="${BIN_DIR}/tofu"
fi
if [[ -z "${tf_bin}" ]]; then
    if command -v go >/dev/null 2>&1; then
        log "neither terraform nor tofu found: building OpenTofu ${TOFU_VERSION} from the Go module proxy"
        if GOBIN="${BIN_DIR}" CGO_ENABLED=0 go install "github.com/opentofu/opentofu/cmd/tofu@${TOFU_VERSION}" >&2; then
            tf_bin="${BIN_DIR}/tofu"
        fi
    fi
    # Not fatal: the helm checks still run; the Terraform format test reports the missing tool.
    [[ -n "${tf_bin}" ]] || log "WARNING: no terraform or tofu; 'terraform fmt -check' cannot run (TERRAFORM is empty)"
fi

echo "HELM=${helm_bin}"
echo "TERRAFORM=${tf_bin}"
echo "KUBERNETES_VALIDATE=${VENV_DIR}/bin/kubernetes-validate"
echo "CHECKOV=${VENV_DIR}/bin/checkov"
echo "TOOLS_PYTHON=${VENV_DIR}/bin/python"
