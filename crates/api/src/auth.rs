//! Bearer tokens: verifying them on every `/v1` request, and minting them for
//! development (`crosslink token`). Claims: `sub`, `dealer`, `roles`, `exp`,
//! `iss`, `aud`, and `nbf` when given (honoured with `auth.leeway_secs`).
//!
//! Keys (B14): the single key of `auth.algorithm` (`auth.hs256_secret` or
//! `auth.public_key_file`), and the keys of a JWKS file (`auth.jwks_file`)
//! chosen by the token header's `kid`. The JWKS file is re-read when it
//! changes and on SIGHUP, so keys rotate without a restart: publish the new
//! key beside the old, sign with it, drop the old once its tokens expired.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use anyhow::Context;
use base64::Engine;
use domain::tenancy::{Caller, DealerId, Role, UserId};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{Settings, MIN_HS256_SECRET_BYTES};
use crate::problem::ApiError;

/// How often the JWKS file's modification time is looked at.
const JWKS_POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub dealer: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    /// Not before: optional; a token used earlier (beyond the leeway) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub iss: String,
    pub aud: String,
}

/// A key and the checks a token verified with it must pass (its algorithm,
/// the issuer, the audience, the leeway).
struct Key {
    key: DecodingKey,
    validation: Validation,
}

/// The keys in force at one moment; replaced whole on a JWKS reload.
#[derive(Default)]
struct KeySet {
    /// For tokens without a `kid` (and every token when there is no JWKS file).
    single: Option<Key>,
    /// The JWKS file's keys by `kid`.
    by_kid: HashMap<String, Key>,
}

/// The JWKS file and what was last read from it.
struct JwksSource {
    path: PathBuf,
    /// Modification time and length of the file last read (or tried).
    seen: Mutex<Option<(SystemTime, u64)>>,
}

/// At most this many verified tokens are remembered; past it, all are forgotten.
const MOST_REMEMBERED: usize = 10_000;

/// A token that verified, and what it may be taken for without verifying it
/// again: the caller, while the same keys are in force and the clock is
/// within its `nbf` and `exp` (with the leeway, as `jsonwebtoken` judges them).
struct Verified {
    keys: Arc<KeySet>,
    caller: Caller,
    exp: u64,
    nbf: Option<u64>,
    leeway: u64,
}

impl Verified {
    fn still_holds(&self, keys: &Arc<KeySet>, now: u64) -> bool {
        Arc::ptr_eq(&self.keys, keys)
            && self.exp >= now.saturating_sub(self.leeway)
            && self.nbf.is_none_or(|nbf| nbf <= now + self.leeway)
    }
}

/// Checks tokens against the configured keys, issuer and audience.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<RwLock<Arc<KeySet>>>,
    jwks: Option<Arc<JwksSource>>,
    /// Issuer, audience, leeway and required claims; the algorithm is set per key.
    template: Validation,
    /// Tokens verified lately, by their text. A front end sends one token on
    /// every call until it expires, and decoding and checking its signature
    /// again was a tenth of a link lookup's CPU.
    verified: Arc<Mutex<HashMap<String, Verified>>>,
}

