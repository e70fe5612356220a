//! Segment files: names, listing, record framing, a checked reader and a repair scan.
//!
//! A frame is `[u32 LE payload length][u32 LE crc32c(payload)][payload]`; see
//! `docs/format/wal.md`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::codec::Encoder;
use super::record::RecordRef;
use crate::{Error, Result};

/// Bytes of a frame header: payload length and crc32c.
pub(crate) const HEADER_LEN: usize = 8;

/// The largest payload a frame may carry. Readers treat a larger length field as corruption,
/// so a garbage length never makes us allocate more than this (and never more than the file
/// holds); writers split larger records.
pub(crate) const MAX_RECORD_LEN: usize = 64 << 20;

/// The payload type byte of a segment header (record types start at 1).
const TYPE_SEGMENT_HEADER: u8 = 0;

/// Bytes of a segment header's payload: type, own index, predecessor's final size.
const SEGMENT_HEADER_PAYLOAD_LEN: usize = 1 + 8 + 8;

/// Bytes of a segment header frame, the first frame of every segment written by this version.
pub(crate) const SEGMENT_HEADER_LEN: u64 = (HEADER_LEN + SEGMENT_HEADER_PAYLOAD_LEN) as u64;

/// The first frame of a segment: which segment it is and how long its predecessor was when
/// this one was started.
///
/// A segment whose tail is cut off exactly at a frame boundary (or to zero bytes) still reads
/// as a clean sequence of frames; only its successor's record of its final size shows that
/// records are missing. Without it, repair would keep the later segments and replay would
/// skip the lost records as if the log were contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The index of the segment holding this header.
    pub(crate) index: u64,
    /// The size in bytes of segment `index - 1` when this segment was created: the end of its
    /// last whole record.
    pub(crate) prev_size: u64,
}

impl SegmentHeader {
    /// The header as a frame.
    pub(crate) fn framed(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut payload = [0u8; SEGMENT_HEADER_PAYLOAD_LEN];
        payload[0] = TYPE_SEGMENT_HEADER;
        payload[1..9].copy_from_slice(&self.index.to_le_bytes());
        payload[9..17].copy_from_slice(&self.prev_size.to_le_bytes());
        let mut out = [0u8; SEGMENT_HEADER_LEN as usize];
        out[..4].copy_from_slice(&(SEGMENT_HEADER_PAYLOAD_LEN as u32).to_le_bytes());
        out[4..8].copy_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        out[HEADER_LEN..].copy_from_slice(&payload);
        out
    }

    /// Parses a (crc-checked) frame payload that starts with the header type byte.
    fn parse(payload: &[u8]) -> std::result::Result<Self, String> {
        if payload.len() != SEGMENT_HEADER_PAYLOAD_LEN {
            return Err(format!(
                "segment header of {} bytes, expected {SEGMENT_HEADER_PAYLOAD_LEN}",
                payload.len()
            ));
        }
        let u = |at: usize| {
            payload
                .get(at..)
                .and_then(|b| b.first_chunk())
                .map(|b| u64::from_le_bytes(*b))
        };
        match (u(1), u(9)) {
            (Some(index), Some(prev_size)) => Ok(SegmentHeader { index, prev_size }),
            _ => Err(format!("segment header of {} bytes is short", payload.len())),
        }
    }

    /// The header of the segment at `path`, if its first frame is a whole, correct one.
    /// `None` for a segment without one (empty, damaged at the start, or written before
    /// segment headers existed).
    pub(crate) fn read(path: &Path) -> Result<Option<Self>> {
        let mut f = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut buf = Vec::with_capacity(SEGMENT_HEADER_LEN as usize);
        (&mut f)
            .take(SEGMENT_HEADER_LEN)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        let Some((frame, payload)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        if buf.len() < SEGMENT_HEADER_LEN as usize
            || frame[..4] != (SEGMENT_HEADER_PAYLOAD_LEN as u32).to_le_bytes()
            || payload.first() != Some(&TYPE_SEGMENT_HEADER)
        {
            return Ok(None);
        }
        if frame[4..] != crc32c::crc32c(payload).to_le_bytes() {
            return Ok(None);
        }
        Ok(SegmentHeader::parse(payload).ok())
    }
}

/// The file name of segment `index`: 8 decimal digits, zero-padded.
pub(crate) fn segment_name(index: u64) -> String {
    format!("{index:08}")
}

/// The path of segment `index` in `dir`.
pub(crate) fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(segment_name(index))
}

