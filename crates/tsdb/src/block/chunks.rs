//! The chunk segment files of a block, `chunks/000001`, `chunks/000002`, ...
//!
//! Layout: [`docs/format/chunks_file.md`](../../../../docs/format/chunks_file.md). Each file
//! is an 8-byte header (magic, version, 3 reserved zero bytes) followed by records
//! `[encoding u8][uvarint len][data][crc32c u32 LE over encoding + data]`. A chunk is
//! addressed by `chunk_ref = (file number << 32) | byte offset of its record`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Dec, corruption, put_uvarint, uvarint_len};
use crate::chunkenc::Encoding;
use crate::{Error, Result};

/// Magic number at the start of every chunk segment file.
pub(crate) const CHUNKS_MAGIC: [u8; 4] = *b"MDCK";
/// Version of the chunk segment format.
pub(crate) const CHUNKS_VERSION: u8 = 1;
/// Header: magic, version, 3 reserved zero bytes.
pub(crate) const HEADER_LEN: usize = 8;
/// A new segment is started before a record that would make the current one exceed this.
pub(crate) const DEFAULT_SEGMENT_SIZE: u64 = 512 << 20;

/// The name of segment file `n` (1-based).
pub(crate) fn segment_name(n: u32) -> String {
    format!("{n:06}")
}

/// Writes chunk records into numbered segment files of `dir`.
pub(crate) struct ChunkWriter {
    dir: PathBuf,
    max_segment_size: u64,
    /// The open segment: its number, path, writer and size so far.
    cur: Option<(u32, PathBuf, BufWriter<File>, u64)>,
    /// Sizes of finished segments.
    bytes_done: u64,
}

impl ChunkWriter {
    /// A writer into `dir` (which must exist). At least one segment is always written, so an
    /// empty block still has `chunks/000001`.
    pub(crate) fn new(dir: &Path, max_segment_size: u64) -> Result<ChunkWriter> {
        // Offsets are u32 in a chunk ref; keep every record start below 4 GiB.
        let max_segment_size = max_segment_size.clamp(HEADER_LEN as u64 + 1, u64::from(u32::MAX));
        let mut w = ChunkWriter {
            dir: dir.to_path_buf(),
            max_segment_size,
            cur: None,
            bytes_done: 0,
        };
        w.cut(1)?;
        Ok(w)
    }

