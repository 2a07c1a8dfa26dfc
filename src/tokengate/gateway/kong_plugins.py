"""Which plugins a kong.yaml may name, and which of them decide whether a request gets in.

Kong refuses a file that names a plugin it has not loaded: a misspelt name never silently turns
a plugin off. tokengate runs openid-connect and cors only; every other name is one of three:
  KONG_PLUGINS minus ACCESS_PLUGINS   warned about and ignored (logging, transformations, ...)
  ACCESS_PLUGINS                      an error: ignoring it would open what Kong keeps shut
  any other name                      an error, as in Kong (a typo, or a custom plugin)
--ignore-plugins names those of the last two kinds the user accepts to run without.
"""

from __future__ import annotations

import difflib
from typing import Final

__all__ = ["ACCESS_PLUGINS", "KONG_PLUGINS", "OIDC_PLUGIN", "closest_plugin", "kong_spelling"]

OIDC_PLUGIN: Final = "openid-connect"

# Kong's plugins that decide whether a request gets in:
# - by who sends it (authentication, acl, ip, bot and policy checks, request-termination);
# - by what it carries (validators, threat and injection protection, the AI guards and
#   sanitiser, ai-prompt-template's refusal of untemplated prompts): ignoring them lets in what
#   Kong keeps out;
# - by code or flow tokengate cannot read (the serverless functions, where hand-written auth
#   lives; datakit's exit node; request-callout's Lua; ai-mcp-proxy's ACLs).
# Rate limiters are not among them: what they refuse is how much, not what.
ACCESS_PLUGINS: Final = frozenset(
    {
        "ace",
        "acl",
        "ai-aws-guardrails",
        "ai-azure-content-safety",
        "ai-custom-guardrail",
        "ai-gcp-model-armor",
        "ai-lakera-guard",
        "ai-mcp-oauth2",
        "ai-mcp-proxy",
        "ai-prompt-guard",
        "ai-prompt-template",
        "ai-sanitizer",
        "ai-semantic-prompt-guard",
        "ai-semantic-response-guard",
        "basic-auth",
        "bot-detection",
        "datakit",
        "header-cert-auth",
        "hmac-auth",
        "injection-protection",
        "ip-restriction",
        "json-threat-protection",
        "jwe-decrypt",
        "jwt",
        "jwt-signer",
        "key-auth",
        "key-auth-enc",
        "konnect-application-auth",
        "ldap-auth",
        "ldap-auth-advanced",
        "mtls-auth",
        "oas-validation",
        "oauth2",
        "oauth2-introspection",
        "opa",
        "post-function",
        "pre-function",
        "request-callout",
        "request-termination",
        "request-validator",
        "saml",
        "standard-webhooks",
        "vault-auth",
        "websocket-validator",
        "xml-threat-protection",
    }
)

# The plugins Kong Gateway (open source and Enterprise, 3.x up to 3.14) bundles, by name (Kong's
# plugin catalogue; openwhisk, installed apart, is not one). A name missing here is refused
# with an error that offers --ignore-plugins, never ignored in silence.
KONG_PLUGINS: Final = ACCESS_PLUGINS | frozenset(
    {
        OIDC_PLUGIN,
        "acme",
        "ai-a2a-proxy",
        "ai-llm-as-judge",
        "ai-prompt-compressor",
        "ai-prompt-decorator",
        "ai-proxy",
        "ai-proxy-advanced",
        "ai-rag-injector",
        "ai-rate-limiting-advanced",
        "ai-request-transformer",
        "ai-response-transformer",
        "ai-semantic-cache",
        "app-dynamics",
        "application-registration",
        "aws-lambda",
        "azure-functions",
        "canary",
        "confluent",
        "confluent-consume",
        "correlation-id",
        "cors",
        "datadog",
        "degraphql",
        "exit-transformer",
        "file-log",
        "forward-proxy",
        "graphql-proxy-cache-advanced",
        "graphql-rate-limiting-advanced",
        "grpc-gateway",
        "grpc-web",
        "http-log",
        "jq",
        "kafka-consume",
        "kafka-log",
        "kafka-upstream",
        "loggly",
        "metering-and-billing",
        "mocking",
        "opentelemetry",
        "prometheus",
        "proxy-cache",
        "proxy-cache-advanced",
        "rate-limiting",
        "rate-limiting-advanced",
        "redirect",
        "request-size-limiting",
        "request-transformer",
        "request-transformer-advanced",
        "response-ratelimiting",
        "response-transformer",
        "response-transformer-advanced",
        "route-by-header",
        "route-transformer-advanced",
        "service-protection",
        "session",
        "solace-consume",
        "solace-log",
        "solace-upstream",
        "statsd",
        "statsd-advanced",
        "syslog",
        "tcp-log",
        "tls-handshake-modifier",
        "tls-metadata-headers",
        "udp-log",
        "upstream-oauth",
        "upstream-timeout",
        "websocket-size-limit",
        "zipkin",
    }
)


def kong_spelling(name: str) -> str | None:
    """The Kong plugin `name` spells another way (case, '_' or spaces for '-'), else None."""
    spelled = _as_kong_spells(name)
    return spelled if spelled in KONG_PLUGINS else None


def closest_plugin(name: str) -> str | None:
    """A Kong plugin whose name is close to `name` (a typo's likely meaning), else None."""
    found = difflib.get_close_matches(_as_kong_spells(name), _SORTED, n=1, cutoff=0.8)
    return found[0] if found else None


def _as_kong_spells(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


_SORTED: Final = sorted(KONG_PLUGINS)  # difflib's answer does not depend on set order
