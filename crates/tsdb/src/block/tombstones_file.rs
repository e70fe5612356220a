//! The `tombstones` file of a block: deleted time intervals per series.
//!
//! Layout (described with the other block files in
//! [`docs/format/index.md`](../../../../docs/format/index.md)):
//!
//! ```text
//! ┌──────────────┬─────────────┬────────────────────┬───────────────────────┐
//! │ magic "MDTS" │ version u8  │ uvarint num series │ series entries ...    │ crc32c u32 LE
//! └──────────────┴─────────────┴────────────────────┴───────────────────────┘
//! series entry: uvarint series id, uvarint num intervals,
//!               per interval: varint mint, uvarint (maxt - mint)
//! ```
//! The CRC covers every byte before it. Series are in ascending id order.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use super::{Dec, DecErr, corruption, put_uvarint, put_varint, sync_dir};
use crate::tombstones::{Interval, Intervals};
use crate::{Error, Result};

/// Name of the tombstones file in a block directory.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
const MAGIC: [u8; 4] = *b"MDTS";
const VERSION: u8 = 1;

/// Reads `dir/tombstones`; a missing file is no tombstones.
pub(crate) fn read_tombstones(dir: &Path) -> Result<(HashMap<u32, Intervals>, u64)> {
    let path = dir.join(TOMBSTONES_FILENAME);
    let b = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((HashMap::new(), 0)),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let bad = |offset: usize, reason: String| corruption(&path, offset as u64, reason);
    let Some((body, want)) = b
        .split_last_chunk::<4>()
        .filter(|_| b.len() >= MAGIC.len() + 1 + 4)
    else {
        return Err(bad(
            0,
            format!("tombstones file of {} bytes is too short", b.len()),
        ));
    };
    let got = crc32c::crc32c(body);
    if got != u32::from_le_bytes(*want) {
        return Err(bad(
            body.len(),
            format!("checksum mismatch over {} bytes", body.len()),
        ));
    }
    if !body.starts_with(&MAGIC) || body.get(MAGIC.len()) != Some(&VERSION) {
        return Err(bad(0, "bad magic or version".into()));
    }
    let mut d = Dec::new(body);
    d.pos = 5;
    let err = |e: DecErr| bad(e.pos, e.what.into());
    let n = d.uvarint().map_err(err)?;
    if n > body.len() as u64 {
        return Err(bad(5, format!("{n} series in {} bytes", body.len())));
    }
    let mut out = HashMap::with_capacity(n as usize);
    for _ in 0..n {
        let at = d.pos;
        let id =
            u32::try_from(d.uvarint().map_err(err)?).map_err(|_| bad(at, "series id exceeds u32".into()))?;
        let k = d.uvarint().map_err(err)?;
        if k > body.len() as u64 {
            return Err(bad(at, format!("{k} intervals in {} bytes", body.len())));
        }
        let mut ivs = Intervals::default();
        for _ in 0..k {
            let mint = d.varint().map_err(err)?;
            let maxt = mint.wrapping_add(d.uvarint().map_err(err)? as i64);
            ivs.add(Interval { mint, maxt });
        }
        if out.insert(id, ivs).is_some() {
            return Err(bad(at, format!("series {id} listed twice")));
        }
    }
    if !d.is_empty() {
        return Err(bad(d.pos, "trailing bytes".into()));
    }
    Ok((out, b.len() as u64))
}

/// Writes `tombstones` to `dir/tombstones` atomically: a temporary file, fsync, rename,
/// fsync of the directory. Returns the file size.
pub(crate) fn write_tombstones(dir: &Path, tombstones: &HashMap<u32, Intervals>) -> Result<u64> {
    let mut ids: Vec<u32> = tombstones
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| *k)
        .collect();
    ids.sort_unstable();
    let mut b = Vec::with_capacity(16 + ids.len() * 8);
    b.extend_from_slice(&MAGIC);
    b.push(VERSION);
    put_uvarint(&mut b, ids.len() as u64);
    for id in ids {
        let ivs = tombstones[&id].as_slice();
        put_uvarint(&mut b, u64::from(id));
        put_uvarint(&mut b, ivs.len() as u64);
        for iv in ivs {
            put_varint(&mut b, iv.mint);
            put_uvarint(&mut b, iv.maxt.wrapping_sub(iv.mint) as u64);
        }
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());

    let tmp = dir.join(format!("{TOMBSTONES_FILENAME}.tmp"));
    let path = dir.join(TOMBSTONES_FILENAME);
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&b).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    sync_dir(dir)?;
    Ok(b.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_tombstones(dir.path()).unwrap().0.is_empty(),
            "missing file = none"
        );
        let mut t = HashMap::new();
        let mut a = Intervals::default();
        a.add(Interval { mint: -5, maxt: 10 });
        a.add(Interval {
            mint: 100,
            maxt: i64::MAX,
        });
        t.insert(3, a);
        let mut b = Intervals::default();
        b.add(Interval {
            mint: i64::MIN,
            maxt: 0,
        });
        t.insert(0, b);
        let size = write_tombstones(dir.path(), &t).unwrap();
        let (got, got_size) = read_tombstones(dir.path()).unwrap();
        assert_eq!((got, got_size), (t, size));
        let path = dir.path().join(TOMBSTONES_FILENAME);
        let bytes = fs::read(&path).unwrap();
        for i in 0..bytes.len() {
            let mut c = bytes.clone();
            c[i] ^= 1;
            fs::write(&path, &c).unwrap();
            assert!(
                matches!(read_tombstones(dir.path()), Err(Error::Corruption { .. })),
                "flip at {i}"
            );
        }
    }
}
