//! The index file of a block: symbols, series (labels and chunk metas), postings, and the
//! postings offset table that [`BlockIndex`] keeps in memory.
//!
//! Layout: [`docs/format/index.md`](../../../../docs/format/index.md). In short, after an
//! 8-byte header come five sections, each `[len u64][payload][crc32c(payload) u32]`, then a
//! TOC with their offsets. Integers are little-endian; varints are LEB128 (signed ones
//! zig-zag). Symbol refs are indices into the sorted symbol table, so comparing refs compares
//! strings.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;
use metricsd_model::{Label, Labels};
use roaring::RoaringBitmap;

use super::{ChunkMeta, Dec, DecErr, corruption, put_uvarint, put_varint};
use crate::index::IndexReader;
use crate::{Error, Result};

/// Name of the index file in a block directory.
pub const INDEX_FILENAME: &str = "index";
/// Magic number at the start of the index file.
pub(crate) const INDEX_MAGIC: [u8; 4] = *b"MDIX";
/// Version of the index format.
pub(crate) const INDEX_VERSION: u8 = 1;
const HEADER_LEN: usize = 8;
const NUM_SECTIONS: usize = 5;
/// The TOC: the absolute offset of each section, then a crc32c of those bytes.
const TOC_LEN: usize = NUM_SECTIONS * 8 + 4;

const POSTINGS_DELTAS: u8 = 0;
const POSTINGS_ROARING: u8 = 1;

/// One chunk of a series as the writer records it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkRec {
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
    pub(crate) chunk_ref: u64,
    pub(crate) num_samples: u16,
}

