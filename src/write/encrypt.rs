//! The encrypting stage of the write pipeline: when a backup has recipients, everything the
//! compressor writes passes through age before it becomes upload parts, so nothing is ever
//! uploaded unencrypted.

use std::io::{self, Write};
use std::sync::Arc;

use anyhow::{Result, anyhow};

use crate::encrypt::Recipients;
use crate::store::parts::PartWriter;
use crate::write::compress::{FinishWrite, Wrap};

/// The hook that encrypts everything the compressor writes, for `recipients`.
pub fn wrap(recipients: Arc<Recipients>) -> Wrap {
    Box::new(move |parts: PartWriter| -> Result<Box<dyn FinishWrite>> {
        let writer = recipients
            .encryptor()?
            .wrap_output(parts)
            .map_err(|e| anyhow!("starting age encryption: {e}"))?;
        Ok(Box::new(AgeWriter(writer)))
    })
}

/// The encrypting writer between the compressor and the part writer.
struct AgeWriter(age::stream::StreamWriter<PartWriter>);

impl Write for AgeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl FinishWrite for AgeWriter {
    fn finish(self: Box<Self>) -> Result<PartWriter> {
        self.0
            .finish()
            .map_err(|e| anyhow!("finishing age encryption: {e}"))
    }
}
