//! `meta.json` of a block and the block's identity, a [`Ulid`].

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Name of the metadata file in a block directory.
pub const META_FILENAME: &str = "meta.json";

/// The `version` this code writes into `meta.json` and the only one it reads.
pub const META_VERSION: u32 = 1;

/// The content of a block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// The block's id, a [`Ulid`] in text form; also its directory name.
    pub ulid: String,
    /// Lower bound of the block's time range (inclusive), milliseconds.
    pub min_time: i64,
    /// Upper bound of the block's time range (exclusive, as in Prometheus), milliseconds.
    pub max_time: i64,
    /// Counts of what the block holds.
    pub stats: BlockStats,
    /// Where the block came from.
    pub compaction: CompactionMeta,
    /// Version of the block format ([`META_VERSION`]).
    pub version: u32,
    /// Resolution of downsampled data in milliseconds; 0 for raw data.
    #[serde(default)]
    pub downsample_resolution_ms: i64,
}

/// Counts of what a block holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// Number of series.
    pub num_series: u64,
    /// Number of samples over all chunks.
    pub num_samples: u64,
    /// Number of chunks.
    pub num_chunks: u64,
    /// Bytes of the index and chunk files (`meta.json` and tombstones not included).
    pub num_bytes: u64,
}

/// The compaction history of a block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionMeta {
    /// 1 for a block cut from the head, parents' maximum + 1 for a compacted block.
    pub level: u32,
    /// ULIDs of the level-1 blocks whose data this block holds.
    #[serde(default)]
    pub sources: Vec<String>,
    /// ULIDs of the blocks compacted into this one.
    #[serde(default)]
    pub parents: Vec<String>,
}

/// A ULID: 48 bits of milliseconds since the Unix epoch, then 80 random bits; written as 26
/// characters of Crockford base32. Text order is time order (for different milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ulid(u128);

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl Ulid {
    /// A new ULID for the current time with fresh random bits.
    pub fn new() -> Ulid {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ulid::from_parts(ms, rand::random::<u128>())
    }

    /// The ULID with time `ms` (low 48 bits used) and random part `random` (low 80 bits used).
    pub fn from_parts(ms: u64, random: u128) -> Ulid {
        let ms = u128::from(ms & ((1 << 48) - 1));
        let random = random & ((1u128 << 80) - 1);
        Ulid((ms << 80) | random)
    }

    /// Milliseconds since the Unix epoch when the ULID was made.
    pub fn timestamp_ms(&self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl Default for Ulid {
    fn default() -> Self {
        Ulid::new()
    }
}

impl fmt::Display for Ulid {
    #[allow(
        clippy::indexing_slicing,
        reason = "the index is masked with 31 and CROCKFORD has 32 entries"
    )]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 26];
        for (i, c) in buf.iter_mut().enumerate() {
            // 26 characters carry 130 bits: the first one holds the top 3 bits only.
            let shift = 125 - 5 * i as u32;
            *c = CROCKFORD[((self.0 >> shift) & 31) as usize];
        }
        // Every byte comes from CROCKFORD, which is ASCII.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for Ulid {
    type Err = Error;

    /// Parses 26 Crockford base32 characters (case-insensitive; `I`/`L` read as 1, `O` as 0).
    fn from_str(s: &str) -> Result<Ulid> {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid ULID {s:?}: {why}"));
        if s.len() != 26 {
            return Err(bad(&format!("{} characters, want 26", s.len())));
        }
        let mut v: u128 = 0;
        for (i, b) in s.bytes().enumerate() {
            let d = match b.to_ascii_uppercase() {
                c @ b'0'..=b'9' => c - b'0',
                b'O' => 0,
                b'I' | b'L' => 1,
                c => match CROCKFORD.iter().position(|&x| x == c) {
                    Some(p) => p as u8,
                    None => return Err(bad(&format!("character {:?} at {i}", b as char))),
                },
            };
            if i == 0 && d > 7 {
                return Err(bad("value exceeds 128 bits"));
            }
            v = (v << 5) | u128::from(d);
        }
        Ok(Ulid(v))
    }
}

