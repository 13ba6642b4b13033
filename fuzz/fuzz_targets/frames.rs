//! How a fuzz input becomes frames: a length byte, then that many bytes, repeated; a last
//! frame cut short by the end of the input keeps what there is. `\x06MDPW01\x00` is then
//! a header frame and an empty frame, which the dictionary (`fuzz/mdp.dict`) offers.

/// Splits `data` into frames.
pub fn split(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let len = usize::from(len).min(rest.len());
        frames.push(rest[..len].to_vec());
        data = &rest[len..];
    }
    frames
}
