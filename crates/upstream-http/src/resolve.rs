//! The policy on the wire: a DNS resolver for reqwest that hands the
//! connector only allowed addresses, and the early check of a stored URL.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::policy::{EgressPolicy, Refused};

type BoxError = Box<dyn Error + Send + Sync>;

/// Resolves with the system resolver, then drops the addresses the policy
/// refuses; a name left with none fails with [`Refused`], which
/// [`refusal_in`] finds in the request's error.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<EgressPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: EgressPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let allowed = allowed_addresses(&policy, &host).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The addresses `host` resolves to that the policy allows; [`Refused`]
/// (naming the first refused one) when it resolved only to refused ones.
async fn allowed_addresses(policy: &EgressPolicy, host: &str) -> Result<Vec<SocketAddr>, BoxError> {
    // Port 0: reqwest puts the URL's port in.
    let resolved = tokio::net::lookup_host((host, 0)).await?;
    let mut refused = None;
    let allowed: Vec<SocketAddr> = resolved
        .filter(|a| match policy.check_address(host, a.ip()) {
            Ok(()) => true,
            Err(r) => {
                refused.get_or_insert(r);
                false
            }
        })
        .collect();
    match refused {
        Some(r) if allowed.is_empty() => Err(Box::new(r)),
        _ => Ok(allowed),
    }
}

/// Puts `policy` on a client: every host name goes through a
/// [`PolicyResolver`], and no proxy is used (a proxy would connect on the
/// service's behalf to an address the policy never sees). IP literals do not
/// reach a resolver: check them with [`EgressPolicy::check_literal`] before
/// sending.
pub fn apply(builder: reqwest::ClientBuilder, policy: &EgressPolicy) -> reqwest::ClientBuilder {
    builder
        .dns_resolver(Arc::new(PolicyResolver::new(policy.clone())))
        .no_proxy()
}

/// The refusal behind a failed request (or any error chain), if that is why it failed.
pub fn refusal_in<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a Refused> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        next = err.source();
    }
    None
}

impl EgressPolicy {
    /// The early check of a URL about to be stored: an IP literal is
    /// judged, a name is resolved (for at most `timeout`) and refused when
    /// every address it has is refused. A name that does not resolve (yet)
    /// passes: the call made later is checked again on what it connects to.
    pub async fn check_url(&self, url: &url::Url, timeout: Duration) -> Result<(), Refused> {
        self.check_literal(url)?;
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(());
        };
        match tokio::time::timeout(timeout, allowed_addresses(self, host)).await {
            Ok(Err(e)) => match e.downcast::<Refused>() {
                Ok(refused) => Err(*refused),
                Err(_) => Ok(()),
            },
            Ok(Ok(_)) | Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_secs(5);

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
        let refused = EgressPolicy::default()
            .check_url(&url("http://localhost:9/hook"), QUICK)
            .await
            .unwrap_err();
        assert_eq!(refused.host, "localhost");
        assert_eq!(refused.range, "loopback");
        let allowed = EgressPolicy::parse_allow(&["127.0.0.0/8", "::1"]).unwrap();
        assert_eq!(
            allowed.check_url(&url("http://localhost:9/"), QUICK).await,
            Ok(())
        );
        // A name that does not resolve is left to the call.
        let unknown = url("http://no-such-host.invalid/");
        assert_eq!(
            EgressPolicy::default().check_url(&unknown, QUICK).await,
            Ok(())
        );
        // A literal is refused without resolving.
        assert!(EgressPolicy::default()
            .check_url(&url("http://[::ffff:127.0.0.1]/"), QUICK)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_client_with_the_policy_never_connects_to_a_refused_address() {
        // Something is listening on loopback, so only the policy can stop the call.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });

        let client = apply(reqwest::Client::builder(), &EgressPolicy::default())
            .build()
            .unwrap();
        let err = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        let refused = refusal_in(&err).expect("the refusal is in the error");
        assert_eq!(refused.range, "loopback");
        assert!(err.is_connect());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!accepted.is_finished(), "nothing connected");
        accepted.abort();

        // With the range allowed the same call connects.
        let allowed = EgressPolicy::parse_allow(&["127.0.0.0/8", "::1/128"]).unwrap();
        let client = apply(reqwest::Client::builder(), &allowed).build().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let call = tokio::spawn(async move {
            client
                .get(format!("http://127.0.0.1:{port}/"))
                .timeout(Duration::from_millis(300))
                .send()
                .await
        });
        assert!(listener.accept().await.is_ok());
        let _ = call.await;
    }
}