/// Writes the index of `series` (sorted by labels; series id = position) to `path` and
/// fsyncs it. Returns the file size.
pub(crate) fn write_index(path: &Path, series: &[(Labels, Vec<ChunkRec>)]) -> Result<u64> {
    // Symbols: every distinct name and value, sorted; a ref is the position.
    let mut uniq: hashbrown::HashSet<&str, foldhash::fast::RandomState> = Default::default();
    for (labels, _) in series {
        for l in labels {
            uniq.insert(&l.name);
            uniq.insert(&l.value);
        }
    }
    let mut symbols: Vec<&str> = uniq.into_iter().collect();
    symbols.sort_unstable();
    let refs: HashMap<&str, u32, foldhash::fast::RandomState> =
        symbols.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
    let sym_data_len: usize = symbols.iter().map(|s| s.len()).sum();
    if sym_data_len > u32::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "symbol table of {sym_data_len} bytes exceeds the index format's 4 GiB"
        )));
    }

    let f = File::create_new(path).map_err(|e| Error::io("create", path, e))?;
    let mut w = SectionWriter {
        w: BufWriter::with_capacity(1 << 20, f),
        path,
        pos: 0,
    };
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&INDEX_MAGIC);
    header[4] = INDEX_VERSION;
    w.raw(&header)?;
    let mut toc = [0u64; NUM_SECTIONS];

    // 1. Symbols: count, count+1 offsets into the data, the data.
    let mut buf = Vec::with_capacity(4 + 4 * (symbols.len() + 1) + sym_data_len);
    buf.extend_from_slice(&(symbols.len() as u32).to_le_bytes());
    let mut off = 0u32;
    buf.extend_from_slice(&off.to_le_bytes());
    for s in &symbols {
        off += s.len() as u32;
        buf.extend_from_slice(&off.to_le_bytes());
    }
    for s in &symbols {
        buf.extend_from_slice(s.as_bytes());
    }
    toc[0] = w.section(&buf)?;

    // 2. Series records and 3. their offsets (n+1, so each record's end is known).
    // Postings are collected on the way: (name ref, value ref) → ids, ascending by construction.
    let mut postings: HashMap<(u32, u32), Vec<u32>, foldhash::fast::RandomState> = Default::default();
    buf.clear();
    let mut offsets = Vec::with_capacity((series.len() + 1) * 8);
    for (id, (labels, chunks)) in series.iter().enumerate() {
        offsets.extend_from_slice(&(buf.len() as u64).to_le_bytes());
        put_uvarint(&mut buf, labels.len() as u64);
        for l in labels {
            let (Some(&n), Some(&v)) = (refs.get(&*l.name), refs.get(&*l.value)) else {
                return Err(Error::InvalidArgument(format!(
                    "label {l:?} of {labels} is not in the symbol table built from the series"
                )));
            };
            put_uvarint(&mut buf, u64::from(n));
            put_uvarint(&mut buf, u64::from(v));
            postings.entry((n, v)).or_default().push(id as u32);
        }
        put_uvarint(&mut buf, chunks.len() as u64);
        let mut prev: Option<&ChunkRec> = None;
        for c in chunks {
            match prev {
                None => {
                    put_varint(&mut buf, c.mint);
                    put_uvarint(&mut buf, c.maxt.wrapping_sub(c.mint) as u64);
                    put_uvarint(&mut buf, c.chunk_ref);
                }
                Some(p) => {
                    put_uvarint(&mut buf, c.mint.wrapping_sub(p.maxt) as u64);
                    put_uvarint(&mut buf, c.maxt.wrapping_sub(c.mint) as u64);
                    put_uvarint(&mut buf, c.chunk_ref.wrapping_sub(p.chunk_ref));
                }
            }
            put_uvarint(&mut buf, u64::from(c.num_samples));
            prev = Some(c);
        }
    }
    offsets.extend_from_slice(&(buf.len() as u64).to_le_bytes());
    toc[1] = w.section(&buf)?;
    toc[2] = w.section(&offsets)?;
    drop(offsets);

    // 4. Postings lists in (name, value) order and 5. the table locating them.
    let mut lists: Vec<((u32, u32), Vec<u32>)> = postings.into_iter().collect();
    lists.sort_unstable_by_key(|(k, _)| *k);
    let names: Vec<_> = lists.chunk_by(|a, b| a.0.0 == b.0.0).collect();
    buf.clear();
    let mut table = Vec::new();
    table.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for values in names {
        // `chunk_by` yields no empty group.
        let Some(((name, _), _)) = values.first() else {
            continue;
        };
        table.extend_from_slice(&name.to_le_bytes());
        table.extend_from_slice(&(values.len() as u32).to_le_bytes());
        for ((_, value), _) in values {
            table.extend_from_slice(&value.to_le_bytes());
        }
        for (_, ids) in values {
            table.extend_from_slice(&(buf.len() as u64).to_le_bytes());
            encode_postings(ids, &mut buf)?;
        }
        table.extend_from_slice(&(buf.len() as u64).to_le_bytes());
    }
    toc[3] = w.section(&buf)?;
    toc[4] = w.section(&table)?;

    let mut t = Vec::with_capacity(TOC_LEN);
    for o in toc {
        t.extend_from_slice(&o.to_le_bytes());
    }
    t.extend_from_slice(&crc32c::crc32c(&t).to_le_bytes());
    w.raw(&t)?;
    let f =
        w.w.into_inner()
            .map_err(|e| Error::io("write", path, e.into_error()))?;
    f.sync_all().map_err(|e| Error::io("fsync", path, e))?;
    Ok(w.pos)
}

/// Appends the smaller of the two encodings of sorted `ids` to `dst`: delta varints (small
/// lists, where roaring's container headers dominate) or roaring's portable format.
fn encode_postings(ids: &[u32], dst: &mut Vec<u8>) -> Result<()> {
    let mut deltas = Vec::with_capacity(ids.len() + 4);
    put_uvarint(&mut deltas, ids.len() as u64);
    let mut prev = 0u32;
    for (i, &id) in ids.iter().enumerate() {
        put_uvarint(&mut deltas, u64::from(if i == 0 { id } else { id - prev }));
        prev = id;
    }
    let bm = RoaringBitmap::from_sorted_iter(ids.iter().copied())
        .map_err(|e| Error::InvalidArgument(format!("postings not sorted: {e}")))?;
    if bm.serialized_size() < deltas.len() {
        dst.push(POSTINGS_ROARING);
        bm.serialize_into(&mut *dst)
            .map_err(|e| Error::InvalidArgument(format!("serialize postings: {e}")))?;
    } else {
        dst.push(POSTINGS_DELTAS);
        dst.extend_from_slice(&deltas);
    }
    Ok(())
}

struct SectionWriter<'a> {
    w: BufWriter<File>,
    path: &'a Path,
    pos: u64,
}