    fn cut(&mut self, n: u32) -> Result<()> {
        self.finish_segment()?;
        let path = self.dir.join(segment_name(n));
        let f = File::create_new(&path).map_err(|e| Error::io("create", &path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&CHUNKS_MAGIC);
        header[4] = CHUNKS_VERSION;
        w.write_all(&header).map_err(|e| Error::io("write", &path, e))?;
        self.cur = Some((n, path, w, HEADER_LEN as u64));
        Ok(())
    }

    fn finish_segment(&mut self) -> Result<()> {
        if let Some((_, path, w, size)) = self.cur.take() {
            let f = w
                .into_inner()
                .map_err(|e| Error::io("write", &path, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
            self.bytes_done += size;
        }
        Ok(())
    }

    /// Appends one chunk record; returns its chunk ref.
    pub(crate) fn write(&mut self, enc: Encoding, data: &[u8]) -> Result<u64> {
        let rec_len = 1 + uvarint_len(data.len() as u64) + data.len() as u64 + 4;
        let (n, size) = match &self.cur {
            Some((n, _, _, size)) => (*n, *size),
            None => return Err(Error::Unavailable("chunk writer already finished".into())),
        };
        // A record larger than a whole segment still gets a segment of its own.
        if size > HEADER_LEN as u64 && size + rec_len > self.max_segment_size {
            let next = n
                .checked_add(1)
                .ok_or_else(|| Error::InvalidArgument("too many chunk segments".into()))?;
            self.cut(next)?;
        }
        let Some((n, path, w, size)) = &mut self.cur else {
            return Err(Error::Unavailable("chunk writer already finished".into()));
        };
        let chunk_ref = (u64::from(*n) << 32) | *size;
        let mut head = Vec::with_capacity(11);
        head.push(enc as u8);
        put_uvarint(&mut head, data.len() as u64);
        let mut crc = crc32c::crc32c(&[enc as u8]);
        crc = crc32c::crc32c_append(crc, data);
        let io = |e| Error::io("write", path.clone(), e);
        w.write_all(&head).map_err(io)?;
        w.write_all(data).map_err(io)?;
        w.write_all(&crc.to_le_bytes()).map_err(io)?;
        *size += rec_len;
        Ok(chunk_ref)
    }

    /// Flushes and fsyncs every segment; returns the total bytes written. The caller fsyncs
    /// the directory.
    pub(crate) fn finish(mut self) -> Result<u64> {
        self.finish_segment()?;
        Ok(self.bytes_done)
    }
}

/// Bytes read with a record's header when a chunk is read: most chunks (≈ 1.5 B/sample,
/// at most 480 samples) fit, so one `pread` reads the whole record.
const CHUNK_READ_AHEAD: usize = 2048;
/// Bytes read at a time by the scan at open.
const SCAN_READ_AHEAD: usize = 1 << 20;
/// The longest record header: encoding byte and a 10-byte uvarint.
const MAX_RECORD_HEADER: u64 = 11;

/// A window of a segment file read with `pread` into a (reused) buffer. Nothing is mapped:
/// a file truncated underneath makes a read come back short, which is an error here, where
/// a mapping would raise SIGBUS and kill the process.
struct Window<'a> {
    file: &'a File,
    /// The file's length when the block was opened: records are only read below it.
    len: u64,
    /// File offset of `buf[0]`.
    start: u64,
    /// Bytes of `buf` read from the file (the rest is stale: the buffer is not zeroed for
    /// each read).
    filled: usize,
    buf: &'a mut Vec<u8>,
    /// Bytes read at least per `pread`, so that a record, or a scan, needs few calls.
    read_ahead: usize,
}

impl<'a> Window<'a> {
    fn new(file: &'a File, len: u64, buf: &'a mut Vec<u8>, read_ahead: usize) -> Self {
        Window {
            file,
            len,
            start: 0,
            filled: 0,
            buf,
            read_ahead,
        }
    }

    /// The range of `buf` that holds the `n` bytes at file offset `off` (the caller ensures
    /// `off + n <= len`), reading them (and some after) if they are not buffered yet. A short
    /// read (the file shrank) or a failed one is an error.
    fn get(&mut self, off: u64, n: u64) -> std::io::Result<Range<usize>> {
        let have = self.start..self.start + self.filled as u64;
        if off >= have.start && off + n <= have.end {
            let a = (off - have.start) as usize;
            return Ok(a..a + n as usize);
        }
        let want = n
            .max(self.read_ahead as u64)
            .min(self.len.saturating_sub(off))
            .max(n);
        let want = usize::try_from(want).map_err(|_| std::io::Error::other("read too large"))?;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        self.start = off;
        self.filled = 0;
        // The read-ahead may find the file shorter than at open; only the `n` bytes asked
        // for must be there.
        let mut got = 0;
        // `buf` holds at least `want` bytes (resized above), so this stops only at `want`.
        while let Some(dst) = self.buf.get_mut(got..want)
            && !dst.is_empty()
        {
            match self.file.read_at(dst, off + got as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.filled = got;
        if (got as u64) < n {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("short read: {got} of {n} bytes at offset {off}"),
            ));
        }
        Ok(0..n as usize)
    }

    /// The bytes of a range [`Window::get`] returned.
    fn bytes(&self, r: Range<usize>) -> std::io::Result<&[u8]> {
        let len = self.buf.len();
        self.buf
            .get(r.clone())
            .ok_or_else(|| std::io::Error::other(format!("range {r:?} outside the {len}-byte read buffer")))
    }
}

/// What reading the record at an offset found.
enum Record {
    /// A record whose checksum matches; `data` is its payload's range in the window's buffer.
    Ok {
        enc: Encoding,
        data: Range<usize>,
        end: u64,
    },
    /// A bad record; `end` is where the next one would start if the length field is right.
    Bad { end: Option<u64>, reason: String },
}

/// Reads the record at `off` of a segment, verifying its checksum and encoding byte. An
/// error is a failed or short read (the file changed underneath).
fn read_record(w: &mut Window<'_>, off: u64) -> std::io::Result<Record> {
    let truncated = || Record::Bad {
        end: None,
        reason: "truncated record header".into(),
    };
    if off >= w.len {
        return Ok(truncated());
    }
    let head = w.get(off, (w.len - off).min(MAX_RECORD_HEADER))?;
    let mut d = Dec::new(w.bytes(head)?);
    let (enc_byte, len) = match (d.u8(), d.uvarint()) {
        (Ok(e), Ok(l)) => (e, l),
        _ => return Ok(truncated()),
    };
    let start = off + d.pos as u64;
    let end = len
        .checked_add(4)
        .and_then(|l| start.checked_add(l))
        .filter(|&e| e <= w.len);
    let Some(end) = end else {
        return Ok(Record::Bad {
            end: None,
            reason: format!(
                "record of {len} bytes overruns the file ({} bytes left)",
                w.len - start
            ),
        });
    };
    let rec = w.get(start, end - start)?;
    let rec_start = rec.start;
    // `end - start` is the payload's length plus 4, so the split always succeeds.
    let Some((payload, crc)) = w.bytes(rec)?.split_last_chunk::<4>() else {
        return Ok(truncated());
    };
    let data = rec_start..rec_start + payload.len();
    let want = u32::from_le_bytes(*crc);
    let got = crc32c::crc32c_append(crc32c::crc32c(&[enc_byte]), payload);
    if got != want {
        return Ok(Record::Bad {
            end: Some(end),
            reason: format!(
                "checksum mismatch over {} bytes: stored {want:#010x}, computed {got:#010x}",
                data.len() + 1
            ),
        });
    }
    Ok(match Encoding::from_u8(enc_byte) {
        Ok(enc) => Record::Ok { enc, data, end },
        Err(_) => Record::Bad {
            end: Some(end),
            reason: format!("unknown chunk encoding {enc_byte}"),
        },
    })
}

struct Segment {
    path: PathBuf,
    file: File,
    /// The file's length at open.
    len: u64,
}

/// The chunk segments of an open block, read with `pread` (see [`Window`]): each segment
/// holds an open file (one descriptor per segment), so a deleted block stays readable by
/// the queries that still hold it.
pub(crate) struct ChunkSegments {
    dir: PathBuf,
    /// Segment `n` (file `00000n`) is at index `n - 1`.
    segs: Vec<Segment>,
    /// Refs of records that failed verification at open, sorted.
    corrupt: Vec<u64>,
}

impl ChunkSegments {
    /// Opens every segment of `dir` and verifies every record's checksum. Bad records are
    /// recorded (and logged), not fatal; a missing or unreadable segment file is
    /// ([`Error::Corruption`] naming the missing file, or [`Error::Io`]).
    pub(crate) fn open(dir: &Path) -> Result<ChunkSegments> {
        let mut nums = Vec::new();
        let rd = fs::read_dir(dir).map_err(|e| Error::io("read dir", dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("read dir", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() == 6
                && name.bytes().all(|b| b.is_ascii_digit())
                && let Ok(n) = name.parse::<u32>()
            {
                nums.push(n);
            }
        }
        nums.sort_unstable();
        if nums.is_empty() {
            // The writer always writes 000001, even for an empty block.
            return Err(corruption(
                dir.join(segment_name(1)),
                0,
                "no chunk segment".into(),
            ));
        }
        let mut segs = Vec::with_capacity(nums.len());
        let mut corrupt = Vec::new();
        let mut buf = Vec::new();
        for (i, &n) in nums.iter().enumerate() {
            if n as usize != i + 1 {
                let missing = dir.join(segment_name(i as u32 + 1));
                return Err(corruption(
                    missing,
                    0,
                    format!("chunk segment missing (found {n:06} instead)"),
                ));
            }
            let path = dir.join(segment_name(n));
            let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            let len = file.metadata().map_err(|e| Error::io("stat", &path, e))?.len();
            let seg = Segment { path, file, len };
            scan_segment(&seg, n, &mut buf, &mut corrupt);
            segs.push(seg);
        }
        corrupt.sort_unstable();
        Ok(ChunkSegments {
            dir: dir.to_path_buf(),
            segs,
            corrupt,
        })
    }

    /// The encoding and bytes of chunk `r`, read into `buf` (which is reused: pass the same
    /// one for every chunk of a scan) and verified. A read that fails or comes back short
    /// (the file was truncated underneath) is [`Error::Corruption`], like a bad checksum.
    pub(crate) fn chunk<'b>(&self, r: u64, buf: &'b mut Vec<u8>) -> Result<(Encoding, &'b [u8])> {
        let n = (r >> 32) as usize;
        let off = r & 0xffff_ffff;
        let Some(seg) = n.checked_sub(1).and_then(|i| self.segs.get(i)) else {
            return Err(corruption(
                self.dir.join(segment_name(n as u32)),
                off,
                format!(
                    "chunk ref {r:#x} names segment {n}, the block has {}",
                    self.segs.len()
                ),
            ));
        };
        if self.corrupt.binary_search(&r).is_ok() {
            return Err(corruption(
                &seg.path,
                off,
                "chunk failed verification at open".into(),
            ));
        }
        if off < HEADER_LEN as u64 {
            return Err(corruption(
                &seg.path,
                off,
                format!("chunk ref {r:#x} points into the header"),
            ));
        }
        // Verify again: the open-time scan cannot vouch for records after a framing loss, and
        // a CRC of a few hundred bytes is cheap next to decoding them.
        let mut w = Window::new(&seg.file, seg.len, buf, CHUNK_READ_AHEAD);
        match read_record(&mut w, off) {
            Ok(Record::Ok { enc, data, .. }) => match buf.get(data.clone()) {
                Some(bytes) => Ok((enc, bytes)),
                None => Err(corruption(
                    &seg.path,
                    off,
                    format!("chunk data {data:?} outside the {}-byte read buffer", buf.len()),
                )),
            },
            Ok(Record::Bad { reason, .. }) => Err(corruption(&seg.path, off, reason)),
            Err(e) => Err(corruption(
                &seg.path,
                off,
                format!(
                    "reading the chunk failed ({e}); the segment was {} bytes when the block was opened",
                    seg.len
                ),
            )),
        }
    }

    /// Refs of records that failed verification at open (or where a segment became
    /// unreadable), sorted.
    pub(crate) fn corrupt(&self) -> &[u64] {
        &self.corrupt
    }

    /// Total bytes of the segment files (at open).
    pub(crate) fn size_bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.len).sum()
    }
}

/// Verifies every record of segment `n`, pushing the refs of bad ones to `corrupt`.
///
/// The length field is not covered by the checksum, so after a bad record the next offset is
/// only a guess: if the record after it is bad too, the framing is considered lost and the
/// scan stops (that second record is not reported; reads still verify every record). A read
/// that fails stops the scan the same way.
fn scan_segment(seg: &Segment, n: u32, buf: &mut Vec<u8>, corrupt: &mut Vec<u64>) {
    let base = u64::from(n) << 32;
    let path = &seg.path;
    let mut w = Window::new(&seg.file, seg.len, buf, SCAN_READ_AHEAD);
    let header = if seg.len < HEADER_LEN as u64 {
        None
    } else {
        w.get(0, HEADER_LEN as u64)
            .ok()
            .and_then(|r| w.bytes(r).ok())
            .and_then(|h| h.first_chunk::<HEADER_LEN>())
    };
    if !header.is_some_and(|h| h[..4] == CHUNKS_MAGIC && h[4] == CHUNKS_VERSION && h[5..] == [0, 0, 0]) {
        tracing::warn!(path = %path.display(), "chunk segment has a bad header; chunks are verified when read");
        corrupt.push(base);
        return;
    }
    let mut off = HEADER_LEN as u64;
    let mut prev_bad = false;
    while off < seg.len {
        match read_record(&mut w, off) {
            Ok(Record::Ok { end, .. }) => {
                off = end;
                prev_bad = false;
            }
            Ok(Record::Bad { end, reason }) => {
                if prev_bad {
                    tracing::warn!(path = %path.display(), offset = off, "chunk framing lost; the rest of the segment is verified when read");
                    return;
                }
                tracing::warn!(path = %path.display(), offset = off, %reason, "corrupt chunk");
                corrupt.push(base | off);
                match end {
                    Some(e) => off = e,
                    None => return,
                }
                prev_bad = true;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), offset = off, error = %e, "reading the chunk segment failed; the rest of it is verified when read");
                corrupt.push(base | off);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_cut_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::new(dir.path(), 64).unwrap();
        let mut refs = Vec::new();
        for i in 0..20u8 {
            let data = vec![i; 10 + i as usize];
            refs.push((w.write(Encoding::Xor, &data).unwrap(), data));
        }
        let total = w.finish().unwrap();
        let segs = ChunkSegments::open(dir.path()).unwrap();
        assert!(segs.segs.len() > 3, "{} segments", segs.segs.len());
        assert_eq!(segs.size_bytes(), total);
        assert!(segs.corrupt().is_empty());
        let mut buf = Vec::new();
        for (r, data) in &refs {
            let (enc, got) = segs.chunk(*r, &mut buf).unwrap();
            assert_eq!((enc, got), (Encoding::Xor, &data[..]));
        }
        assert!(matches!(
            segs.chunk(99 << 32 | 8, &mut buf),
            Err(Error::Corruption { .. })
        ));
        assert!(matches!(
            segs.chunk(1 << 32, &mut buf),
            Err(Error::Corruption { .. })
        ));
    }

    #[test]
    fn scan_reports_bad_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::new(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
        let refs: Vec<u64> = (0..5u8)
            .map(|i| w.write(Encoding::Pco, &[i; 30]).unwrap())
            .collect();
        w.finish().unwrap();
        let path = dir.path().join("000001");
        let mut bytes = fs::read(&path).unwrap();
        // Flip a data byte of chunk 2: only chunk 2 is reported.
        let off = (refs[2] & 0xffff_ffff) as usize;
        bytes[off + 5] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let segs = ChunkSegments::open(dir.path()).unwrap();
        assert_eq!(segs.corrupt(), &[refs[2]]);
        let mut buf = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(segs.chunk(*r, &mut buf).is_ok(), i != 2, "chunk {i}");
        }
        // A bad header is reported but the records stay readable (each has its own CRC).
        bytes[off + 5] ^= 0x40;
        bytes[0] = b'X';
        fs::write(&path, &bytes).unwrap();
        let segs = ChunkSegments::open(dir.path()).unwrap();
        assert_eq!(segs.corrupt(), &[1 << 32]);
        assert!(refs.iter().all(|r| segs.chunk(*r, &mut buf).is_ok()));
    }
}