/// The index encoded in a segment file name, if `name` is one (all ASCII digits).
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The segment files in `dir`, sorted by index. Other entries are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("read dir", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read dir", dir, e))?;
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        let ft = entry
            .file_type()
            .map_err(|e| Error::io("stat", entry.path(), e))?;
        if ft.is_file() {
            out.push((index, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(i, _)| *i);
    Ok(out)
}

/// fsyncs a directory so that created, renamed and removed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync dir", dir, e))
}

/// Creates segment `index` in `dir` for appending (failing if it exists), writes its
/// [`SegmentHeader`] (recording `prev_size`, the final size of segment `index - 1`) and fsyncs
/// `dir`. The segment then holds [`SEGMENT_HEADER_LEN`] bytes.
pub(crate) fn create_segment(dir: &Path, index: u64, prev_size: u64) -> Result<(File, PathBuf)> {
    let path = segment_path(dir, index);
    let mut f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io("create", &path, e))?;
    let header = SegmentHeader { index, prev_size };
    f.write_all(&header.framed())
        .map_err(|e| Error::io("write", &path, e))?;
    sync_dir(dir)?;
    Ok((f, path))
}

/// Appends `rec` as one or more framed records to `dst`, encoded by `enc` (the state of the
/// segment `dst` goes to). A record whose encoding could exceed `max_payload` bytes is split
/// in halves until each part fits. Every item is checked before anything is encoded, so on
/// error neither `dst` nor `enc` has changed.
///
/// # Errors
/// [`Error::InvalidArgument`] if a single item could encode to more than `max_payload`.
pub(crate) fn append_framed(
    dst: &mut Vec<u8>,
    rec: RecordRef<'_>,
    max_payload: usize,
    enc: &mut Encoder,
) -> Result<()> {
    if let Some(len) = rec.largest_item_len()
        && len > max_payload
    {
        return Err(Error::InvalidArgument(format!(
            "a single WAL item encodes to up to {len} bytes, more than the record limit of {max_payload} bytes"
        )));
    }
    frame_parts(dst, rec, max_payload, enc);
    Ok(())
}

