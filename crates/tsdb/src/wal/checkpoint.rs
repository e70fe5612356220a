//! Checkpoints: `checkpoint.<index:08>/` directories holding, in segment files framed like the
//! WAL's, the records of all segments up to `index` that the head still needs.
//!
//! A checkpoint is written to `checkpoint.<index:08>.tmp/`, fsynced, renamed into place and
//! the WAL directory fsynced, so a checkpoint directory without the `.tmp` suffix is always
//! complete. Damage found in one later is disk damage, not a torn write: see [`super::Wal`].

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::codec::Encoder;
use super::record::Record;
use super::segment::{self, MAX_RECORD_LEN};
use crate::{Error, Result};

const PREFIX: &str = "checkpoint.";
const TMP_SUFFIX: &str = ".tmp";

/// What [`super::Wal::checkpoint`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The index of the new checkpoint: the last segment it covers.
    pub index: u64,
    /// Records read from the previous checkpoint and the segments.
    pub records_read: u64,
    /// Records `keep` returned (and that were written).
    pub records_kept: u64,
    /// WAL segments read (not counting the previous checkpoint).
    pub segments_read: u32,
    /// WAL segments deleted after the checkpoint was in place.
    pub segments_deleted: u32,
    /// Older checkpoints deleted.
    pub checkpoints_deleted: u32,
    /// Bytes of the new checkpoint.
    pub bytes_written: u64,
}

/// The directory name of checkpoint `index`.
pub(crate) fn checkpoint_dir(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{index:08}"))
}

fn tmp_dir(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{index:08}{TMP_SUFFIX}"))
}

/// Complete checkpoints (`checkpoint.N`, with N) and unfinished ones (`checkpoint.N.tmp`).
type Listing = (Vec<(u64, PathBuf)>, Vec<PathBuf>);

/// Complete checkpoints (`checkpoint.N`) and unfinished ones (`checkpoint.N.tmp`) in `dir`,
/// each sorted by index.
pub(crate) fn list(dir: &Path) -> Result<Listing> {
    let mut done = Vec::new();
    let mut tmp = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("read dir", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read dir", dir, e))?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if let Some(idx) = rest.strip_suffix(TMP_SUFFIX) {
            if segment::parse_segment_name(idx).is_some() {
                tmp.push(entry.path());
            }
        } else if let Some(idx) = segment::parse_segment_name(rest)
            && entry
                .file_type()
                .map_err(|e| Error::io("stat", entry.path(), e))?
                .is_dir()
        {
            done.push((idx, entry.path()));
        }
    }
    done.sort_unstable_by_key(|(i, _)| *i);
    tmp.sort_unstable();
    Ok((done, tmp))
}

/// The newest complete checkpoint in `dir`.
pub(crate) fn latest(dir: &Path) -> Result<Option<(u64, PathBuf)>> {
    Ok(list(dir)?.0.pop())
}

/// Writes a checkpoint's segment files into its `.tmp` directory, then publishes it.
pub(crate) struct Writer {
    tmp: PathBuf,
    index: u64,
    segment_size: u64,
    file: File,
    file_path: PathBuf,
    file_index: u64,
    file_size: u64,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    bytes: u64,
    /// The state of the file being written (see [`super::codec`]).
    enc: Encoder,
}

impl Writer {
    /// Starts checkpoint `index` in `dir` (replacing a leftover `.tmp` of the same index).
    pub(crate) fn create(dir: &Path, index: u64, segment_size: u64) -> Result<Self> {
        let tmp = tmp_dir(dir, index);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
        }
        fs::create_dir(&tmp).map_err(|e| Error::io("create dir", &tmp, e))?;
        let (file, file_path) = segment::create_segment(&tmp, 0, 0)?;
        Ok(Writer {
            tmp,
            index,
            segment_size,
            file,
            file_path,
            file_index: 0,
            file_size: segment::SEGMENT_HEADER_LEN,
            buf: Vec::new(),
            scratch: Vec::new(),
            bytes: segment::SEGMENT_HEADER_LEN,
            enc: Encoder::new(),
        })
    }

    /// Appends one record (split if oversized); starts a new file when this one is full.
    pub(crate) fn add(&mut self, rec: &Record) -> Result<()> {
        self.scratch.clear();
        segment::append_framed(&mut self.scratch, rec.as_ref(), MAX_RECORD_LEN, &mut self.enc)?;
        let mut n = self.scratch.len() as u64;
        if self.file_size > segment::SEGMENT_HEADER_LEN && self.file_size + n > self.segment_size {
            // The record goes to a new file, whose state starts empty: encode it again.
            self.enc.reset();
            self.scratch.clear();
            segment::append_framed(&mut self.scratch, rec.as_ref(), MAX_RECORD_LEN, &mut self.enc)?;
            n = self.scratch.len() as u64;
            self.write_buf()?;
            self.file
                .sync_all()
                .map_err(|e| Error::io("fsync", &self.file_path, e))?;
            self.file_index += 1;
            (self.file, self.file_path) =
                segment::create_segment(&self.tmp, self.file_index, self.file_size)?;
            self.file_size = segment::SEGMENT_HEADER_LEN;
            self.bytes += segment::SEGMENT_HEADER_LEN;
        }
        self.buf.extend_from_slice(&self.scratch);
        self.file_size += n;
        self.bytes += n;
        if self.buf.len() >= 1 << 20 {
            self.write_buf()?;
        }
        Ok(())
    }

    fn write_buf(&mut self) -> Result<()> {
        self.file
            .write_all(&self.buf)
            .map_err(|e| Error::io("write", &self.file_path, e))?;
        self.buf.clear();
        Ok(())
    }

    /// fsyncs everything and renames the `.tmp` directory into place; returns the bytes written.
    pub(crate) fn finish(mut self, dir: &Path) -> Result<u64> {
        self.write_buf()?;
        self.file
            .sync_all()
            .map_err(|e| Error::io("fsync", &self.file_path, e))?;
        segment::sync_dir(&self.tmp)?;
        let dst = checkpoint_dir(dir, self.index);
        fs::rename(&self.tmp, &dst).map_err(|e| Error::io("rename", &self.tmp, e))?;
        segment::sync_dir(dir)?;
        Ok(self.bytes)
    }

    /// Removes the unfinished checkpoint (after an error).
    pub(crate) fn abort(self) {
        if let Err(e) = fs::remove_dir_all(&self.tmp) {
            tracing::warn!(path = %self.tmp.display(), error = %e, "cannot remove unfinished WAL checkpoint");
        }
    }
}
