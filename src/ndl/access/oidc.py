"""Signing in through an organisation's identity provider, by OpenID Connect.

The authorization code flow with PKCE (S256), a random ``state`` (checked by the caller
against what it kept) and ``nonce`` (checked inside the ID token), and the ID token verified
against the provider's published keys (JWKS): signature, issuer, audience, expiry, nonce.
authlib builds the authorization URL and exchanges the code; joserfc (authlib's own JOSE
library) verifies the token.

Each provider is trusted for one organisation: whoever it signs in becomes (or is) a user of
that organisation. An account is found by the token's (issuer, subject) pair and by nothing
else; an e-mail address never links an identity to an existing account, since addresses are
reassigned and providers let people edit them.

MFA is the provider's to perform and ours to require: a provider's ``require_amr`` (any one
of these methods, e.g. ``mfa``, ``otp``, ``hwk``) and ``require_acr`` (one of these
assurance levels) are checked on the verified token, and a sign-in without them is refused.

Configuration is a TOML file (``ndl hub --oidc-config FILE`` or ``NDL_OIDC_CONFIG``)::

    [providers.uni]
    label = "University of Example"        # the button says "Sign in with <label>"
    issuer = "https://idp.example.ac.uk"
    client_id = "ndl-hub"
    client_secret_env = "NDL_OIDC_UNI_SECRET"   # or client_secret_file = "/etc/ndl/uni"
    org = "uni-example"                    # the organisation this provider vouches for
    roles = ["researcher"]                 # given to people it signs in for the first time
    require_amr = ["mfa", "otp", "hwk"]     # any one of these (optional)
    require_acr = []                       # any one of these (optional)
    # redirect_uri = "https://library.example/sign-in/oidc/uni/callback"  # behind a proxy
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ndl.core.errors import AuthenticationRequired, InvalidInput, NotFound

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# Signature algorithms an ID token may use; "none" and HMAC (keyed by the client secret,
# which the hub would then have to guard like a signing key) are not among them.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")
HTTP_TIMEOUT = 10.0
METADATA_TTL = 3600.0  # discovery and keys are re-read hourly, and at once on an unknown key
CLOCK_LEEWAY = 60      # seconds of clock difference tolerated on exp/iat


@dataclass(frozen=True)
class MfaPolicy:
    """What a provider's token must say about how the person authenticated."""

    amr: tuple[str, ...] = ()  # any one of these methods (RFC 8176 names)
    acr: tuple[str, ...] = ()  # any one of these assurance levels

    def unmet(self, claims: Mapping[str, Any]) -> str | None:
        """Why ``claims`` fall short of the policy, or None if they meet it."""
        if self.amr:
            given = claims.get("amr")
            methods = {str(m) for m in given} if isinstance(given, list) else set()
            if not methods.intersection(self.amr):
                return (f"the identity provider did not report multi-factor authentication "
                        f"(amr {sorted(methods) or 'missing'}; this hub needs one of "
                        f"{', '.join(self.amr)})")
        if self.acr and str(claims.get("acr", "")) not in self.acr:
            return (f"the identity provider's assurance level (acr {claims.get('acr')!r}) is "
                    f"not one this hub accepts ({', '.join(self.acr)})")
        return None


@dataclass(frozen=True)
class Provider:
    name: str
    label: str
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    org: str
    roles: tuple[str, ...] = ("researcher",)
    mfa: MfaPolicy = MfaPolicy()
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    # The callback URL registered at the provider; "" builds it from the request's own URL,
    # which behind a TLS-terminating proxy would say http:// (so set it there).
    redirect_uri: str = ""


@dataclass(frozen=True)
class OidcSettings:
    providers: tuple[Provider, ...] = ()

    def get(self, name: str) -> Provider:
        for p in self.providers:
            if p.name == name:
                return p
        raise NotFound(f"there is no identity provider {name[:40]!r} on this hub"
                           + (f"; it has {', '.join(p.name for p in self.providers)}"
                              if self.providers else ""))


