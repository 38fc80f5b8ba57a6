//! Standard Webhooks signatures (spec v1.0.0): `v1,` + base64 of
//! HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, keyed with
//! the base64-decoded part of a `whsec_…` secret. During a rotation window
//! the header carries one signature per live secret, space-separated, so
//! receivers verifying with either secret accept the request.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use rand::RngCore;
use thiserror::Error;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const PREFIX: &str = "whsec_";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a signing secret starts with whsec_")]
    Prefix,
    #[error("a signing secret is whsec_ and base64 of 24 to 64 bytes")]
    Encoding,
}

/// A signing secret: its text form and the HMAC key it stands for.
#[derive(Clone)]
pub struct Secret {
    text: String,
    key: Vec<u8>,
    /// HMAC already keyed with `key`: each signature clones it instead of
    /// running the key schedule again. (HMAC takes keys of any length, so
    /// it is never `None` in practice.)
    keyed: Option<HmacSha256>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Secret {}

impl Secret {
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let b64 = text.strip_prefix(PREFIX).ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(b64).map_err(|_| SecretError::Encoding)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Encoding);
        }
        Ok(Self::with_key(text.to_owned(), key))
    }

    fn with_key(text: String, key: Vec<u8>) -> Self {
        let keyed = HmacSha256::new_from_slice(&key).ok();
        Self { text, key, keyed }
    }

    /// A fresh secret of 32 random bytes.
    pub fn generate() -> Self {
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::with_key(format!("{PREFIX}{}", STANDARD.encode(&key)), key)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `v1,<base64>` for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let Some(mut mac) = self.keyed.clone() else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header value: one signature per secret.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any signature in `header` was made by `secret` (constant time per
/// comparison, through the MAC's own verify).
pub fn verify(secret: &Secret, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|sig| {
        let Some(b64) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(expected) = STANDARD.decode(b64) else {
            return false;
        };
        let Ok(mut mac) = HmacSha256::new_from_slice(&secret.key) else {
            return false;
        };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two vectors of shared/conformance/standard-webhooks.md.
    #[test]
    fn spec_vectors() {
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = s.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let s2 = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            s2.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn one_character_off_does_not_verify() {
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert!(verify(
            &s,
            id,
            ts,
            body,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
        assert!(!verify(
            &s,
            id,
            ts,
            body,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
        ));
    }

    #[test]
    fn rotation_header_verifies_with_either_secret() {
        let (old, new) = (Secret::generate(), Secret::generate());
        let h = signature_header(&[new.clone(), old.clone()], "msg_1", 5, b"{}");
        assert_eq!(h.split(' ').count(), 2);
        assert!(verify(&old, "msg_1", 5, b"{}", &h));
        assert!(verify(&new, "msg_1", 5, b"{}", &h));
        assert!(!verify(&Secret::generate(), "msg_1", 5, b"{}", &h));
    }

    #[test]
    fn bad_secrets() {
        assert_eq!(Secret::parse("abc"), Err(SecretError::Prefix));
        assert_eq!(Secret::parse("whsec_!!"), Err(SecretError::Encoding));
        assert_eq!(Secret::parse("whsec_AAAA"), Err(SecretError::Encoding));
        let g = Secret::generate();
        assert_eq!(Secret::parse(g.as_str()).unwrap(), g);
    }
}
