//! A versioned binary codec: postcard with a marker byte, a format version byte and a checksum.
//!
//! Layout: `[0xB7 marker][version = 1][postcard payload][CRC-32 of the payload, little endian]`.
//! The marker tells perfkit's bytes from anything else stored under the same key; the version
//! lets a later release change the format and still recognise old bytes; the checksum turns
//! storage or transport corruption into [`Error::CodecChecksum`] instead of a wrong value (CRC-32
//! catches every single-bit error and every burst of up to 32 bits, and is computed with the
//! CPU's carry-less multiply, so it costs a few percent of the encoding itself). It guards
//! against accidents, not against an attacker who can write to the store. Any byte string given
//! to [`decode`] gives a value or a typed error, never a panic.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The first byte of every encoding.
pub const MARKER: u8 = 0xB7;
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
const HEADER: usize = 2;
const CHECKSUM: usize = 4;
/// Bytes the codec adds around the postcard payload.
pub const OVERHEAD: usize = HEADER + CHECKSUM;

/// Encodes `value`.
///
/// ```
/// let bytes = perf_core::codec::encode(&("answer", 42u32)).unwrap();
/// let (text, n): (String, u32) = perf_core::codec::decode(&bytes).unwrap();
/// assert_eq!((text.as_str(), n), ("answer", 42));
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Encodes `value`, appending to `out` (reuse one buffer to avoid an allocation per value).
/// On error `out` is left as it was.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.push(MARKER);
    out.push(FORMAT_VERSION);
    if let Err(e) = postcard::to_extend(value, Appender(out)) {
        out.truncate(start);
        return Err(Error::CodecEncode {
            reason: e.to_string(),
        });
    }
    let checksum = crc32fast::hash(&out[start + HEADER..]);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// Lets postcard append to a borrowed buffer, so the caller keeps it on error.
struct Appender<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Appender<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// Decodes a value written by [`encode`].
///
/// ```
/// use perf_core::{codec, Error};
///
/// let mut bytes = codec::encode(&vec![1u64, 2, 3]).unwrap();
/// bytes[3] ^= 0x01; // one flipped bit in the payload
/// assert!(matches!(codec::decode::<Vec<u64>>(&bytes), Err(Error::CodecChecksum)));
/// assert!(matches!(codec::decode::<Vec<u64>>(b"{\"json\":1}"), Err(Error::CodecForeign { .. })));
/// ```
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    let payload = verified_payload(bytes)?;
    let (value, rest) = postcard::take_from_bytes(payload).map_err(|e| Error::CodecDecode {
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(Error::CodecDecode {
            reason: format!("{} bytes left over after the value", rest.len()),
        });
    }
    Ok(value)
}

/// Checks marker, version and checksum and returns the postcard payload.
pub fn verified_payload(bytes: &[u8]) -> Result<&[u8]> {
    if bytes.len() < OVERHEAD {
        if let Some(&first) = bytes.first() {
            if first != MARKER {
                return Err(Error::CodecForeign { first_byte: first });
            }
        }
        return Err(Error::CodecTruncated {
            len: bytes.len(),
            min: OVERHEAD,
        });
    }
    if bytes[0] != MARKER {
        return Err(Error::CodecForeign {
            first_byte: bytes[0],
        });
    }
    if bytes[1] != FORMAT_VERSION {
        return Err(Error::CodecUnsupportedVersion {
            found: bytes[1],
            supported: FORMAT_VERSION,
        });
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM);
    let payload = &body[HEADER..];
    if crc32fast::hash(payload).to_le_bytes() != *checksum {
        return Err(Error::CodecChecksum);
    }
    Ok(payload)
}
