"""The intent router: MiniLM features and a trained head (or an LLM prompt), its training and
evaluation. Used by the ingress (placement: ingress) and by deployments/router.py."""