/// Reads and validates `dir/meta.json`. A file that does not parse (a torn write, say) is
/// [`Error::Corruption`] at the byte where parsing failed.
pub(crate) fn read_meta(dir: &Path) -> Result<BlockMeta> {
    let path = dir.join(META_FILENAME);
    let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let meta: BlockMeta = serde_json::from_slice(&bytes).map_err(|e| Error::Corruption {
        offset: json_error_offset(&bytes, &e),
        reason: format!("cannot parse block meta ({} bytes): {e}", bytes.len()),
        path: path.clone(),
    })?;
    let corrupt = |reason: String| Error::Corruption {
        path: path.clone(),
        offset: 0,
        reason,
    };
    if meta.version != META_VERSION {
        return Err(corrupt(format!(
            "unsupported block version {}, this build reads {META_VERSION}",
            meta.version
        )));
    }
    meta.ulid.parse::<Ulid>().map_err(|e| corrupt(e.to_string()))?;
    if meta.min_time > meta.max_time {
        return Err(corrupt(format!(
            "min_time {} after max_time {}",
            meta.min_time, meta.max_time
        )));
    }
    Ok(meta)
}

/// The byte offset serde_json's line/column position refers to.
fn json_error_offset(bytes: &[u8], e: &serde_json::Error) -> u64 {
    let mut line_start = 0usize;
    for _ in 1..e.line() {
        match bytes
            .get(line_start..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        {
            Some(p) => line_start += p + 1,
            None => break,
        }
    }
    (line_start + e.column().saturating_sub(1)).min(bytes.len()) as u64
}

/// Writes `dir/meta.json` and fsyncs it (the caller fsyncs the directory).
pub(crate) fn write_meta(dir: &Path, meta: &BlockMeta) -> Result<()> {
    let path = dir.join(META_FILENAME);
    let mut bytes = serde_json::to_vec_pretty(meta)
        .map_err(|e| Error::InvalidArgument(format!("cannot serialize block meta: {e}")))?;
    bytes.push(b'\n');
    let mut f = fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
    f.write_all(&bytes).map_err(|e| Error::io("write", &path, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulid_round_trip_and_order() {
        let a = Ulid::from_parts(1_700_000_000_000, u128::MAX);
        let b = Ulid::from_parts(1_700_000_000_001, 0);
        let (sa, sb) = (a.to_string(), b.to_string());
        assert_eq!(sa.len(), 26);
        assert!(sa < sb, "{sa} !< {sb}");
        assert_eq!(sa.parse::<Ulid>().unwrap(), a);
        assert_eq!(sa.to_lowercase().parse::<Ulid>().unwrap(), a);
        assert_eq!(b.timestamp_ms(), 1_700_000_000_001);
        assert_eq!(Ulid::from_parts(0, 0).to_string(), "00000000000000000000000000");
        assert_eq!(
            Ulid(u128::MAX).to_string(),
            "7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "the first character holds 3 bits"
        );
        for bad in [
            "",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "0000000000000000000000000U",
            "0",
        ] {
            assert!(bad.parse::<Ulid>().is_err(), "{bad:?}");
        }
        let n = Ulid::new();
        assert_eq!(n.to_string().parse::<Ulid>().unwrap(), n);
    }

    #[test]
    fn meta_round_trip_and_torn_file() {
        let dir = tempfile::tempdir().unwrap();
        let meta = BlockMeta {
            ulid: Ulid::from_parts(5, 7).to_string(),
            min_time: 0,
            max_time: 10,
            stats: BlockStats {
                num_series: 1,
                num_samples: 2,
                num_chunks: 1,
                num_bytes: 100,
            },
            compaction: CompactionMeta {
                level: 1,
                sources: vec![Ulid::from_parts(5, 7).to_string()],
                parents: vec![],
            },
            version: META_VERSION,
            downsample_resolution_ms: 0,
        };
        write_meta(dir.path(), &meta).unwrap();
        assert_eq!(read_meta(dir.path()).unwrap(), meta);
        let path = dir.path().join(META_FILENAME);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        match read_meta(dir.path()) {
            Err(Error::Corruption { path: p, offset, .. }) => {
                assert_eq!(p, path);
                assert!(offset as usize <= bytes.len() / 2);
            }
            r => panic!("want corruption, got {r:?}"),
        }
    }
}
