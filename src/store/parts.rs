//! Multipart part sizing and the writer that cuts a byte stream into parts.
//!
//! R2 requires every part except the last to have exactly the same size (≥ 5 MiB, ≤ 5 GiB −
//! 5 MiB) and allows at most 10,000 parts. The size must be chosen before the first byte is
//! uploaded, so [`plan_part_size`] works from an estimate of the final size. [`PartWriter`]
//! then emits parts of exactly that size (the last one no larger), hashing everything it
//! passes on.

use std::io::{self, Write};

use std::sync::Arc;

use bytes::BytesMut;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::Part;

pub const MIB: u64 = 1024 * 1024;
pub const MIN_PART: u64 = 5 * MIB;
pub const MAX_PART: u64 = 5 * 1024 * MIB - 5 * MIB;
pub const MAX_PARTS: u64 = 10_000;
/// Default part size: R2's minimum, which keeps memory low (a few parts are in memory at
/// once) and still allows objects of 48 GiB; larger dumps get larger parts.
pub const DEFAULT_PART: u64 = MIN_PART;

/// Choose the part size for an object expected to be about `expected` bytes: the default,
/// or larger (whole MiB) so the object fits in 10,000 parts with a 2× margin.
pub fn plan_part_size(expected: Option<u64>) -> u64 {
    let needed = expected
        .map(|e| e.saturating_mul(2).div_ceil(MAX_PARTS))
        .unwrap_or(0);
    let needed = needed.div_ceil(MIB) * MIB;
    needed.clamp(DEFAULT_PART, MAX_PART)
}

/// Check a list of part sizes against R2's multipart rules.
pub fn check_part_sizes(sizes: &[u64]) -> Result<(), String> {
    if sizes.len() as u64 > MAX_PARTS {
        return Err(format!(
            "{} parts; at most {MAX_PARTS} allowed",
            sizes.len()
        ));
    }
    let Some((last, rest)) = sizes.split_last() else {
        return Ok(());
    };
    if let Some(first) = rest.first() {
        if *first < MIN_PART || *first > MAX_PART {
            return Err(format!(
                "part size {first} outside [{MIN_PART}, {MAX_PART}]"
            ));
        }
        if let Some(bad) = rest.iter().position(|s| s != first) {
            return Err(format!(
                "part {} is {} bytes, not {first}",
                bad + 1,
                rest[bad]
            ));
        }
        if last > first {
            return Err(format!("last part {last} is larger than {first}"));
        }
    }
    Ok(())
}

/// Messages from the compressor to the uploader.
#[derive(Debug)]
pub enum PartMsg {
    Part(Part),
    /// The stream ended successfully: complete the upload.
    End,
}

/// Cuts a byte stream into equal parts, hashes it, and sends parts down a channel. Each
/// part holds a slot of `slots` from its first byte until it is stored, so at most that many
/// parts are in memory whatever the speed of the stages.
pub struct PartWriter {
    part_size: usize,
    buf: BytesMut,
    tx: mpsc::Sender<PartMsg>,
    slots: Arc<Semaphore>,
    slot: Option<OwnedSemaphorePermit>,
    hasher: Sha256,
    total: u64,
    parts: u64,
    progress: Option<Arc<crate::util::progress::Progress>>,
}

/// What [`PartWriter::finish`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenObject {
    pub bytes: u64,
    pub sha256: String,
    pub parts: u64,
}

impl PartWriter {
    pub fn new(part_size: u64, tx: mpsc::Sender<PartMsg>, slots: Arc<Semaphore>) -> PartWriter {
        let part_size = part_size as usize;
        PartWriter {
            part_size,
            buf: BytesMut::new(),
            tx,
            slots,
            slot: None,
            hasher: Sha256::new(),
            total: 0,
            parts: 0,
            progress: None,
        }
    }

    /// Count stored bytes into `progress`.
    pub fn with_progress(mut self, progress: Arc<crate::util::progress::Progress>) -> PartWriter {
        self.progress = Some(progress);
        self
    }