impl TokenVerifier {
    /// Errs when a configured key cannot be read, the JWKS file included: a
    /// service must not start without the keys it was told to trust.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let algorithm = parse_algorithm(&settings.auth.algorithm)?;
        let mut template = Validation::new(algorithm);
        template.set_issuer(&[&settings.auth.issuer]);
        template.set_audience(&[&settings.auth.audience]);
        template.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        template.validate_nbf = true;
        template.leeway = settings.auth.leeway_secs;
        let jwks_file = settings.auth.jwks_file.as_ref();
        let single = match algorithm {
            // With a JWKS file and no secret of its own, the development
            // secret is not trusted: tokens must name a JWKS key.
            Algorithm::HS256 if settings.auth.hs256_secret.is_empty() && jwks_file.is_some() => {
                None
            }
            Algorithm::HS256 => Some(DecodingKey::from_secret(settings.jwt_secret().as_bytes())),
            Algorithm::RS256 | Algorithm::ES256 => match &settings.auth.public_key_file {
                None if jwks_file.is_some() => None,
                None => anyhow::bail!("auth.public_key_file is required for {algorithm:?}"),
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        anyhow::anyhow!("cannot read auth.public_key_file {}: {e}", path.display())
                    })?;
                    Some(if algorithm == Algorithm::RS256 {
                        DecodingKey::from_rsa_pem(&pem)?
                    } else {
                        DecodingKey::from_ec_pem(&pem)?
                    })
                }
            },
            _ => unreachable!("parse_algorithm only returns the three supported"),
        };
        let single = single.map(|key| Key {
            key,
            validation: template.clone(),
        });
        // Stamped before the read: a change made while reading is read again.
        let jwks = jwks_file.map(|path| {
            Arc::new(JwksSource {
                seen: Mutex::new(stamp(path)),
                path: path.clone(),
            })
        });
        let by_kid = match jwks_file {
            Some(path) => read_jwks(path, &template)?,
            None => HashMap::new(),
        };
        Ok(Self {
            keys: Arc::new(RwLock::new(Arc::new(KeySet { single, by_kid }))),
            jwks,
            template,
            verified: Arc::default(),
        })
    }

    /// Reads the JWKS file again when it changed since it was last read (or
    /// always, with `force`). A file that does not read keeps the keys in
    /// force and is an error (logged by the caller). `Ok(true)`: new keys.
    pub fn reload_jwks(&self, force: bool) -> anyhow::Result<bool> {
        let Some(source) = &self.jwks else {
            return Ok(false);
        };
        let now = stamp(&source.path);
        {
            let mut seen = source.seen.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *seen == now {
                return Ok(false);
            }
            // Remembered even when the read fails, so a bad file is reported
            // once and not every poll; fixing it changes the stamp again.
            *seen = now;
        }
        let by_kid = read_jwks(&source.path, &self.template)?;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let single = keys.single.as_ref().map(|k| Key {
            key: k.key.clone(),
            validation: k.validation.clone(),
        });
        *keys = Arc::new(KeySet { single, by_kid });
        Ok(true)
    }

    /// The key ids in force (for logs and tests).
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.current().by_kid.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Re-reads the JWKS file when it changes (polled every few seconds)
    /// and on SIGHUP, for as long as the process runs.
    pub fn watch_jwks(&self) {
        let verifier = self.clone();
        tokio::spawn(async move {
            let mut hangup =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for SIGHUP");
                        None
                    }
                };
            let mut tick = tokio::time::interval(JWKS_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let force = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async {
                        match hangup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => true,
                };
                if force && verifier.jwks.is_none() {
                    tracing::info!("SIGHUP: no auth.jwks_file to re-read");
                    continue;
                }
                match verifier.reload_jwks(force) {
                    Ok(true) => {
                        tracing::info!(kids = ?verifier.key_ids(), "auth.jwks_file re-read: verification keys replaced")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "auth.jwks_file could not be re-read; the previous keys stay in force")
                    }
                }
            }
        });
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
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
        let keys = self.current();
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(v) = self.lock_verified().get(token) {
            if v.still_holds(&keys, now) {
                return Ok(v.caller.clone());
            }
        }
        let head = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthorized("the token is not a JWT"))?;
        // Without a JWKS file a kid means nothing here (as before); with one,
        // a kid must name one of its keys.
        let key = match head.kid.as_deref() {
            Some(kid) if self.jwks.is_some() => keys.by_kid.get(kid).ok_or_else(|| {
                ApiError::unauthorized(
                    "the token's kid names no key this service trusts (auth.jwks_file)",
                )
            })?,
            _ => keys.single.as_ref().ok_or_else(|| {
                ApiError::unauthorized(
                    "the token has no kid; this service's keys are chosen by kid (auth.jwks_file)",
                )
            })?,
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet (its nbf is ahead)",
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
        let caller = Caller {
            dealer: DealerId(claims.dealer),
            user: UserId(claims.sub),
            roles: claims.roles.iter().filter_map(|r| Role::parse(r)).collect(),
        };
        let mut verified = self.lock_verified();
        if verified.len() >= MOST_REMEMBERED {
            verified.clear();
        }
        verified.insert(
            token.to_owned(),
            Verified {
                keys: Arc::clone(&keys),
                caller: caller.clone(),
                exp: claims.exp,
                nbf: claims.nbf,
                leeway: key.validation.leeway,
            },
        );
        Ok(caller)
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The file's modification time and length; `None` when it cannot be read.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The keys of a JWKS file by `kid`. Every key needs a unique `kid` and a
/// signing algorithm (its `alg`, or the one its type implies); HMAC keys need
/// at least 32 bytes. Keys marked `"use": "enc"` are skipped.
fn read_jwks(path: &Path, template: &Validation) -> anyhow::Result<HashMap<String, Key>> {
    let where_ = || format!("auth.jwks_file {}", path.display());
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", where_()))?;
    let set: JwkSet = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a JWKS document", where_()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let kid = jwk
            .common
            .key_id
            .clone()
            .filter(|k| !k.is_empty())
            .with_context(|| format!("a key of {} has no kid", where_()))?;
        let key = jwk_key(jwk, template).with_context(|| format!("key {kid:?} of {}", where_()))?;
        if keys.insert(kid.clone(), key).is_some() {
            anyhow::bail!("{} has two keys with kid {kid:?}", where_());
        }
    }
    if keys.is_empty() {
        anyhow::bail!("{} holds no signing keys", where_());
    }
    Ok(keys)
}

