"""tokengate: a local Kong Identity and an OpenID Connect gateway configured by kong.yaml."""

__version__ = "0.1.0"