impl SectionWriter<'_> {
    fn raw(&mut self, b: &[u8]) -> Result<()> {
        self.w
            .write_all(b)
            .map_err(|e| Error::io("write", self.path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Writes a framed section; returns its offset.
    fn section(&mut self, payload: &[u8]) -> Result<u64> {
        let start = self.pos;
        self.raw(&(payload.len() as u64).to_le_bytes())?;
        self.raw(payload)?;
        self.raw(&crc32c::crc32c(payload).to_le_bytes())?;
        Ok(start)
    }
}

/// Where one label name's values and postings offsets are in the postings offset table.
#[derive(Debug)]
struct LabelEntry {
    name: Arc<str>,
    /// Number of values.
    count: usize,
    /// Absolute file offset of `count` u32 value symbol refs (ascending).
    values_pos: usize,
    /// Absolute file offset of `count + 1` u64 offsets into the postings payload.
    offsets_pos: usize,
}

/// A block's index, read into memory at open (not mapped: a file truncated underneath
/// cannot fault a read; the index is about 6% of a block's bytes). Implements
/// [`IndexReader`].
///
/// # Invariants
/// - Series ids are `0..num_series()` in strictly increasing [`Labels`] order, so iterating a
///   postings bitmap yields series in label order; the querier's merge relies on this.
/// - Every section's checksum, the symbol table's order and UTF-8, the series offsets and the
///   postings offset table were verified by [`BlockIndex::open`]; reads still bounds-check and
///   return [`Error::Corruption`] rather than panic.
pub struct BlockIndex {
    path: PathBuf,
    data: Box<[u8]>,
    num_symbols: usize,
    /// Absolute offset of the `num_symbols + 1` u32 symbol offsets.
    sym_offsets_pos: usize,
    /// Absolute offset of the symbol data.
    sym_data_pos: usize,
    /// Absolute offset of the series records.
    series_pos: usize,
    /// Absolute offset of the `num_series + 1` u64 series offsets.
    series_offsets_pos: usize,
    num_series: u32,
    /// Absolute offset of the postings payload.
    postings_pos: usize,
    /// Sorted by name.
    labels: Vec<LabelEntry>,
    /// Symbols as shared strings, filled on first use: a selected series' labels then
    /// cost reference-count increments, not one allocation per name and value.
    sym_cache: Box<[std::sync::OnceLock<Arc<str>>]>,
}

#[inline]
fn le_u32(b: &[u8], pos: usize) -> Option<u32> {
    b.get(pos..)?.first_chunk().map(|s| u32::from_le_bytes(*s))
}

#[inline]
fn le_u64(b: &[u8], pos: usize) -> Option<u64> {
    let s = b.get(pos..pos + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

impl BlockIndex {
    /// Reads and verifies the index file at `path`: header, TOC, every section's crc32c, and
    /// the structure `open` relies on. Loads only the postings offset table's per-name entries
    /// (O(label names)) and validates the rest in place; series are decoded lazily.
    pub fn open(path: &Path) -> Result<BlockIndex> {
        // Read, not mapped: every byte is read by the checks below anyway, and a mapping
        // of a file truncated underneath would raise SIGBUS on access. A file that shrinks
        // while being read fails the checks below.
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io("read", path, e))?
            .into_boxed_slice();
        let b: &[u8] = &bytes;
        let bad = |offset: usize, reason: String| corruption(path, offset as u64, reason);
        let parts = b
            .first_chunk::<HEADER_LEN>()
            .zip(b.split_last_chunk::<TOC_LEN>())
            .filter(|_| b.len() >= HEADER_LEN + TOC_LEN);
        let Some((header, (before_toc, toc))) = parts else {
            return Err(bad(0, format!("index of {} bytes is too short", b.len())));
        };
        if header[..4] != INDEX_MAGIC {
            return Err(bad(0, format!("bad magic {:02x?}", &header[..4])));
        }
        if header[4] != INDEX_VERSION || header[5..8] != [0, 0, 0] {
            return Err(bad(
                4,
                format!(
                    "unsupported index version {} (reserved {:?})",
                    header[4],
                    &header[5..8]
                ),
            ));
        }
        let toc_pos = before_toc.len();
        let toc_bytes = &toc[..NUM_SECTIONS * 8];
        let want = le_u32(toc, NUM_SECTIONS * 8).unwrap_or(0);
        if crc32c::crc32c(toc_bytes) != want {
            return Err(bad(toc_pos, "TOC checksum mismatch".into()));
        }
        // The sections must tile the file exactly: header, five sections, TOC. So every byte
        // is covered by a check.
        let mut sections = [(0usize, 0usize); NUM_SECTIONS]; // payload (start, end)
        let mut expect = HEADER_LEN;
        for (i, s) in sections.iter_mut().enumerate() {
            let off = le_u64(toc_bytes, i * 8).unwrap_or(u64::MAX);
            if off != expect as u64 {
                return Err(bad(
                    toc_pos + i * 8,
                    format!("section {i} at {off}, expected at {expect}"),
                ));
            }
            let len = le_u64(b, expect).unwrap_or(u64::MAX);
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| (expect + 8).checked_add(l))
                .filter(|&e| e + 4 <= toc_pos);
            let Some((end, payload)) = end.and_then(|e| Some((e, b.get(expect + 8..e)?))) else {
                return Err(bad(expect, format!("section {i} length {len} overruns the file")));
            };
            let want = le_u32(b, end).unwrap_or(0);
            let got = crc32c::crc32c(payload);
            if got != want {
                return Err(bad(
                    expect,
                    format!(
                        "section {i} checksum mismatch over {len} bytes: stored {want:#010x}, computed {got:#010x}"
                    ),
                ));
            }
            *s = (expect + 8, end);
            expect = end + 4;
        }
        if expect != toc_pos {
            return Err(bad(
                expect,
                format!("{} unexpected bytes before the TOC", toc_pos - expect),
            ));
        }

        // Symbols.
        let (s0, s1) = sections[0];
        let num_symbols = le_u32(b, s0).ok_or_else(|| bad(s0, "symbol count missing".into()))? as usize;
        let sym_offsets_pos = s0 + 4;
        let (sym_data_pos, data) = num_symbols
            .checked_add(1)
            .and_then(|n| n.checked_mul(4))
            .map(|n| sym_offsets_pos + n)
            .and_then(|p| Some((p, b.get(p..s1)?)))
            .ok_or_else(|| bad(s0, format!("{num_symbols} symbol offsets overrun the section")))?;
        let data = std::str::from_utf8(data)
            .map_err(|e| bad(sym_data_pos + e.valid_up_to(), "symbol table is not UTF-8".into()))?;
        let mut prev: Option<&str> = None;
        let mut prev_off = 0usize;
        for i in 0..=num_symbols {
            let o = le_u32(b, sym_offsets_pos + 4 * i).unwrap_or(u32::MAX) as usize;
            if o < prev_off || o > data.len() || !data.is_char_boundary(o) || (i == 0 && o != 0) {
                return Err(bad(sym_offsets_pos + 4 * i, format!("bad symbol offset {o}")));
            }
            if i > 0 {
                let s = &data[prev_off..o];
                if prev.is_some_and(|p| p >= s) {
                    return Err(bad(sym_data_pos + prev_off, format!("symbol {i} out of order")));
                }
                prev = Some(s);
            }
            prev_off = o;
        }
        if prev_off != data.len() {
            return Err(bad(
                sym_data_pos + prev_off,
                "symbol data has trailing bytes".into(),
            ));
        }

        // Series offsets.
        let (r0, r1) = sections[1];
        let (o0, o1) = sections[2];
        let n_off = (o1 - o0) / 8;
        if (o1 - o0) % 8 != 0 || n_off == 0 || n_off - 1 > u32::MAX as usize {
            return Err(bad(o0, format!("series offsets of {} bytes", o1 - o0)));
        }
        let mut prev = 0u64;
        for i in 0..n_off {
            let o = le_u64(b, o0 + 8 * i).unwrap_or(u64::MAX);
            let last = i == n_off - 1;
            if o < prev || (i == 0 && o != 0) || (last && o != (r1 - r0) as u64) || o > (r1 - r0) as u64 {
                return Err(bad(o0 + 8 * i, format!("bad series offset {o}")));
            }
            prev = o;
        }

        // Postings offset table.
        let (p0, p1) = sections[3];
        let postings_len = (p1 - p0) as u64;
        let (t0, t1) = sections[4];
        let mut d = Dec::new(b.get(..t1).unwrap_or_default());
        d.pos = t0;
        let tbad = |e: DecErr| bad(e.pos, format!("postings offset table: {}", e.what));
        let num_names = d.u32().map_err(tbad)? as usize;
        let mut labels: Vec<LabelEntry> = Vec::with_capacity(num_names.min(1 << 16));
        let mut prev_name: Option<u32> = None;
        for _ in 0..num_names {
            let at = d.pos;
            let name_ref = d.u32().map_err(tbad)?;
            let count = d.u32().map_err(tbad)? as usize;
            if name_ref as usize >= num_symbols || prev_name.is_some_and(|p| p >= name_ref) || count == 0 {
                return Err(bad(
                    at,
                    format!("bad label name entry (ref {name_ref}, {count} values)"),
                ));
            }
            prev_name = Some(name_ref);
            let values_pos = d.pos;
            let mut pv: Option<u32> = None;
            for _ in 0..count {
                let at = d.pos;
                let v = d.u32().map_err(tbad)?;
                if v as usize >= num_symbols || pv.is_some_and(|p| p >= v) {
                    return Err(bad(at, format!("bad label value ref {v}")));
                }
                pv = Some(v);
            }
            let offsets_pos = d.pos;
            let mut po = 0u64;
            for _ in 0..=count {
                let at = d.pos;
                let o = d.u64().map_err(tbad)?;
                if o < po || o > postings_len {
                    return Err(bad(at, format!("bad postings offset {o}")));
                }
                po = o;
            }
            let mut e = LabelEntry {
                name: Arc::from(""),
                count,
                values_pos,
                offsets_pos,
            };
            let ix_sym = SymTab {
                b,
                num_symbols,
                sym_offsets_pos,
                sym_data_pos,
            };
            e.name = Arc::from(ix_sym.get(name_ref).map_err(|_| bad(at, "label name".into()))?);
            labels.push(e);
        }
        if d.pos != t1 {
            return Err(bad(d.pos, "trailing bytes in the postings offset table".into()));
        }
        Ok(BlockIndex {
            path: path.to_path_buf(),
            num_symbols,
            sym_offsets_pos,
            sym_data_pos,
            series_pos: r0,
            series_offsets_pos: o0,
            num_series: (n_off - 1) as u32,
            postings_pos: p0,
            labels,
            sym_cache: (0..num_symbols).map(|_| std::sync::OnceLock::new()).collect(),
            data: bytes,
        })
    }

    /// Number of series; their ids are `0..num_series()`.
    pub fn num_series(&self) -> u32 {
        self.num_series
    }

    /// The index file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the index file in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64
    }

    fn corrupt(&self, offset: usize, reason: impl Into<String>) -> Error {
        corruption(&self.path, offset as u64, reason.into())
    }

    fn syms(&self) -> SymTab<'_> {
        SymTab {
            b: &self.data,
            num_symbols: self.num_symbols,
            sym_offsets_pos: self.sym_offsets_pos,
            sym_data_pos: self.sym_data_pos,
        }
    }

    fn sym(&self, r: u32) -> Result<&str> {
        self.syms()
            .get(r)
            .map_err(|()| self.corrupt(self.sym_offsets_pos, format!("bad symbol ref {r}")))
    }

    fn sym_arc(&self, r: u32) -> Result<Arc<str>> {
        let slot = self
            .sym_cache
            .get(r as usize)
            .ok_or_else(|| self.corrupt(self.sym_offsets_pos, format!("bad symbol ref {r}")))?;
        if let Some(a) = slot.get() {
            return Ok(a.clone());
        }
        let a: Arc<str> = Arc::from(self.sym(r)?);
        Ok(slot.get_or_init(|| a).clone())
    }

    fn label(&self, name: &str) -> Option<&LabelEntry> {
        self.labels
            .binary_search_by(|e| (*e.name).cmp(name))
            .ok()
            .and_then(|i| self.labels.get(i))
    }

    /// The bytes of series record `id`, and its absolute offset.
    fn series_record(&self, id: u32) -> Result<(&[u8], usize)> {
        if id >= self.num_series {
            return Err(Error::InvalidArgument(format!(
                "series id {id} out of range: the block has {} series",
                self.num_series
            )));
        }
        let p = self.series_offsets_pos + 8 * id as usize;
        let (a, z) = match (le_u64(&self.data, p), le_u64(&self.data, p + 8)) {
            (Some(a), Some(z)) => (a as usize, z as usize),
            _ => return Err(self.corrupt(p, "series offset missing")),
        };
        let start = self.series_pos + a;
        match self.data.get(start..self.series_pos + z) {
            Some(rec) => Ok((rec, start)),
            None => Err(self.corrupt(p, format!("series {id} record out of bounds"))),
        }
    }

    /// Decodes series `id`: its labels (when `labels` is given, replacing its content) and
    /// chunk metas (when `chunks` is given, replacing its content).
    pub(crate) fn series(
        &self,
        id: u32,
        labels: Option<&mut Vec<Label>>,
        chunks: Option<&mut Vec<ChunkMeta>>,
    ) -> Result<()> {
        let (rec, base) = self.series_record(id)?;
        let err = |e: DecErr| self.corrupt(base + e.pos, format!("series {id}: {}", e.what));
        let mut d = Dec::new(rec);
        let nl = d.uvarint().map_err(err)?;
        if nl > rec.len() as u64 {
            return Err(self.corrupt(base, format!("series {id}: {nl} labels in {} bytes", rec.len())));
        }
        match labels {
            Some(out) => {
                out.clear();
                for _ in 0..nl {
                    let n = d.uvarint().map_err(err)?;
                    let v = d.uvarint().map_err(err)?;
                    let sym = |r: u64| match u32::try_from(r) {
                        Ok(r) => self.sym_arc(r),
                        Err(_) => Err(self.corrupt(base, format!("series {id}: symbol ref {r} exceeds u32"))),
                    };
                    let (n, v) = (sym(n)?, sym(v)?);
                    if v.is_empty() || out.last().is_some_and(|l: &Label| *l.name >= *n) {
                        return Err(self.corrupt(base, format!("series {id}: labels unsorted or empty")));
                    }
                    out.push(Label { name: n, value: v });
                }
            }
            None => {
                for _ in 0..2 * nl {
                    d.uvarint().map_err(err)?;
                }
            }
        }
        let Some(chunks) = chunks else { return Ok(()) };
        let nc = d.uvarint().map_err(err)?;
        if nc > rec.len() as u64 {
            return Err(self.corrupt(base, format!("series {id}: {nc} chunks in {} bytes", rec.len())));
        }
        chunks.clear();
        chunks.reserve(nc as usize);
        let mut prev: Option<ChunkMeta> = None;
        for _ in 0..nc {
            let c = match prev {
                None => {
                    let mint = d.varint().map_err(err)?;
                    let maxt = mint.wrapping_add(d.uvarint().map_err(err)? as i64);
                    let chunk_ref = d.uvarint().map_err(err)?;
                    ChunkMeta {
                        mint,
                        maxt,
                        chunk_ref,
                    }
                }
                Some(p) => {
                    let mint = p.maxt.wrapping_add(d.uvarint().map_err(err)? as i64);
                    let maxt = mint.wrapping_add(d.uvarint().map_err(err)? as i64);
                    let chunk_ref = p.chunk_ref.wrapping_add(d.uvarint().map_err(err)?);
                    ChunkMeta {
                        mint,
                        maxt,
                        chunk_ref,
                    }
                }
            };
            let _num_samples = d.uvarint().map_err(err)?;
            chunks.push(c);
            prev = Some(c);
        }
        if !d.is_empty() {
            return Err(self.corrupt(base + d.pos, format!("series {id}: trailing bytes")));
        }
        Ok(())
    }

    /// Decodes the postings list at `[a, z)` of the postings payload.
    fn decode_postings(&self, a: u64, z: u64) -> Result<RoaringBitmap> {
        let start = self.postings_pos + a as usize;
        let Some(buf) = self.data.get(start..self.postings_pos + z as usize) else {
            return Err(self.corrupt(start, "postings list out of bounds"));
        };
        let Some((&kind, rest)) = buf.split_first() else {
            return Err(self.corrupt(start, "empty postings list"));
        };
        match kind {
            POSTINGS_ROARING => RoaringBitmap::deserialize_from(rest)
                .map_err(|e| self.corrupt(start, format!("roaring postings of {} bytes: {e}", rest.len()))),
            POSTINGS_DELTAS => {
                let mut d = Dec::new(rest);
                let err = |e: DecErr| self.corrupt(start + 1 + e.pos, format!("postings: {}", e.what));
                let n = d.uvarint().map_err(err)?;
                if n > rest.len() as u64 {
                    return Err(self.corrupt(start, format!("{n} postings in {} bytes", rest.len())));
                }
                let mut bm = RoaringBitmap::new();
                let mut id = 0u64;
                for i in 0..n {
                    let delta = d.uvarint().map_err(err)?;
                    id = if i == 0 { delta } else { id + delta };
                    let ok = u32::try_from(id).is_ok_and(|id| bm.try_push(id).is_ok());
                    if !ok || (i > 0 && delta == 0) {
                        return Err(self.corrupt(start, format!("postings not ascending at entry {i}")));
                    }
                }
                Ok(bm)
            }
            k => Err(self.corrupt(start, format!("unknown postings encoding {k}"))),
        }
    }

    fn value_ref(&self, e: &LabelEntry, i: usize) -> Result<u32> {
        le_u32(&self.data, e.values_pos + 4 * i)
            .ok_or_else(|| self.corrupt(e.values_pos, "value ref missing"))
    }
}