fn jwk_key(jwk: &Jwk, template: &Validation) -> anyhow::Result<Key> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => Algorithm::ES384,
        AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
    };
    let algorithm = match jwk.common.key_algorithm {
        Some(alg) => alg
            .to_string()
            .parse::<Algorithm>()
            .map_err(|_| anyhow::anyhow!("alg {alg} is not a signing algorithm"))?,
        None => implied,
    };
    let family = |a: Algorithm| match a {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => 0,
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => 1,
        Algorithm::ES256 | Algorithm::ES384 => 2,
        Algorithm::EdDSA => 3,
    };
    if family(algorithm) != family(implied) {
        anyhow::bail!("alg {algorithm:?} does not fit the key's type");
    }
    if let AlgorithmParameters::OctetKey(p) = &jwk.algorithm {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.value.trim_end_matches('='))
            .context("k is not base64url")?;
        if bytes.len() < MIN_HS256_SECRET_BYTES {
            anyhow::bail!(
                "an HMAC key needs at least {MIN_HS256_SECRET_BYTES} bytes, this one has {}",
                bytes.len()
            );
        }
    }
    let key = DecodingKey::from_jwk(jwk).context("the key does not decode")?;
    let mut validation = template.clone();
    validation.algorithms = vec![algorithm];
    Ok(Key { key, validation })
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
        nbf: None,
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
            nbf: None,
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

    fn claims(s: &Settings, nbf: Option<u64>) -> Claims {
        let now = chrono::Utc::now().timestamp() as u64;
        Claims {
            sub: "carol".into(),
            dealer: "acme".into(),
            roles: vec!["viewer".into()],
            exp: now + 600,
            iat: now,
            nbf,
            iss: s.auth.issuer.clone(),
            aud: s.auth.audience.clone(),
        }
    }

    fn hs_token(secret: &[u8], kid: Option<&str>, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        let t = jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap();
        format!("Bearer {t}")
    }

    fn status(v: &TokenVerifier, token: &str) -> Result<String, (u16, String)> {
        v.verify(Some(token))
            .map(|c| c.user.0)
            .map_err(|e| (e.status.as_u16(), e.detail))
    }

    #[test]
    fn nbf_is_honoured_with_the_leeway() {
        let s = settings();
        let v = TokenVerifier::from_settings(&s).unwrap();
        let secret = s.jwt_secret().as_bytes().to_vec();
        let now = chrono::Utc::now().timestamp() as u64;
        let ahead = hs_token(&secret, None, &claims(&s, Some(now + 3600)));
        let (code, why) = status(&v, &ahead).unwrap_err();
        assert_eq!(code, 401);
        assert!(why.contains("nbf"), "{why}");
        let within = hs_token(
            &secret,
            None,
            &claims(&s, Some(now + s.auth.leeway_secs / 2)),
        );
        assert_eq!(status(&v, &within), Ok("carol".into()));
        let past = hs_token(&secret, None, &claims(&s, Some(now - 60)));
        assert_eq!(status(&v, &past), Ok("carol".into()));
    }

    #[test]
    fn a_remembered_token_is_refused_once_it_expires() {
        let mut s = settings();
        s.auth.leeway_secs = 0;
        let v = TokenVerifier::from_settings(&s).unwrap();
        let secret = s.jwt_secret().as_bytes().to_vec();
        let mut c = claims(&s, None);
        c.exp = jsonwebtoken::get_current_timestamp() + 1;
        let token = hs_token(&secret, None, &c);
        assert_eq!(status(&v, &token), Ok("carol".into()));
        assert_eq!(status(&v, &token), Ok("carol".into()), "remembered");
        while jsonwebtoken::get_current_timestamp() <= c.exp {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let (code, why) = status(&v, &token).unwrap_err();
        assert_eq!(code, 401);
        assert!(why.contains("expired"), "{why}");
    }

    const K1: &[u8] = b"first-jwks-key-0123456789abcdef-0";
    const K2: &[u8] = b"second-jwks-key-0123456789abcdef-";

    fn oct(kid: &str, secret: &[u8]) -> serde_json::Value {
        use base64::Engine;
        serde_json::json!({
            "kty": "oct", "kid": kid, "alg": "HS256",
            "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        })
    }

    fn write_jwks(path: &Path, keys: &[serde_json::Value]) {
        let text = serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap();
        // Written beside and renamed, as an operator's tooling would.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn jwks_settings(keys: &[serde_json::Value]) -> (Settings, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "cl-jwks-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        write_jwks(&path, keys);
        let mut s = settings();
        s.auth.hs256_secret = String::new();
        s.auth.jwks_file = Some(path.clone());
        (s, path)
    }

    #[test]
    fn jwks_keys_are_chosen_by_kid() {
        let ec = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
            "x": "IvX-gThgffZx98ScbHScSk6lrY0Y0VAZsjdsQ_9AiqA",
            "y": "LXRTG0hJ3qjo2-go0zC5MtK-VkrIMNlUcrUcRFQL2Aw",
        });
        let (s, _) = jwks_settings(&[oct("hs-1", K1), ec]);
        let v = TokenVerifier::from_settings(&s).unwrap();
        assert_eq!(v.key_ids(), vec!["ec-1".to_owned(), "hs-1".to_owned()]);
        let c = claims(&s, None);
        assert_eq!(
            status(&v, &hs_token(K1, Some("hs-1"), &c)),
            Ok("carol".into())
        );
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".into());
        let private = include_bytes!("../../../tests/fixtures/es256-test-private.pem");
        let es =
            jsonwebtoken::encode(&header, &c, &EncodingKey::from_ec_pem(private).unwrap()).unwrap();
        assert_eq!(status(&v, &format!("Bearer {es}")), Ok("carol".into()));
        // A kid this service does not know; a key under another key's kid; no kid.
        let (code, why) = status(&v, &hs_token(K1, Some("hs-9"), &c)).unwrap_err();
        assert_eq!(code, 401);
        assert!(why.contains("kid names no key"), "{why}");
        let (code, _) = status(&v, &hs_token(K2, Some("hs-1"), &c)).unwrap_err();
        assert_eq!(code, 401);
        let (code, why) = status(&v, &hs_token(K1, None, &c)).unwrap_err();
        assert_eq!(code, 401);
        assert!(why.contains("no kid"), "{why}");
        // The development secret is not trusted beside a JWKS file.
        let dev = hs_token(DEV_SECRET.as_bytes(), None, &c);
        assert_eq!(status(&v, &dev).unwrap_err().0, 401);
        // An ES256 key cannot be used as an HMAC secret (algorithm confusion).
        let mut forged = Header::new(Algorithm::HS256);
        forged.kid = Some("ec-1".into());
        let forged = jsonwebtoken::encode(&forged, &c, &EncodingKey::from_secret(b"x")).unwrap();
        assert_eq!(status(&v, &format!("Bearer {forged}")).unwrap_err().0, 401);
    }

    const DEV_SECRET: &str = crate::config::DEV_JWT_SECRET;

    #[test]
    fn rewriting_the_jwks_file_rotates_the_keys() {
        let (s, path) = jwks_settings(&[oct("k1", K1)]);
        let v = TokenVerifier::from_settings(&s).unwrap();
        let c = claims(&s, None);
        let old = hs_token(K1, Some("k1"), &c);
        let new = hs_token(K2, Some("k2"), &c);
        assert!(status(&v, &old).is_ok());
        assert_eq!(status(&v, &new).unwrap_err().0, 401);
        assert!(!v.reload_jwks(false).unwrap(), "unchanged: not read again");
        // Both keys during the rotation, then only the new one.
        write_jwks(&path, &[oct("k1", K1), oct("k2", K2)]);
        assert!(v.reload_jwks(false).unwrap());
        assert!(status(&v, &old).is_ok() && status(&v, &new).is_ok());
        write_jwks(&path, &[oct("k2", K2)]);
        assert!(v.reload_jwks(false).unwrap());
        assert_eq!(status(&v, &old).unwrap_err().0, 401);
        assert!(status(&v, &new).is_ok());
        // A broken file keeps the keys in force; a clone (another worker's
        // copy of the state) sees the same keys.
        std::fs::write(&path, "{ not json").unwrap();
        assert!(v.reload_jwks(false).is_err());
        assert!(
            !v.reload_jwks(false).unwrap(),
            "a bad file is reported once"
        );
        assert!(status(&v.clone(), &new).is_ok());
        assert!(v.reload_jwks(true).is_err(), "SIGHUP reads it again");
    }

    #[test]
    fn a_bad_jwks_file_stops_the_start() {
        let short = oct("short", b"too-short");
        let no_kid =
            serde_json::json!({ "kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY" });
        let wrong_alg = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "ec", "alg": "HS256",
            "x": "IvX-gThgffZx98ScbHScSk6lrY0Y0VAZsjdsQ_9AiqA",
            "y": "LXRTG0hJ3qjo2-go0zC5MtK-VkrIMNlUcrUcRFQL2Aw",
        });
        for (keys, why) in [
            (vec![short], "at least 32 bytes"),
            (vec![no_kid], "has no kid"),
            (vec![wrong_alg], "does not fit"),
            (vec![oct("a", K1), oct("a", K2)], "two keys"),
            (vec![], "no signing keys"),
        ] {
            let (s, _) = jwks_settings(&keys);
            let err = TokenVerifier::from_settings(&s).err().expect(why);
            assert!(format!("{err:#}").contains(why), "{err:#}");
        }
        let (mut s, path) = jwks_settings(&[oct("a", K1)]);
        std::fs::remove_file(&path).unwrap();
        assert!(TokenVerifier::from_settings(&s).is_err(), "a missing file");
        s.auth.jwks_file = None;
        assert!(TokenVerifier::from_settings(&s).is_ok());
    }
}
