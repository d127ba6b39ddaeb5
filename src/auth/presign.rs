//! SigV4 query presigning for the IAM auth tokens of RDS and ElastiCache: one signer, the
//! token text exactly as botocore writes it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use tracing::subscriber::NoSubscriber;

use super::CredentialError;
use crate::error::ConfigError;

/// How long an IAM auth token is accepted: 15 minutes, the most RDS and ElastiCache allow.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The query parameters of a presigned token, after the operation's own, in the order botocore
/// writes them (the server sorts them; byte equality with the SDKs makes tokens comparable).
const AUTH_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
];

/// The wall clock tokens are signed at (tests fix it).
#[derive(Clone)]
pub(super) struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    pub(super) fn system() -> Self {
        Clock(Arc::new(SystemTime::now))
    }

    pub(super) fn new(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock(..)")
    }
}

/// Signs `connect` tokens for one service and region with the SDK's credentials.
#[derive(Clone, Debug)]
pub(super) struct Presigner {
    pub(super) credentials: SharedCredentialsProvider,
    pub(super) region: String,
    pub(super) service: &'static str,
    pub(super) clock: Clock,
}

/// A signed token and when it stops being accepted.
pub(super) struct Token {
    pub(super) text: String,
    pub(super) expires_at: SystemTime,
}

impl Presigner {
    /// Loads the AWS credentials and presigns `GET https://{authority}/?{query}` for 15
    /// minutes; the token is the URL without `https://`. It expires at the earlier of the
    /// signing time + 15 minutes and the AWS credentials' own expiry.
    pub(super) async fn token(
        &self,
        authority: &str,
        query: &[(&str, &str)],
    ) -> Result<Token, CredentialError> {
        let aws = self
            .credentials
            .provide_credentials()
            .await
            .map_err(load_error)?;
        let time = (self.clock.0)();
        let mut text = String::with_capacity(512);
        text.push_str(authority);
        text.push_str("/?");
        for (i, (k, v)) in query.iter().enumerate() {
            if i > 0 {
                text.push('&');
            }
            text.push_str(k);
            text.push('=');
            encode_into(&mut text, v);
        }
        let expiry = aws.expiry();
        let signed = self.sign(&format!("https://{text}"), aws, time)?;
        for name in AUTH_PARAMS {
            if let Some((_, value)) = signed.iter().find(|(k, _)| *k == name) {
                text.push('&');
                text.push_str(name);
                text.push('=');
                encode_into(&mut text, value);
            }
        }
        let lifetime_end = time + TOKEN_LIFETIME;
        let expires_at = expiry.map_or(lifetime_end, |e| e.min(lifetime_end));
        Ok(Token { text, expires_at })
    }

    /// The SigV4 query parameters that presign `GET url` at `time` for 15 minutes.
    fn sign(
        &self,
        url: &str,
        aws: aws_credential_types::Credentials,
        time: SystemTime,
    ) -> Result<Vec<(&'static str, Cow<'static, str>)>, CredentialError> {
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(TOKEN_LIFETIME);
        let identity = aws.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(sign_error)?
            .into();
        let request =
            SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(&[]))
                .map_err(|e| sign_error(e).permanent())?;
        // aws-sigv4 traces the canonical request, whose query holds the session token, at
        // TRACE level: sign with no subscriber so no log ever shows it.
        let signed =
            tracing::subscriber::with_default(NoSubscriber::default(), || sign(request, &params));
        let (instructions, _) = signed.map_err(sign_error)?.into_parts();
        Ok(instructions.into_parts().1)
    }
}

/// Signing failed (the URL or the parameters were refused).
fn sign_error(e: impl std::error::Error + Send + Sync + 'static) -> CredentialError {
    CredentialError::new("could not sign the IAM auth token").with_source(e)
}

/// A credentials-chain failure: permanent if the chain is misconfigured, else transient.
fn load_error(e: CredentialsError) -> CredentialError {
    let permanent = matches!(e, CredentialsError::InvalidConfiguration(_));
    let e = CredentialError::new("could not load AWS credentials").with_source(e);
    if permanent { e.permanent() } else { e }
}

/// Appends `value` percent-encoded as SigV4 and botocore encode query values: everything but
/// `A-Z a-z 0-9 - _ . ~` as `%XX` (uppercase hex).
fn encode_into(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Checks that `region` looks like an AWS region name (`us-east-1`): non-empty, lowercase
/// letters, digits and dashes.
pub(super) fn check_region(region: &str) -> Result<(), ConfigError> {
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ConfigError::new(
            "region",
            format!("{region:?} is not an AWS region name (like \"us-east-1\")"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_sigv4() {
        let mut s = String::new();
        encode_into(&mut s, "a-Z_0.9~ /+=@é");
        assert_eq!(s, "a-Z_0.9~%20%2F%2B%3D%40%C3%A9");
    }

    #[test]
    fn region_names_are_checked() {
        assert!(check_region("eu-west-1").is_ok());
        for bad in ["", "EU-WEST-1", "us east 1", "us-east-1/"] {
            assert_eq!(check_region(bad).unwrap_err().field(), "region");
        }
    }
}
