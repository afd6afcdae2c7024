//! The versioned codec: round trips, and typed errors for every kind of bad input.

use perf_core::codec::{decode, encode, encode_into, FORMAT_VERSION, MARKER, OVERHEAD};
use perf_core::Error;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Answer {
    model: String,
    text: String,
    tokens: u32,
    score: Option<f64>,
    tags: Vec<String>,
}

fn answer() -> Answer {
    Answer {
        model: "gpt-4o".into(),
        text: "Rust is a systems language. 東京 🚀".into(),
        tokens: 17,
        score: Some(0.93),
        tags: vec!["a".into(), "b".into()],
    }
}

#[test]
fn round_trip() {
    let bytes = encode(&answer()).unwrap();
    assert_eq!(bytes[0], MARKER);
    assert_eq!(bytes[1], FORMAT_VERSION);
    assert_eq!(decode::<Answer>(&bytes).unwrap(), answer());
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = encode(&answer()).unwrap();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut corrupted = bytes.clone();
            corrupted[i] ^= 1 << bit;
            let result = decode::<Answer>(&corrupted);
            assert!(
                matches!(
                    result,
                    Err(Error::CodecForeign { .. }
                        | Error::CodecUnsupportedVersion { .. }
                        | Error::CodecChecksum)
                ),
                "byte {i} bit {bit}: {result:?}"
            );
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = encode(&answer()).unwrap();
    for len in 0..bytes.len() {
        assert!(
            decode::<Answer>(&bytes[..len]).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
}

#[test]
fn foreign_bytes_are_named_as_such() {
    for foreign in [
        &b"{\"model\":\"gpt-4o\"}"[..],
        b"plain text value",
        b"\x00\x01\x02\x03\x04\x05\x06",
    ] {
        assert!(matches!(
            decode::<Answer>(foreign),
            Err(Error::CodecForeign { .. })
        ));
    }
    assert!(matches!(
        decode::<Answer>(b""),
        Err(Error::CodecTruncated { len: 0, .. })
    ));
}

#[test]
fn future_version_is_rejected_with_both_versions() {
    let mut bytes = encode(&1u32).unwrap();
    bytes[1] = FORMAT_VERSION + 1;
    let err = decode::<u32>(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::CodecUnsupportedVersion { found, supported } if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION)
    );
}

#[test]
fn wrong_type_is_a_decode_error_not_a_panic() {
    let bytes = encode(&"just a string").unwrap();
    assert!(matches!(
        decode::<Answer>(&bytes),
        Err(Error::CodecDecode { .. })
    ));
    // Trailing bytes inside a valid frame are rejected too.
    let bytes = encode(&(1u8, 2u8)).unwrap();
    assert!(matches!(
        decode::<u8>(&bytes),
        Err(Error::CodecDecode { .. })
    ));
}

#[test]
fn arbitrary_garbage_never_panics() {
    // Deterministic pseudo-random inputs, including ones that carry a valid header.
    let mut state = 0x1234_5678_9abc_def0u64;
    for round in 0..20_000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (state >> 58) as usize;
        let mut bytes: Vec<u8> = (0..len)
            .map(|i| (state.rotate_left(i as u32 * 7) & 0xff) as u8)
            .collect();
        if round % 2 == 0 && bytes.len() >= 2 {
            bytes[0] = MARKER;
            bytes[1] = FORMAT_VERSION;
        }
        let _ = decode::<Answer>(&bytes);
        let _ = decode::<Vec<String>>(&bytes);
    }
}

#[test]
fn encode_into_appends_and_keeps_the_buffer_on_error() {
    let mut buffer = b"prefix".to_vec();
    encode_into(&7u64, &mut buffer).unwrap();
    assert_eq!(&buffer[..6], b"prefix");
    assert_eq!(decode::<u64>(&buffer[6..]).unwrap(), 7);

    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    let before = buffer.clone();
    assert!(matches!(
        encode_into(&Fails, &mut buffer),
        Err(Error::CodecEncode { .. })
    ));
    assert_eq!(buffer, before);
    assert_eq!(encode(&()).unwrap().len(), OVERHEAD);
}
