//! Bearer tokens: verifying them on every `/v1` request, and minting them for
//! development (`crosslink token`). Claims: `sub`, `dealer`, `roles`, `exp`, `iss`, `aud`.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use domain::tenancy::{Caller, DealerId, Role, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::problem::ApiError;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub dealer: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    pub iss: String,
    pub aud: String,
}

/// Checks tokens against the configured key, issuer and audience.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let algorithm = parse_algorithm(&settings.auth.algorithm)?;
        let key = match algorithm {
            Algorithm::HS256 => DecodingKey::from_secret(settings.jwt_secret().as_bytes()),
            Algorithm::RS256 | Algorithm::ES256 => {
                let path = settings.auth.public_key_file.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("auth.public_key_file is required for {algorithm:?}")
                })?;
                let pem = std::fs::read(path).map_err(|e| {
                    anyhow::anyhow!("cannot read auth.public_key_file {}: {e}", path.display())
                })?;
                if algorithm == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)?
                } else {
                    DecodingKey::from_ec_pem(&pem)?
                }
            }
            _ => unreachable!("parse_algorithm only returns the three supported"),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&settings.auth.issuer]);
        validation.set_audience(&[&settings.auth.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = settings.auth.leeway_secs;
        Ok(Self { key, validation })
    }

    /// The caller a bearer token stands for, or why not (always 401).
    pub fn verify(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let header = authorization.ok_or_else(|| {
            ApiError::unauthorized("send a bearer token: Authorization: Bearer <JWT>")
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not a bearer token")
            })?;
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidAudience => "the token is for another audience",
                    ErrorKind::InvalidIssuer => "the token is from another issuer",
                    ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                        "the token's signature is not valid"
                    }
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                    _ => "the token is not valid",
                };
                ApiError::unauthorized(why)
            })?;
        let claims = data.claims;
        if claims.dealer.trim().is_empty() || claims.sub.trim().is_empty() {
            return Err(ApiError::unauthorized(
                "the token's dealer and sub must not be empty",
            ));
        }
        Ok(Caller {
            dealer: DealerId(claims.dealer),
            user: UserId(claims.sub),
            roles: claims.roles.iter().filter_map(|r| Role::parse(r)).collect(),
        })
    }
}

fn parse_algorithm(name: &str) -> anyhow::Result<Algorithm> {
    match name.to_ascii_uppercase().as_str() {
        "HS256" => Ok(Algorithm::HS256),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        other => anyhow::bail!("auth.algorithm {other} is not supported (HS256, RS256, ES256)"),
    }
}

/// Signs a token with the configured HS256 secret (development and tests).
pub fn mint_token(
    settings: &Settings,
    dealer: &str,
    sub: &str,
    roles: &[Role],
    ttl: std::time::Duration,
) -> anyhow::Result<String> {
    if !settings.auth.algorithm.eq_ignore_ascii_case("HS256") {
        anyhow::bail!(
            "crosslink token signs with the HS256 secret; this service is configured for {}",
            settings.auth.algorithm
        );
    }
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let claims = Claims {
        sub: sub.to_owned(),
        dealer: dealer.to_owned(),
        roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
        exp: now + ttl.as_secs(),
        iat: now,
        iss: settings.auth.issuer.clone(),
        aud: settings.auth.audience.clone(),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(settings.jwt_secret().as_bytes()),
    )?)
}

/// The authenticated caller, put in the request by the auth middleware.
pub struct Auth(pub Caller);

impl Auth {
    /// Refuses with 403 unless the caller holds `role` (or a higher one).
    pub fn require(&self, role: Role) -> Result<&Caller, ApiError> {
        if self.0.has(role) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role",
                role.as_str()
            )))
        }
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .map(Auth)
                .ok_or_else(|| ApiError::unauthorized("send a bearer token")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let mut s = Settings::load(Some(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/empty.toml"
        ))))
        .unwrap();
        s.auth.hs256_secret = "unit-test-secret-0123456789abcdef".into();
        s
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_claims() {
        let s = settings();
        let v = TokenVerifier::from_settings(&s).unwrap();
        let t = mint_token(
            &s,
            "acme",
            "alice",
            &[Role::Operator],
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        let caller = v.verify(Some(&format!("Bearer {t}"))).unwrap();
        assert_eq!(caller.dealer.0, "acme");
        assert_eq!(caller.user.0, "alice");
        assert_eq!(caller.roles, vec![Role::Operator]);
        assert_eq!(
            v.verify(Some(&t)).unwrap_err().status.as_u16(),
            401,
            "no Bearer prefix"
        );
        assert_eq!(v.verify(None).unwrap_err().status.as_u16(), 401);
    }

    #[test]
    fn es256_public_keys_from_a_file_are_honoured() {
        let mut s = settings();
        s.auth.algorithm = "ES256".into();
        s.auth.public_key_file = Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/es256-test-public.pem"
            )
            .into(),
        );
        let v = TokenVerifier::from_settings(&s).unwrap();
        let private = include_bytes!("../../../tests/fixtures/es256-test-private.pem");
        let now = chrono::Utc::now().timestamp() as u64;
        let claims = Claims {
            sub: "bob".into(),
            dealer: "acme".into(),
            roles: vec!["viewer".into()],
            exp: now + 60,
            iat: now,
            iss: s.auth.issuer.clone(),
            aud: s.auth.audience.clone(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(private).unwrap(),
        )
        .unwrap();
        let caller = v.verify(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(caller.user.0, "bob");
        // An HS256 token is refused by an ES256 service.
        let hs = mint_token(
            &settings(),
            "acme",
            "bob",
            &[Role::Admin],
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        assert!(v.verify(Some(&format!("Bearer {hs}"))).is_err());
    }
}