def check_url(url: str, what: str) -> str:
    """An https URL, or http to a loopback address (a provider on this machine, for tests
    and the demo): tokens and codes never cross a network in the clear."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url
    raise InvalidInput(f"{what} {url[:200]!r} must be an https:// URL (http:// only to a "
                       "loopback address, for testing)")


def _strings(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"{where} must be a list of strings, e.g. [\"mfa\", \"otp\"]")
    return tuple(value)


def _secret(raw: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> str:
    if "client_secret" in raw:
        raise InvalidInput(f"{where}: do not write the client secret in the file; name an "
                           "environment variable (client_secret_env) or a file "
                           "(client_secret_file) holding it")
    if env := raw.get("client_secret_env"):
        value = environ.get(str(env), "")
        if not value:
            raise InvalidInput(f"{where}: the environment variable {env} (client_secret_env) "
                               "is not set")
        return value
    if path := raw.get("client_secret_file"):
        try:
            value = Path(str(path)).read_text("utf-8").strip()
        except OSError as exc:
            raise InvalidInput(f"{where}: cannot read client_secret_file {path}: "
                               f"{exc.strerror}") from exc
        if not value:
            raise InvalidInput(f"{where}: client_secret_file {path} is empty")
        return value
    raise InvalidInput(f"{where}: set client_secret_env or client_secret_file")


def parse_config(text: str, environ: Mapping[str, str]) -> OidcSettings:
    """Read the TOML configuration (see the module docstring); every mistake is named."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"the OIDC configuration is not valid TOML: {exc}") from exc
    tables = doc.get("providers")
    if not isinstance(tables, dict) or not tables:
        raise InvalidInput("the OIDC configuration names no [providers.<name>] table")
    out = []
    for name, raw in tables.items():
        where = f"[providers.{name}]"
        if not _NAME.match(name):
            raise InvalidInput(f"{where}: a provider's name is 1-32 lowercase letters, digits "
                               "and hyphens (it appears in the sign-in URL)")
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where} must be a table")
        for required in ("issuer", "client_id", "org"):
            if not isinstance(raw.get(required), str) or not raw[required]:
                raise InvalidInput(f"{where}: {required} is required")
        out.append(Provider(
            name=name, label=str(raw.get("label") or name),
            issuer=check_url(raw["issuer"].rstrip("/"), f"{where} issuer"),
            client_id=raw["client_id"], client_secret=_secret(raw, where, environ),
            org=raw["org"], roles=_strings(raw.get("roles"), f"{where} roles") or ("researcher",),
            mfa=MfaPolicy(_strings(raw.get("require_amr"), f"{where} require_amr"),
                          _strings(raw.get("require_acr"), f"{where} require_acr")),
            scopes=_strings(raw.get("scopes"), f"{where} scopes") or ("openid", "email",
                                                                      "profile"),
            redirect_uri=check_url(str(raw["redirect_uri"]), f"{where} redirect_uri")
            if raw.get("redirect_uri") else "",
        ))
    return OidcSettings(tuple(out))


def check_mfa_everywhere(settings: OidcSettings) -> None:
    """With passwords off, every way in must require MFA (SATRE 3.2.04): refuse to start a
    hub with no provider, or with one that requires no ``amr`` or ``acr``."""
    if not settings.providers:
        raise InvalidInput("--no-password-sign-in needs --oidc-config naming at least one "
                           "identity provider: otherwise nobody could sign in")
    lax = [p.name for p in settings.providers if not (p.mfa.amr or p.mfa.acr)]
    if lax:
        raise InvalidInput(f"with --no-password-sign-in every provider must require MFA; "
                           f"{', '.join(lax)} sets neither require_amr nor require_acr")


def load_config(path: str | Path, environ: Mapping[str, str]) -> OidcSettings:
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read the OIDC configuration {path}: {exc.strerror}") from exc
    return parse_config(text, environ)


# --- the flow ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flow:
    """What the browser's round trip to the provider must bring back to match: kept by the
    caller (in a signed, short-lived cookie), never shown to the provider but as hashes."""

    provider: str
    state: str
    nonce: str
    code_verifier: str = field(repr=False)


@dataclass(frozen=True)
class VerifiedIdentity:
    """A verified ID token's facts: who (issuer, subject) and what they said."""

    provider: str
    issuer: str
    subject: str
    claims: dict[str, Any]

    @property
    def preferred_name(self) -> str:
        for claim in ("preferred_username", "email", "name"):
            value = self.claims.get(claim)
            if isinstance(value, str) and value:
                return value
        return self.subject

    @property
    def display_name(self) -> str:
        value = self.claims.get("name")
        return value if isinstance(value, str) and value else self.preferred_name