#[allow(
    clippy::indexing_slicing,
    reason = "`dst` was extended by the frame's HEADER_LEN header bytes at `start`, then by the payload"
)]
fn frame_parts(dst: &mut Vec<u8>, rec: RecordRef<'_>, max_payload: usize, enc: &mut Encoder) {
    if rec.len() > 1 && rec.worst_len() > max_payload {
        let (a, b) = rec.split();
        frame_parts(dst, a, max_payload, enc);
        frame_parts(dst, b, max_payload, enc);
        return;
    }
    let start = dst.len();
    dst.extend_from_slice(&[0; HEADER_LEN]);
    enc.encode_ref(rec, dst);
    let len = dst.len() - start - HEADER_LEN;
    debug_assert!(len <= rec.worst_len(), "{len} > worst case {}", rec.worst_len());
    let crc = crc32c::crc32c(&dst[start + HEADER_LEN..]);
    // len <= max_payload <= u32::MAX for any sane cap; MAX_RECORD_LEN is 64 MiB.
    dst[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    dst[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What [`SegmentReader::next`] found.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A record whose crc matched: its frame's offset in the file; the payload is in
    /// [`SegmentReader::payload`].
    Record { offset: u64 },
    /// The clean end of the readable part of the file.
    End,
    /// A torn or corrupt frame at `offset`; nothing from there on can be trusted.
    Bad { offset: u64, reason: String },
}

/// Reads the frames of one segment file, checking each; reuses one payload buffer.
pub(crate) struct SegmentReader {
    path: PathBuf,
    file: BufReader<File>,
    /// Bytes of the file to read (its size at open, or less for the segment being written).
    len: u64,
    /// The file's size at open.
    size: u64,
    pos: u64,
    /// The end of the last whole frame read (the segment header included).
    good: u64,
    payload: Vec<u8>,
    header: Option<SegmentHeader>,
}

impl SegmentReader {
    /// Opens `path`, reading at most `limit` bytes (all of it if `None`).
    pub(crate) fn open(path: &Path, limit: Option<u64>) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let size = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        Ok(SegmentReader {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(1 << 20, file),
            len: limit.map_or(size, |l| l.min(size)),
            size,
            pos: 0,
            good: 0,
            payload: Vec::new(),
            header: None,
        })
    }

    /// The file's size when it was opened.
    pub(crate) fn file_size(&self) -> u64 {
        self.size
    }

    /// The end of the last whole frame read so far (a segment header counts).
    pub(crate) fn good_len(&self) -> u64 {
        self.good
    }

    /// The segment header, once the first frame has been read (`None` if it has none).
    pub(crate) fn header(&self) -> Option<SegmentHeader> {
        self.header
    }

    /// The payload of the last [`Frame::Record`].
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The next record frame (a segment header at offset 0 is checked and skipped). I/O
    /// errors are errors; bad bytes are [`Frame::Bad`].
    pub(crate) fn next(&mut self) -> Result<Frame> {
        match self.next_frame()? {
            Frame::Record { offset: 0 } if self.payload.first() == Some(&TYPE_SEGMENT_HEADER) => {
                match SegmentHeader::parse(&self.payload) {
                    Ok(h) => {
                        self.header = Some(h);
                        self.next_frame()
                    }
                    Err(reason) => {
                        self.good = 0;
                        Ok(Frame::Bad { offset: 0, reason })
                    }
                }
            }
            other => Ok(other),
        }
    }

    fn next_frame(&mut self) -> Result<Frame> {
        let offset = self.pos;
        let left = self.len - self.pos;
        if left == 0 {
            return Ok(Frame::End);
        }
        let bad = |reason: String| Ok(Frame::Bad { offset, reason });
        if left < HEADER_LEN as u64 {
            return bad(format!(
                "torn record header: {left} bytes left, a header has {HEADER_LEN}"
            ));
        }
        let mut header = [0u8; HEADER_LEN];
        self.read_exact(&mut header)?;
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let body_left = left - HEADER_LEN as u64;
        if len == 0 {
            // What a zero-filled tail (preallocated or torn by the filesystem) looks like.
            return bad("zero-length record".to_string());
        }
        if len as usize > MAX_RECORD_LEN {
            return bad(format!(
                "record length {len} exceeds the limit of {MAX_RECORD_LEN} bytes"
            ));
        }
        if u64::from(len) > body_left {
            return bad(format!(
                "record length {len} runs past the end of the file ({body_left} bytes left)"
            ));
        }
        // Bounded by the file's remaining size and MAX_RECORD_LEN (checked above).
        self.payload.resize(len as usize, 0);
        let mut payload = std::mem::take(&mut self.payload);
        let res = self.read_exact(&mut payload);
        self.payload = payload;
        res?;
        let actual = crc32c::crc32c(&self.payload);
        if actual != crc {
            return bad(format!(
                "crc32c mismatch over {len} bytes: stored {crc:#010x}, computed {actual:#010x}"
            ));
        }
        self.good = self.pos;
        Ok(Frame::Record { offset })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact(buf)
            .map_err(|e| Error::io("read", &self.path, e))?;
        self.pos += buf.len() as u64;
        Ok(())
    }
}

/// A repair done on one file: truncated at `offset` because of `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub(crate) offset: u64,
    pub(crate) reason: String,
    /// Bytes past `offset` that were cut off.
    pub(crate) dropped: u64,
}

