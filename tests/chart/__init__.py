"""Chart tests: `helm lint` and `helm template` of charts/modelshield, and assertions on the objects rendered."""
