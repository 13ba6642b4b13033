//! How a multi-frame MDP body maps to one byte stream and back (`--frames`), shared by
//! `mdp worker` (request to stdin, stdout to reply) and `mdp call` (stdin to request, reply
//! to stdout).
//!
//! | mode | frames to bytes | bytes to frames |
//! |---|---|---|
//! | `raw` | the frames concatenated as they are | one frame: all the bytes (none: one empty frame) |
//! | `lines` | each frame followed by `\n` | split on `\n`; a final `\n` ends the last frame and makes no empty one |
//! | `nul` | each frame followed by `\0` | split on `\0`, as `lines` |
//! | `len` | each frame prefixed by its length, a 4-byte big-endian u32 | the same; a cut-off prefix or frame is an error |
//!
//! A frame that contains the separator (`lines`, `nul`) is written unchanged, so on the way
//! back it comes apart into several frames there: pick `len` for bodies that may hold any
//! byte. No input gives no frame with `lines`, `nul` and `len` (`""`, `"\n"` gives one empty
//! frame).

use std::fmt;
use std::ops::Deref;

use clap::ValueEnum;

/// The `--frames` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Framing {
    /// Frames concatenated; one frame back.
    Raw,
    /// Each frame followed by "\n"; split on "\n".
    Lines,
    /// Each frame followed by "\0"; split on "\0".
    Nul,
    /// Each frame prefixed by its length as a 4-byte big-endian u32.
    Len,
}

/// Why bytes or frames could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramesError {
    /// A `len` stream ends inside a length prefix.
    TruncatedPrefix {
        /// Where the prefix starts.
        offset: usize,
        /// Bytes left there (fewer than 4).
        left: usize,
    },
    /// A `len` stream ends inside a frame.
    TruncatedFrame {
        /// Where the frame's prefix starts.
        offset: usize,
        /// The length the prefix gives.
        length: u32,
        /// Bytes left after the prefix.
        left: usize,
    },
    /// A frame too long for a `len` prefix (4 GiB or more).
    FrameTooLong {
        /// Its length.
        length: usize,
    },
}

impl fmt::Display for FramesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramesError::TruncatedPrefix { offset, left } => write!(
                f,
                "malformed len stream: {left} byte(s) at offset {offset}, a length prefix needs 4"
            ),
            FramesError::TruncatedFrame {
                offset,
                length,
                left,
            } => write!(
                f,
                "malformed len stream: the frame at offset {offset} says {length} byte(s), {left} left"
            ),
            FramesError::FrameTooLong { length } => {
                write!(f, "a frame of {length} bytes does not fit a 4-byte length prefix")
            }
        }
    }
}

impl std::error::Error for FramesError {}

impl Framing {
    /// The frames as one byte stream.
    ///
    /// # Errors
    ///
    /// [`FramesError::FrameTooLong`] for a `len` frame of 4 GiB or more.
    pub fn encode<F: Deref<Target = [u8]>>(self, frames: &[F]) -> Result<Vec<u8>, FramesError> {
        let size = frames.iter().map(|f| f.len() + 4).sum();
        let mut bytes = Vec::with_capacity(size);
        for frame in frames {
            match self {
                Framing::Raw => bytes.extend_from_slice(frame),
                Framing::Lines | Framing::Nul => {
                    bytes.extend_from_slice(frame);
                    bytes.push(self.separator());
                }
                Framing::Len => {
                    let length =
                        u32::try_from(frame.len()).map_err(|_| FramesError::FrameTooLong {
                            length: frame.len(),
                        })?;
                    bytes.extend_from_slice(&length.to_be_bytes());
                    bytes.extend_from_slice(frame);
                }
            }
        }
        Ok(bytes)
    }

