//! Secret registry and redaction.
//!
//! Every secret the tool learns (API token, S3 secret, the secret derived from the token,
//! export signed URLs, age identities) is registered here the moment it is read. All text
//! that leaves the process — log lines, error messages, outputs, the job summary, the final
//! JSON report — passes through [`redact`], so a secret that slips into a message (an HTTP
//! library quoting a URL, a server echoing a header) is replaced by `***` before anyone sees
//! it. Under GitHub Actions each secret is also announced with `::add-mask::` (see
//! [`crate::cli::action`]) so the runner masks it too.
//!
//! The registry is process-wide on purpose: secrets can surface from any layer, and a
//! redactor that had to be threaded through every call would be forgotten somewhere.

use std::borrow::Cow;
use std::sync::{OnceLock, RwLock};

/// Secrets shorter than this are not registered: masking a 3-character value would
/// scramble ordinary words in every log line (the runner has the same rule of thumb).
const MIN_SECRET_LEN: usize = 6;

fn registry() -> &'static RwLock<Vec<String>> {
    static REGISTRY: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(Vec::new()))
}

/// Listener called with each newly registered secret (used to print `::add-mask::`).
type Announcer = fn(&str);

fn announcer() -> &'static RwLock<Option<Announcer>> {
    static ANNOUNCER: OnceLock<RwLock<Option<Announcer>>> = OnceLock::new();
    ANNOUNCER.get_or_init(|| RwLock::new(None))
}

/// Install the function that announces new secrets (e.g. prints `::add-mask::`).
/// Secrets registered before the call are announced immediately.
pub fn set_announcer(f: Announcer) {
    if let Ok(mut slot) = announcer().write() {
        *slot = Some(f);
    }
    if let Ok(list) = registry().read() {
        for s in list.iter() {
            f(s);
        }
    }
}

/// Register a secret value. Its URL-encoded form is registered too, because secrets
/// travel inside URLs and query strings.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut forms = vec![secret.to_string()];
    let encoded = percent_encode(secret);
    if encoded != secret {
        forms.push(encoded);
    }
    let mut added = Vec::new();
    if let Ok(mut list) = registry().write() {
        for form in forms {
            if !list.contains(&form) {
                list.push(form.clone());
                added.push(form);
            }
        }
        // Longest first, so a secret that contains another is replaced whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
    if let Ok(slot) = announcer().read()
        && let Some(f) = *slot
    {
        for s in &added {
            f(s);
        }
    }
}

/// Register a URL that is itself a credential (a presigned URL): the whole URL, its query
/// string and any signature parameter value.
pub fn register_url(url: &str) {
    register(url);
    if let Some((_, query)) = url.split_once('?') {
        register(query);
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                let k = k.to_ascii_lowercase();
                if k.contains("signature") || k.contains("credential") || k.contains("token") {
                    register(v);
                }
            }
        }
    }
}

/// Replace every registered secret in `text` with `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(list) = registry().read() else {
        return Cow::Borrowed(text);
    };
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    for s in list.iter() {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), "***"));
        }
    }
    out
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_registered_secrets_and_their_url_forms() {
        register("s3cr3t/with+chars");
        assert_eq!(redact("token=s3cr3t/with+chars end"), "token=*** end");
        assert_eq!(redact("q=s3cr3t%2Fwith%2Bchars"), "q=***");
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn short_values_are_not_registered() {
        register("abc");
        assert_eq!(redact("abc"), "abc");
    }

    #[test]
    fn presigned_url_parts_are_registered() {
        register_url(
            "https://x.example/f.sql?X-Amz-Credential=AKIAEXAMPLE1&X-Amz-Signature=deadbeefcafe",
        );
        assert_eq!(redact("sig deadbeefcafe"), "sig ***");
        assert!(!redact("see https://x.example/f.sql?X-Amz-Credential=AKIAEXAMPLE1&X-Amz-Signature=deadbeefcafe").contains("deadbeef"));
    }
}