    /// Wait for a slot before starting a part (blocking: this runs on the compressor thread).
    fn claim_slot(&mut self) -> io::Result<()> {
        if self.slot.is_none() {
            let permit = futures::executor::block_on(Arc::clone(&self.slots).acquire_owned())
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::BrokenPipe, crate::util::PipelineClosed)
                })?;
            self.slot = Some(permit);
            self.buf.reserve(self.part_size);
        }
        Ok(())
    }

    fn send(&mut self, data: bytes::Bytes) -> io::Result<()> {
        self.parts += 1;
        if self.parts > MAX_PARTS {
            return Err(io::Error::other(format!(
                "the backup exceeds {MAX_PARTS} parts of {} MiB",
                self.part_size as u64 / MIB
            )));
        }
        self.tx
            .blocking_send(PartMsg::Part(Part::with_slot(data, self.slot.take())))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, crate::util::PipelineClosed))
    }

    /// Send the final part and the end marker.
    pub fn finish(mut self) -> io::Result<WrittenObject> {
        let rest = self.buf.split().freeze();
        if !rest.is_empty() || self.parts == 0 {
            self.send(rest)?;
        }
        self.tx
            .blocking_send(PartMsg::End)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, crate::util::PipelineClosed))?;
        Ok(WrittenObject {
            bytes: self.total,
            sha256: hex::encode(self.hasher.finalize()),
            parts: self.parts,
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        self.hasher.update(data);
        self.total += n as u64;
        if let Some(p) = &self.progress {
            p.add_stored(n as u64);
        }
        while !data.is_empty() {
            self.claim_slot()?;
            let room = self.part_size - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.part_size {
                let part = self.buf.split().freeze();
                self.send(part)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_for_expected_objects() {
        let gib = 1024 * MIB;
        let cases = [
            (None, DEFAULT_PART),
            (Some(0), DEFAULT_PART),
            (Some(10 * gib), DEFAULT_PART),
            (Some(24 * gib), DEFAULT_PART),
            // 30 GiB × 2 / 10,000 = 6.1 MiB → 7 MiB
            (Some(30 * gib), 7 * MIB),
            // 50 GiB × 2 / 10,000 = 10.24 MiB → 11 MiB
            (Some(50 * gib), 11 * MIB),
            (Some(1024 * gib), 210 * MIB),
            (Some(u64::MAX / 4), MAX_PART),
        ];
        for (expected, want) in cases {
            let got = plan_part_size(expected);
            assert_eq!(got, want, "{expected:?}");
            assert!((MIN_PART..=MAX_PART).contains(&got));
            if let Some(e) = expected {
                let parts = e.div_ceil(got);
                assert!(
                    parts <= MAX_PARTS || got == MAX_PART,
                    "{e} needs {parts} parts"
                );
            }
        }
    }

    #[test]
    fn r2_part_rules() {
        let p = 5 * MIB;
        let cases: Vec<(Vec<u64>, bool)> = vec![
            (vec![], true),
            (vec![100], true),
            (vec![p, p, 1], true),
            (vec![p, p, p], true),
            (vec![6 * MIB, p, MIB], false),
            (vec![p, p + 1], false),
            (vec![MIB, MIB], false),
            (vec![p; 10_001], false),
        ];
        for (sizes, ok) in cases {
            assert_eq!(
                check_part_sizes(&sizes).is_ok(),
                ok,
                "{:?}",
                &sizes[..sizes.len().min(4)]
            );
        }
    }

    #[test]
    fn writer_emits_equal_parts_whatever_the_write_sizes() {
        let part = 1000u64;
        let (tx, mut rx) = mpsc::channel(1000);
        let mut w = PartWriter::new(part, tx, Arc::new(Semaphore::new(1000)));
        let mut all = Vec::new();
        let mut seed = 12345u64;
        for _ in 0..500 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (seed >> 33) as usize % 137;
            let chunk: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31)).collect();
            w.write_all(&chunk).unwrap();
            all.extend_from_slice(&chunk);
        }
        let done = w.finish().unwrap();
        let mut sizes = Vec::new();
        let mut joined = Vec::new();
        let mut ended = false;
        while let Ok(msg) = rx.try_recv() {
            match msg {
                PartMsg::Part(b) => {
                    sizes.push(b.len() as u64);
                    joined.extend_from_slice(&b.data);
                }
                PartMsg::End => ended = true,
            }
        }
        assert!(ended);
        assert_eq!(joined, all);
        assert_eq!(done.bytes, all.len() as u64);
        assert_eq!(done.sha256, hex::encode(Sha256::digest(&all)));
        let (last, rest) = sizes.split_last().unwrap();
        assert!(rest.iter().all(|s| *s == part));
        assert!(*last <= part && *last > 0);
    }
}
