"""``modelshield.dev/v1alpha1``: ModelSecurityPolicy, ClusterModelSecurityPolicy, ModelArtifact."""

GROUP = "modelshield.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