class ProviderClient:
    """One provider's discovery document, keys and token endpoint, cached per hub process."""

    def __init__(self, provider: Provider, transport: httpx.BaseTransport | None = None) -> None:
        self.provider = provider
        self._transport = transport
        self._lock = threading.Lock()
        self._meta: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, KeySet] | None = None

    def _client(self) -> OAuth2Client:
        p = self.provider
        return OAuth2Client(client_id=p.client_id, client_secret=p.client_secret,
                            token_endpoint_auth_method="client_secret_basic",  # noqa: S106
                            code_challenge_method="S256", scope=" ".join(p.scopes),
                            timeout=HTTP_TIMEOUT, transport=self._transport)

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            with httpx.Client(timeout=HTTP_TIMEOUT, transport=self._transport) as http:
                resp = http.get(url)
                resp.raise_for_status()
                body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise AuthenticationRequired(
                f"the identity provider {self.provider.label!r} could not be reached for its "
                f"{what} ({type(exc).__name__}); try again later") from exc
        if not isinstance(body, dict):
            raise AuthenticationRequired(f"the identity provider's {what} is not a JSON object")
        return body

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._meta and time.monotonic() - self._meta[0] < METADATA_TTL:
                return self._meta[1]
        issuer = self.provider.issuer
        meta = self._get_json(f"{issuer}/.well-known/openid-configuration", "discovery document")
        # A provider answering for another issuer is a mix-up, not a provider of ours.
        if str(meta.get("issuer", "")).rstrip("/") != issuer:
            raise AuthenticationRequired(
                f"the identity provider at {issuer} says its issuer is "
                f"{str(meta.get('issuer'))[:200]!r}; check the issuer in the OIDC configuration")
        for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            check_url(str(meta.get(endpoint, "")), f"the provider's {endpoint}")
        with self._lock:
            self._meta = (time.monotonic(), meta)
        return meta

    def _keyset(self, *, fresh: bool) -> KeySet:
        with self._lock:
            if not fresh and self._keys and time.monotonic() - self._keys[0] < METADATA_TTL:
                return self._keys[1]
        raw = self._get_json(str(self.metadata()["jwks_uri"]), "signing keys (JWKS)")
        try:
            keys = KeySet.import_key_set(raw)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise AuthenticationRequired("the identity provider's signing keys (JWKS) could "
                                         "not be read") from exc
        with self._lock:
            self._keys = (time.monotonic(), keys)
        return keys

    def begin(self, redirect_uri: str) -> tuple[Flow, str]:
        """A new flow and the provider URL to send the browser to."""
        p = self.provider
        flow = Flow(p.name, generate_token(32), generate_token(32), generate_token(64))
        extra: dict[str, str] = {"nonce": flow.nonce}
        if p.mfa.acr:
            extra["acr_values"] = " ".join(p.mfa.acr)  # a hint; the token is what counts
        with self._client() as client:
            url, _ = client.create_authorization_url(
                str(self.metadata()["authorization_endpoint"]), state=flow.state,
                code_verifier=flow.code_verifier, redirect_uri=redirect_uri, **extra)
        return flow, str(url)

    def finish(self, flow: Flow, *, code: str, redirect_uri: str) -> VerifiedIdentity:
        """Exchange the code (with the PKCE verifier) and verify the ID token it brings."""
        p = self.provider
        try:
            with self._client() as client:
                token = client.fetch_token(
                    str(self.metadata()["token_endpoint"]), grant_type="authorization_code",
                    code=code, redirect_uri=redirect_uri, code_verifier=flow.code_verifier)
        except httpx.HTTPError as exc:
            raise AuthenticationRequired(f"the identity provider {p.label!r} could not be "
                                         "reached to finish signing in; try again") from exc
        except Exception as exc:  # authlib's OAuthError: the provider refused the code
            raise AuthenticationRequired(
                f"the identity provider {p.label!r} refused to finish signing in "
                f"({str(exc)[:200]}); start again") from exc
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if not isinstance(id_token, str):
            raise AuthenticationRequired("the identity provider sent no ID token: is 'openid' "
                                         "among the scopes?")
        claims = self.verify(id_token, nonce=flow.nonce)
        return VerifiedIdentity(p.name, p.issuer, str(claims["sub"]), claims)

    def verify(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature (by a key in the provider's JWKS), issuer,
        audience, expiry and nonce all check; otherwise :class:`AuthenticationRequired`."""
        p = self.provider
        try:
            try:
                decoded = jwt.decode(id_token, self._keyset(fresh=False), algorithms=ALGORITHMS)
            except JoseError:
                # The provider may have rotated its keys since we read them: read them again.
                decoded = jwt.decode(id_token, self._keyset(fresh=True), algorithms=ALGORITHMS)
            claims = dict(decoded.claims)
            jwt.JWTClaimsRegistry(
                leeway=CLOCK_LEEWAY,
                iss={"essential": True, "value": p.issuer},
                aud={"essential": True, "value": p.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(claims)
        except JoseError as exc:
            raise AuthenticationRequired(
                f"the ID token from {p.label!r} did not verify ({exc.error}: "
                f"{str(exc.description or '')[:200]}); start signing in again") from exc
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != p.client_id:
            raise AuthenticationRequired("the ID token was issued to another client (azp)")
        if not isinstance(claims.get("sub"), str) or not 0 < len(claims["sub"]) <= 255:
            raise AuthenticationRequired("the ID token's subject (sub) is not usable")
        return claims

    def mfa_shortfall(self, identity: VerifiedIdentity) -> str | None:
        """Why this sign-in falls short of the hub's MFA policy for the provider, or None."""
        why = self.provider.mfa.unmet(identity.claims)
        if why is None:
            return None
        return (f"Multi-factor authentication is required by this hub's policy: {why}. Sign "
                "in again at your identity provider with a second factor, or ask its "
                "administrators to enrol you. Nothing was changed.")
