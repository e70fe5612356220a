//! TEMPORARY STUB (not committed).
#![allow(missing_docs, unused_variables)]
use std::collections::HashMap;
use std::path::Path;
use metricsd_model::{Labels, Sample};
use crate::chunkenc::Encoding;
use crate::index::IndexReader;
use crate::tombstones::{Interval, Intervals};
use crate::Result;
#[derive(Debug, Clone, Default)]
pub struct BlockStats { pub num_series: u64, pub num_samples: u64, pub num_chunks: u64, pub num_bytes: u64 }
#[derive(Debug, Clone, Default)]
pub struct CompactionMeta { pub level: u32, pub sources: Vec<String>, pub parents: Vec<String> }
#[derive(Debug, Clone, Default)]
pub struct BlockMeta { pub ulid: String, pub min_time: i64, pub max_time: i64, pub stats: BlockStats, pub compaction: CompactionMeta }
pub struct ChunkMeta { pub mint: i64, pub maxt: i64, pub chunk_ref: u64 }
pub struct BlockIndex;
impl IndexReader for BlockIndex {
    fn label_names(&self) -> Result<Vec<std::sync::Arc<str>>> { todo!() }
    fn for_each_label_value(&self, name: &str, f: &mut dyn FnMut(&str)) -> Result<()> { todo!() }
    fn postings(&self, name: &str, value: &str) -> Result<roaring::RoaringBitmap> { todo!() }
    fn all_postings(&self) -> Result<roaring::RoaringBitmap> { todo!() }
    fn series_labels(&self, id: u32) -> Result<Labels> { todo!() }
}
pub struct Block;
impl Block {
    pub fn open(dir: &Path) -> Result<Block> { todo!() }
    pub fn meta(&self) -> &BlockMeta { todo!() }
    pub fn dir(&self) -> &Path { todo!() }
    pub fn index(&self) -> &BlockIndex { todo!() }
    pub fn series_chunks(&self, id: u32, dst: &mut Vec<ChunkMeta>) -> Result<()> { todo!() }
    pub fn chunk(&self, r: u64) -> Result<(Encoding, &[u8])> { todo!() }
    pub fn corrupt_chunks(&self) -> &[u64] { todo!() }
    pub fn tombstones(&self) -> &HashMap<u32, Intervals> { todo!() }
    pub fn with_tombstones(&self, add: &[(u32, Interval)]) -> Result<Block> { todo!() }
    pub fn size_bytes(&self) -> u64 { todo!() }
}
pub fn cleanup_tmp(parent: &Path) -> Result<()> { Ok(()) }
pub fn write_block(parent: &Path, min: i64, max: i64, series: impl Iterator<Item = (Labels, Vec<Sample>)>, c: CompactionMeta) -> Result<BlockMeta> { todo!() }
