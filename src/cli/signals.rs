//! SIGINT and SIGTERM: a backup stops gracefully (it aborts its upload and exits 130/143);
//! the other commands remove their scratch files and exit at once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::util::{log, workflow};

/// Exit code of the signal that cancelled the run (130 SIGINT, 143 SIGTERM), 0 if none.
static SIGNAL_EXIT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Wait for SIGINT/SIGTERM: cancel the run, and exit hard if it does not stop in time.
/// The runner sends SIGINT, waits 7.5 s, sends SIGTERM, waits 2.5 s, then kills.
pub async fn watch_signals(cancel: CancellationToken, graceful: bool) {
    let signal = wait_for_signal().await;
    let code = if signal == "SIGINT" { 130 } else { 143 };
    SIGNAL_EXIT.store(code, std::sync::atomic::Ordering::SeqCst);
    if !graceful {
        log::error(format!("received {signal}: stopping"));
        crate::util::scratch::remove_all();
        std::process::exit(code.into());
    }
    log::error(format!(
        "received {signal}: cancelling (aborting any upload)"
    ));
    workflow::error_annotation("Backup cancelled", &format!("received {signal}"));
    cancel.cancel();
    tokio::time::sleep(Duration::from_secs(6)).await;
    log::error("did not stop within 6 s of the signal; exiting");
    crate::util::scratch::remove_all();
    std::process::exit(code.into());
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        std::future::pending::<()>().await;
        return "signal";
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

/// The exit code of the signal that stopped the run (130 SIGINT, 143 SIGTERM), 0 if none.
pub fn received() -> u8 {
    SIGNAL_EXIT.load(std::sync::atomic::Ordering::SeqCst)
}