/// Checks segment `index` at `path`: every frame, that its header (if any) names `index`,
/// and, if `expected_size` is given (the size its successor's header recorded for it), that
/// it ends exactly there. At the first bad frame, or past `expected_size`, it truncates the
/// file (and fsyncs it). A file shorter than `expected_size` lost whole records off its tail:
/// that is damage too (nothing to cut, but what follows it must not be replayed). Returns the
/// damage, if any.
pub(crate) fn check_and_truncate(
    path: &Path,
    index: u64,
    expected_size: Option<u64>,
) -> Result<Option<Damage>> {
    let mut r = SegmentReader::open(path, expected_size)?;
    let mut bad = loop {
        match r.next()? {
            Frame::Record { .. } => {}
            Frame::End => break None,
            Frame::Bad { offset, reason } => break Some((offset, reason)),
        }
    };
    let size = r.file_size();
    if let Some(h) = r.header()
        && h.index != index
    {
        bad = Some((
            0,
            format!(
                "segment header names segment {}, not {}",
                segment_name(h.index),
                segment_name(index)
            ),
        ));
    }
    drop(r);
    if bad.is_none()
        && let Some(want) = expected_size
    {
        if size < want {
            return Ok(Some(Damage {
                offset: size,
                reason: format!(
                    "segment is {size} bytes long but the next segment recorded {want}: \
                     the last {} bytes of whole records are missing",
                    want - size
                ),
                dropped: 0,
            }));
        }
        if size > want {
            bad = Some((
                want,
                format!(
                    "{} bytes past the end of the segment recorded by the next segment ({want})",
                    size - want
                ),
            ));
        }
    }
    let Some((offset, reason)) = bad else {
        return Ok(None);
    };
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    f.set_len(offset).map_err(|e| Error::io("truncate", path, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", path, e))?;
    Ok(Some(Damage {
        offset,
        reason,
        dropped: size - offset,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::{Record, RefSample};

    #[test]
    fn segment_names() {
        assert_eq!(segment_name(3), "00000003");
        assert_eq!(segment_name(123_456_789), "123456789");
        assert_eq!(parse_segment_name("00000003"), Some(3));
        assert_eq!(parse_segment_name("123456789"), Some(123_456_789));
        for bad in [
            "",
            "checkpoint.00000001",
            "0001.tmp",
            "-1",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn oversized_records_are_split_and_single_items_rejected() {
        let samples: Vec<RefSample> = (0..100)
            .map(|i| RefSample {
                series_ref: i,
                t: i as i64,
                v: 1.0,
            })
            .collect();
        let rec = Record::Samples(samples.clone());
        let mut buf = Vec::new();
        append_framed(&mut buf, rec.as_ref(), 200, &mut Encoder::new()).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000000");
        std::fs::write(&p, &buf).unwrap();
        let mut r = SegmentReader::open(&p, None).unwrap();
        let mut got = Vec::new();
        let mut frames = 0;
        let mut dec = crate::wal::codec::Decoder::new();
        while let Frame::Record { .. } = r.next().unwrap() {
            assert!(r.payload().len() <= 200);
            frames += 1;
            match Record::decode_in(r.payload(), &mut dec).unwrap() {
                Record::Samples(s) => got.extend(s),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(frames > 1);
        assert_eq!(got, samples);

        let mut buf = vec![1, 2, 3];
        let series = Record::Series(vec![crate::wal::RefSeries {
            series_ref: 1,
            labels: metricsd_model::Labels::from_pairs([("a", "b")]),
        }]);
        let mut enc = Encoder::new();
        let err = append_framed(&mut buf, series.as_ref(), 5, &mut enc).unwrap_err();
        assert!(
            err.to_string().contains("more than the record limit of 5 bytes"),
            "{err}"
        );
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(enc.series(), 0);
    }
}
