//! A whole log: the checked in-memory view, encoding and the atomic file write.

use byteorder::{ByteOrder, NetworkEndian};

use super::*;

/// A checked view of a whole log in memory: header parsed, length verified, records borrowed.
#[derive(Debug, Clone)]
pub struct LogView<'a> {
    pub header: LogHeader,
    records: &'a [u8],
}

impl<'a> LogView<'a> {
    /// Check a whole log: header, then that the rest is exactly `record_count` records and
    /// the trailer. Records with a sender outside `0..peers` are refused too, so consumers can
    /// index by it.
    pub fn parse(data: &'a [u8]) -> Result<LogView<'a>> {
        let (mut header, header_len) = LogHeader::parse(data)?;
        let rest = &data[header_len..];
        let trailer = header.trailer_len();
        if rest.len() < trailer {
            return Err(Error::Truncated);
        }
        let (body, ends) = rest.split_at(rest.len() - trailer);
        header.streams = LogHeader::parse_trailer(ends);
        if body.len() % RECORD_LEN != 0 {
            return Err(Error::Truncated);
        }
        if (body.len() / RECORD_LEN) as u64 != header.record_count {
            return Err(Error::BadLength);
        }
        let peers = header.peers;
        if body
            .chunks_exact(RECORD_LEN)
            .any(|r| NetworkEndian::read_u16(&r[field::R_SENDER]) >= peers)
        {
            return Err(Error::BadValue);
        }
        Ok(LogView {
            header,
            records: body,
        })
    }

    pub fn len(&self) -> usize {
        self.records.len() / RECORD_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records in delivery order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = Record> + 'a {
        self.records.chunks_exact(RECORD_LEN).map(|c| {
            let c: &[u8; RECORD_LEN] = c.try_into().expect("chunks_exact yields RECORD_LEN");
            Record::parse(c)
        })
    }
}

/// Serialise a header (its `record_count` set from `records`) and the records.
pub fn encode(header: &LogHeader, records: &[Record]) -> Vec<u8> {
    let mut header = header.clone();
    header.record_count = records.len() as u64;
    let hl = header.buffer_len();
    let body = records.len() * RECORD_LEN;
    let mut out = vec![0u8; hl + body + header.trailer_len()];
    header.emit(&mut out[..hl]);
    for (r, chunk) in records.iter().zip(out[hl..].chunks_exact_mut(RECORD_LEN)) {
        r.emit(
            chunk
                .try_into()
                .expect("chunks_exact_mut yields RECORD_LEN"),
        );
    }
    header.emit_trailer(&mut out[hl + body..]);
    out
}

/// Write a log file atomically: a temporary file in the same directory, fsync, rename.
pub fn write_file(
    path: &std::path::Path,
    header: &LogHeader,
    records: &[Record],
) -> std::io::Result<()> {
    write_bytes(path, &encode(header, records))
}

/// Write an encoded log to `path` through `path.mplog.tmp` and a rename, so a reader never
/// sees half a log; on failure (a full disk) the temporary file is removed.
pub fn write_bytes(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("mplog.tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let done = written.and_then(|()| std::fs::rename(&tmp, path));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}
