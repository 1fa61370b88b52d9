//! `heartbeat-url`: a dead-man's switch. After every command the JSON report is POSTed to
//! the URL on success, or to the URL with `/fail` appended on failure — the convention of
//! healthchecks.io and similar services, which alert when the pings stop (the only alarm
//! that still fires when the schedule itself dies). A heartbeat that cannot be delivered is a
//! warning, never a failed command. The URL is a secret: it is never printed.

use std::time::Duration;

use crate::cli::errors::InputError;
use crate::cli::inputs::RawInputs;
use crate::cli::values::{boolean, validate_url};
use crate::util::log;

/// How long a heartbeat may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where to ping.
pub struct Heartbeat {
    url: String,
}

impl Heartbeat {
    /// The heartbeat of `heartbeat-url`, if set (validated like every other URL).
    pub fn from_inputs(raw: &RawInputs) -> Result<Option<Heartbeat>, InputError> {
        let Some(url) = raw.get("heartbeat-url") else {
            return Ok(None);
        };
        let allow = boolean(raw, "allow-insecure-http", false)?;
        validate_url("heartbeat-url", url, allow)?;
        Ok(Some(Heartbeat {
            url: url.trim().to_string(),
        }))
    }

    /// Where a command that ended this way pings.
    pub fn target(&self, success: bool) -> String {
        if success {
            self.url.clone()
        } else {
            format!("{}/fail", self.url.trim_end_matches('/'))
        }
    }

    /// Ping with the report as the body; a failure is a warning that names no URL.
    pub async fn ping(&self, success: bool, report: Option<&str>) {
        let sent = async {
            let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
            client
                .post(self.target(success))
                .header("content-type", "application/json")
                .body(report.unwrap_or("{}").to_string())
                .send()
                .await?
                .error_for_status()
        }
        .await;
        match sent {
            Ok(_) => log::debug("heartbeat delivered"),
            Err(e) => log::warn(format!(
                "the heartbeat could not be delivered ({}); the command's result stands",
                e.without_url()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_pings_fail() {
        for (url, ok, fail) in [
            (
                "https://hc-ping.com/abc",
                "https://hc-ping.com/abc",
                "https://hc-ping.com/abc/fail",
            ),
            (
                "https://hc-ping.com/abc/",
                "https://hc-ping.com/abc/",
                "https://hc-ping.com/abc/fail",
            ),
        ] {
            let h = Heartbeat { url: url.into() };
            assert_eq!(h.target(true), ok);
            assert_eq!(h.target(false), fail);
        }
    }
}
