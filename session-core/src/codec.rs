//! Encoding of session records: a typed header, postcard, and optional LZ4
//! compression with a hard cap on the decompressed size.
//!
//! ```text
//! b"SR" | schema:u8 | flags:u8 | body
//! body = postcard(record)                          when flags & COMPRESSED == 0
//! body = original_len:u32le | lz4_block(postcard)  when flags & COMPRESSED != 0
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// Magic bytes that mark a value as a session record.
const MAGIC: [u8; 2] = *b"SR";
/// Version of the record layout. Bump it when the layout changes, and keep
/// decoding the older layouts so that stored sessions survive an upgrade.
pub(crate) const SCHEMA_VERSION: u8 = 2;
/// The oldest layout that is still decoded.
pub(crate) const OLDEST_SCHEMA_VERSION: u8 = 1;
const FLAG_COMPRESSED: u8 = 0b0000_0001;
const HEADER_LEN: usize = 4;
/// Initial buffer size of an encoded record: most sessions fit without a
/// reallocation.
const ENCODE_CAPACITY: usize = 256;

/// Default cap on a decompressed record: 1 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 1024 * 1024;

/// The reason a record could not be encoded or decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes do not start with the record header.
    #[error("stored value is not a session record (missing or wrong header)")]
    NotARecord,
    /// The record was written by a newer or unknown schema.
    #[error("session record has unsupported schema version {0}")]
    UnsupportedSchema(u8),
    /// The decompressed size would exceed the configured cap.
    #[error("session record would decompress to {claimed} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The size the record claims.
        claimed: usize,
        /// The configured cap.
        limit: usize,
    },
    /// The compressed body is corrupt.
    #[error("session record has a corrupt compressed body")]
    Corrupt,
    /// postcard could not decode the body into the session type.
    #[error("session record does not decode as the session type: {0}")]
    Deserialize(String),
    /// postcard could not encode the session data.
    #[error("session data could not be encoded: {0}")]
    Serialize(String),
}

/// Encodes and decodes records with the configured compression threshold and
/// decompression cap.
#[derive(Debug, Clone, Copy)]
pub struct RecordCodec {
    compression_threshold: Option<usize>,
    max_decompressed: usize,
}

