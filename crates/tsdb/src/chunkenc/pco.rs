//! The Pco block encoding (first cut: raw columns; compression follows).

use metricsd_model::Sample;

use super::bstream::{get_uvarint, put_uvarint};
use crate::{Error, Result};

/// Encodes sorted samples in the Pco block encoding.
pub fn encode_pco(samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 10 + samples.len() * 16);
    out.push(0);
    put_uvarint(&mut out, samples.len() as u64);
    for s in samples {
        out.extend_from_slice(&s.t.to_le_bytes());
        out.extend_from_slice(&s.v.to_bits().to_le_bytes());
    }
    out
}

/// Appends the samples of Pco chunk `data` to `dst`; on error `dst` is left as it was.
pub(crate) fn decode_pco(data: &[u8], dst: &mut Vec<Sample>) -> Result<()> {
    let Some((&0, mut rest)) = data.split_first() else {
        return Err(Error::InvalidChunk(format!(
            "Pco chunk of {} bytes has no known layout byte",
            data.len()
        )));
    };
    let n = get_uvarint(&mut rest)
        .ok_or_else(|| Error::InvalidChunk("Pco chunk ends inside its sample count".into()))?;
    if (rest.len() as u64) / 16 < n {
        return Err(Error::InvalidChunk(format!(
            "Pco chunk declares {n} samples but has {} bytes for them",
            rest.len()
        )));
    }
    for c in rest.chunks_exact(16).take(n as usize) {
        let (t, v) = c.split_at(8);
        let t = i64::from_le_bytes(t.try_into().map_err(|_| Error::InvalidChunk("short".into()))?);
        let v = u64::from_le_bytes(v.try_into().map_err(|_| Error::InvalidChunk("short".into()))?);
        dst.push(Sample::new(t, f64::from_bits(v)));
    }
    Ok(())
}