    /// The frames of a byte stream.
    ///
    /// # Errors
    ///
    /// A truncated prefix or frame of a `len` stream, with its offset.
    pub fn decode(self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FramesError> {
        match self {
            Framing::Raw => Ok(vec![bytes.to_vec()]),
            Framing::Lines | Framing::Nul => Ok(split(bytes, self.separator())),
            Framing::Len => decode_len(bytes),
        }
    }

    fn separator(self) -> u8 {
        match self {
            Framing::Nul => b'\0',
            _ => b'\n',
        }
    }
}

/// Splits on `separator`; a final separator ends the last frame.
fn split(bytes: &[u8], separator: u8) -> Vec<Vec<u8>> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let bytes = bytes.strip_suffix(&[separator]).unwrap_or(bytes);
    bytes
        .split(|b| *b == separator)
        .map(<[u8]>::to_vec)
        .collect()
}

/// Reads length-prefixed frames up to the end.
fn decode_len(bytes: &[u8]) -> Result<Vec<Vec<u8>>, FramesError> {
    let mut frames = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let Some((prefix, body)) = rest.split_first_chunk::<4>() else {
            return Err(FramesError::TruncatedPrefix {
                offset,
                left: rest.len(),
            });
        };
        let length = u32::from_be_bytes(*prefix);
        let Some(frame) = usize::try_from(length).ok().and_then(|n| body.get(..n)) else {
            return Err(FramesError::TruncatedFrame {
                offset,
                length,
                left: body.len(),
            });
        };
        frames.push(frame.to_vec());
        offset += 4 + frame.len();
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn each_mode_encodes_frames_as_documented() {
        let body = frames(&["ab", "", "c"]);
        let cases: [(Framing, &[u8]); 4] = [
            (Framing::Raw, b"abc"),
            (Framing::Lines, b"ab\n\nc\n"),
            (Framing::Nul, b"ab\0\0c\0"),
            (Framing::Len, b"\0\0\0\x02ab\0\0\0\0\0\0\0\x01c"),
        ];
        for (framing, bytes) in cases {
            assert_eq!(framing.encode(&body).unwrap(), bytes, "{framing:?}");
        }
    }

    #[test]
    fn every_mode_but_raw_gives_the_frames_back() {
        let body = frames(&["ab", "", "c", ""]);
        for framing in [Framing::Lines, Framing::Nul, Framing::Len] {
            let bytes = framing.encode(&body).unwrap();
            assert_eq!(framing.decode(&bytes).unwrap(), body, "{framing:?}");
        }
    }

    #[test]
    fn raw_bytes_are_one_frame_even_when_empty() {
        assert_eq!(Framing::Raw.decode(b"a\nb").unwrap(), frames(&["a\nb"]));
        assert_eq!(Framing::Raw.decode(b"").unwrap(), frames(&[""]));
    }

    #[test]
    fn a_final_separator_makes_no_empty_last_frame() {
        let cases: [(&[u8], &[&str]); 6] = [
            (b"", &[]),
            (b"\n", &[""]),
            (b"a", &["a"]),
            (b"a\n", &["a"]),
            (b"a\nb", &["a", "b"]),
            (b"a\n\n", &["a", ""]),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Framing::Lines.decode(bytes).unwrap(), frames(expected));
        }
        assert_eq!(Framing::Nul.decode(b"x\0y\0").unwrap(), frames(&["x", "y"]));
    }

    #[test]
    fn a_frame_holding_the_separator_comes_back_split() {
        let bytes = Framing::Lines.encode(&frames(&["a\nb"])).unwrap();
        assert_eq!(Framing::Lines.decode(&bytes).unwrap(), frames(&["a", "b"]));
        let bytes = Framing::Len.encode(&frames(&["a\nb"])).unwrap();
        assert_eq!(Framing::Len.decode(&bytes).unwrap(), frames(&["a\nb"]));
    }

    #[test]
    fn a_malformed_len_stream_is_refused_with_its_offset() {
        assert_eq!(Framing::Len.decode(b"").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(
            Framing::Len.decode(b"\0\0\0\x01a\0\0"),
            Err(FramesError::TruncatedPrefix { offset: 5, left: 2 })
        );
        let error = Framing::Len.decode(b"\0\0\0\x05abc").unwrap_err();
        assert_eq!(
            error,
            FramesError::TruncatedFrame {
                offset: 0,
                length: 5,
                left: 3
            }
        );
        assert_eq!(
            error.to_string(),
            "malformed len stream: the frame at offset 0 says 5 byte(s), 3 left"
        );
    }
}