impl Default for RecordCodec {
    fn default() -> Self {
        Self {
            compression_threshold: Some(1024),
            max_decompressed: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

impl RecordCodec {
    /// Creates a codec that compresses bodies larger than
    /// `compression_threshold` bytes (never, for `None`) and refuses records
    /// that would decompress to more than `max_decompressed` bytes.
    pub fn new(compression_threshold: Option<usize>, max_decompressed: usize) -> Self {
        Self {
            compression_threshold,
            max_decompressed,
        }
    }

    /// Encodes `value` with a header, compressing it when over the threshold.
    ///
    /// # Errors
    ///
    /// [`CodecError::Serialize`] when serde cannot encode the value, and
    /// [`CodecError::TooLarge`] when it is larger than the decompression cap
    /// (it could never be read back).
    pub fn encode<V: Serialize>(&self, value: &V) -> Result<Vec<u8>, CodecError> {
        // The body is written after the header in one buffer, sized so that
        // a typical record needs no reallocation.
        let mut out = Vec::with_capacity(ENCODE_CAPACITY);
        out.extend_from_slice(&MAGIC);
        out.push(SCHEMA_VERSION);
        out.push(0);
        postcard::to_io(value, &mut out)
            .map_err(|error| CodecError::Serialize(error.to_string()))?;

        let body_len = out.len() - HEADER_LEN;
        if body_len > self.max_decompressed {
            return Err(CodecError::TooLarge {
                claimed: body_len,
                limit: self.max_decompressed,
            });
        }
        if self
            .compression_threshold
            .is_some_and(|threshold| body_len > threshold)
        {
            let compressed = lz4_flex::block::compress(&out[HEADER_LEN..]);
            out.truncate(HEADER_LEN);
            out[HEADER_LEN - 1] = FLAG_COMPRESSED;
            out.extend_from_slice(&(body_len as u32).to_le_bytes());
            out.extend_from_slice(&compressed);
        }
        // Stores such as the memory store keep this buffer for the
        // session's life, so it gives back what the record did not use.
        out.shrink_to_fit();
        Ok(out)
    }

    /// Decodes bytes written by [`RecordCodec::encode`].
    ///
    /// # Errors
    ///
    /// A [`CodecError`] for anything that is not a record of this schema that
    /// decodes as `V`. It never panics and never allocates more than the cap.
    pub fn decode<V: DeserializeOwned>(&self, bytes: &[u8]) -> Result<V, CodecError> {
        schema_version(bytes)?;
        let flags = bytes[3];
        let body = &bytes[HEADER_LEN..];

        match flags {
            0 => decode_body(body),
            FLAG_COMPRESSED => {
                let Some((len_bytes, compressed)) = body.split_first_chunk::<4>() else {
                    return Err(CodecError::Corrupt);
                };
                let claimed = u32::from_le_bytes(*len_bytes) as usize;
                if claimed > self.max_decompressed {
                    return Err(CodecError::TooLarge {
                        claimed,
                        limit: self.max_decompressed,
                    });
                }
                let mut plain = vec![0u8; claimed];
                let written = lz4_flex::block::decompress_into(compressed, &mut plain)
                    .map_err(|_| CodecError::Corrupt)?;
                if written != claimed {
                    return Err(CodecError::Corrupt);
                }
                decode_body(&plain)
            }
            _ => Err(CodecError::NotARecord),
        }
    }
}

/// Returns the layout version of encoded bytes, one of the versions
/// [`RecordCodec::decode`] accepts.
pub(crate) fn schema_version(bytes: &[u8]) -> Result<u8, CodecError> {
    if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
        return Err(CodecError::NotARecord);
    }
    let version = bytes[2];
    if !(OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&version) {
        return Err(CodecError::UnsupportedSchema(version));
    }
    Ok(version)
}

fn decode_body<V: DeserializeOwned>(body: &[u8]) -> Result<V, CodecError> {
    let (value, rest) = postcard::take_from_bytes(body)
        .map_err(|error| CodecError::Deserialize(error.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Deserialize(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        items: Vec<u32>,
    }

    fn sample(len: usize) -> Sample {
        Sample {
            name: "a".repeat(len),
            items: vec![1, 2, 3],
        }
    }

    #[test]
    fn small_values_round_trip_uncompressed() {
        let codec = RecordCodec::default();
        let bytes = codec.encode(&sample(10)).unwrap();
        assert_eq!(bytes[3], 0);
        assert_eq!(codec.decode::<Sample>(&bytes).unwrap(), sample(10));
    }

    #[test]
    fn large_values_are_compressed_and_round_trip() {
        let codec = RecordCodec::new(Some(100), 1 << 20);
        let bytes = codec.encode(&sample(10_000)).unwrap();
        assert_eq!(bytes[3], FLAG_COMPRESSED);
        assert!(
            bytes.len() < 1_000,
            "10 kB of one letter compresses well: {}",
            bytes.len()
        );
        assert_eq!(codec.decode::<Sample>(&bytes).unwrap(), sample(10_000));
    }

    #[test]
    fn decompression_over_the_cap_is_refused_before_allocating() {
        let codec = RecordCodec::new(Some(0), 1_000);
        let mut bomb = b"SR\x01\x01".to_vec();
        bomb.extend_from_slice(&u32::MAX.to_le_bytes());
        bomb.extend_from_slice(&[0u8; 16]);
        assert_eq!(
            codec.decode::<Sample>(&bomb).unwrap_err(),
            CodecError::TooLarge {
                claimed: u32::MAX as usize,
                limit: 1_000
            }
        );
    }

    #[test]
    fn foreign_and_corrupt_bytes_are_errors() {
        let codec = RecordCodec::default();
        assert_eq!(
            codec.decode::<Sample>(b"").unwrap_err(),
            CodecError::NotARecord
        );
        assert_eq!(
            codec.decode::<Sample>(b"{\"user\":1}").unwrap_err(),
            CodecError::NotARecord
        );
        assert_eq!(
            codec.decode::<Sample>(b"SR\x09\x00").unwrap_err(),
            CodecError::UnsupportedSchema(9)
        );
        assert_eq!(
            codec
                .decode::<Sample>(b"SR\x01\x01\x05\x00\x00\x00\xff")
                .unwrap_err(),
            CodecError::Corrupt
        );
        assert!(matches!(
            codec.decode::<Sample>(b"SR\x01\x00\xff\xff\xff"),
            Err(CodecError::Deserialize(_))
        ));
    }

    #[test]
    fn encoding_over_the_cap_is_refused() {
        let codec = RecordCodec::new(None, 100);
        assert!(matches!(
            codec.encode(&sample(500)),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
