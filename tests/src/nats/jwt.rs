//! Decentralized NATS authentication for one test: an operator, an account
//! with JetStream, a system account and user credentials, as the NATS JWTs
//! `nsc` would issue.
//!
//! A NATS JWT is `base64url(header).base64url(claims).base64url(signature)`,
//! the header `{"typ":"JWT","alg":"ed25519-nkey"}` and the signature ed25519
//! by the issuer's nkey over the first two parts. The server in operator mode
//! trusts the operator JWT, finds account JWTs in its (memory) resolver, and
//! accepts a user whose JWT an account it knows signed, if the client proves
//! it holds the user's seed by signing the server's nonce — which async-nats
//! does from a `.creds` file.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

/// A `.creds` file's content and the secrets in it, for leak checks.
#[derive(Debug, Clone)]
pub struct Creds {
    /// The user JWT.
    pub jwt: String,
    /// The user's nkey seed (`SU...`): the secret part.
    pub seed: String,
    /// The file content async-nats reads.
    pub text: String,
}

/// An operator, its system account and one account with JetStream enabled.
pub struct Operator {
    operator: KeyPair,
    account: KeyPair,
    system: KeyPair,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("operator", &self.operator.public_key())
            .field("account", &self.account.public_key())
            .finish_non_exhaustive()
    }
}

impl Default for Operator {
    fn default() -> Self {
        Self::new()
    }
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit in i64")
}

/// Signs `claims` (with `iss`, `iat` and `jti` filled in) as `issuer`.
fn encode(issuer: &KeyPair, mut claims: Value) -> String {
    claims["iss"] = Value::from(issuer.public_key());
    claims["iat"] = Value::from(now());
    // The server does not check the id; a digest of the claims keeps it
    // unique per JWT, as nsc's is.
    let digest = ring::digest::digest(&ring::digest::SHA256, claims.to_string().as_bytes());
    claims["jti"] = Value::from(URL_SAFE_NO_PAD.encode(digest.as_ref()));
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let signature = issuer.sign(signed.as_bytes()).expect("sign the JWT");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Account limits: everything unlimited, JetStream on or off.
fn account_claims(name: &str, key: &KeyPair, jetstream: bool) -> Value {
    let storage = if jetstream { -1 } else { 0 };
    json!({
        "name": name,
        "sub": key.public_key(),
        "nats": {
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": storage, "disk_storage": storage,
                "streams": -1, "consumer": -1,
            },
            "default_permissions": { "pub": {}, "sub": {} },
            "type": "account",
            "version": 2,
        },
    })
}

impl Operator {
    /// New keys for the operator and both accounts.
    #[must_use]
    pub fn new() -> Self {
        Self {
            operator: KeyPair::new_operator(),
            account: KeyPair::new_account(),
            system: KeyPair::new_account(),
        }
    }

    /// The server configuration lines: trust the operator, preload both
    /// account JWTs into a memory resolver.
    #[must_use]
    pub fn server_config(&self) -> String {
        let operator = encode(
            &self.operator,
            json!({
                "name": "e2e-operator",
                "sub": self.operator.public_key(),
                "nats": {
                    "system_account": self.system.public_key(),
                    "type": "operator",
                    "version": 2,
                },
            }),
        );
        let account = encode(
            &self.operator,
            account_claims("e2e-account", &self.account, true),
        );
        let system = encode(
            &self.operator,
            account_claims("e2e-system", &self.system, false),
        );
        format!(
            "operator: \"{operator}\"\nsystem_account: \"{sys}\"\nresolver: MEMORY\n\
             resolver_preload: {{\n  \"{acc}\": \"{account}\"\n  \"{sys}\": \"{system}\"\n}}\n",
            sys = self.system.public_key(),
            acc = self.account.public_key(),
        )
    }

    /// Credentials of a new user of the JetStream account; `expires_in`
    /// seconds from now (negative: already expired), or never.
    #[must_use]
    pub fn user(&self, name: &str, expires_in: Option<i64>) -> Creds {
        user_signed_by(&self.account, name, expires_in)
    }

    /// Credentials signed by an account the server has never heard of.
    #[must_use]
    pub fn stranger(name: &str) -> Creds {
        user_signed_by(&KeyPair::new_account(), name, None)
    }
}

fn user_signed_by(account: &KeyPair, name: &str, expires_in: Option<i64>) -> Creds {
    let user = KeyPair::new_user();
    let mut claims = json!({
        "name": name,
        "sub": user.public_key(),
        "nats": {
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        },
    });
    if let Some(secs) = expires_in {
        claims["exp"] = Value::from(now() + secs);
    }
    let jwt = encode(account, claims);
    let seed = user.seed().expect("a generated key has a seed");
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    );
    Creds { jwt, seed, text }
}
