"""The identity server: a local Kong Identity (Konnect /v1/auth-servers API and real issuers)."""