/// A view of the symbol table in the index bytes.
struct SymTab<'a> {
    b: &'a [u8],
    num_symbols: usize,
    sym_offsets_pos: usize,
    sym_data_pos: usize,
}

impl<'a> SymTab<'a> {
    fn bytes(&self, r: u32) -> Option<&'a [u8]> {
        let r = r as usize;
        if r >= self.num_symbols {
            return None;
        }
        let a = le_u32(self.b, self.sym_offsets_pos + 4 * r)? as usize;
        let z = le_u32(self.b, self.sym_offsets_pos + 4 * r + 4)? as usize;
        self.b.get(self.sym_data_pos + a..self.sym_data_pos + z)
    }

    fn get(&self, r: u32) -> std::result::Result<&'a str, ()> {
        // Validated as UTF-8 with char-boundary offsets at open; checking again is cheap
        // for label-sized strings and keeps this safe code.
        self.bytes(r).and_then(|s| std::str::from_utf8(s).ok()).ok_or(())
    }
}

impl IndexReader for BlockIndex {
    fn label_names(&self) -> Result<Vec<Arc<str>>> {
        Ok(self.labels.iter().map(|e| e.name.clone()).collect())
    }

    /// Values are borrowed from the index bytes: no allocation per value.
    fn for_each_label_value(&self, name: &str, f: &mut dyn FnMut(&str)) -> Result<()> {
        let Some(e) = self.label(name) else { return Ok(()) };
        for i in 0..e.count {
            f(self.sym(self.value_ref(e, i)?)?);
        }
        Ok(())
    }

    fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap> {
        let Some(e) = self.label(name) else {
            return Ok(RoaringBitmap::new());
        };
        // Binary search the name's values by string; symbol order is byte order.
        let syms = self.syms();
        let (mut lo, mut hi) = (0usize, e.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let v = syms
                .bytes(self.value_ref(e, mid)?)
                .ok_or_else(|| self.corrupt(e.values_pos, "bad value ref"))?;
            match v.cmp(value.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let p = e.offsets_pos + 8 * mid;
                    let (a, z) = match (le_u64(&self.data, p), le_u64(&self.data, p + 8)) {
                        (Some(a), Some(z)) => (a, z),
                        _ => return Err(self.corrupt(p, "postings offset missing")),
                    };
                    return self.decode_postings(a, z);
                }
            }
        }
        Ok(RoaringBitmap::new())
    }

    fn all_postings(&self) -> Result<RoaringBitmap> {
        let mut bm = RoaringBitmap::new();
        bm.insert_range(0..self.num_series);
        Ok(bm)
    }

    fn series_labels(&self, id: u32) -> Result<Labels> {
        let mut v = Vec::new();
        self.series(id, Some(&mut v), None)?;
        Ok(Labels::from_sorted(v))
    }
}

impl std::fmt::Debug for BlockIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockIndex")
            .field("path", &self.path)
            .field("num_series", &self.num_series)
            .field("num_symbols", &self.num_symbols)
            .field("num_label_names", &self.labels.len())
            .finish()
    }
}
