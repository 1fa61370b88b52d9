//! Wiring of the streaming stages: producer → compressor → uploader.
//!
//! The producer (the query dumper, or an export download) runs on the calling task and
//! sends SQL chunks; the compressor runs on a blocking thread; the uploader is its own task.
//! Bounded channels join them, so a slow stage holds back the others instead of buffering.
//! The producer's success is signalled explicitly ([`Piece::End`], then [`PartMsg::End`]):
//! a stage that sees its input close without that signal fails, and the uploader then
//! aborts, so a failure anywhere — or cancellation — leaves no object behind. When several
//! stages fail, the root cause is reported, not the "pipeline closed" errors it caused.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::dump::Piece;
use crate::store::parts::{PartMsg, PartWriter};
use crate::store::{ObjectMeta, ObjectStore, Upload, Uploaded};
use crate::util::progress::Progress;
use crate::write::compress::{self, Compression, StreamStats, Wrap};
use crate::{util::Cancelled, util::PipelineClosed};

/// Parts alive at once: one being filled plus those being uploaded.
const PARTS_IN_MEMORY: usize = 2;

/// What the stages produced.
pub struct Streamed<T> {
    pub produced: T,
    pub stream: StreamStats,
    pub uploaded: Uploaded,
}

/// Everything about the destination object.
pub struct Target<'a> {
    pub store: Arc<dyn ObjectStore>,
    pub key: &'a str,
    pub meta: &'a ObjectMeta,
    pub part_size: u64,
    pub compression: Compression,
    pub wrap: Option<Wrap>,
    pub progress: Arc<Progress>,
}

/// Run `produce` through compression into `target`.
pub async fn stream_to_store<T, F, Fut>(
    target: Target<'_>,
    cancel: &CancellationToken,
    produce: F,
) -> Result<Streamed<T>>
where
    F: FnOnce(mpsc::Sender<Piece>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let upload = target
        .store
        .start_upload(target.key, target.meta, target.part_size)
        .await?;
    let (sql_tx, sql_rx) = mpsc::channel::<Piece>(1);
    let (part_tx, part_rx) = mpsc::channel::<PartMsg>(1);
    let uploader = tokio::spawn(upload_loop(upload, part_rx, cancel.clone()));
    let parts = PartWriter::new(
        target.part_size,
        part_tx,
        Arc::new(Semaphore::new(PARTS_IN_MEMORY)),
    )
    .with_progress(Arc::clone(&target.progress));
    let compression = target.compression;
    let wrap = target.wrap;
    let progress = target.progress;
    let compressor = tokio::task::spawn_blocking(move || {
        compress::run(sql_rx, parts, compression, wrap, progress)
    });

    let produced = match produce(sql_tx.clone()).await {
        Ok(v) => match sql_tx.send(Piece::End).await {
            Ok(()) => Ok(v),
            Err(_) => Err(anyhow!(PipelineClosed)),
        },
        Err(e) => Err(e),
    };
    drop(sql_tx);
    let compressed = compressor
        .await
        .unwrap_or_else(|e| Err(anyhow!("compression thread failed: {e}")));
    let uploaded = uploader
        .await
        .unwrap_or_else(|e| Err(anyhow!("upload task failed: {e}")));

    match (produced, compressed, uploaded) {
        (Ok(produced), Ok(stream), Ok(uploaded)) => Ok(Streamed {
            produced,
            stream,
            uploaded,
        }),
        (p, c, u) => Err(root_cause(vec![p.err(), c.err(), u.err()])),
    }
}

/// The first error that is not a consequence of another stage stopping.
fn root_cause(errors: Vec<Option<anyhow::Error>>) -> anyhow::Error {
    let errors: Vec<anyhow::Error> = errors.into_iter().flatten().collect();
    let is_closed = |e: &anyhow::Error| e.chain().any(|c| c.is::<PipelineClosed>());
    let is_cancel = |e: &anyhow::Error| e.chain().any(|c| c.is::<Cancelled>());
    if let Some(i) = errors.iter().position(|e| !is_closed(e) && !is_cancel(e)) {
        return errors
            .into_iter()
            .nth(i)
            .unwrap_or_else(|| anyhow!(PipelineClosed));
    }
    if let Some(i) = errors.iter().position(is_cancel) {
        return errors
            .into_iter()
            .nth(i)
            .unwrap_or_else(|| anyhow!(Cancelled));
    }
    errors
        .into_iter()
        .next()
        .unwrap_or_else(|| anyhow!(PipelineClosed))
}

async fn upload_loop(
    mut upload: Box<dyn Upload>,
    mut rx: mpsc::Receiver<PartMsg>,
    cancel: CancellationToken,
) -> Result<Uploaded> {
    let failure = loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = cancel.cancelled() => break anyhow!(Cancelled),
        };
        match msg {
            Some(PartMsg::Part(data)) => {
                let r = tokio::select! {
                    r = upload.write_part(data) => r,
                    _ = cancel.cancelled() => Err(anyhow!(Cancelled)),
                };
                if let Err(e) = r {
                    break e;
                }
            }
            Some(PartMsg::End) => return upload.complete().await,
            None => break anyhow!(PipelineClosed),
        }
    };
    // Stop the compressor first (it may be blocked sending to us), then clean up.
    drop(rx);
    if let Err(e) = upload.abort().await {
        crate::util::log::warn(format!("could not abort the upload: {e:#}"));
    }
    Err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cause_prefers_real_errors() {
        let e = root_cause(vec![
            Some(anyhow!(PipelineClosed)),
            Some(anyhow!(PipelineClosed)),
            Some(anyhow!("part upload failed")),
        ]);
        assert_eq!(e.to_string(), "part upload failed");
        let e = root_cause(vec![
            Some(anyhow!("D1 said no")),
            Some(anyhow!(PipelineClosed)),
            None,
        ]);
        assert_eq!(e.to_string(), "D1 said no");
        let e = root_cause(vec![
            Some(anyhow!(Cancelled)),
            Some(anyhow!(PipelineClosed)),
            Some(anyhow!(Cancelled)),
        ]);
        assert!(e.is::<Cancelled>());
    }
}
